"""Evaluators for users' own data with no scenario: eval.task = generation | classification | numeric.

Labels are read by the scenarios' parser (the answer must start with the label) and numbers
by the task's strict rule, so a user's file is scored exactly like a scenario's test split.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from finetune.errors import UserError
from finetune.scenarios._common import UNPARSED, argmax_labels, parse_label

Row = dict[str, Any]
Fallback = str  # "none" | "last"

__all__ = ["evaluator", "parser", "numeric_suffix", "parse_label", "with_choices"]


def with_choices(rows: list[Row]) -> list[Row]:
    """Classification rows need their label set: the distinct reference outputs of the file."""
    labels = sorted({str(r["output"]).strip() for r in rows})
    if len(labels) < 2:
        raise UserError(f"classification needs at least two distinct labels in the output field, found {labels}")
    return [{**r, "output": str(r["output"]).strip(), "choices": labels} for r in rows]


def evaluator(
    task: str, numeric_tolerance: float = 0.0, numeric_fallback: Fallback = "none"
) -> Callable[..., dict[str, float]]:
    """The scoring function for ``task``; the numeric options loosen the rule only when given."""
    if task == "numeric":
        return partial(_numeric, tolerance=numeric_tolerance, fallback=numeric_fallback)
    return {"generation": _generation, "classification": _classification}[task]


def parser(task: str, numeric_fallback: Fallback = "none") -> Callable[[str, Row], Any] | None:
    """What an answer is read as for predictions.jsonl: a label, a number, or None (generation)."""
    if task == "classification":
        return lambda text, row: parse_label(text, row["choices"])
    if task == "numeric":
        return lambda text, row: _answer(text, row, numeric_fallback == "last")
    return None


def numeric_suffix(tolerance: float, fallback: Fallback) -> str:
    """Metric-key suffix naming a loosened numeric rule: "" for the strict one, e.g. "_last_tol0.01"."""
    return ("_last" if fallback == "last" else "") + (f"_tol{tolerance:g}" if tolerance else "")


def _generation(predictions: list[str], rows: list[Row], label_probs: Any = None) -> dict[str, float]:
    from finetune.metrics.numeric import exact_match
    from finetune.metrics.text import rouge

    refs = [r["output"] for r in rows]
    return {
        **rouge(predictions, refs),
        "exact_match": exact_match(predictions, refs),
        "length_words": sum(len(p.split()) for p in predictions) / max(1, len(predictions)),
    }


def _label_scores(truth: list[str], predicted: list[str], prefix: str) -> dict[str, float]:
    from finetune.metrics.classification import accuracy, f1, mcc

    return {
        f"{prefix}accuracy": accuracy(truth, predicted),
        f"{prefix}f1_macro": f1(truth, predicted, average="macro"),
        f"{prefix}f1_weighted": f1(truth, predicted, average="weighted"),
        f"{prefix}mcc": mcc(truth, predicted),
    }


def _classification(
    predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    """Constrained scores (from label_probs) unprefixed, generated-text scores ``gen_`` with their parse failures."""
    truth = [r["output"] for r in rows]
    out: dict[str, float] = {}
    if label_probs is not None and rows:
        out.update(_label_scores(truth, argmax_labels(label_probs, rows[0]["choices"]), ""))
    parsed = [parse_label(p, r["choices"]) for p, r in zip(predictions, rows)]
    out.update(_label_scores(truth, [p if p is not None else UNPARSED for p in parsed], "gen_"))
    out["parse_failure_rate"] = sum(p is None for p in parsed) / max(1, len(parsed))
    majority = max(set(truth), key=truth.count) if truth else None
    out["ref_majority_accuracy"] = sum(t == majority for t in truth) / max(1, len(truth))
    return out


def _reference(row: Row) -> float:
    from finetune.metrics.numeric import parse_number

    ref = parse_number(str(row["output"]))
    if ref is None:
        raise UserError(
            f"numeric evaluation: reference {row['output']!r} (row {row.get('id', '?')}) holds no number; "
            "write the number alone or end it with '#### <number>'"
        )
    return ref


def _answer(text: str, row: Row, fallback: bool) -> float | None:
    """The strict rule of the row's task, told by its reference: ``#### n`` (GSM8K) when the
    reference has the mark, else the whole answer must be the number (a ``#### n`` mark also counts).
    ``fallback`` takes the answer's last number when the strict rule finds none.
    """
    from finetune.metrics.numeric import bare_number, last_number, marked_number

    value = marked_number(text)
    if value is None and "####" not in str(row["output"]):
        value = bare_number(text)
    if value is None and fallback:
        value = last_number(text)
    return value


def _numeric(
    predictions: list[str],
    rows: list[Row],
    label_probs: Any = None,
    tolerance: float = 0.0,
    fallback: Fallback = "none",
) -> dict[str, float]:
    """``numeric_em`` by the strict rule always; a loosened rule adds keys that name it (``numeric_em_last_tol0.01``)."""
    from finetune.metrics.numeric import numeric_match

    refs = [_reference(r) for r in rows]
    n = max(1, len(rows))
    strict = [_answer(p, r, False) for p, r in zip(predictions, rows)]
    out = {
        "numeric_em": sum(numeric_match(v, ref, rel_tol=0.0) for v, ref in zip(strict, refs)) / n,
        "parse_failure_rate": sum(v is None for v in strict) / n,
    }
    suffix = numeric_suffix(tolerance, fallback)
    if suffix:
        loose = [_answer(p, r, fallback == "last") for p, r in zip(predictions, rows)]
        out[f"numeric_em{suffix}"] = sum(numeric_match(v, ref, rel_tol=tolerance) for v, ref in zip(loose, refs)) / n
        if fallback == "last":
            out["parse_failure_rate_last"] = sum(v is None for v in loose) / n
    return out
