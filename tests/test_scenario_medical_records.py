"""Medical records scenario: generator invariants, MTS-Dialog/ACI-Bench readers, note evaluator."""

from __future__ import annotations

import csv

import pytest

from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import medical_records as mr

SMALL = {"train": 200, "validation": 30, "test": 60}


@pytest.fixture(scope="module")
def splits():
    return mr.generate(seed=4, sizes=SMALL)


def test_registry_finds_scenario():
    scenario = get("medical_records")
    assert scenario.name == "medical_records" and scenario.task == "generation"
    assert scenario.card == "medical_records_synthetic"
    assert scenario.formats == {"mts_dialog": "mts_dialog", "aci_bench": "aci_bench"}


def test_deterministic_and_disjoint(splits):
    assert splits == mr.generate(seed=4, sizes=SMALL)
    assert splits != mr.generate(seed=5, sizes=SMALL)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs)) == sum(SMALL.values())
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [200, 30, 60]


def test_heldout_drugs_only_in_test(splits):
    def drugs(rows):
        return {m.split()[0] for r in rows for m in r["medications"]}

    held = set(mr.HELDOUT_DRUGS)
    assert not drugs(splits["train"] + splits["validation"]) & held
    assert len(drugs(splits["test"]) & held) >= 4
    for r in splits["train"]:
        assert not any(d in r["input"] or d in r["output"] for d in held)


def test_notes_have_sections_in_order_and_compact_size(splits):
    for rows in splits.values():
        for r in rows:
            starts = [r["output"].index(f"{s}:") for s in mr.SECTIONS]
            assert starts == sorted(starts)
            assert 55 <= len(r["output"].split()) <= 100
            assert 80 <= len(r["input"].split()) <= 170
            assert all(line.startswith(("Doctor: ", "Patient: ")) for line in r["input"].splitlines())


def test_identifiers_planted_in_dialogue_never_in_note(splits):
    rows = [r for rs in splits.values() for r in rs]
    for r in rows:
        assert len(r["identifiers"]) >= 4
        assert all(i in r["input"] and i not in r["output"] for i in r["identifiers"])
    assert any("@" in i for r in rows for i in r["identifiers"])  # e-mails sometimes
    assert any(
        i[0].isdigit() and i.split()[-1] in ("Street", "Avenue", "Road", "Lane", "Drive", "Way")
        for r in rows
        for i in r["identifiers"]
    )  # street addresses sometimes


def test_medications_are_dosed_and_spoken_in_the_dialogue(splits):
    for r in splits["train"]:
        assert r["medications"] == mr.extract_medications(r["output"])
        assert 2 <= len(r["medications"]) <= 3
        for med in r["medications"]:
            assert med in r["input"]  # what the note lists was said in the visit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Lisinopril 10 mg PO BID.", ["lisinopril 10 mg twice daily"]),
        ("Increase lisinopril to 20 mg daily.", ["lisinopril 20 mg once daily"]),
        ("ibuprofen 400 mg every 6 hours as needed", ["ibuprofen 400 mg every 6 hours as needed"]),
        ("morphine sulfate 4 mg IV q.d.", ["morphine sulfate 4 mg once daily"]),
        ("Tylenol 500 mg prn; glucose 140 mg/dL; she had 11 ml", ["tylenol 500 mg as needed"]),
        ("aspirin 81 mg.", ["aspirin 81 mg"]),
        ("no medications", []),
    ],
)
def test_extract_medications(text, expected):
    assert mr.extract_medications(text) == expected


def test_bad_option_and_sizes():
    with pytest.raises(TypeError):
        mr.generate(seed=0, drugs=3)
    with pytest.raises(ValueError, match="sizes"):
        mr.generate(seed=0, sizes={"dev": 3})


# ---------------------------------------------------------------- readers


def _write_csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_read_mts_dialog_keeps_turns_and_header(tmp_path):
    path = _write_csv(
        tmp_path / "mts.csv",
        ["ID", "section_header", "section_text", "dialogue"],
        [
            [
                "7",
                "MEDICATIONS",
                "Metformin 500 mg twice a day.",
                "Doctor: Any medicines?\r\nPatient: Metformin, 500 mg twice a day.",
            ],
            ["8", "CC", "Knee pain.", "Doctor: What brings you in?\nPatient: My knee."],
        ],
    )
    rows = mr.read(path)
    assert [r["id"] for r in rows] == ["mts-7", "mts-8"]
    assert rows[0]["input"] == "Doctor: Any medicines?\nPatient: Metformin, 500 mg twice a day."
    assert rows[0]["output"] == "Metformin 500 mg twice a day." and rows[0]["section_header"] == "MEDICATIONS"
    assert rows[0]["medications"] == ["metformin 500 mg twice daily"] and rows[1]["medications"] == []
    assert rows[0]["identifiers"] == []
    assert get("medical_records").read_file(path, "mts_dialog") == rows


def test_read_aci_bench_normalises_speaker_tags(tmp_path):
    path = _write_csv(
        tmp_path / "aci.csv",
        ["dataset", "encounter_id", "dialogue", "note"],
        [
            [
                "virtassist",
                "D2N001",
                "[doctor] hi , how are you ? [patient] my back hurts .",
                "CHIEF COMPLAINT\n\nBack pain.\n\nPLAN\n\nNaproxen 500 mg twice daily.",
            ],
        ],
    )
    (row,) = mr.read(path)
    assert row["id"] == "D2N001" and row["dataset"] == "virtassist"
    assert row["input"] == "Doctor: hi , how are you ?\nPatient: my back hurts ."
    assert row["medications"] == ["naproxen 500 mg twice daily"]
    scores = mr.evaluate([row["output"]], [row])
    assert scores["section_chief_complaint"] == 1.0 and scores["section_plan"] == 1.0
    assert scores["section_history"] == 0.0


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (
            ["ID", "section_header", "section_text", "dialogue"],
            [["1", "CC", "Pain.", "Doctor: Hi"], ["2", "CC", "", "Doctor: Hi"]],
            r"bad\.csv: row 3: empty 'section_text'",
        ),
        (["dialogue", "note"], [["[doctor] hi", "note"], ["   ", "note"]], r"bad\.csv: row 3: empty 'dialogue'"),
        (["dialogue", "summary"], [["x", "y"]], r"bad\.csv: row 1: .*neither MTS-Dialog"),
        (
            ["ID", "section_header", "section_text", "dialogue"],
            [["1", "CC", "Pain.", "Doctor: Hi", "extra"]],
            r"bad\.csv: row 2: .*number of fields",
        ),
    ],
)
def test_bad_files_name_file_and_row(tmp_path, header, rows, message):
    path = _write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(ScenarioDataError, match=message):
        mr.read(path)


def test_bad_format_name_and_extension(tmp_path):
    path = _write_csv(tmp_path / "x.csv", ["dialogue", "note"], [["a", "b"]])
    with pytest.raises(ValueError, match="unknown format 'e2e'"):
        mr.read(path, "e2e")
    with pytest.raises(ScenarioDataError, match=r"notes\.txt"):
        mr.read(tmp_path.joinpath("notes.txt"))


# ---------------------------------------------------------------- evaluator


def test_evaluate_perfect_and_empty(splits):
    rows = splits["test"][:20]
    perfect = mr.evaluate([r["output"] for r in rows], rows)
    assert perfect["rouge1"] == pytest.approx(1.0) and perfect["rougeL"] == pytest.approx(1.0)
    assert perfect["section_mean"] == 1.0 and perfect["ref_section_mean"] == 1.0
    assert perfect["med_f1"] == 1.0 and perfect["identifier_leak_rate"] == 0.0
    empty = mr.evaluate([""] * len(rows), rows)
    assert empty["rouge1"] == 0.0 and empty["section_mean"] == 0.0 and empty["ref_section_mean"] == 1.0
    assert (empty["med_precision"], empty["med_recall"], empty["med_f1"]) == (1.0, 0.0, 0.0)
    assert all(isinstance(v, float) for v in empty.values())
    assert mr.evaluate([], []) == {**mr.evaluate([], []), "rouge1": 0.0, "med_f1": 1.0}


def test_evaluate_hand_computed():
    rows = [
        {
            "id": "a",
            "input": "",
            "output": "CHIEF COMPLAINT: cough.\nPLAN: rest.",
            "identifiers": ["Jo Quill", "555-201-3344"],
            "medications": ["lisinopril 10 mg once daily", "metformin 500 mg twice daily"],
        },
        {"id": "b", "input": "", "output": "x", "identifiers": ["4829103"], "medications": []},
    ]
    predictions = [
        "CHIEF COMPLAINT: cough\nMEDICATIONS: lisinopril 10 mg daily; aspirin 81 mg.\nPLAN: see jo quill",
        "MRN 4829103.\nhistory: none. Plan: inline headers do not count",
    ]
    scores = mr.evaluate(predictions, rows)
    # tp = 1 (lisinopril), fp = 1 (aspirin), fn = 1 (metformin)
    assert scores["med_precision"] == 0.5 and scores["med_recall"] == 0.5 and scores["med_f1"] == 0.5
    assert scores["identifier_leak_rate"] == 1.0  # both leak; matching ignores case
    # a header counts at the start of a line, in any case, colon optional
    assert scores["section_chief_complaint"] == 0.5 and scores["section_history"] == 0.5
    assert scores["section_medications"] == 0.5 and scores["section_plan"] == 0.5
    assert scores["section_vitals"] == 0.0 and scores["section_assessment"] == 0.0
    assert scores["section_mean"] == pytest.approx(2.0 / 6)
    assert scores["ref_section_mean"] == pytest.approx(1.0 / 6)  # the references hold 2 of 12 header slots
    assert mr.evaluate(["no leak here", "x"], rows)["identifier_leak_rate"] == 0.0


def test_evaluate_rouge_without_stemming():
    rows = [{"id": "a", "input": "", "output": "walking pains", "identifiers": [], "medications": []}]
    assert mr.evaluate(["walked pain"], rows)["rouge1"] == 0.0
    assert mr.evaluate(["walking pain"], rows)["rouge1"] == pytest.approx(0.5)


def test_evaluate_length_mismatch():
    with pytest.raises(ValueError, match="predictions"):
        mr.evaluate(["a"], [])
