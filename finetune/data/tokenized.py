"""Tokenized examples and what is done to them before batching: loss weights per example,
class balance for label examples.

Lives in the data layer because tokenizing, packing and weighing all produce or reshape
it; the training loop only batches it (finetune/train/batching.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

Example = dict[str, list]  # input_ids, labels; optional position_ids, choice_index, loss_weight (floats)


@dataclass
class TokenizedData:
    examples: list[Example]
    choice_sets: list[list[int]] = field(default_factory=list)  # first-token ids of each label set
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.examples)


def _terms(e: Example) -> list[int]:
    """Positions holding loss terms, once per term (a label at t is predicted from t-1, so position 0 never counts)."""
    labels, choice = e["labels"], e.get("choice_index")
    scored = [t for t in range(1, len(labels)) if labels[t] != -100]
    if choice is not None:  # a label decision counts twice: plain and restricted term (train/loss.py)
        scored += [t for t in scored if choice[t] >= 0]
    return scored


def count_label_tokens(examples: list[Example]) -> float:
    """The step normaliser, as causal_lm_loss counts: loss terms, or the sum of their weights when examples carry them."""
    if examples and "loss_weight" in examples[0]:
        return sum(e["loss_weight"][t] for e in examples for t in _terms(e))
    return sum(len(_terms(e)) for e in examples)


def weigh_examples(data: TokenizedData) -> TokenizedData:
    """Per-example averaging: each example's loss terms share a weight of 1, so a one-word label counts as much as a
    100-token answer (without it, a mixture is steered by its longest answers). Added before packing, which keeps it."""
    out = []
    for e in data.examples:
        n = len(_terms(e))
        out.append({**e, "loss_weight": [1.0 / n if n else 0.0] * len(e["labels"])})
    return TokenizedData(examples=out, choice_sets=data.choice_sets, pad_id=data.pad_id)


def label_class(e: Example) -> tuple[int, int] | None:
    """A classification example's class: (its label set, the first token of its label), read where the label loss
    decides; None for examples that carry no label decision (generation rows, labels sharing a first token)."""
    choice = e.get("choice_index")
    if choice is None:
        return None
    for t, c in enumerate(choice):
        if c >= 0 and e["labels"][t] != -100:
            return c, e["labels"][t]
    return None


def class_counts(data: TokenizedData) -> dict[tuple[int, int], int]:
    """Examples per class, label sets apart (a mixture of two classification sources is balanced per source)."""
    counts: dict[tuple[int, int], int] = {}
    for e in data.examples:
        key = label_class(e)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return counts


def balance_classes(data: TokenizedData, mode: str, seed: int) -> TokenizedData:
    """Training at the data's prior can make predicting the majority class the cheapest loss (German credit: every
    row "good"). ``weighted`` scales each labelled example's loss weights by n_set / (k x n_class) so every class of a
    label set weighs the same in total; ``oversample`` repeats rarer classes' examples up to the largest class of
    their set: each ``full`` times, plus a seeded choice of the remainder, so the plan stays a function of the seed.
    Examples without a class are left as they are."""
    if mode == "none":
        return data
    counts = class_counts(data)
    per_set: dict[int, list[int]] = {}
    for (s, _), n in counts.items():
        per_set.setdefault(s, []).append(n)
    if mode == "weighted":
        return _weighted(data, counts, per_set)
    if mode == "oversample":
        return _oversampled(data, counts, per_set, seed)
    raise ValueError(f"class_balance must be none, weighted or oversample, got {mode!r}")


def _weighted(data: TokenizedData, counts: dict[tuple[int, int], int], per_set: dict[int, list[int]]) -> TokenizedData:
    out = []
    for e in data.examples:
        key = label_class(e)
        factor = sum(per_set[key[0]]) / (len(per_set[key[0]]) * counts[key]) if key is not None else 1.0
        weights = e.get("loss_weight") or [1.0] * len(e["labels"])
        out.append({**e, "loss_weight": [w * factor for w in weights]})
    return TokenizedData(examples=out, choice_sets=data.choice_sets, pad_id=data.pad_id)


def _oversampled(
    data: TokenizedData, counts: dict[tuple[int, int], int], per_set: dict[int, list[int]], seed: int
) -> TokenizedData:
    rng = random.Random(f"{seed}:oversample")
    members: dict[tuple[int, int], list[int]] = {}
    for i, e in enumerate(data.examples):
        key = label_class(e)
        if key is not None:
            members.setdefault(key, []).append(i)
    extra: list[int] = []
    for key in sorted(members):
        target, have = max(per_set[key[0]]), counts[key]
        full, rest = divmod(target, have)
        extra += members[key] * (full - 1) + sorted(rng.sample(members[key], rest))
    examples = data.examples + [data.examples[i] for i in extra]
    return TokenizedData(examples=examples, choice_sets=data.choice_sets, pad_id=data.pad_id)
