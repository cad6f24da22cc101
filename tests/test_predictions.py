"""predictions.jsonl beside eval.json, and the per-class tables the report builds from it (issue 12, point 15)."""

from types import SimpleNamespace

import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from finetune.eval.generic import parser
from finetune.eval.predictions import (
    answer_parser,
    class_tables,
    prediction_records,
    read_predictions,
    write_predictions,
)
from finetune.metrics.classification import confusion_matrix, per_class
from finetune.scenarios._common import UNPARSED


def _set(name, rows, parse):
    return SimpleNamespace(name=name, rows=rows, parse=parse)


def test_confusion_matrix_and_per_class_match_sklearn():
    truth = ["good", "bad", "good", "good", "bad", "good"]
    pred = ["good", "good", UNPARSED, "good", "bad", "bad"]
    labels, counts = confusion_matrix(truth, pred, ["good", "bad"])
    assert labels == ["good", "bad", UNPARSED]
    assert counts == sk_confusion(truth, pred, labels=labels).tolist()
    table = per_class(truth, pred, ["good", "bad"])
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=["good", "bad"], zero_division=0)
    assert [table[k]["precision"] for k in ("good", "bad")] == pytest.approx(list(p))
    assert [table[k]["recall"] for k in ("good", "bad")] == pytest.approx(list(r))
    assert [table[k]["f1"] for k in ("good", "bad")] == pytest.approx(list(f))
    assert [table[k]["support"] for k in ("good", "bad")] == list(n)


def test_records_hold_parsed_labels_scores_and_decision(tmp_path):
    rows = [{"id": f"r{i}", "output": lab, "choices": ["good", "bad"]} for i, lab in enumerate(["good", "bad", "bad"])]
    raw = [{"good": 0.7, "bad": 0.3}, {"good": 0.6, "bad": 0.4}, {"good": 0.2, "bad": 0.8}]
    decided = [
        {"good": 0.7, "bad": 0.3},
        {"good": 0.4, "bad": 0.6},
        {"good": 0.2, "bad": 0.8},
    ]  # a tuned rule moved row 2
    result = {
        "predictions": {"risk": ["Good.", "Doctor: Good morning", "bad"]},
        "label_probs": {"risk": (raw, decided)},
    }
    sets = [_set("risk", rows, answer_parser("risk_assessment"))]
    records = prediction_records(sets, result, "after")
    path = write_predictions(tmp_path / "predictions.jsonl", records)
    got = read_predictions(path)
    assert [r["id"] for r in got] == ["r0", "r1", "r2"] and {r["model"] for r in got} == {"after"}
    assert [r["parsed"] for r in got] == ["good", None, "bad"]
    assert [r["parse_failure"] for r in got] == [False, True, False]
    assert got[1]["scores"] == raw[1] and [r["constrained"] for r in got] == ["good", "bad", "bad"]
    assert not (tmp_path / "predictions.jsonl.tmp").exists()
    tables = class_tables(got)["risk"]["after"]
    assert tables["constrained"]["matrix"] == [[1, 0], [0, 2]]
    assert tables["generated"]["labels"] == ["good", "bad", UNPARSED]
    assert tables["generated"]["matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert tables["generated"]["per_class"]["bad"]["recall"] == 0.5


def test_numeric_and_text_records():
    rows = [{"id": "a", "output": "#### 12"}, {"id": "b", "output": "#### 5"}]
    result = {"predictions": {"mine": ["#### 12", "5"]}}
    got = prediction_records([_set("mine", rows, parser("numeric"))], result, "before")
    assert [(r["kind"], r["parsed"], r["parse_failure"]) for r in got] == [
        ("number", 12.0, False),
        ("number", None, True),
    ]
    loose = prediction_records([_set("mine", rows, parser("numeric", "last"))], result, "before")
    assert loose[1]["parsed"] == 5.0
    text = prediction_records(
        [_set("notes", [{"id": "c", "output": "x"}], parser("generation"))], {"predictions": {"notes": ["y"]}}, "after"
    )
    assert text[0]["kind"] == "text" and text[0]["parse_failure"] is None
    hint = prediction_records(
        [_set("t", [{"id": "h", "output": "Try", "answer": 3, "mode": "hint"}], answer_parser("tutoring"))],
        {"predictions": {"t": ["What is 1+2?"]}},
        "after",
    )
    assert hint[0]["kind"] == "text" and hint[0]["parse_failure"] is None
    assert class_tables(got + text + hint) == {}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tiny") / "model"
    tok = train_tokenizer([f"Applicant {i} earns {i} and is good or bad." for i in range(200)], 320, out)
    torch.manual_seed(0)
    CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=32,
            layers=2,
            heads=4,
            context_length=256,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
    ).save_pretrained(out)
    return out


def test_evaluation_stage_writes_predictions_and_report_shows_class_tables(tiny_model, tmp_path):
    from finetune.config.load import recipe_from_dict
    from finetune.report import build_report, render_markdown
    from finetune.stages.evaluate import evaluate_run

    recipe = recipe_from_dict(
        {
            "name": "p",
            "output": str(tmp_path / "run"),
            "model": {"path": str(tiny_model)},
            "data": {
                "sources": [{"scenario": "risk_assessment", "sizes": {"train": 4, "validation": 4, "test": 6}}],
                "max_length": 256,
            },
            "method": {"kind": "lora", "r": 2},  # final=None below: nothing trained, the one evaluation is "after"
            "eval": {"samples": 6, "max_new_tokens": 3, "batch_size": 6},
        }
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    acc = SimpleNamespace(is_main_process=True, device="cpu", print=lambda *a: None, wait_for_everyone=lambda: None)
    result = evaluate_run(recipe, run_dir, str(tiny_model), None, acc)
    records = read_predictions(run_dir / "predictions.jsonl")
    assert (run_dir / "eval.json").exists() and len(records) == 6
    assert all(r["model"] == "after" and r["kind"] == "label" and set(r["scores"]) == {"good", "bad"} for r in records)
    failures = sum(r["parse_failure"] for r in records) / 6
    assert result.after["risk_assessment"]["parse_failure_rate"] == pytest.approx(failures)
    report = build_report(recipe, run_dir, {"eval": result})
    table = report["eval"]["classes"]["risk_assessment"]["after"]["constrained"]
    assert sum(map(sum, table["matrix"])) == 6
    md = render_markdown(report)
    assert "Per-class results: risk_assessment" in md and "| reference \\ predicted |" in md
    assert f"({100 * failures:.1f}% unparsed)" in md  # beside every gen_ metric
