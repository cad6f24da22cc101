"""The majority trap (issue 12, point 14): tuned decision rule, single-class warning, class balancing."""

import json
import math
import random

import pytest
import torch

from finetune.data.tokenized import (
    TokenizedData,
    balance_classes,
    class_counts,
    label_class,
)
from finetune.eval.decision import (
    apply_offsets,
    class_warning,
    decide,
    describe,
    metric_name,
    tune_offsets,
)

GOOD, BAD = 11, 12  # first-token ids of the two labels in the hand-made examples


def _binary(margins: list[float]) -> list[dict[str, float]]:
    """Scores whose log-odds log p(bad) - log p(good) equal each margin."""
    return [{"good": 1 / (1 + math.exp(m)), "bad": 1 / (1 + math.exp(-m))} for m in margins]


def _mcc(truth, predicted):
    from finetune.metrics.classification import mcc

    return mcc(truth, predicted)


# ---------------------------------------------------------------- tuning


def test_tuning_recovers_a_known_threshold_and_carries_to_new_rows():
    # a model that ranks perfectly but sits 1.5 nats on the "good" side: argmax calls most "bad" rows good
    rng = random.Random(0)
    val = [rng.uniform(-4, 2) for _ in range(200)]
    truth = ["bad" if m > -1.5 else "good" for m in val]
    offsets, measured = tune_offsets(_binary(val), truth)
    assert metric_name(["good", "bad"]) == measured["metric"] == "mcc"
    assert offsets["good"] == 0.0 and abs(offsets["bad"] - 1.5) < 0.1
    assert measured["tuned"] == pytest.approx(1.0) and measured["argmax"] < 0.6
    test = [rng.uniform(-4, 2) for _ in range(200)]
    test_truth = ["bad" if m > -1.5 else "good" for m in test]
    adjusted = apply_offsets(_binary(test), offsets)
    assert all(abs(sum(p.values()) - 1) < 1e-9 for p in adjusted)
    tuned = [decide(p, {}) for p in adjusted]
    argmax = [decide(p, {}) for p in _binary(test)]
    assert _mcc(test_truth, tuned) > 0.95 and _mcc(test_truth, argmax) < 0.7


def test_tuning_three_classes_recovers_offsets_by_macro_f1():
    rng = random.Random(1)
    shift = {"neg": 0.0, "neu": 1.0, "pos": -0.7}  # the model's bias against each class
    scores, truth = [], []
    for _ in range(300):
        true_logits = {c: rng.gauss(0, 1.5) for c in shift}
        truth.append(max(true_logits, key=true_logits.get))
        seen = {c: v - shift[c] for c, v in true_logits.items()}
        top = max(seen.values())
        z = sum(math.exp(v - top) for v in seen.values())
        scores.append({c: math.exp(v - top) / z for c, v in seen.items()})
    offsets, measured = tune_offsets(scores, truth)
    assert measured["metric"] == "f1_macro" and measured["tuned"] > 0.97 > measured["argmax"] + 0.1
    assert abs(offsets["neu"] - 1.0) < 0.25 and abs(offsets["pos"] + 0.7) < 0.25


def test_a_model_that_gains_nothing_keeps_its_argmax():
    margins = [-3, -2, -1, 1, 2, 3]
    truth = ["good", "good", "good", "bad", "bad", "bad"]
    offsets, measured = tune_offsets(_binary(margins), truth)
    assert offsets == {"good": 0.0, "bad": 0.0} and measured["argmax"] == measured["tuned"] == pytest.approx(1.0)
    single, info = tune_offsets(_binary(margins), ["good"] * 6)  # one class: nothing to tune, said so
    assert single == {"good": 0.0, "bad": 0.0} and info["tuned"] is None
    assert "argmax" in describe({"rule": "tuned", **info})


def test_a_rule_tuned_on_noise_is_checked_out_of_fold_and_argmax_kept():
    # a calibrated model (its right offset is 0) on 36 validation rows, 7 of them "bad": an offset tuned on all 36
    # raises MCC there by fitting a few rows; tuned on four folds it loses on the fifth, so the rule keeps argmax
    rng = random.Random(0)
    truth = ["bad"] * 7 + ["good"] * 29
    margins = [rng.gauss(1.0 if t == "bad" else -1.0, 1.0) for t in truth]
    offsets, measured = tune_offsets(_binary(margins), truth)
    assert offsets == {"good": 0.0, "bad": 0.0}
    assert measured["kept_argmax"]["in_sample"] > measured["argmax"] + 0.1  # what the unchecked rule would claim
    cv = measured["out_of_fold"]
    assert cv["folds"] == 5 and cv["tuned"] < cv["argmax"] == measured["argmax"] == measured["tuned"]
    line = describe({"rule": "tuned", "offsets": offsets, **measured})
    assert "argmax kept" in line and "out of fold" in line
    # a model pushed 2.5 nats to "good" (argmax calls every row good): the check passes and the offset is applied
    shifted = [m - 2.5 for m in margins]
    moved, info = tune_offsets(_binary(shifted), truth)
    assert (
        moved["bad"] > 0.5
        and "kept_argmax" not in info
        and info["out_of_fold"]["tuned"] > info["out_of_fold"]["argmax"]
    )


# ---------------------------------------------------------------- warnings


def test_single_and_dominant_class_warnings():
    truth = ["good"] * 70 + ["bad"] * 30
    single = class_warning(["good"] * 100, truth)
    assert single and "'good' for all 100 rows" in single and "70%" in single
    assert "class_balance" in single and "eval.decision" in single
    dominant = class_warning(["good"] * 96 + ["bad"] * 4, truth)
    assert dominant and "96%" in dominant
    assert class_warning(["good"] * 75 + ["bad"] * 25, truth) is None  # near its share: no warning
    assert class_warning(["good"] * 10, ["good"] * 10) is None  # the references hold one class themselves


def test_evaluate_model_warns_on_one_class_and_tuned_rule_lifts_it(monkeypatch):
    """Evaluator level, label scores fixed: argmax predicts "good" for every row, the tuned rule does not."""
    from finetune.config.schema import EvalSpec
    from finetune.eval import generate as gen
    from finetune.eval import label_scores, run
    from finetune.eval.run import EvalSet, evaluate_model
    from finetune.scenarios import risk_assessment as risk

    rng = random.Random(2)

    def rows(n: int, tag: str) -> list[dict]:
        out = []
        for i in range(n):
            m = rng.uniform(-5, -0.5)  # every margin below 0: argmax says "good" everywhere
            out.append(
                {
                    "id": f"{tag}{i}",
                    "input": f"{m:.6f}",
                    "output": "bad" if m > -2.5 else "good",
                    "choices": ["good", "bad"],
                }
            )
        return out

    test, val = rows(60, "t"), rows(60, "v")

    class Template:
        def prompt(self, row):
            return row["input"]

    monkeypatch.setattr(gen, "generate", lambda model, tok, prompts, **kw: ["good"] * len(prompts))
    monkeypatch.setattr(run, "_generation_groups", lambda tok, rows, n: [(list(range(len(rows))), n)])  # no tokenizer
    monkeypatch.setattr(label_scores, "first_token_ids", lambda tok, choices: [None] * len(choices))
    monkeypatch.setattr(
        label_scores,
        "label_probs",
        lambda model, tok, prompts, choices, batch_size=32: _binary([float(p) for p in prompts]),
    )
    sets = [EvalSet("risk", test, None, None, risk.evaluate, val)]
    plain = evaluate_model(None, None, {"risk": Template()}, sets, EvalSpec(decision="argmax"))
    assert plain["metrics"]["risk"]["mcc"] == 0.0
    assert plain["decisions"]["risk"] == {"rule": "argmax"}
    assert len(plain["warnings"]["risk"]) == 1 and "for all 60 rows" in plain["warnings"]["risk"][0]
    tuned = evaluate_model(None, None, {"risk": Template()}, sets, EvalSpec(decision="tuned"))
    rule = tuned["decisions"]["risk"]
    assert rule["rule"] == "tuned" and rule["rows"] == 60 and rule["metric"] == "mcc" and rule["offsets"]["bad"] > 1.5
    assert tuned["metrics"]["risk"]["mcc"] > 0.9 and tuned["warnings"]["risk"] == []
    assert "tuned on 60 validation rows to maximise mcc" in describe(rule) and "noisy" not in describe(rule)
    few = dict(rule, class_rows={"good": 52, "bad": 8})
    assert describe(few).endswith("noisy: only 8 'bad' validation rows")  # a rare class's offset rests on few rows


# ---------------------------------------------------------------- class balance


def _example(label: int | None, weight: float | None = None) -> dict:
    """prompt 1 2 3, then the label token (a decision when ``label`` is one of the choices), then eos."""
    first = label if label is not None else 40
    e = {
        "input_ids": [1, 2, 3, first, 0],
        "labels": [-100, -100, -100, first, 0],
        "choice_index": [-1, -1, -1, 0 if label is not None else -1, -1],
    }
    if weight is not None:
        e["loss_weight"] = [weight] * 5
    return e


def _data(n_good: int, n_bad: int, n_plain: int = 0, weight: float | None = None) -> TokenizedData:
    examples = [_example(GOOD, weight)] * n_good + [_example(BAD, weight)] * n_bad + [_example(None, weight)] * n_plain
    return TokenizedData(examples=[dict(e) for e in examples], choice_sets=[[GOOD, BAD]], pad_id=0)


def test_weighted_balance_gives_each_class_the_same_total_weight():
    data = _data(30, 10, n_plain=5)
    assert class_counts(data) == {(0, GOOD): 30, (0, BAD): 10} and label_class(data.examples[-1]) is None
    out = balance_classes(data, "weighted", seed=0)
    weights = {label_class(e): e["loss_weight"][0] for e in out.examples}
    assert weights[(0, GOOD)] == pytest.approx(40 / (2 * 30)) and weights[(0, BAD)] == pytest.approx(40 / (2 * 10))
    assert weights[None] == 1.0 and len(out) == len(data)
    # combined with per-example averaging (loss_average: example) the class factor multiplies the existing weight
    averaged = balance_classes(_data(30, 10, weight=0.5), "weighted", seed=0)
    assert {label_class(e): e["loss_weight"][3] for e in averaged.examples}[(0, BAD)] == pytest.approx(0.5 * 2.0)
    assert balance_classes(data, "none", seed=0) is data


def test_oversample_repeats_rarer_classes_up_to_the_largest_seeded():
    data = TokenizedData(
        examples=[{**_example(GOOD), "input_ids": [1, 2, i, GOOD, 0]} for i in range(30)]
        + [{**_example(BAD), "input_ids": [1, 2, 100 + i, BAD, 0]} for i in range(7)]
        + [_example(None)] * 3,
        choice_sets=[[GOOD, BAD]],
        pad_id=0,
    )
    out = balance_classes(data, "oversample", seed=0)
    assert class_counts(out) == {(0, GOOD): 30, (0, BAD): 30} and len(out) == 63
    bad = [e["input_ids"][2] for e in out.examples if label_class(e) == (0, BAD)]
    per_row = sorted(bad.count(100 + i) for i in range(7))
    assert per_row == [4, 4, 4, 4, 4, 5, 5]  # 30 = 7 x 4 + 2 drawn once more
    again = balance_classes(data, "oversample", seed=0)
    assert [e["input_ids"] for e in again.examples] == [e["input_ids"] for e in out.examples]  # a function of the seed


# ---------------------------------------------------------------- end to end


def test_tuned_decision_and_balance_reach_eval_json_and_report(tmp_path, capsys):
    """A tiny LoRA run with class_balance oversample and eval.decision tuned: the rule is in eval.json and report.md."""
    from helpers_tiny import finetune_recipe, run_inprocess

    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import train_tokenizer

    base = tmp_path / "base"
    texts = [f"income: low; debt: high; amount: {1000 * i}; answer good or bad" for i in range(60)]
    tok = train_tokenizer(texts, 320, base)
    torch.manual_seed(0)
    CoreForCausalLM(
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
    ).save_pretrained(base)
    recipe = finetune_recipe(base, tmp_path / "run", {"kind": "lora", "r": 4, "alpha": 8}, train_rows=24)
    recipe["data"]["class_balance"] = "oversample"
    recipe["data"]["max_length"] = 128
    recipe["eval"] = {"before": False, "samples": 8, "max_new_tokens": 2, "decision": "tuned"}
    run_inprocess(recipe)
    said = capsys.readouterr().out
    line = next(x for x in said.splitlines() if x.startswith("class balance oversample: training examples per class"))
    counts = dict(part.split() for part in line.split("per class ")[-1].split(", "))
    assert set(counts) == {"good", "bad"} and len({c.split("->")[-1] for c in counts.values()}) == 1  # equal after
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    rule = ev["decisions"]["after"]["risk_assessment"]
    assert rule["rule"] == "tuned" and rule["rows"] == 8 and rule["metric"] == "mcc"
    assert set(rule["offsets"]) == {"good", "bad"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert describe(rule) in report and "on 8 validation rows" in report  # tuned, or argmax kept by the check
    assert isinstance(ev["warnings"]["after"]["risk_assessment"], list)


def test_label_scores_false_evaluates_the_generated_answer_only(monkeypatch):
    """eval.label_scores: false never scores labels (77 intents sharing first tokens on a large model would cost one
    sequence per row and label); the generated answers are still scored, and tuned without scores is refused."""
    import pytest
    from pydantic import ValidationError

    from finetune.config.schema import EvalSpec
    from finetune.eval import generate as gen
    from finetune.eval import label_scores, run
    from finetune.eval.run import EvalSet, evaluate_model
    from finetune.scenarios import risk_assessment as risk

    rows = [{"id": i, "input": "x", "output": ["good", "bad"][i % 2], "choices": ["good", "bad"]} for i in range(6)]

    class Template:
        def prompt(self, row):
            return row["input"]

    def no_scoring(*a, **k):
        raise AssertionError("label_probs must not run with label_scores: false")

    monkeypatch.setattr(gen, "generate", lambda model, tok, prompts, **kw: ["good", "bad"] * (len(prompts) // 2))
    monkeypatch.setattr(run, "_generation_groups", lambda tok, rows, n: [(list(range(len(rows))), n)])
    monkeypatch.setattr(label_scores, "label_probs", no_scoring)
    monkeypatch.setattr(label_scores, "first_token_ids", lambda tok, choices: [None] * len(choices))
    sets = [EvalSet("risk", rows, None, None, risk.evaluate, [])]
    got = evaluate_model(None, None, {"risk": Template()}, sets, EvalSpec(label_scores=False))
    assert got["metrics"]["risk"]["gen_accuracy"] == 1.0 and "accuracy" not in got["metrics"]["risk"]
    assert got["decisions"] == {} and got["label_probs"]["risk"] == (None, None)
    with pytest.raises(ValidationError, match="needs label_scores: true"):
        EvalSpec(label_scores=False, decision="tuned")
