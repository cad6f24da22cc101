"""Plain metric functions against reference implementations, and the evaluate modules."""

from __future__ import annotations

import math
import random

import pytest

from finetune import metrics
from finetune.metrics.classification import (
    accuracy,
    brier,
    demographic_parity_difference,
    ece,
    equal_opportunity_difference,
    f1,
    mcc,
)
from finetune.metrics.numeric import exact_match, numeric_match, parse_number
from finetune.metrics.text import rouge

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
skm = pytest.importorskip("sklearn.metrics")

PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on the mat"),
    ("Patients reported running, jumping and swimming daily.", "The patient runs and swims every day."),
    ("Revenue rose 12% to $1,234.5m in Q3", "Q3 revenue increased by 12 percent to 1,234.5 million dollars"),
    ("the the the the", "the cat the dog"),
    ("The Eagle serves French food near the river.", "Near the river, The Eagle is a French restaurant."),
    ("completely unrelated words", "nothing in common here"),
    ("a b c d e f", "f e d c b a"),
    ("", "something to say"),
    ("!!! ???", "punctuation only prediction"),
]


def _reference_rouge(preds, refs, use_stemmer):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for p, r in zip(preds, refs):
        scores = scorer.score_multi(r, p) if isinstance(r, list) else scorer.score(r, p)
        for k in totals:
            totals[k] += scores[k].fmeasure
    return {k: v / len(preds) for k, v in totals.items()}


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_matches_rouge_score_per_pair(use_stemmer):
    for pred, ref in PAIRS:
        ours = rouge([pred], [ref], use_stemmer=use_stemmer)
        theirs = _reference_rouge([pred], [ref], use_stemmer)
        for key in ("rouge1", "rouge2", "rougeL"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6), (pred, ref, key)


def test_rouge_corpus_average_and_multi_reference():
    preds = [p for p, _ in PAIRS]
    refs = [[r, p.upper() + " extra"] if i % 2 else r for i, (p, r) in enumerate(PAIRS)]
    ours = rouge(preds, refs, use_stemmer=True)
    theirs = _reference_rouge(preds, refs, True)
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert rouge(["same words here"], [["nothing", "same words here"]])["rouge2"] == pytest.approx(1.0)


def test_rouge_edge_cases():
    assert rouge(["", "   "], ["a reference", "another"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert rouge([], []) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="example 0"):
        rouge(["a"], [[]])


def _random_labels(rng, labels, n):
    return [rng.choice(labels) for _ in range(n)]


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@pytest.mark.parametrize("labels", [[0, 1], ["neg", "neu", "pos"], [3, 7, 9, 11]])
def test_classification_matches_sklearn_on_random_inputs(labels):
    rng = random.Random(len(labels))
    for n in (1, 5, 40, 200):
        y_true = _random_labels(rng, labels, n)
        y_pred = _random_labels(rng, labels, n)
        assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
        assert mcc(y_true, y_pred) == pytest.approx(skm.matthews_corrcoef(y_true, y_pred), abs=1e-12)
        for average in ("macro", "weighted"):
            expected = skm.f1_score(y_true, y_pred, average=average, zero_division=0)
            assert f1(y_true, y_pred, average=average) == pytest.approx(expected), (average, n)
        pos = labels[-1]
        # one-vs-rest F1 of the positive label (sklearn's binary mode rejects multi-class targets)
        expected = skm.f1_score(y_true, y_pred, average=None, labels=[pos], zero_division=0)[0]
        assert f1(y_true, y_pred, pos_label=pos) == pytest.approx(expected)


def test_brier_matches_sklearn():
    rng = random.Random(1)
    probs = [rng.random() for _ in range(100)]
    y = [int(rng.random() < p) for p in probs]
    assert brier(probs, y) == pytest.approx(skm.brier_score_loss(y, probs))


def test_classification_edge_cases():
    assert accuracy([], []) == 0.0
    assert f1([], [], average="macro") == 0.0
    assert mcc([], []) == 0.0
    assert brier([], []) == 0.0 and ece([], []) == 0.0
    # single class everywhere: MCC undefined -> 0, like sklearn
    assert mcc(["a", "a", "a"], ["a", "a", "a"]) == 0.0
    assert mcc([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0 == skm.matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1])
    assert f1([0, 0], [0, 0]) == 0.0  # no positives at all: zero_division=0
    with pytest.raises(ValueError, match="pass pos_label"):
        f1(["a", "b"], ["a", "a"])
    with pytest.raises(ValueError, match="unknown average"):
        f1([0, 1], [0, 1], average="micro")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier([1.5], [1])
    with pytest.raises(ValueError, match="0/1"):
        ece([0.5], [2])


def test_ece_hand_computed():
    probs = [0.05, 0.15, 0.95, 0.85, 0.85, 1.0]
    y = [0, 1, 1, 1, 0, 1]
    # bins: [0,.1): 0.05 vs 0 -> .05 ; [.1,.2): .15 vs 1 -> .85 ;
    # [.8,.9): mean p .85 vs 1/2 -> .35 (n=2) ; [.9,1]: mean p .975 vs 1 -> .025 (n=2)
    expected = (0.05 + 0.85 + 2 * 0.35 + 2 * 0.025) / 6
    assert ece(probs, y) == pytest.approx(expected)
    assert ece([0.5, 0.5], [0, 1], bins=1) == pytest.approx(0.0)
    assert ece([1.0, 0.0], [1, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="bins"):
        ece([0.5], [1], bins=0)


def test_fairness_hand_computed():
    groups = ["a", "a", "a", "a", "b", "b", "b", "c"]
    y_pred = ["yes", "yes", "no", "no", "yes", "yes", "yes", "no"]
    y_true = ["yes", "no", "yes", "yes", "yes", "no", "no", "no"]
    # positive-prediction rates: a 2/4, b 3/3, c 0/1
    assert demographic_parity_difference(y_pred, groups, "yes") == pytest.approx(1.0)
    assert demographic_parity_difference(y_pred[:7], groups[:7], "yes") == pytest.approx(0.5)
    # TPR: a 1/3 (rows 0, 2, 3 are positives), b 1/1, c has no positives -> skipped
    assert equal_opportunity_difference(y_true, y_pred, groups, "yes") == pytest.approx(2 / 3)
    assert equal_opportunity_difference([1, 0], [1, 1], [0, 1], 1) == 0.0  # one group left
    assert demographic_parity_difference([], [], 1) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        demographic_parity_difference([1], [0, 1], 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", 42.0),
        ("Costs rose from 10 to 1,234.5 dollars", 1234.5),
        ("She paid $12 in total", 12.0),
        ("Temperature fell to -3 degrees", -3.0),
        ("Growth was 42%", 42.0),
        ("step 1: 3*4=12 <<3*4=12>>\nstep 2 ... #### 1,000\n", 1000.0),
        ("#### -7.25 and later 99", -7.25),
        ("5-3 gives", 3.0),
        ("no digits here", None),
        ("", None),
        ("value .5 exactly", 0.5),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_numeric_match_and_exact_match():
    assert numeric_match(100.05, 100.0)
    assert not numeric_match(100.2, 100.0)
    assert numeric_match(1e-10, 0.0) and not numeric_match(1e-6, 0.0)
    assert not numeric_match(None, 1.0) and not numeric_match(math.nan, 1.0)
    assert numeric_match(105.0, 100.0, rel_tol=0.1)
    assert exact_match([" yes", "no ", "maybe"], ["yes", "no", "Maybe"]) == pytest.approx(2 / 3)
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError, match="lengths must match"):
        exact_match(["a"], [])


def test_module_registry():
    for name in metrics.MODULE_NAMES:
        path = metrics.module_path(name)
        assert (path / f"{name}.py").is_file()
        assert not (path / "__init__.py").exists()
    with pytest.raises(ValueError, match="ft_rouge"):
        metrics.load("rouge")


def test_module_imports_one_per_line():
    """evaluate's dependency check misreads ``import a, b``; keep one import per line."""
    for name in metrics.MODULE_NAMES:
        for line in (metrics.module_path(name) / f"{name}.py").read_text().splitlines():
            if line.startswith(("import ", "from ")):
                assert "," not in line, (name, line)


def test_evaluate_modules_load_offline_and_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    evaluate = pytest.importorskip("evaluate")
    # evaluate reads its cache paths at import: point an earlier import at tmp too
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "hf" / "modules")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_CACHE", tmp_path / "hf" / "evaluate")
    monkeypatch.setattr(evaluate.config, "HF_METRICS_CACHE", tmp_path / "hf" / "metrics")

    preds = [p for p, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    got = evaluate.load(str(metrics.module_path("ft_rouge"))).compute(predictions=preds, references=refs)
    assert got == pytest.approx(rouge(preds, refs))
    multi = [[r, "x"] for r in refs]
    got = metrics.load("ft_rouge").compute(predictions=preds, references=multi, use_stemmer=True)
    assert got == pytest.approx(rouge(preds, multi, use_stemmer=True))

    y_true, y_pred = ["pos", "neg", "pos", "neu", "pos"], ["pos", "pos", "neg", "neu", "pos"]
    probs = [0.9, 0.6, 0.3, 0.2, 0.8]
    clf = metrics.load("ft_classification").compute(
        predictions=y_pred, references=y_true, pos_label="pos", probabilities=probs
    )
    outcomes = [int(t == "pos") for t in y_true]
    assert clf == pytest.approx(
        {
            "accuracy": accuracy(y_true, y_pred),
            "f1_macro": f1(y_true, y_pred, average="macro"),
            "f1_weighted": f1(y_true, y_pred, average="weighted"),
            "mcc": mcc(y_true, y_pred),
            "f1": f1(y_true, y_pred, pos_label="pos"),
            "brier": brier(probs, outcomes),
            "ece": ece(probs, outcomes),
        }
    )
    ints = metrics.load("ft_classification").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    assert ints["f1"] == pytest.approx(f1([0, 0, 1, 0], [0, 1, 1, 0])) and "brier" not in ints

    groups = [1, 1, 2, 2, 2]
    fair = metrics.load("ft_fairness").compute(predictions=y_pred, references=y_true, groups=groups, positive="pos")
    assert fair == pytest.approx(
        {
            "demographic_parity_difference": demographic_parity_difference(y_pred, groups, "pos"),
            "equal_opportunity_difference": equal_opportunity_difference(y_true, y_pred, groups, "pos"),
        }
    )

    texts = ["so the answer is 72", "#### 1,000", "no idea"]
    num = metrics.load("ft_numeric")
    assert num.compute(predictions=texts, references=[72.0, 990.0, 3.0]) == pytest.approx(
        {"numeric_accuracy": 1 / 3, "parse_rate": 2 / 3}
    )
    by_text = num.compute(predictions=texts, references=["work #### 72", "#### 1000", "3"])
    assert by_text == pytest.approx({"exact_match": 0.0, "numeric_accuracy": 2 / 3, "parse_rate": 2 / 3})
    assert (tmp_path / "hf" / "modules").is_dir()
