"""PII scrubbing: recall on planted identifiers, precision on clean clinical text, Luhn, row handling.

Precision is defined over a mixed set: the planted corpus plus as many clean clinical
sentences. A true positive is a planted identifier that is gone and replaced by its
placeholder; a false positive is every placeholder in a clean sentence plus every
placeholder beyond the number planted in a planted text. precision = TP / (TP + FP).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from pii_corpus import clinical_sentences, planted_pii_corpus

from finetune.data.names import FIRST_NAMES, SURNAMES
from finetune.data.scrub import PLACEHOLDERS, luhn_valid, scrub_rows, scrub_text

N = 1600  # 200 of each type as the lead type, plus extras


def _gone(kind: str, value: str, scrubbed: str) -> bool:
    """The planted value no longer appears (for names: none of its words) and its placeholder does."""
    if kind == "NAME":
        absent = all(not re.search(rf"(?<!\w){re.escape(w)}(?!\w)", scrubbed) for w in value.split())
    else:
        absent = value not in scrubbed
    return absent and PLACEHOLDERS[kind] in scrubbed


@pytest.fixture(scope="module")
def planted():
    corpus = planted_pii_corpus(seed=11, n=N)
    return [(text, items, *scrub_text(text)) for text, items in corpus]


def _recall(planted) -> dict[str, float]:
    hit, total = Counter(), Counter()
    for _, items, scrubbed, _counts in planted:
        for kind, value in items:
            total[kind] += 1
            hit[kind] += _gone(kind, value, scrubbed)
    return {kind: hit[kind] / total[kind] for kind in total}


def test_corpus_plants_every_type_and_unlisted_names(planted):
    kinds = {kind for _, items, *_ in planted for kind, _ in items}
    assert kinds == set(PLACEHOLDERS)
    names = [v for _, items, *_ in planted for k, v in items if k == "NAME"]
    listed = set(FIRST_NAMES) | set(SURNAMES)
    unlisted = [v for v in names if not any(w in listed for w in v.split())]
    assert len(unlisted) > len(names) / 4  # these are only findable through cues and speaker tags


@pytest.mark.parametrize("kind", ["EMAIL", "PHONE", "ID", "CARD", "DOB", "RECORD"])
def test_recall_numbers_and_contacts(planted, kind):
    assert _recall(planted)[kind] >= 0.99


def test_recall_names_and_addresses(planted):
    recall = _recall(planted)
    assert recall["NAME"] >= 0.95
    assert recall["ADDRESS"] >= 0.95


HARD_CLEAN = [
    "Parkinson's disease is stable; Bell's palsy resolved and Crohn's disease is in remission.",
    "Wilson's disease was ruled out. Turner syndrome noted in the chart. Murphy's sign negative.",
    "White blood cell count is 11.2. Brown discharge reported since Monday.",
    "May I check your blood pressure? It is 128/82 today.",
    "Will you take the Tylenol 500 mg every 6 hours as needed?",
    "Seen on March 14, 2024 and again on 04/02/2024; next visit 2024-05-01.",
    "Metformin 500 mg twice daily, lisinopril 10 mg once daily, Lipitor 20 mg at bedtime.",
    "Doctor: How is the pain today?\nPatient: Better, thank you, Doctor.\nDoctor: Good.",
    "Platelets 250,000, INR 2.4, glucose 142 mg/dL, A1c 7.1%, weight 82.5 kg.",
    "Assessment (likely viral): rest and fluids. Plan: follow up in 2 weeks.",
    "The patient was born with a heart murmur that resolved in infancy.",
    "I am feeling better. I'm Tired in the evenings though.",
    "Order 1234 5678 9012 3456 was cancelled; lot number 4111 1111 1111 1112.",
    "Chief Complaint: chest pain. History: Type 2 diabetes. Vitals: BP 150/95, HR 88.",
    "She walks 2 miles on Sunday mornings and swims in June and August.",
]


def test_no_placeholders_in_hard_clean_text():
    for sentence in HARD_CLEAN:
        scrubbed, counts = scrub_text(sentence)
        assert not counts, (sentence, scrubbed)
        assert scrubbed == sentence


def test_precision_on_mixed_text(planted):
    tp = sum(_gone(k, v, scrubbed) for _, items, scrubbed, _ in planted for k, v in items)
    fp = sum(max(0, sum(counts.values()) - len(items)) for _, items, _, counts in planted)
    for sentence in clinical_sentences(seed=5, n=N) + HARD_CLEAN:
        fp += sum(scrub_text(sentence)[1].values())
    assert tp / (tp + fp) >= 0.95


def test_luhn():
    assert luhn_valid("4111 1111 1111 1111")
    assert luhn_valid("378282246310005")  # a published Amex test number
    assert not luhn_valid("4111 1111 1111 1112")
    assert not luhn_valid("")
    assert scrub_text("Card 4111-1111-1111-1111.")[0] == "Card [CARD]."
    assert "[CARD]" not in scrub_text("Card 4111-1111-1111-1112.")[0]


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("Patient (Zorvan Quill): it hurts.", "Patient ([NAME]): it hurts.", "NAME"),
        ("My name is Zorvan Quill.", "My name is [NAME].", "NAME"),
        ("Mrs. Quill was seen.", "Mrs. [NAME] was seen.", "NAME"),
        ("Maria Quillane reports pain.", "[NAME] reports pain.", "NAME"),
        ("Write to zq@example.org today.", "Write to [EMAIL] today.", "EMAIL"),
        ("Call (555) 201-3344.", "Call [PHONE].", "PHONE"),
        ("SSN 123-45-6789.", "SSN [ID].", "ID"),
        ("NI number AB 12 34 56 C.", "NI number [ID].", "ID"),
        ("MRN 4829103 on file.", "MRN [RECORD] on file.", "RECORD"),
        ("DOB: 3/14/62.", "DOB: [DOB].", "DOB"),
        ("Lives at 42 Maple Street.", "Lives at [ADDRESS].", "ADDRESS"),
    ],
)
def test_each_type(text, expected, kind):
    scrubbed, counts = scrub_text(text)
    assert scrubbed == expected
    assert counts == Counter({kind: 1})


def test_scrub_rows_copies_and_totals():
    rows = [
        {"id": "a", "input": "I'm Maria Lopez, MRN 4829103.", "output": "Seen today.", "k": 1},
        {"id": "b", "input": "Call 555-201-3344.", "output": "Ms. Lopez called."},
    ]
    original = [dict(r) for r in rows]
    new, total = scrub_rows(rows)
    assert rows == original  # not mutated
    assert new[0]["input"] == "I'm [NAME], MRN [RECORD]." and new[0]["k"] == 1
    assert new[1]["output"] == "Ms. [NAME] called."
    assert total == Counter({"NAME": 2, "RECORD": 1, "PHONE": 1})
    only_input, total_in = scrub_rows(rows, fields=("input",))
    assert only_input[1]["output"] == "Ms. Lopez called." and total_in["NAME"] == 1


def test_medical_records_data_has_no_identifiers_after_scrub():
    from finetune.scenarios import get

    splits = get("medical_records").generate(seed=3, sizes={"train": 150, "validation": 20, "test": 60})
    for rows in splits.values():
        scrubbed, counts = scrub_rows(rows)
        assert counts["NAME"] >= len(rows)
        for before, after in zip(rows, scrubbed):
            assert before["identifiers"]
            assert any(i in before["input"] for i in before["identifiers"])
            for ident in before["identifiers"]:
                assert ident not in after["input"] and ident not in after["output"], (ident, after["input"])
