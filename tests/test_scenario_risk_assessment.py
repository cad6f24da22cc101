"""Risk assessment scenario: the documented rule, its design targets, credit-file readers, evaluator."""

from __future__ import annotations

from collections import Counter

import pytest
from sklearn.metrics import matthews_corrcoef

from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import risk_assessment as ra
from finetune.scenarios._common import UNPARSED

SMALL = {"train": 300, "validation": 50, "test": 50}


def test_registry_finds_scenario():
    scenario = get("risk_assessment")
    assert scenario.task == "classification" and scenario.card == "risk_assessment_synthetic"
    assert scenario.formats["csv"] == "generic_csv" and scenario.formats["german_credit"] == "german_credit"


def test_deterministic_disjoint_and_heldout_amounts():
    splits = ra.generate(seed=7, sizes=SMALL)
    assert splits == ra.generate(seed=7, sizes=SMALL)
    assert splits != ra.generate(seed=8, sizes=SMALL)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs)) == sum(SMALL.values())
    for split, rows in splits.items():
        amounts = {int(r["attributes"]["amount"]) for r in rows}
        assert amounts <= set(ra.TRAIN_AMOUNTS + ra.HELDOUT_AMOUNTS if split == "test" else ra.TRAIN_AMOUNTS)
        if split == "test":
            assert amounts & set(ra.HELDOUT_AMOUNTS)
    test = ra.generate(seed=7, sizes={"train": 0, "validation": 0, "test": 1000})["test"]
    share = sum(int(r["attributes"]["amount"]) in ra.HELDOUT_AMOUNTS for r in test) / len(test)
    assert abs(share - ra.HELDOUT_SHARE) < 0.05
    assert (
        min(ra.TRAIN_AMOUNTS) < 5000 <= 14000 < 15000 <= max(ra.TRAIN_AMOUNTS)
    )  # every band, and its edges, is taught
    assert {4000, 5000, 14000, 15000} <= set(ra.TRAIN_AMOUNTS)
    row = splits["train"][0]
    assert row["input"].startswith(f"age: {row['group']}; income: ") and row["choices"] == ["good", "bad"]
    assert len(row["input"].split()) < 60


def test_rule_matches_docstring_examples():
    assert ra.points("low", 0, "high", 20000, "vacation", True) == 2 + 2 + 2 + 2 + 1 + 3
    assert ra.points("high", 12, "none", 1000, "car", False) == 0
    assert ra.points("medium", 2, "medium", 5000, "business", False) == 5  # > 4 -> bad
    assert ra.points("medium", 3, "medium", 4999, "home", False) == 2
    assert [ra.age_band(a) for a in (19, 25, 34, 35, 50, 64, 65, 80)] == [
        "18-24",
        "25-34",
        "25-34",
        "35-49",
        "50-64",
        "50-64",
        "65+",
        "65+",
    ]


def test_labels_follow_rule_and_noise():
    clean = ra.generate(seed=1, sizes={"train": 1500, "validation": 0, "test": 0}, noise=0.0)["train"]
    assert all(r["clean_label"] == ("bad" if r["points"] > ra.THRESHOLD else "good") for r in clean)
    assert all(r["output"] == r["clean_label"] for r in clean)
    noisy = ra.generate(seed=1, sizes={"train": 1500, "validation": 0, "test": 0})["train"]
    flipped = sum(r["output"] != r["clean_label"] for r in noisy) / len(noisy)
    assert 0.07 < flipped < 0.13
    with pytest.raises(ValueError, match="noise"):
        ra.generate(noise=0.6)
    with pytest.raises(TypeError):
        ra.generate(n_attributes=3)


def test_design_targets_balance_shortcut_gap_and_protected_attribute():
    rows = ra.generate(seed=0, sizes={"train": 3000, "validation": 0, "test": 0}, noise=0.0)["train"]
    bad_share = sum(r["clean_label"] == "bad" for r in rows) / len(rows)
    assert 0.3 <= bad_share <= 0.5
    # the rule scores MCC 1 on clean labels; the best one-attribute shortcut is clearly below
    assert ra.best_shortcut_mcc(rows) <= 0.9
    by_group = Counter(r["group"] for r in rows)
    bad_by_group = Counter(r["group"] for r in rows if r["clean_label"] == "bad")
    assert set(by_group) == set(ra.AGE_BANDS)
    assert all(abs(bad_by_group[g] / by_group[g] - bad_share) < 0.08 for g in by_group)


# ---------------------------------------------------------------- readers

GERMAN = (
    "A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1\n"
    "A12 48 A32 A43 5951 A61 A73 2 A92 A101 2 A121 22 A143 A152 1 A173 1 A191 A201 2\n"
)


def test_read_german(tmp_path):
    path = tmp_path / "german.data"
    path.write_text(GERMAN, encoding="ascii")
    rows = get("risk_assessment").read_file(path)
    assert [r["output"] for r in rows] == ["good", "bad"]
    assert [r["group"] for r in rows] == ["65+", "18-24"]
    first = rows[0]["attributes"]
    assert first["checking account"] == "< 0 DM" and first["purpose"] == "radio/TV"
    assert first["duration"] == "6 months" and first["age"] == "65+" and first["foreign worker"] == "yes"
    assert rows[0]["input"].startswith("checking account: < 0 DM; duration: 6 months; credit history: critical account")
    assert len(ra.GERMAN_ATTRIBUTES) == 20


def test_read_german_bad_code_names_row(tmp_path):
    path = tmp_path / "german.data"
    path.write_text(GERMAN + GERMAN.splitlines()[0].replace("A43", "A99") + "\n", encoding="ascii")
    with pytest.raises(ScenarioDataError, match=r"german\.data: row 3: purpose code 'A99'"):
        ra.read(path)
    path.write_text(GERMAN.replace(" 1\n", " 3\n", 1), encoding="ascii")
    with pytest.raises(ScenarioDataError, match=r"german\.data: row 1: label '3'"):
        ra.read(path)


def test_read_australian(tmp_path):
    path = tmp_path / "australian.dat"
    path.write_text("1 22.08 11.46 2 4 4 1.585 0 0 0 1 2 100 1213 0\n0 22.67 7 2 8 4 0.165 0 0 0 0 2 160 1 1\n")
    rows = ra.read(path)
    assert [r["output"] for r in rows] == ["bad", "good"] and "group" not in rows[0]
    assert rows[0]["input"].startswith("A1: 1; A2: 22.08; A3: 11.46")
    path.write_text("1 22.08 11.46 2 4 4 1.585 0 0 0 1 2 100 1213 0\n1 2 3\n")
    with pytest.raises(ScenarioDataError, match=r"australian\.dat: row 2: expected 14 attributes"):
        ra.read(path, fmt="australian_credit")


def test_read_csv_label_mapping_and_column(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text("age,income,label\n30,low,good\n70,high,BAD\n45,mid,1\n22,low,0\n50,mid,yes\n60,x,No\n")
    rows = ra.read(path)
    assert [r["output"] for r in rows] == ["good", "bad", "good", "bad", "good", "bad"]
    assert [r["group"] for r in rows][:2] == ["25-34", "65+"] and rows[0]["input"] == "age: 30; income: low"
    other = tmp_path / "other.csv"
    other.write_text("income,group,approved\nlow,young,yes\nhigh,old,maybe\n")
    with pytest.raises(ScenarioDataError, match=r"other\.csv: row 3: approved 'maybe' must be good/bad"):
        ra.read(other, label_column="approved")
    with pytest.raises(ScenarioDataError, match=r"other\.csv: row 1: header lacks column\(s\) label"):
        ra.read(other)


# ---------------------------------------------------------------- evaluator


def _rows(labels, groups=None, clean=None, attrs=None):
    rows = []
    for i, lab in enumerate(labels):
        row = {"id": str(i), "input": "x", "output": lab, "choices": ["good", "bad"]}
        if groups:
            row["group"] = groups[i]
        if clean:
            row["clean_label"] = clean[i]
        if attrs:
            row["attributes"] = attrs[i]
        rows.append(row)
    return rows


def test_evaluate_hand_computed():
    truth = ["bad", "bad", "good", "good"]
    rows = _rows(
        truth,
        groups=["a", "a", "b", "b"],
        clean=["bad", "good", "good", "good"],
        attrs=[{"x": "1"}, {"x": "1"}, {"x": "0"}, {"x": "2"}],
    )
    probs = [{"bad": 0.9, "good": 0.1}, {"bad": 0.6, "good": 0.4}, {"bad": 0.2, "good": 0.8}, {"bad": 0.3, "good": 0.7}]
    preds = ["bad", "Good.", "The applicant is bad", "???"]
    m = ra.evaluate(preds, rows, probs)
    assert m["accuracy"] == m["f1"] == m["mcc"] == pytest.approx(1.0)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.04 + 0.09) / 4)
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.2 + 0.3) / 4)
    assert m["dp_diff"] == pytest.approx(1.0) and m["eo_diff"] == pytest.approx(0.0)
    gen = ["bad", "good", UNPARSED, UNPARSED]  # "The applicant is bad" does not start with a label
    assert m["gen_accuracy"] == pytest.approx(0.25)
    assert m["gen_f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert m["gen_mcc"] == pytest.approx(matthews_corrcoef(truth, gen))
    assert m["parse_failure_rate"] == pytest.approx(0.5)
    assert m["gen_dp_diff"] == pytest.approx(0.5)  # group a: one "bad" in two, group b: none
    assert m["ref_majority_mcc"] == 0.0 and m["ref_majority_accuracy"] == pytest.approx(0.5)
    assert m["ref_best_shortcut_mcc"] == pytest.approx(1.0)  # x == "1" is exactly the bad rows
    assert m["ref_bayes_mcc"] == pytest.approx(matthews_corrcoef(truth, rows_clean := [r["clean_label"] for r in rows]))
    assert rows_clean == ["bad", "good", "good", "good"] and m["ref_label_dp_diff"] == pytest.approx(1.0)


def test_best_shortcut_searches_values_complements_and_thresholds():
    truth = ["bad", "bad", "bad", "good", "good", "good"]
    # only a threshold (years >= 5) separates the classes; no single value does
    years = [{"employment": f"{y} years"} for y in (5, 8, 12, 0, 1, 2)]
    assert ra.best_shortcut_mcc(_rows(truth, attrs=years)) == pytest.approx(1.0)
    # "bad iff colour != red" is the complement of a value rule
    colours = [{"colour": c} for c in ("blue", "green", "blue", "red", "red", "red")]
    assert ra.best_shortcut_mcc(_rows(truth, attrs=colours)) == pytest.approx(1.0)
    partial = [{"colour": c} for c in ("red", "blue", "blue", "red", "blue", "green")]
    expected = max(
        abs(matthews_corrcoef(truth, ["bad" if a["colour"] == v else "good" for a in partial]))
        for v in ("red", "blue", "green")
    )
    assert ra.best_shortcut_mcc(_rows(truth, attrs=partial)) == pytest.approx(expected)


def test_evaluate_edge_cases():
    rows = _rows(["bad", "good", "good"])
    one_class = ra.evaluate(["good"] * 3, rows, [{"good": 1.0, "bad": 0.0}] * 3)
    assert one_class["mcc"] == one_class["gen_mcc"] == one_class["f1"] == 0.0
    assert one_class["gen_accuracy"] == pytest.approx(2 / 3)
    empty = ra.evaluate(["", "", ""], rows)
    assert empty["parse_failure_rate"] == 1.0 and empty["gen_accuracy"] == 0.0 and "dp_diff" not in empty
    assert ra.evaluate(["bad", "good", "good"], rows)["gen_mcc"] == pytest.approx(1.0)
    assert "ref_bayes_mcc" not in empty and empty["ref_best_shortcut_mcc"] == 0.0
    assert ra.evaluate([], [])["gen_accuracy"] == 0.0


def test_evaluate_generated_perfect_and_noise_cap():
    rows = ra.generate(seed=3, sizes={"train": 0, "validation": 0, "test": 200})["test"]
    m = ra.evaluate([r["output"] for r in rows], rows)
    assert m["gen_mcc"] == pytest.approx(1.0)
    assert 0.5 < m["ref_bayes_mcc"] < 1.0 and m["ref_best_shortcut_mcc"] < m["gen_mcc"]


@pytest.mark.parametrize(
    "name", ["risk_assessment", "tutoring", "content_writing", "medical_records", "financial_analysis"]
)
def test_test_split_does_not_depend_on_training_size(name):
    """Runs that train on more or fewer rows are scored on the same questions; a larger test size only appends."""
    from finetune.scenarios import get

    gen = get(name).generate
    small = gen(seed=3, sizes={"train": 10, "validation": 5, "test": 20})
    large = gen(seed=3, sizes={"train": 60, "validation": 15, "test": 30})
    assert [r["input"] for r in large["test"][:20]] == [r["input"] for r in small["test"]]
    assert [r["output"] for r in large["test"][:20]] == [r["output"] for r in small["test"]]
    assert list(large) == ["train", "validation", "test"]


def test_heldout_and_seen_mcc_are_reported_apart():
    truth = ["bad", "good", "bad", "good", "bad", "good"]
    rows = _rows(truth)
    for r, held in zip(rows, (True, True, True, False, False, False)):
        r["heldout"] = held
    # held-out rows: all right (MCC 1); seen rows: predictions inverted (MCC -1)
    probs = [
        {"bad": 0.9, "good": 0.1},
        {"bad": 0.1, "good": 0.9},
        {"bad": 0.8, "good": 0.2},
        {"bad": 0.7, "good": 0.3},
        {"bad": 0.4, "good": 0.6},
        {"bad": 0.6, "good": 0.4},
    ]
    m = ra.evaluate(["x"] * 6, rows, probs)
    assert m["heldout_mcc"] == pytest.approx(1.0) and m["seen_mcc"] == pytest.approx(-1.0)
    assert "heldout_mcc" not in ra.evaluate(["x"] * 6, _rows(truth), probs)  # rows that do not say: no split
    generated = ra.generate(seed=3, sizes={"train": 5, "validation": 0, "test": 50})
    assert not any(r["heldout"] for r in generated["train"]) and any(r["heldout"] for r in generated["test"])


def test_untrained_chatter_is_a_parse_failure_not_the_majority_label():
    """Issue 12, point 16: "Doctor: Good morning" was read as "good", so a model that never answers scored
    majority accuracy with 0% parse failures; a label must open the answer."""
    rows = _rows(["good"] * 7 + ["bad"] * 3)
    m = ra.evaluate(["Doctor: Good morning"] * 5 + ["not good, bad"] * 5, rows)
    assert m["parse_failure_rate"] == 1.0 and m["gen_accuracy"] == 0.0
    assert ra.evaluate(["Good, with a stable income"] * 7 + ["**Bad**"] * 3, rows)["gen_accuracy"] == 1.0
