"""Legal assistance: contract natural-language inference on non-disclosure agreements (ContractNLI).

Given an NDA (or the part of it the model can see) and one of ContractNLI's 17 fixed
hypotheses, answer ``Entailment``, ``Contradiction`` or ``NotMentioned`` (Koreeda &
Manning 2021). Rows carry ``choices`` (those three labels), the ``hypothesis_id`` and the
``evidence`` clause numbers, counted in the text the model sees (empty when NotMentioned).

Synthetic NDAs are assembled from clause variants: for each of eight hypotheses in
``CLAUSES`` there are wordings that entail it and wordings that contradict it, and an NDA
of ``clauses`` numbered clauses holds at most one clause per hypothesis plus neutral
boilerplate (governing law, counterparts...). The label of the asked hypothesis is
therefore known by construction: its clause's polarity, or NotMentioned when the NDA
has no clause on it. The hypotheses were chosen so that no clause bears on another's
hypothesis (e.g. "No reverse engineering" and "Survival of obligations" are independent).
The last wording of every list is held out: it appears only in test rows (``heldout: True``,
about ``HELDOUT_SHARE`` of them), so ``heldout_accuracy`` measures whether a model learnt
the meaning of a clause rather than its exact words.

Real format: ContractNLI JSON (``documents[].text``, ``spans`` as character offsets,
``annotation_sets[0].annotations[nda-N] = {choice, spans}``, ``labels[nda-N].hypothesis``).
Its NDAs are long (about 12k characters), so the reader shows the model only the ``top_k``
spans that share the most (rare) words with the hypothesis (:func:`retrieve`), in document
order, and records per row whether a gold evidence span was among them
(``evidence_in_view``; the evaluator reports the rate). Formats: ``contractnli`` (top 4
spans), ``contractnli_top2``, ``contractnli_top8`` and ``contractnli_full`` (every span, for
long-context models).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from finetune.scenarios._common import (
    argmax_labels,
    check_lengths,
    data_error,
    fill_splits,
    gen_labels,
    read_text,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

CHOICES: list[str] = ["Entailment", "Contradiction", "NotMentioned"]

# ContractNLI's 17 hypotheses (CC BY 4.0, Koreeda & Manning 2021), keyed by their ids.
HYPOTHESES: dict[str, str] = {
    "nda-1": "All Confidential Information shall be expressly identified by the Disclosing Party.",
    "nda-2": "Confidential Information shall only include technical information.",
    "nda-3": "Confidential Information may include verbally conveyed information.",
    "nda-4": "Receiving Party shall not use any Confidential Information for any purpose other than the purposes "
    "stated in Agreement.",
    "nda-5": "Receiving Party may share some Confidential Information with some of Receiving Party's employees.",
    "nda-7": "Receiving Party may share some Confidential Information with some third-parties (including "
    "consultants, agents and professional advisors).",
    "nda-8": "Receiving Party shall notify Disclosing Party in case Receiving Party is required by law, regulation "
    "or judicial process to disclose any Confidential Information.",
    "nda-10": "Receiving Party shall not disclose the fact that Agreement was agreed or negotiated.",
    "nda-11": "Receiving Party shall not reverse engineer any objects which embody Disclosing Party's Confidential "
    "Information.",
    "nda-12": "Receiving Party may independently develop information similar to Confidential Information.",
    "nda-13": "Receiving Party may acquire information similar to Confidential Information from a third party.",
    "nda-15": "Agreement shall not grant Receiving Party any right to Confidential Information.",
    "nda-16": "Receiving Party shall destroy or return some Confidential Information upon the termination of "
    "Agreement.",
    "nda-17": "Receiving Party may create a copy of some Confidential Information in some circumstances.",
    "nda-18": "Receiving Party shall not solicit some of Disclosing Party's representatives.",
    "nda-19": "Some obligations of Agreement may survive termination of Agreement.",
    "nda-20": "Receiving Party may retain some Confidential Information even after the return or destruction of "
    "Confidential Information.",
}

# hypothesis id -> label -> wordings; the LAST wording of each list is held out for test rows.
CLAUSES: dict[str, dict[str, tuple[str, ...]]] = {
    "nda-3": {
        "Entailment": (
            "Confidential Information includes information disclosed orally at meetings.",
            "Information shared in conversation is also Confidential Information.",
            "Oral disclosures shall be treated as Confidential Information.",
        ),
        "Contradiction": (
            "Only information disclosed in written form is Confidential Information.",
            "Information conveyed orally is not Confidential Information.",
            "Spoken disclosures fall outside the definition of Confidential Information.",
        ),
    },
    "nda-5": {
        "Entailment": (
            "The Recipient may disclose Confidential Information to its employees who need to know it.",
            "Disclosure to staff members of the Recipient with a need to know is permitted.",
            "The Recipient may pass Confidential Information to personnel who require it.",
        ),
        "Contradiction": (
            "The Recipient shall not disclose Confidential Information to any of its employees.",
            "No employee of the Recipient may receive Confidential Information.",
            "Confidential Information must not be shared with the Recipient's own staff.",
        ),
    },
    "nda-8": {
        "Entailment": (
            "If a court orders disclosure, the Recipient shall promptly notify the Discloser in writing.",
            "Where the law requires disclosure, the Recipient must first inform the Discloser.",
            "The Recipient shall give the Discloser prompt notice of any subpoena for Confidential Information.",
        ),
        "Contradiction": (
            "The Recipient may disclose information required by law without notifying the Discloser.",
            "No notice to the Discloser is needed before a disclosure ordered by a court.",
            "A disclosure demanded by a regulator may be made without telling the Discloser.",
        ),
    },
    "nda-11": {
        "Entailment": (
            "The Recipient shall not reverse engineer or decompile any samples provided.",
            "The Recipient must not take apart any prototype to discover its design.",
            "Disassembly or decompilation of supplied materials is prohibited.",
        ),
        "Contradiction": (
            "The Recipient may reverse engineer any samples provided.",
            "Nothing prevents the Recipient from decompiling software delivered to it.",
            "The Recipient is free to disassemble supplied prototypes to learn their design.",
        ),
    },
    "nda-15": {
        "Entailment": (
            "No licence or other right in the Confidential Information is granted to the Recipient.",
            "Nothing in this Agreement grants the Recipient any rights to the Confidential Information.",
            "All rights in the Confidential Information stay with the Discloser and none pass to the Recipient.",
        ),
        "Contradiction": (
            "The Discloser grants the Recipient a licence to the Confidential Information.",
            "The Recipient receives a right to exploit the Confidential Information commercially.",
            "This Agreement gives the Recipient a licence under the Discloser's rights in the information.",
        ),
    },
    "nda-16": {
        "Entailment": (
            "On termination, the Recipient shall return or destroy all Confidential Information.",
            "When this Agreement ends, all documents holding Confidential Information must be returned.",
            "Upon termination the Recipient shall destroy every copy of the Confidential Information.",
        ),
        "Contradiction": (
            "The Recipient need not return or destroy any Confidential Information when this Agreement ends.",
            "No duty to give back the Confidential Information arises on termination.",
            "On termination the Recipient is under no obligation to return or destroy any documents.",
        ),
    },
    "nda-18": {
        "Entailment": (
            "During the term, the Recipient shall not solicit or hire any employee of the Discloser.",
            "The Recipient agrees not to recruit the Discloser's staff.",
            "The Recipient will not approach the Discloser's employees with offers of employment.",
        ),
        "Contradiction": (
            "The Recipient may freely offer employment to the Discloser's employees.",
            "Nothing restricts the Recipient from hiring staff of the Discloser.",
            "The Recipient remains free to recruit personnel of the Discloser.",
        ),
    },
    "nda-19": {
        "Entailment": (
            "The duty of confidentiality survives termination for five years.",
            "Obligations under this Agreement continue after it ends.",
            "The confidentiality obligations remain in force for three years after termination.",
        ),
        "Contradiction": (
            "All obligations under this Agreement end when it terminates.",
            "Upon termination, no duty under this Agreement continues.",
            "Every obligation hereunder ceases on the date this Agreement terminates.",
        ),
    },
}
# Boilerplate that bears on no hypothesis. Slots: {a}, {b} parties, {law} governing law, {month}.
BOILERPLATE: tuple[str, ...] = (
    "{a} and {b} wish to discuss a possible business relationship.",
    "This Agreement is governed by the laws of {law}.",
    "This Agreement may be signed in counterparts.",
    "This Agreement takes effect on 1 {month}.",
    "Notices under this Agreement shall be sent to the addresses of {a} and {b}.",
    "Headings are for convenience only.",
)
PARTIES: tuple[str, ...] = (
    "Acme Ltd",
    "Borealis Inc",
    "Cedar Labs",
    "Dune Systems",
    "Elm Bio",
    "Fjord AS",
    "Gale Partners",
    "Helix GmbH",
)
LAWS: tuple[str, ...] = ("England", "Delaware", "New York", "Ontario", "Singapore")
MONTHS: tuple[str, ...] = ("January", "March", "May", "July", "September", "November")
LABEL_WEIGHTS: dict[str, float] = {"Entailment": 0.4, "Contradiction": 0.25, "NotMentioned": 0.35}
HELDOUT_SHARE = 0.5  # of test rows: every clause in them uses the held-out wording
DEFAULT_TOP_K = 4

# ---------------------------------------------------------------- generation


def render(clauses: list[str], hypothesis: str) -> str:
    """The model's input: numbered clauses, then the hypothesis; generated and read rows share it."""
    lines = [f"({i}) {c}" for i, c in enumerate(clauses, start=1)]
    return "Contract:\n" + "\n".join(lines) + f"\nHypothesis: {hypothesis}"


def _wording(rng: random.Random, hyp: str, label: str, heldout: bool) -> str:
    variants = CLAUSES[hyp][label]
    return variants[-1] if heldout else rng.choice(variants[:-1])


def _nda(rng: random.Random, n_clauses: int, heldout: bool) -> Row:
    asked = rng.choice(sorted(CLAUSES))
    label = rng.choices(list(LABEL_WEIGHTS), weights=list(LABEL_WEIGHTS.values()))[0]
    others = [h for h in sorted(CLAUSES) if h != asked]
    n_topical = rng.randint(0, min(2, n_clauses - 1))  # other hypotheses' clauses: distractors on topic
    clauses = [
        _wording(rng, h, rng.choice(("Entailment", "Contradiction")), heldout) for h in rng.sample(others, n_topical)
    ]
    a, b = rng.sample(PARTIES, 2)
    fills = {"a": a, "b": b, "law": rng.choice(LAWS), "month": rng.choice(MONTHS)}
    filler = [t.format(**fills) for t in rng.sample(BOILERPLATE, n_clauses - n_topical)]
    clauses += filler
    if label != "NotMentioned":
        clauses[-1] = _wording(rng, asked, label, heldout)  # replaces one boilerplate line
    evidence_text = clauses[-1] if label != "NotMentioned" else None
    rng.shuffle(clauses)
    evidence = [clauses.index(evidence_text) + 1] if evidence_text is not None else []
    return {
        "input": render(clauses, HYPOTHESES[asked]),
        "output": label,
        "choices": list(CHOICES),
        "hypothesis_id": asked,
        "evidence": evidence,
        "heldout": heldout,
    }


def generate(seed: int = 0, sizes: dict[str, int] | None = None, clauses: int = 3) -> Splits:
    """NDAs of ``clauses`` numbered clauses, each asked about one hypothesis (module docstring)."""
    if not isinstance(clauses, int) or not 2 <= clauses <= len(BOILERPLATE):
        raise ValueError(f"legal: clauses must be an int from 2 to {len(BOILERPLATE)}, got {clauses!r}")
    rng = random.Random(seed)

    def make(split: str) -> Row:
        return _nda(rng, clauses, split == "test" and rng.random() < HELDOUT_SHARE)

    return fill_splits("legal", sizes, SCENARIO.default_sizes, make)


# ---------------------------------------------------------------- retrieval

_STOP = frozenset(
    "a an and any are as at be by for from in is it its may not of on or other shall some such that the their "
    "this to under which with party parties agreement confidential information".split()
)


def _stems(text: str) -> set[str]:
    """Content words cut to 5 letters: "disclose", "disclosure" and "disclosed" meet, cheaply."""
    return {w[:5] for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


def retrieve(spans: list[str], hypothesis: str, k: int | None) -> list[int]:
    """Indices (in document order) of the ``k`` spans sharing the most rare words with the hypothesis.

    Words are weighted by their inverse document frequency over this document's spans, so
    words every clause shares ("Recipient") count for little and the one clause that says
    "reverse engineer" wins; ties go to the earlier span. ``k=None`` keeps every span.
    """
    if k is None or k >= len(spans):
        return list(range(len(spans)))
    bags = [_stems(s) for s in spans]
    df = Counter(w for bag in bags for w in bag)
    n = len(spans)
    wanted = _stems(hypothesis)
    scores = [sum(math.log((n + 1) / (df[w] + 0.5)) for w in bag & wanted) for bag in bags]
    best = sorted(range(n), key=lambda i: (-scores[i], i))[:k]
    return sorted(best)


# ---------------------------------------------------------------- real format


def _need(path: Path, where: str, obj: Any, key: str, kind: type) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise data_error(path, None, f"{where}: missing key {key!r}; see the ContractNLI JSON layout")
    value = obj[key]
    if not isinstance(value, kind):
        raise data_error(path, None, f"{where}.{key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _span_texts(path: Path, where: str, text: str, spans: list) -> list[str]:
    out = []
    for j, span in enumerate(spans):
        ok = isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) for x in span)
        if not ok or not 0 <= span[0] <= span[1] <= len(text):
            raise data_error(
                path, None, f"{where}.spans[{j}] must be [start, end] offsets within the text, got {span!r}"
            )
        out.append(" ".join(text[span[0] : span[1]].split()))
    return out


def _document_rows(path: Path, i: int, doc: Any, hypotheses: dict[str, str], top_k: int | None) -> list[Row]:
    where = f"documents[{i}]"
    text = _need(path, where, doc, "text", str)
    spans = _span_texts(path, where, text, _need(path, where, doc, "spans", list))
    sets = _need(path, where, doc, "annotation_sets", list)
    if not sets:
        raise data_error(path, None, f"{where}.annotation_sets is empty; it needs one set of annotations")
    annotations = _need(path, f"{where}.annotation_sets[0]", sets[0], "annotations", dict)
    rows = []
    for hyp_id, note in annotations.items():
        at = f"{where}.annotation_sets[0].annotations[{hyp_id!r}]"
        if hyp_id not in hypotheses:
            raise data_error(path, None, f"{at}: hypothesis id not in labels; add it to labels or drop it")
        choice = _need(path, at, note, "choice", str)
        if choice not in CHOICES:
            raise data_error(path, None, f"{at}.choice {choice!r} must be one of {', '.join(CHOICES)}")
        gold = _need(path, at, note, "spans", list)
        if any(not isinstance(s, int) or not 0 <= s < len(spans) for s in gold):
            raise data_error(path, None, f"{at}.spans {gold!r} must be indices into the document's {len(spans)} spans")
        shown = retrieve(spans, hypotheses[hyp_id], top_k)
        evidence = [shown.index(s) + 1 for s in gold if s in shown]
        rows.append(
            {
                "id": f"{path.stem}-{doc.get('id', i)}-{hyp_id}",
                "input": render([spans[s] for s in shown], hypotheses[hyp_id]),
                "output": choice,
                "choices": list(CHOICES),
                "hypothesis_id": hyp_id,
                "evidence": evidence,
                "evidence_spans": list(gold),
                "evidence_in_view": bool(evidence) if gold else None,
            }
        )
    return rows


def _hypotheses(path: Path, data: dict) -> dict[str, str]:
    labels = _need(path, "file", data, "labels", dict)
    out = {}
    for hyp_id, label in labels.items():
        out[hyp_id] = _need(path, f"labels[{hyp_id!r}]", label, "hypothesis", str)
    return out


def read_contractnli(path: Path, top_k: int | None = DEFAULT_TOP_K) -> list[Row]:
    """One row per (document, annotated hypothesis), the model seeing the ``top_k`` retrieved spans."""
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"legal: top_k must be a positive int or None, got {top_k!r}")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise data_error(path, exc.lineno, f"not valid JSON ({exc.msg}); expected ContractNLI's JSON") from exc
    if not isinstance(data, dict):
        raise data_error(path, None, "expected a JSON object with 'documents' and 'labels'")
    hypotheses = _hypotheses(path, data)
    documents = _need(path, "file", data, "documents", list)
    return [row for i, doc in enumerate(documents) for row in _document_rows(path, i, doc, hypotheses, top_k)]


FORMAT_TOP_K: dict[str, int | None] = {
    "contractnli": DEFAULT_TOP_K,
    "contractnli_top2": 2,
    "contractnli_top8": 8,
    "contractnli_full": None,
}


def read(path: Path, fmt: str | None = None) -> list[Row]:
    """ContractNLI JSON; the format names how many retrieved spans the model sees (``FORMAT_TOP_K``)."""
    readers = {name: (lambda p, k=k: read_contractnli(p, k)) for name, k in FORMAT_TOP_K.items()}
    return read_with("legal", path, fmt, readers)


# ---------------------------------------------------------------- evaluation


def _scores(truth: list[str], predicted: list[str], prefix: str) -> dict[str, float]:
    from finetune.metrics.classification import accuracy, f1

    return {
        f"{prefix}accuracy": accuracy(truth, predicted),
        f"{prefix}f1_entailment": f1(truth, predicted, average="binary", pos_label="Entailment"),
        f"{prefix}f1_contradiction": f1(truth, predicted, average="binary", pos_label="Contradiction"),
    }


def _subset_accuracy(
    truth: list[str], predicted: list[str], rows: list[Row], key: str, names: tuple[str, str]
) -> dict[str, float]:
    """Accuracy on rows whose ``key`` is True and on those where it is False (None rows: neither)."""
    out = {}
    for name, want in zip(names, (True, False)):
        idx = [i for i, r in enumerate(rows) if r.get(key) is want]
        if idx:
            out[name] = sum(truth[i] == predicted[i] for i in idx) / len(idx)
    return out


def evaluate(
    predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    """3-way accuracy and F1 of Entailment and of Contradiction, constrained and ``gen_``.

    An answer naming no label counts as wrong (``parse_failure_rate``). Beside them: the
    majority label's scores (``ref_majority_*``), accuracy on ``heldout`` vs seen wordings
    (constrained when ``label_probs`` are given, else generated), and for read rows the share
    of rows with gold evidence whose evidence the model saw (``evidence_in_view_rate``) with
    accuracy on rows where it did and did not.
    """
    check_lengths(predictions, rows, label_probs)
    truth = [r["output"] for r in rows]
    out: dict[str, float] = {}
    labels, failure = gen_labels(predictions, CHOICES)
    chosen = labels
    if label_probs is not None:
        chosen = argmax_labels(label_probs, CHOICES)
        out.update(_scores(truth, chosen, ""))
    out.update(_scores(truth, labels, "gen_"))
    out["parse_failure_rate"] = failure
    majority = Counter(truth).most_common(1)[0][0] if truth else CHOICES[0]
    out.update(_scores(truth, [majority] * len(truth), "ref_majority_"))
    out.update(_subset_accuracy(truth, chosen, rows, "heldout", ("heldout_accuracy", "seen_accuracy")))
    seen = [r["evidence_in_view"] for r in rows if isinstance(r.get("evidence_in_view"), bool)]
    if seen:
        out["evidence_in_view_rate"] = sum(seen) / len(seen)
        out.update(
            _subset_accuracy(
                truth, chosen, rows, "evidence_in_view", ("evidence_in_view_accuracy", "evidence_out_of_view_accuracy")
            )
        )
    return out


SCENARIO = Scenario(
    name="legal",
    task="classification",
    system="Read the contract clauses and say whether they entail the hypothesis: answer Entailment, "
    "Contradiction or NotMentioned.",
    card="legal_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={name: "contractnli" for name in FORMAT_TOP_K},
    default_sizes={"train": 1200, "validation": 100, "test": 200},
)
