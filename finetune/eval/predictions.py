"""predictions.jsonl: every evaluated row's answer, what it was read as, and the label scores.

A metric is a summary; users checking it (a majority-class model, a parser that reads the
wrong word, a numeric rule) need the rows behind it. One line per (eval set, model, row):
``set``, ``model`` (before/after), ``id``, ``kind`` (label, number or text), ``reference``,
``prediction``, ``parsed`` (the label or number the task's rule read, null when none),
``parse_failure`` (null for text, which is not parsed),
and for constrained scoring ``scores`` (the model's label probabilities) and ``constrained``
(the label the decision rule picked). The report's confusion matrices are computed from it.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from finetune.scenarios._common import FREE_TEXT, UNPARSED, argmax_labels, parse_label

FILE = "predictions.jsonl"
Row = dict[str, Any]
Parser = Callable[[str, Row], Any]


def answer_parser(scenario: str) -> Parser:
    """The scenario's own ``parse_answer`` (the rule its metrics use), else the label parser for
    rows with ``choices`` (free text otherwise): any classification scenario is read like the others."""
    from finetune import scenarios

    scenarios.get(scenario)  # only registered names reach import_module
    own = getattr(importlib.import_module(f"finetune.scenarios.{scenario}"), "parse_answer", None)
    return own or _label_or_text


def _label_or_text(text: str, row: Row) -> Any:
    return parse_label(text, row["choices"]) if row.get("choices") else FREE_TEXT


def prediction_records(sets: Iterable[Any], result: dict[str, Any] | None, model: str) -> list[Row]:
    """One record per row of each eval set for one model's ``evaluate_model`` result (none without a result)."""
    if not result:
        return []
    out = []
    for s in sets:
        raw, decided = result.get("label_probs", {}).get(s.name, (None, None))
        for i, (row, text) in enumerate(zip(s.rows, result["predictions"][s.name])):
            out.append(_record(s, model, i, row, text, raw[i] if raw else None, decided[i] if decided else None))
    return out


def _record(s: Any, model: str, i: int, row: Row, text: str, scores: dict | None, decided: dict | None) -> Row:
    parsed = s.parse(text, row) if s.parse else FREE_TEXT
    free = parsed == FREE_TEXT
    kind = "text" if free else "label" if row.get("choices") else "number"
    record = {
        "set": s.name,
        "model": model,
        "id": row.get("id", i),
        "kind": kind,
        "reference": row.get("output"),
        "prediction": text,
        "parsed": None if free else parsed,
        "parse_failure": None if free else parsed is None,
    }
    if row.get("choices") and scores:
        record["scores"] = scores
        record["constrained"] = argmax_labels([decided or scores], row["choices"])[0]
    return record


def write_predictions(path: Path, records: list[Row]) -> Path:
    """Write all records at once through a temporary file and a rename: never half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_predictions(path: Path) -> list[Row]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def class_tables(records: list[Row]) -> dict[str, dict[str, dict[str, Any]]]:
    """set -> model -> kind ("constrained", "generated") -> labels, confusion matrix, per-class P/R/F1.

    Only rows with a label set take part; a generated answer naming no label counts as UNPARSED,
    a column of its own in the matrix.
    """
    from finetune.metrics.classification import confusion_matrix, per_class

    groups: dict[tuple[str, str], list[Row]] = {}
    for r in records:
        if r.get("kind") == "label":
            groups.setdefault((r["set"], r["model"]), []).append(r)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (name, model), rows in groups.items():
        truth = [r["reference"] for r in rows]
        labels = list(next((r["scores"] for r in rows if r.get("scores")), {}))  # the task's label set, in its order
        labels += sorted(set(truth) - set(labels))
        kinds = {"generated": [r["parsed"] if r["parsed"] is not None else UNPARSED for r in rows]}
        if all("constrained" in r for r in rows):
            kinds = {"constrained": [r["constrained"] for r in rows], **kinds}
        for kind, predicted in kinds.items():
            order, counts = confusion_matrix(truth, predicted, labels)
            out.setdefault(name, {}).setdefault(model, {})[kind] = {
                "labels": order,
                "matrix": counts,
                "per_class": per_class(truth, predicted, labels),
            }
    return out
