"""Diagnosis scenario: invented condition table, vignette generator, MedQA/MedMCQA readers, MCQ evaluator."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import diagnosis as dg

SMALL = {"train": 300, "validation": 50, "test": 100}
HELDOUT_TEXTS = {t for _, conds in dg.CONDITIONS.values() for t in (conds[-1].name, conds[-1].treatment)}


def test_registry():
    scenario = get("diagnosis")
    assert scenario.task == "classification" and scenario.card == "diagnosis_synthetic"
    assert set(scenario.formats) == {"medqa_jsonl", "medmcqa", "medmcqa_hf"}


def test_table_is_internally_consistent():
    names = [c.name for _, conds in dg.CONDITIONS.values() for c in conds]
    drugs = [c.treatment for _, conds in dg.CONDITIONS.values() for c in conds]
    assert len(set(names)) == len(names) and len(set(drugs)) == len(drugs)
    for shared, conds in dg.CONDITIONS.values():
        assert len(conds) == 5
        findings = [f for c in conds for f in c.findings]
        assert len(set(findings)) == len(findings) and shared not in findings  # each finding points to one condition


def test_deterministic_disjoint_and_heldout_conditions_only_in_test():
    splits = dg.generate(seed=2, sizes=SMALL)
    assert splits == dg.generate(seed=2, sizes=SMALL)
    assert splits != dg.generate(seed=3, sizes=SMALL)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs)) == sum(SMALL.values())
    for split, rows in splits.items():
        for r in rows:
            mentions_heldout = any(t in r["input"] for t in HELDOUT_TEXTS)
            assert mentions_heldout == r["heldout"] == (r["condition"] in dg.HELDOUT_CONDITIONS)
            assert split == "test" or not r["heldout"]
    share = sum(r["heldout"] for r in splits["test"]) / len(splits["test"])
    assert 0.15 < share < 0.45


def test_vignettes_follow_the_table():
    rows = dg.generate(seed=0, sizes={"train": 400, "validation": 0, "test": 200})
    for r in rows["train"] + rows["test"]:
        shared, conds = dg.CONDITIONS[r["system"]]
        target = next(c for c in conds if c.name == r["condition"])
        assert sum(f in r["input"] for f in target.findings) == 2 and shared in r["input"]
        right = target.name if r["qtype"] == "diagnosis" else target.treatment
        assert r["options"][r["output"]] == r["answer"] == right and r["choices"] == ["A", "B", "C", "D"]
        pool = {c.name if r["qtype"] == "diagnosis" else c.treatment for c in conds}
        assert set(r["options"].values()) <= pool and len(set(r["options"].values())) == 4  # same body system
        assert r["input"].endswith("\n".join(f"{k}. {v}" for k, v in r["options"].items()))
    letters = Counter(r["output"] for r in rows["train"])
    assert all(70 <= letters[k] <= 130 for k in "ABCD")
    assert Counter(r["qtype"] for r in rows["train"]).keys() == {"diagnosis", "treatment"}


def test_test_split_does_not_depend_on_training_size():
    small = dg.generate(seed=3, sizes={"train": 10, "validation": 5, "test": 20})
    large = dg.generate(seed=3, sizes={"train": 60, "validation": 15, "test": 30})
    assert [r["input"] for r in large["test"][:20]] == [r["input"] for r in small["test"]]


# ---------------------------------------------------------------- readers


def _jsonl(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8")
    return path


MEDQA = {
    "question": "Drug of choice for X?",
    "realidx": "q1",
    "options": {"A": "a1", "B": "b1", "C": "c1", "D": "d1"},
    "answer_idx": "C",
    "answer": "c1",
}


def test_read_medqa_jsonl(tmp_path):
    five = {**MEDQA, "options": {**MEDQA["options"], "E": "e1"}, "answer_idx": "E", "answer": "e1"}
    rows = get("diagnosis").read_file(_jsonl(tmp_path / "medqa.jsonl", [MEDQA, five]))
    assert [r["output"] for r in rows] == ["C", "E"] and rows[0]["id"] == "q1"
    assert rows[0]["input"] == "Drug of choice for X?\nA. a1\nB. b1\nC. c1\nD. d1"
    assert rows[1]["choices"] == ["A", "B", "C", "D", "E"] and rows[1]["answer"] == "e1"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({**MEDQA, "answer": "b1"}, r"row 2: answer 'b1' differs from option C"),
        ({**MEDQA, "answer_idx": "E"}, r"row 2: answer_idx 'E' is not one of the options A, B, C, D"),
        ({**MEDQA, "options": {"A": "x", "C": "y"}}, r"row 2: options keys A, C must be consecutive letters"),
        ({k: v for k, v in MEDQA.items() if k != "answer_idx"}, r"row 2: missing key\(s\) answer_idx"),
        ("{not json", r"row 2: not valid JSON"),
    ],
)
def test_read_medqa_bad_rows_name_their_line(tmp_path, bad, message):
    path = _jsonl(tmp_path / "medqa.jsonl", [MEDQA, bad])
    with pytest.raises(ScenarioDataError, match=rf"medqa\.jsonl: {message}"):
        dg.read(path, "medqa_jsonl")


def test_read_medmcqa_one_and_zero_based(tmp_path):
    obj = {
        "id": "m1",
        "question": "Q?",
        "opa": "w",
        "opb": "x",
        "opc": "y",
        "opd": "z",
        "cop": 4,
        "choice_type": "single",
        "subject_name": "Anatomy",
    }
    path = _jsonl(tmp_path / "dev.json", [obj])
    (row,) = dg.read(path)  # detected from opa
    assert row["output"] == "D" and row["answer"] == "z" and row["subject_name"] == "Anatomy"
    hub = _jsonl(tmp_path / "hub.jsonl", [{**obj, "cop": 0}])
    assert dg.read(hub, "medmcqa_hf")[0]["output"] == "A"
    with pytest.raises(
        ScenarioDataError, match=r"hub\.jsonl: row 1: cop 0 must be an option number 1-4 \(0-3: use format medmcqa_hf\)"
    ):
        dg.read(hub, "medmcqa")
    with pytest.raises(ScenarioDataError, match=r"dev\.json: row 1: cop 4 must be an option number 0-3"):
        dg.read(path, "medmcqa_hf")


# ---------------------------------------------------------------- evaluator


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        (" (C) corvastin", "C"),
        ("Answer: D", "D"),
        ("The answer is A", "A"),
        ("A. Marlow heart syndrome", "A"),
        ("A patient with fever", None),
        ("b", None),
        ("E", None),
        ("", None),
        ("I think B", None),
    ],
)
def test_parse_letter(text, letter):
    assert dg.parse_letter(text, ["A", "B", "C", "D"]) == letter


def _rows(letters, heldout=None, n=4):
    return [
        {
            "id": str(i),
            "input": "q",
            "output": t,
            "choices": list("ABCDE"[:n]),
            **({"heldout": heldout[i]} if heldout else {}),
        }
        for i, t in enumerate(letters)
    ]


def test_evaluate_hand_computed():
    rows = _rows(["A", "B", "C", "D"], heldout=[True, True, False, False])
    probs = [
        {"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1},
        {"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1},
        {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25},
        {"A": 0.0, "B": 0.0, "C": 0.0, "D": 1.0},
    ]
    texts = [{"A": 0.1, "B": 0.9, "C": 0.0, "D": 0.0}] * 4  # the option TEXT scores always pick B
    m = dg.evaluate(["A", "", "C.", "not sure"], rows, probs, option_probs=texts)
    # constrained: A (right), A (wrong), A (tie -> first, wrong), D (right)
    assert m["accuracy"] == pytest.approx(0.5)
    brier_rows = [0.09 + 0.01 * 3, 0.16 + 0.49 + 0.04 + 0.01, 3 * 0.0625 + 0.5625, 0.0]
    assert m["brier"] == pytest.approx(sum(brier_rows) / 4)
    # top-label confidences 0.7, 0.4, 0.25, 1.0 with outcomes 1, 0, 0, 1; bins [0.7,0.8), [0.4,0.5), [0.2,0.3), [0.9,1]
    assert m["ece"] == pytest.approx((0.3 + 0.4 + 0.25 + 0.0) / 4)
    assert m["text_accuracy"] == pytest.approx(0.25)
    assert m["gen_accuracy"] == pytest.approx(0.5) and m["parse_failure_rate"] == pytest.approx(0.5)
    assert m["ref_chance_accuracy"] == pytest.approx(0.25) and m["ref_majority_letter_accuracy"] == pytest.approx(0.25)
    assert m["heldout_accuracy"] == pytest.approx(0.5) and m["seen_accuracy"] == pytest.approx(0.5)


def test_evaluate_without_probs_edge_cases():
    rows = _rows(["A", "A", "B"], n=5)
    m = dg.evaluate(["", "zzz", "B"], rows)
    assert "accuracy" not in m and "brier" not in m and "text_accuracy" not in m and "heldout_accuracy" not in m
    assert m["gen_accuracy"] == pytest.approx(1 / 3) and m["parse_failure_rate"] == pytest.approx(2 / 3)
    assert m["ref_chance_accuracy"] == pytest.approx(0.2) and m["ref_majority_letter_accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 option_probs for 3 rows"):
        dg.evaluate(["A"] * 3, rows, option_probs=[{}, {}])
    assert dg.evaluate([], [])["gen_accuracy"] == 0.0


def test_evaluate_generated_perfect():
    rows = dg.generate(seed=1, sizes={"train": 0, "validation": 0, "test": 100})["test"]
    m = dg.evaluate([r["output"] for r in rows], rows)
    assert m["gen_accuracy"] == m["heldout_accuracy"] == m["seen_accuracy"] == 1.0
