"""Deterministic batch plans and collation.

The order of micro-batches is a pure function of (seed, epoch), so a resumed run
replays nothing and skips nothing: it recomputes the plan and starts at the saved
position. Every optimizer step consumes ``grad_accum * world_size`` micro-batches
of the same global plan, so one process with accumulation 2 and two processes
with accumulation 1 see the same examples in the same steps.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from finetune.data.tokenized import Example


def micro_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool, pool: list[int] | None = None
) -> list[list[int]]:
    """Micro-batches of indices for one epoch; grouping by length cuts padding.

    ``pool`` is the epoch's draw when sources are mixed by proportion (finetune/data/mixing.py); by default
    every example once.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths))) if pool is None else list(pool)
    rng.shuffle(order)
    if group_by_length:
        chunk = batch_size * 32
        grouped = []
        for start in range(0, len(order), chunk):
            grouped.extend(sorted(order[start : start + chunk], key=lambda i: -lengths[i]))
        order = grouped
    batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def steps_for_epoch(batches: list[list[int]], per_step: int) -> list[list[list[int]]]:
    """Group micro-batches into optimizer steps (an incomplete last group is dropped)."""
    return [batches[i : i + per_step] for i in range(0, len(batches) - per_step + 1, per_step)]


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest example; attention_mask only when there is padding (keeps SDPA's fast path)."""
    longest = max(len(e["input_ids"]) for e in examples)
    has_pad = any(len(e["input_ids"]) < longest for e in examples)
    batch: dict[str, Any] = {}

    def pad(key: str, value: int) -> torch.Tensor:
        return torch.tensor([e[key] + [value] * (longest - len(e[key])) for e in examples], dtype=torch.long)

    batch["input_ids"] = pad("input_ids", pad_id)
    batch["labels"] = pad("labels", -100)
    if "position_ids" in examples[0]:
        batch["position_ids"] = pad("position_ids", 0)
    if has_pad:
        batch["attention_mask"] = torch.tensor(
            [[1] * len(e["input_ids"]) + [0] * (longest - len(e["input_ids"])) for e in examples], dtype=torch.long
        )
        if "position_ids" in batch:  # pads must not look like the start of a new packed example
            mask = batch["attention_mask"].bool()
            batch["position_ids"] = torch.where(mask, batch["position_ids"], batch["position_ids"].max())
    if "choice_index" in examples[0]:
        batch["choice_index"] = pad("choice_index", -1)
    if "loss_weight" in examples[0]:
        batch["loss_weight"] = torch.tensor(
            [e["loss_weight"] + [0.0] * (longest - len(e["loss_weight"])) for e in examples], dtype=torch.float32
        )
    return batch
