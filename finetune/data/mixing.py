"""Mixing sources by proportion: which training examples an epoch draws from each source.

``data.sources[].proportion`` replaces integer ``weight`` repeats. An epoch draws
``data.examples_per_epoch`` examples (default: the sum of the training sources' sizes); each source
gives its share of them (of the examples, or with ``data.mix_by: tokens`` of their tokens). A source
is drawn without replacement from an endless stream of seeded permutations of its rows, so every row
is seen once before any is seen twice, across epoch boundaries too. The draw of epoch ``e`` is a pure
function of (seed, e): a resumed run recomputes it, as it recomputes the batch order
(finetune/train/batching.py), and continues at the saved position.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from finetune.errors import UserError


@dataclass(frozen=True)
class Mixture:
    """Per training source: its examples' indices in the merged training data and how many an epoch draws."""

    names: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    counts: tuple[int, ...]
    by: str  # examples | tokens
    shares: tuple[float, ...]  # the requested proportions, for the console line and the report

    @property
    def per_epoch(self) -> int:
        return sum(self.counts)

    def epoch_indices(self, seed: int, epoch: int) -> list[int]:
        """The examples epoch ``epoch`` trains on, grouped by source (the batch plan shuffles them)."""
        out: list[int] = []
        for source, (group, n) in enumerate(zip(self.groups, self.counts)):
            out += [group[j] for j in stream(len(group), seed, source, epoch * n, n)]
        return out

    def describe(self) -> str:
        parts = ", ".join(f"{name} {n} ({100 * p:g}%)" for name, n, p in zip(self.names, self.counts, self.shares))
        return f"mixing by {self.by}: {self.per_epoch} examples per epoch: {parts}"

    def to_dict(self) -> dict[str, object]:
        return {
            "by": self.by,
            "per_epoch": self.per_epoch,
            "sources": {n: {"proportion": p, "per_epoch": c, "rows": len(g)} for n, p, c, g in self._rows()},
        }

    def _rows(self):
        return zip(self.names, self.shares, self.counts, self.groups)


def plan_mixture(
    names: list[str],
    groups: list[list[int]],
    proportions: list[float],
    lengths: list[int],
    by: str = "examples",
    per_epoch: int | None = None,
) -> Mixture:
    """How many examples each source gives per epoch.

    By examples, source s gives ``per_epoch * p_s`` (largest remainder, so the counts add up). By tokens,
    a source of long rows must give fewer rows for the same token share: counts go as p_s / mean length
    of s, so count_s x mean length_s / total tokens = p_s in expectation (exactly over whole cycles).
    """
    for name, group, p in zip(names, groups, proportions):
        if p > 0 and not group:
            raise UserError(
                f"data source {name} has proportion {p:g} but no training rows; drop its proportion or give it rows"
            )
    total = per_epoch if per_epoch is not None else sum(len(g) for g in groups)
    if by == "tokens":
        means = [sum(lengths[i] for i in g) / len(g) if g else 1.0 for g in groups]
        weights = [p / m for p, m in zip(proportions, means)]
    elif by == "examples":
        weights = list(proportions)
    else:
        raise ValueError(f"mix_by must be examples or tokens, got {by!r}")
    return Mixture(
        names=tuple(names),
        groups=tuple(tuple(g) for g in groups),
        counts=tuple(apportion(total, weights)),
        by=by,
        shares=tuple(proportions),
    )


def apportion(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` as whole numbers that sum to it (largest remainder)."""
    norm = sum(weights)
    exact = [total * w / norm for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def stream(size: int, seed: int, source: int, start: int, n: int) -> list[int]:
    """Positions ``start .. start + n`` of a source's endless draw: each pass over its rows a fresh permutation."""
    out: list[int] = []
    k = start
    while len(out) < n:
        cycle, offset = divmod(k, size)
        take = min(size - offset, n - len(out))
        out += _permutation(size, seed, source, cycle)[offset : offset + take]
        k += take
    return out


def _permutation(size: int, seed: int, source: int, cycle: int) -> list[int]:
    """A seeded order of one source's rows for one pass; its own stream of numbers, apart from the batch shuffle."""
    order = list(range(size))
    random.Random(f"{seed}:mix:{source}:{cycle}").shuffle(order)
    return order
