"""Legal scenario: NDAs built from clause variants, ContractNLI reader with span retrieval, NLI evaluator."""

from __future__ import annotations

import json
import re

import pytest

from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import legal as lg

SMALL = {"train": 300, "validation": 50, "test": 80}
HELDOUT_WORDINGS = {v[-1] for by_label in lg.CLAUSES.values() for v in by_label.values()}
TRAIN_WORDINGS = {w for by_label in lg.CLAUSES.values() for v in by_label.values() for w in v[:-1]}


def _clauses(row):
    return re.findall(r"^\(\d+\) (.*)$", row["input"], flags=re.M)


def test_registry_and_formats():
    scenario = get("legal")
    assert scenario.task == "classification" and scenario.card == "legal_synthetic"
    assert set(scenario.formats) == set(lg.FORMAT_TOP_K) and set(scenario.formats.values()) == {"contractnli"}
    assert len(lg.HYPOTHESES) == 17 and set(lg.CLAUSES) <= set(lg.HYPOTHESES)


def test_deterministic_disjoint_and_heldout_wordings_only_in_test():
    splits = lg.generate(seed=4, sizes=SMALL)
    assert splits == lg.generate(seed=4, sizes=SMALL)
    assert splits != lg.generate(seed=5, sizes=SMALL)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs)) == sum(SMALL.values())
    for split, rows in splits.items():
        for r in rows:
            topical = [c for c in _clauses(r) if c in HELDOUT_WORDINGS | TRAIN_WORDINGS]
            if r["heldout"]:
                assert split == "test" and set(topical) <= HELDOUT_WORDINGS
            else:
                assert set(topical) <= TRAIN_WORDINGS
            assert len(r["input"].split()) < 90
    assert 0.3 < sum(r["heldout"] for r in splits["test"]) / len(splits["test"]) < 0.7
    assert not any(r["heldout"] for r in splits["train"] + splits["validation"])
    with pytest.raises(ValueError, match="clauses"):
        lg.generate(clauses=1)


def test_labels_known_by_construction():
    rows = lg.generate(seed=1, sizes={"train": 600, "validation": 0, "test": 200})
    for r in rows["train"] + rows["test"]:
        clauses = _clauses(r)
        assert len(clauses) == 3 and r["choices"] == lg.CHOICES
        assert r["input"].endswith("Hypothesis: " + lg.HYPOTHESES[r["hypothesis_id"]])
        about_asked = [c for c in clauses if any(c in v for v in lg.CLAUSES[r["hypothesis_id"]].values())]
        if r["output"] == "NotMentioned":
            assert about_asked == [] and r["evidence"] == []
        else:
            (number,) = r["evidence"]
            assert about_asked == [clauses[number - 1]]
            assert clauses[number - 1] in lg.CLAUSES[r["hypothesis_id"]][r["output"]]
    shares = {lab: sum(r["output"] == lab for r in rows["train"]) / 600 for lab in lg.CHOICES}
    assert all(abs(shares[lab] - w) < 0.07 for lab, w in lg.LABEL_WEIGHTS.items())


def test_test_split_does_not_depend_on_training_size():
    small = lg.generate(seed=3, sizes={"train": 10, "validation": 5, "test": 20})
    large = lg.generate(seed=3, sizes={"train": 60, "validation": 15, "test": 30})
    assert [r["input"] for r in large["test"][:20]] == [r["input"] for r in small["test"]]


# ---------------------------------------------------------------- retrieval and reader


def test_retrieve_prefers_rare_shared_words_and_keeps_order():
    spans = [
        "The Recipient shall keep the Confidential Information secret.",
        "This Agreement is governed by the laws of Delaware.",
        "The Recipient shall not reverse engineer any prototype.",
        "The Recipient shall keep records.",
    ]
    hypothesis = lg.HYPOTHESES["nda-11"]  # "... shall not reverse engineer any objects ..."
    assert lg.retrieve(spans, hypothesis, 1) == [2]
    assert lg.retrieve(spans, hypothesis, 2) == [0, 2]  # the Recipient spans tie; the earlier one wins
    assert lg.retrieve(spans, hypothesis, None) == lg.retrieve(spans, hypothesis, 9) == [0, 1, 2, 3]


def _contractnli(docs, labels=None):
    return {
        "documents": docs,
        "labels": labels
        or {k: {"short_description": k, "hypothesis": lg.HYPOTHESES[k]} for k in ("nda-11", "nda-18", "nda-2")},
    }


def _doc(doc_id="d1"):
    parts = [
        "MUTUAL NDA",
        "Acme and Borealis agree as follows.",
        "Each party keeps information secret.",
        "The Recipient shall not reverse engineer any objects received.",
        "Governing law: Delaware.",
        "Notices go to the addresses above.",
        "The Recipient shall not solicit employees of the Discloser.",
    ]
    text, spans = "", []
    for p in parts:
        spans.append([len(text), len(text) + len(p)])
        text += p + "\n"
    annotations = {
        "nda-11": {"choice": "Entailment", "spans": [3]},
        "nda-18": {"choice": "Entailment", "spans": [6]},
        "nda-2": {"choice": "NotMentioned", "spans": []},
    }
    return {"id": doc_id, "text": text, "spans": spans, "annotation_sets": [{"annotations": annotations}]}


def test_read_contractnli_retrieval_and_evidence_in_view(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(_contractnli([_doc()])), encoding="utf-8")
    rows = get("legal").read_file(path, "contractnli_top2")
    assert [r["hypothesis_id"] for r in rows] == ["nda-11", "nda-18", "nda-2"]
    engineer = rows[0]
    assert "reverse engineer" in engineer["input"] and len(_clauses(engineer)) == 2
    assert _clauses(engineer)[engineer["evidence"][0] - 1].startswith("The Recipient shall not reverse engineer")
    assert engineer["evidence_in_view"] is True and engineer["output"] == "Entailment"
    assert rows[2]["evidence_in_view"] is None and rows[2]["evidence"] == []
    assert engineer["id"] == "dev-d1-nda-11"
    full = lg.read(path, "contractnli_full")
    assert len(_clauses(full[0])) == 7 and full[0]["evidence"] == [4]
    assert len(_clauses(lg.read(path)[0])) == lg.DEFAULT_TOP_K  # default format: top 4
    # with one span shown, a hypothesis whose wording misses its evidence loses it
    doc = _doc()
    doc["annotation_sets"][0]["annotations"]["nda-11"]["spans"] = [2]
    path.write_text(json.dumps(_contractnli([doc])), encoding="utf-8")
    hidden = lg.read_contractnli(path, top_k=1)[0]
    assert hidden["evidence_in_view"] is False and hidden["evidence"] == [] and hidden["evidence_spans"] == [2]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["documents"][1]["annotation_sets"][0]["annotations"]["nda-11"].update(choice="Maybe"),
            r"documents\[1\]\.annotation_sets\[0\]\.annotations\['nda-11'\]\.choice 'Maybe' must be one of",
        ),
        (
            lambda d: d["documents"][1]["annotation_sets"][0]["annotations"]["nda-18"].update(spans=[99]),
            r"documents\[1\].*annotations\['nda-18'\]\.spans \[99\] must be indices into the document's 7 spans",
        ),
        (lambda d: d["documents"][0]["spans"].append([5, 10**6]), r"documents\[0\]\.spans\[7\] must be \[start, end\]"),
        (lambda d: d["documents"][0].pop("text"), r"documents\[0\]: missing key 'text'"),
        (
            lambda d: d["labels"].pop("nda-2"),
            r"documents\[0\]\.annotation_sets\[0\]\.annotations\['nda-2'\]: hypothesis id not in labels",
        ),
    ],
)
def test_read_contractnli_bad_rows_name_document_and_key(tmp_path, edit, message):
    data = _contractnli([_doc("a"), _doc("b")])
    edit(data)
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=rf"dev\.json: {message}"):
        lg.read(path)


def test_read_contractnli_invalid_json_names_line(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text('{"documents": [\n  {"text": "x",}\n]}', encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"dev\.json: row 2: not valid JSON"):
        lg.read(path)
    with pytest.raises(ValueError, match="unknown format 'contractnli_top3'"):
        lg.read(path, "contractnli_top3")


# ---------------------------------------------------------------- evaluator


def _rows(labels, **extra):
    return [
        {"id": str(i), "input": "x", "output": lab, "choices": list(lg.CHOICES), **{k: v[i] for k, v in extra.items()}}
        for i, lab in enumerate(labels)
    ]


def _p(label):
    return {c: (0.8 if c == label else 0.1) for c in lg.CHOICES}


def test_evaluate_hand_computed():
    truth = ["Entailment", "Entailment", "Contradiction", "NotMentioned", "NotMentioned"]
    rows = _rows(truth, heldout=[True, False, True, False, False], evidence_in_view=[True, False, True, None, None])
    probs = [_p("Entailment"), _p("Contradiction"), _p("Contradiction"), _p("NotMentioned"), _p("Entailment")]
    preds = ["Entailment", "", "Answer: Contradiction.", "maybe", "NotMentioned"]
    m = lg.evaluate(preds, rows, probs)
    # constrained: E, C, C, N, E -> 3 of 5 right
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["f1_entailment"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # tp 1, fp 1 (row 5), fn 1 (row 2)
    assert m["f1_contradiction"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 0))  # tp 1, fp 1 (row 2)
    # generated: E, <unparsed>, C, <unparsed>, N -> 3 right, 2 parse failures (empty and unlabelled)
    assert m["gen_accuracy"] == pytest.approx(3 / 5) and m["parse_failure_rate"] == pytest.approx(2 / 5)
    assert m["gen_f1_entailment"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert m["gen_f1_contradiction"] == pytest.approx(1.0)
    # majority label Entailment (first of the tied most common): accuracy 2/5, F1(E) 2*2/(4+3), F1(C) 0
    assert m["ref_majority_accuracy"] == pytest.approx(2 / 5)
    assert m["ref_majority_f1_entailment"] == pytest.approx(4 / 7) and m["ref_majority_f1_contradiction"] == 0.0
    assert m["heldout_accuracy"] == pytest.approx(1.0) and m["seen_accuracy"] == pytest.approx(1 / 3)
    assert m["evidence_in_view_rate"] == pytest.approx(2 / 3)
    assert m["evidence_in_view_accuracy"] == pytest.approx(1.0) and m["evidence_out_of_view_accuracy"] == 0.0


def test_evaluate_without_probs_and_empty():
    rows = _rows(["Contradiction", "NotMentioned"])
    m = lg.evaluate(["", "???"], rows)
    assert "accuracy" not in m and m["gen_accuracy"] == 0.0 and m["parse_failure_rate"] == 1.0
    assert "evidence_in_view_rate" not in m and "heldout_accuracy" not in m
    assert lg.evaluate(["Contradiction", "NotMentioned"], rows)["gen_accuracy"] == 1.0
    with pytest.raises(ValueError, match="1 predictions for 2 rows"):
        lg.evaluate(["x"], rows)
    assert lg.evaluate([], [])["gen_accuracy"] == 0.0


def test_evaluate_generated_perfect():
    rows = lg.generate(seed=2, sizes={"train": 0, "validation": 0, "test": 100})["test"]
    m = lg.evaluate([r["output"] for r in rows], rows)
    assert m["gen_accuracy"] == m["gen_f1_contradiction"] == m["heldout_accuracy"] == pytest.approx(1.0)
    assert m["ref_majority_accuracy"] < 0.6
