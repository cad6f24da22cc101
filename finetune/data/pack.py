"""Pack short examples into blocks without letting them see each other.

Inside a block every example's ``position_ids`` restart at 0; the model turns the
restarts into block-diagonal attention. Two facts make that true for Hugging Face
models in transformers 5.x (both checked in tests/test_data_pack.py):

* the packed mask is derived only without a KV cache, and ``use_cache`` defaults
  to True, so a packed forward must pass ``use_cache=False``
  (``packed_forward_kwargs``); with the cache on, examples attend across the block;
* it is derived only when ``attention_mask`` is None, and collate adds one as soon as
  a batch holds blocks of different lengths, so a packed batch must go in without
  it (``packed_inputs``). Right padding needs no mask in a causal model: real tokens
  never look at later positions, and pads carry no labels.
"""

from __future__ import annotations

import bisect
from typing import Any

from finetune.data.tokenized import Example, TokenizedData

IGNORE = -100

# model_type values whose attention derives block-diagonal masks from restarting position_ids
PACKABLE_MODEL_TYPES = frozenset(
    {
        "ft_core",
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3_text",
        "phi3",
        "granite",
        "olmo",
        "olmo2",
        "starcoder2",
        "cohere",
        "smollm3",
    }
)


def pack(data: TokenizedData, block_size: int) -> TokenizedData:
    """Blocks of at most ``block_size`` tokens, filled best-fit with the longest examples first.

    Each example's first token loses its label (and label-set index): it would otherwise be
    predicted from the previous example's last token. Longer examples are cut to ``block_size``.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    examples = [_cut(e, block_size) for e in data.examples]
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]["input_ids"]), i))
    blocks: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free tokens, block number), sorted: best fit = smallest room that fits
    for i in order:
        size = len(examples[i]["input_ids"])
        at = bisect.bisect_left(room, (size, -1))
        if at < len(room):
            free, b = room.pop(at)
        else:
            free, b = block_size, len(blocks)
            blocks.append([])
        blocks[b].append(i)
        if free - size > 0:
            bisect.insort(room, (free - size, b))
    packed = [_join([examples[i] for i in block]) for block in blocks]
    return TokenizedData(examples=packed, choice_sets=data.choice_sets, pad_id=data.pad_id)


def _cut(example: Example, block_size: int) -> Example:
    return {k: list(v[:block_size]) for k, v in example.items() if k != "position_ids"}


def _join(examples: list[Example]) -> Example:
    out: Example = {"input_ids": [], "labels": [], "position_ids": []}
    with_choices = "choice_index" in examples[0]
    with_weights = "loss_weight" in examples[0]
    if with_choices:
        out["choice_index"] = []
    if with_weights:
        out["loss_weight"] = []
    for e in examples:
        n = len(e["input_ids"])
        out["input_ids"] += e["input_ids"]
        out["labels"] += [IGNORE] + e["labels"][1:]
        out["position_ids"] += list(range(n))
        if with_choices:
            out["choice_index"] += [-1] + e["choice_index"][1:]
        if with_weights:
            out["loss_weight"] += e["loss_weight"]
    return out


def pack_supported(model: Any) -> tuple[bool, str]:
    """Whether ``model`` keeps packed examples apart; if not, the reason (the caller groups by length instead)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in PACKABLE_MODEL_TYPES:
        return True, f"{model_type} attention separates examples by restarting position_ids"
    return False, (
        f"model type {model_type!r} is not known to separate packed examples by position_ids "
        "(it would let them attend to each other); packing is off, batches are grouped by length"
    )


def packed_forward_kwargs(model: Any) -> dict[str, Any]:
    """Extra forward() arguments for packed batches: without them HF models attend across examples."""
    return {"use_cache": False}


def packed_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The model inputs of a collated packed batch: no attention_mask, so the packed mask is derived."""
    return {k: batch[k] for k in ("input_ids", "position_ids") if k in batch}
