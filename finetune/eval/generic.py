"""Evaluators for users' own data with no scenario: eval.task = generation | classification | numeric."""
from __future__ import annotations

from typing import Any, Callable

from finetune.errors import UserError

Row = dict[str, Any]


def with_choices(rows: list[Row]) -> list[Row]:
    """Classification rows need their label set: the distinct reference outputs of the file."""
    labels = sorted({str(r["output"]).strip() for r in rows})
    if len(labels) < 2:
        raise UserError(f"classification needs at least two distinct labels in the output field, found {labels}")
    return [{**r, "output": str(r["output"]).strip(), "choices": labels} for r in rows]


def parse_label(text: str, choices: list[str]) -> str | None:
    """The label named earliest in the generated text (case-insensitive), or None."""
    low = text.lower()
    found = [(low.find(c.lower()), c) for c in choices if c.lower() in low]
    return min(found)[1] if found else None


def evaluator(task: str) -> Callable[..., dict[str, float]]:
    return {"generation": _generation, "classification": _classification, "numeric": _numeric}[task]


def _generation(predictions: list[str], rows: list[Row], label_probs: Any = None) -> dict[str, float]:
    from finetune.metrics.numeric import exact_match
    from finetune.metrics.text import rouge

    refs = [r["output"] for r in rows]
    return {**rouge(predictions, refs), "exact_match": exact_match(predictions, refs),
            "length_words": sum(len(p.split()) for p in predictions) / max(1, len(predictions))}


def _classification(predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None) -> dict[str, float]:
    from finetune.metrics.classification import accuracy, f1, mcc

    truth = [r["output"] for r in rows]
    out: dict[str, float] = {}
    if label_probs is not None:
        chosen = [max(p, key=p.get) for p in label_probs]
        out.update(accuracy=accuracy(truth, chosen), f1_macro=f1(truth, chosen, average="macro"), mcc=mcc(truth, chosen))
    parsed = [parse_label(p, r["choices"]) for p, r in zip(predictions, rows)]
    gen = [p if p is not None else "<unparsed>" for p in parsed]
    out.update(gen_accuracy=accuracy(truth, gen), gen_f1_macro=f1(truth, gen, average="macro"), gen_mcc=mcc(truth, gen),
               parse_failure_rate=sum(p is None for p in parsed) / max(1, len(parsed)))
    majority = max(set(truth), key=truth.count) if truth else None
    out["ref_majority_accuracy"] = accuracy(truth, [majority] * len(truth))
    return out


def _numeric(predictions: list[str], rows: list[Row], label_probs: Any = None) -> dict[str, float]:
    from finetune.metrics.numeric import numeric_match, parse_number

    hits = fails = 0
    for pred, row in zip(predictions, rows):
        ref = parse_number(str(row["output"]))
        if ref is None:
            raise UserError(f"numeric evaluation: reference {row['output']!r} (row {row.get('id', '?')}) holds no number")
        got = parse_number(pred)
        fails += got is None
        hits += numeric_match(got, ref, rel_tol=1e-2)
    n = max(1, len(rows))
    return {"numeric_em": hits / n, "parse_failure_rate": fails / n}
