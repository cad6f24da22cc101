"""eval.retention (issue 16, point 1): what fine-tuning cost, measured on the base and on the tuned model.

The general-text probe is a masked, chunked perplexity; for a base this recipe pretrains it scores the
pretraining corpus's held-out split exactly as pretraining did (the base's number is its validation
loss); off-target scenarios are evaluated on both models; the report puts the task's gain beside the
probes' change ("What it cost") and plots the general perplexity logged with eval_every.
"""

from __future__ import annotations

import json

import pytest

from finetune.config.load import recipe_from_dict
from finetune.data.general_gen import SHIPPED, generate
from finetune.data.general_text import read_documents
from finetune.errors import UserError
from finetune.eval.retention import GENERAL, cost_rows, enabled, general_text, perplexity
from tests.helpers_tiny import corpus, pretrain_recipe, run_inprocess


def test_shipped_text_is_the_generators_output():
    text = SHIPPED.read_text(encoding="utf-8")
    assert text == generate()
    assert 200_000 < len(text.encode()) < 600_000  # a few hundred KB
    assert len(read_documents(SHIPPED, "x")) == 1000


def test_text_files_read_as_documents_and_bad_ones_are_one_line(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "one doc"}\n\n{"text": "two"}\n', encoding="utf-8")
    assert read_documents(jsonl, "eval.retention.text") == ["one doc", "two"]
    jsonl.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"eval.retention.text: .*t.jsonl, row 2: no string field 'text'"):
        read_documents(jsonl, "eval.retention.text")
    empty = tmp_path / "e.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds no text"):
        read_documents(empty, "eval.retention.text")


def _recipe(tmp_path, **extra):
    data = {
        "name": "r",
        "model": {"path": str(tmp_path)},
        "data": {"sources": [{"scenario": "risk_assessment"}]},
        "method": {"kind": "lora"},
        "eval": {},
        **extra,
    }
    return recipe_from_dict(data)


def test_retention_is_on_when_the_recipe_fine_tunes_and_defaults_to_the_shipped_text(tmp_path):
    recipe = _recipe(tmp_path)
    assert enabled(recipe)
    assert general_text(recipe).source.startswith("general text shipped with ft")
    assert not enabled(_recipe(tmp_path, eval={"retention": {"enabled": False}}))
    evaluate_only = recipe_from_dict(
        {"name": "e", "model": {"path": str(tmp_path)}, "eval": {"data": {"path": "x.csv"}}}
    )
    assert not enabled(evaluate_only)  # nothing was tuned: no before/after to compare


def test_cost_rows_put_task_gain_beside_kept_ability():
    ev = {
        "before": {"risk_assessment": {"mcc": 0.1, "accuracy": 0.5}},
        "after": {"risk_assessment": {"mcc": 0.7, "accuracy": 0.8}},
        "retention": {
            "before": {GENERAL: {"ppl": 10.0}, "tutoring": {"exact_match": 0.2}},
            "after": {GENERAL: {"ppl": 12.5}, "tutoring": {"exact_match": 0.1}},
        },
    }
    rows = {r["name"]: r for r in cost_rows(ev)}
    assert rows["risk_assessment"]["metric"] == "mcc" and rows["risk_assessment"]["change"] == pytest.approx(0.6)
    assert rows[GENERAL]["relative"] == pytest.approx(0.25) and rows[GENERAL]["kept"] == pytest.approx(0.8)
    assert rows["tutoring"]["kind"] == "off-target" and rows["tutoring"]["kept"] == pytest.approx(0.5)


# ---------------------------------------------------------------- end to end on a tiny pretrained base


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("retention")
    data = pretrain_recipe(corpus, out)
    data["pretrain"]["train"]["eval_every"] = 0
    data.update(
        {
            "data": {"sources": [{"scenario": "risk_assessment", "sizes": {"train": 48, "validation": 8, "test": 4}}]},
            "method": {"kind": "full"},
            "train": {"threads": 1, "max_steps": 6, "batch_size": 4, "learning_rate": 3e-3, "eval_every": 3},
            "eval": {
                "samples": 4,
                "max_new_tokens": 4,
                "retention": {"scenarios": ["tutoring"], "samples": 2},
            },
        }
    )
    data["data"]["max_length"] = 64
    result = run_inprocess(data)
    return out, result


def test_base_perplexity_is_its_pretraining_validation_loss(run):
    out, result = run
    ev = json.loads((out / "eval.json").read_text())
    before, after = ev["retention"]["before"][GENERAL], ev["retention"]["after"][GENERAL]
    assert ev["retention"]["text"] == "pretraining corpus, held-out split"
    assert before["loss"] == pytest.approx(result.metrics["pretrain.val_loss"], abs=1e-5)
    assert before["tokens"] == after["tokens"] > 0 and after["loss"] != before["loss"]
    assert result.metrics[f"eval.retention.{GENERAL}.ppl.after"] == pytest.approx(after["ppl"])
    assert set(ev["retention"]["before"]) == set(ev["retention"]["after"]) == {GENERAL, "tutoring"}
    assert "exact_match" in ev["retention"]["after"]["tutoring"]


def test_report_shows_what_it_cost_and_plots_general_perplexity(run):
    out, _ = run
    md = (out / "report.md").read_text()
    assert "## What it cost" in md
    assert "| task | risk_assessment |" in md and "| general | general_text | ppl |" in md
    assert "| off-target | tutoring | exact_match |" in md
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "general_ppl" in r] == [3, 6]
    from PIL import Image

    with Image.open(out / "loss_curve.png") as img:
        assert img.size[0] == 3 * 600  # pretrain, fine-tune and general-perplexity panels, 6 inches each at 100 dpi


def test_padding_is_masked_in_the_perplexity(run):
    from finetune.data.tokenized import TokenizedData
    from finetune.model.hf import load_model

    out, _ = run
    model = load_model(str(out / "model"))
    blocks = TokenizedData(
        [{"input_ids": ids, "labels": list(ids)} for ids in ([5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17])]
    )
    one_by_one = perplexity(model, blocks, 1, "cpu")
    padded = perplexity(model, blocks, 3, "cpu")
    assert padded["tokens"] == one_by_one["tokens"] == 5 + 2 + 3
    assert padded["loss"] == pytest.approx(one_by_one["loss"], abs=1e-5)


def test_forgetting_study_checks_the_literatures_expectations():
    from bench.forgetting import render, verdicts

    def row(ppl_after, task_after):
        return {"task": "tutoring", "task_before": 0.0, "task_after": task_after, "ppl_before": 10.0,
                "ppl_after": ppl_after, "tokens_scored": 100, "replay": {}, "wall_s": 1.0, "load_at_start": 0.5}  # fmt: skip

    rows = {"full_replay0": row(14.0, 0.30), "full_replay5": row(12.0, 0.29), "lora_replay0": row(11.0, 0.2)}
    met = {e: ok for e, _, ok in verdicts(rows)}
    assert list(met.values()) == [True, True, True]  # 4.0 > 1.0; 4.0 -> 2.0 is a 50% cut; task -0.01
    rows["full_replay5"] = row(13.0, 0.25)  # a 25% cut, the task 0.05 lower
    assert [ok for _, _, ok in verdicts(rows)] == [True, False, False]
    assert "| full_replay0 | 0.000 | 0.300 | 10.000 | 14.000 | +4.000 (+40.0%) |" in render(rows, [])
