"""Generation and evaluation: batched equals one-by-one, constrained scoring, `ft eval` on users' files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sklearn.metrics import f1_score

from finetune.eval.generate import generate
from finetune.eval.generic import evaluator, parse_label, with_choices
from finetune.eval.label_scores import label_probs
from finetune.model.core import CoreConfig, CoreForCausalLM
from finetune.model.tokenizer import load_tokenizer, train_tokenizer

CLI = Path(__file__).resolve().parents[1] / "cli.py"
TEXTS = [f"Sentence {i}: the market rose {i} points and the patient felt good, or bad." for i in range(200)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "model"
    tok = train_tokenizer(TEXTS, 320, out)
    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=32,
            layers=2,
            heads=4,
            context_length=128,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
    )
    model.save_pretrained(out)
    return model.eval(), load_tokenizer(out), out


def test_batched_generation_equals_one_by_one(tiny):
    model, tok, _ = tiny
    prompts = [
        "the market",
        "Sentence 12: the patient felt",
        "or",
        "points and the patient felt good, or bad. Sentence",
    ]
    batched = generate(model, tok, prompts, max_new_tokens=10, batch_size=4)
    single = [generate(model, tok, [p], max_new_tokens=10, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert tok.padding_side == "right"  # restored after generation


def test_label_probs_are_a_distribution_ordered_by_likelihood(tiny):
    model, tok, _ = tiny
    probs = label_probs(model, tok, ["the patient felt", "the market"], [["good", "bad"], ["rose", "fell", "flat"]])
    assert [sorted(p) for p in probs] == [["bad", "good"], ["fell", "flat", "rose"]]
    for p in probs:
        assert abs(sum(p.values()) - 1) < 1e-6
    # the same scores as a direct computation: first token when the first tokens differ, else the sum
    ids = tok("the patient felt", add_special_tokens=False)["input_ids"]
    firsts = {tok(w, add_special_tokens=False)["input_ids"][0] for w in ("good", "bad")}
    scores = {}
    with torch.no_grad():
        for label in ("good", "bad"):
            c = tok(label, add_special_tokens=False)["input_ids"]
            c = c[:1] if len(firsts) == 2 else c
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids + c])).logits[0], -1)
            scores[label] = sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(c))
    expect = torch.softmax(torch.tensor([scores["good"], scores["bad"]]), 0)
    assert abs(probs[0]["good"] - float(expect[0])) < 1e-5


def test_generic_evaluators_hand_computed():
    rows = with_choices([{"output": "yes"}, {"output": "no"}, {"output": "yes"}, {"output": "no"}])
    m = evaluator("classification")(
        ["Yes!", "no", "maybe", "yes"],
        rows,
        [{"yes": 0.9, "no": 0.1}, {"yes": 0.2, "no": 0.8}, {"yes": 0.6, "no": 0.4}, {"yes": 0.7, "no": 0.3}],
    )
    assert m["accuracy"] == 0.75 and m["gen_accuracy"] == 0.5 and m["parse_failure_rate"] == 0.25
    assert m["f1_weighted"] == pytest.approx(
        f1_score(["yes", "no", "yes", "no"], ["yes", "no", "yes", "yes"], average="weighted")
    )
    m = evaluator("numeric")(["#### 12", "about 3.0", ""], [{"output": "12"}, {"output": "3"}, {"output": "5"}])
    assert m == {"numeric_em": pytest.approx(1 / 3), "parse_failure_rate": pytest.approx(2 / 3)}
    m = evaluator("generation")(["the cat sat", ""], [{"output": "the cat sat"}, {"output": "a dog"}])
    assert m["rouge1"] == pytest.approx(0.5) and m["exact_match"] == 0.5


def test_classification_label_must_open_the_answer():
    """Issue 12, point 4: "I know… yes" was read as "no" (the substring in "know"); now it names no label."""
    rows = with_choices([{"output": "yes"}, {"output": "no"}, {"output": "yes"}, {"output": "no"}])
    assert parse_label("I know… yes", ["no", "yes"]) is None
    m = evaluator("classification")(["I know… yes", "no", "Yes.", "I know it is no"], rows)
    assert m["parse_failure_rate"] == 0.5 and m["gen_accuracy"] == 0.5
    assert parse_label("Doctor: Good morning", ["bad", "good"]) is None
    assert parse_label("not good, bad", ["bad", "good"]) is None
    assert parse_label("Answer: Good", ["bad", "good"]) == "good"


def test_numeric_is_gsm8k_exact_match_unless_loosened():
    """Issue 12, point 17: the number after '####' must equal the reference; a missing mark is a parse failure.
    The 1% tolerance and the last-number fallback count only when asked, under keys that name them."""
    rows = [{"id": str(i), "output": f"Step one. #### {n}"} for i, n in enumerate((12, 12, 100, 7, 1234))]
    preds = ["So #### 12", "12", "#### 100.5", "the answer is 7", "#### 1,234"]
    strict = evaluator("numeric")(preds, rows)
    assert strict == {"numeric_em": pytest.approx(2 / 5), "parse_failure_rate": pytest.approx(2 / 5)}
    loose = evaluator("numeric", numeric_tolerance=0.01, numeric_fallback="last")(preds, rows)
    assert loose["numeric_em"] == strict["numeric_em"]  # the strict number is always there
    assert loose["numeric_em_last_tol0.01"] == pytest.approx(5 / 5) and loose["parse_failure_rate_last"] == 0.0
    assert set(evaluator("numeric", numeric_tolerance=0.01)(preds, rows)) == {
        "numeric_em",
        "parse_failure_rate",
        "numeric_em_tol0.01",
    }
    # a bare-number reference wants a bare-number answer (or a '####' mark)
    bare = evaluator("numeric")(["42", "#### 42", "42 apples"], [{"output": "42"}] * 3)
    assert bare == {"numeric_em": pytest.approx(2 / 3), "parse_failure_rate": pytest.approx(1 / 3)}


@pytest.mark.parametrize(
    "task,rows,key",
    [
        ("generation", [{"q": f"say {i}", "a": f"number {i}"} for i in range(6)], "rougeL"),
        ("classification", [{"q": f"case {i}", "a": "good" if i % 2 else "bad"} for i in range(6)], "mcc"),
        ("numeric", [{"q": f"{i} plus 1", "a": str(i + 1)} for i in range(6)], "numeric_em"),
    ],
)
def test_ft_eval_on_user_csv(tiny, tmp_path, task, rows, key):
    """Through the CLI in this process (typer's runner: parsing, the command and its printout; a fresh
    interpreter per case cost 12 s each, and test_ft_eval_bad_field_is_one_line_exit_2 starts one)."""
    from typer.testing import CliRunner

    from cli import app

    _, _, model_dir = tiny
    path = tmp_path / "mine.csv"
    path.write_text("q,a\n" + "".join(f"{r['q']},{r['a']}\n" for r in rows))
    args = ["eval", "--model", str(model_dir), "--data", str(path), "--task", task]
    got = CliRunner().invoke(app, [*args, "--field", "input=q", "--field", "output=a", "--max-new-tokens", "4"])
    assert got.exit_code == 0, got.output[-2000:]
    assert key in got.output
    assert ("per class" in got.output) == (task == "classification")  # the confusion matrix and P/R/F1 tables
    assert "--out DIR" in got.output  # says where the rows would go


def test_ft_eval_out_writes_predictions_and_names_the_loosened_rule(tiny, tmp_path):
    _, _, model_dir = tiny
    path = tmp_path / "gsm.jsonl"
    path.write_text("".join(json.dumps({"q": f"{i} plus 1", "a": f"add. #### {i + 1}"}) + "\n" for i in range(4)))
    from typer.testing import CliRunner

    sys.path.insert(0, str(CLI.parent))
    import cli

    out = CliRunner().invoke(
        cli.app,
        [
            "eval",
            "--model",
            str(model_dir),
            "--data",
            str(path),
            "--task",
            "numeric",
            "--field",
            "input=q",
            "--field",
            "output=a",
            "--max-new-tokens",
            "3",
            "--numeric-tolerance",
            "0.01",
            "--numeric-fallback",
            "last",
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    assert out.exit_code == 0, out.output[-2000:]
    assert "numeric_em_last_tol0.01" in out.output and "parse_failure_rate_last" in out.output
    rows = [json.loads(x) for x in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["kind"] == "number" and "prediction" in r and "parse_failure" in r for r in rows)
    saved = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert "numeric_em_last_tol0.01" in next(iter(saved["after"].values()))


def test_ft_eval_bad_field_is_one_line_exit_2(tiny, tmp_path):
    _, _, model_dir = tiny
    path = tmp_path / "mine.csv"
    path.write_text("q,a\nx,y\n")
    out = subprocess.run(
        [
            sys.executable,
            str(CLI),
            "eval",
            "--model",
            str(model_dir),
            "--data",
            str(path),
            "--task",
            "generation",
            "--field",
            "input=question",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "question" in out.stderr
