"""Next-token loss as (sum, count), so gradient accumulation and processes weight every token equally.

``scored_loss`` runs the model and applies its output head only at the positions the loss scores: with masked
prompts and label loss most positions are never scored, and with a large vocabulary the head and the
[batch, length, vocab] logits dominate a step's time and memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Logit elements per cross-entropy chunk (16 MiB in fp32). Beyond one chunk, each chunk's softmax is recomputed
# in backward instead of kept, so the fp32 log-probabilities of all scored positions never exist at once.
CE_CHUNK_ELEMENTS = 1 << 22
_warned: set[str] = set()


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    choice_index: torch.Tensor | None = None,
    choice_ids: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over labelled positions and their count.

    ``labels[b, t]`` is the token expected at position t (-100: not scored); position
    t-1 predicts it. At label-decision positions (``choice_index[b, t] >= 0``) a second
    term scores the target only against the other allowed labels
    (``choice_ids[choice_index]`` lists their first tokens, -1 pads): the plain term
    teaches that a label comes next, the restricted one which label, so the decision
    is not drowned by the rest of the vocabulary. Each term counts as one position, or,
    with ``weights`` (aligned with ``labels``, e.g. 1/terms of its example), as its weight.
    """
    # The labels move left, not the logits: slicing logits[:, :-1] would cost a zero-filled full-size copy of
    # their gradient in backward (bench/results: +2% LoRA, +10% pretraining tokens/s). The last position scores nothing.
    targets = F.pad(labels[:, 1:], (0, 1), value=-100)
    mask = targets != -100
    w = F.pad(weights[:, 1:].float(), (0, 1), value=0.0) if weights is not None else None

    def summed(per_term: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return per_term.sum() if w is None else (per_term * w[where]).sum()

    def counted(where: torch.Tensor) -> torch.Tensor:
        return where.sum() if w is None else w[where].sum()

    total = logits.new_zeros((), dtype=torch.float32)
    count = counted(mask)
    if choice_index is not None:
        restricted = F.pad(choice_index[:, 1:], (0, 1), value=-1)
        rmask = (restricted >= 0) & mask
        if rmask.any():
            rows = logits[rmask].float()  # [n, vocab]
            sets = choice_ids[restricted[rmask]]  # [n, k]
            picked = rows.gather(1, sets.clamp(min=0)).masked_fill(sets < 0, float("-inf"))
            want = (sets == targets[rmask].unsqueeze(1)).float().argmax(1)
            total = total + summed(F.cross_entropy(picked, want, reduction="none"), rmask)
        count = count + counted(rmask)
    scored = int(mask.sum())
    if w is None and scored * 4 > mask.numel() * 3:  # mostly scored (pretraining): the flat view needs no gathered copy
        total = total + F.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
        )
    elif scored:
        total = total + summed(F.cross_entropy(logits[mask].float(), targets[mask], reduction="none"), mask)
    return total, count


def scored_loss(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    choice_index: torch.Tensor | None = None,
    choice_ids: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    forward_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``causal_lm_loss`` of ``model(**inputs, **forward_kwargs)``, with the output head applied only where it scores.

    A pre-hook on the model's output head hands it the hidden states of the scored positions alone, so the model's
    own forward still runs everything around the head (a peft or DDP wrapper, Gemma's final logit soft-capping)
    and no [batch, length, vocab] tensor is built. Mostly scored batches (pretraining) keep the full path, which is
    as fast there and keeps its numbers. A model whose head cannot be found gets the full path, said once.
    """
    kwargs = forward_kwargs or {}
    targets = F.pad(labels[:, 1:], (0, 1), value=-100)
    mask = targets != -100
    head = output_head(model)
    if _mostly_scored(mask, weights) or head is None:
        if head is None:
            _warn_once(type(model).__name__, "has no output head that ft can find (get_output_embeddings)")
        return causal_lm_loss(model(**inputs, **kwargs).logits, labels, choice_index, choice_ids, weights)
    with head_sees_only(head, mask) as hooked:
        logits = model(**inputs, **kwargs).logits
    n = int(mask.sum())
    if not hooked["done"] or logits.shape[:2] != (1, n):
        _warn_once(
            type(model).__name__, "does not apply its output head to the decoder's [batch, length, width] output"
        )
        if hooked["done"]:  # the head saw gathered rows but the output is not theirs: run the full path
            logits = model(**inputs, **kwargs).logits
        return causal_lm_loss(logits, labels, choice_index, choice_ids, weights)
    w = F.pad(weights[:, 1:].float(), (0, 1), value=0.0) if weights is not None else None
    restricted = F.pad(choice_index[:, 1:], (0, 1), value=-1) if choice_index is not None else None
    rows = logits[0]  # [n, vocab], in the order of mask's True positions
    total = logits.new_zeros((), dtype=torch.float32)
    if restricted is not None and choice_ids is not None:
        total = total + _restricted_term(
            rows, targets[mask], restricted[mask], w[mask] if w is not None else None, choice_ids
        )
    total = total + _chunked_cross_entropy(rows, targets[mask], w[mask] if w is not None else None)
    return total, _count(mask, restricted, w)


def _mostly_scored(mask: torch.Tensor, weights: torch.Tensor | None) -> bool:
    """Pretraining scores nearly every position: the flat view there needs no gathered copy."""
    return weights is None and int(mask.sum()) * 4 > mask.numel() * 3


def _count(mask: torch.Tensor, restricted: torch.Tensor | None, w: torch.Tensor | None) -> torch.Tensor:
    """Terms counted as ``causal_lm_loss`` counts them: each scored position, plus each label decision again."""
    count = mask.sum() if w is None else w[mask].sum()
    if restricted is not None:
        rmask = (restricted >= 0) & mask
        count = count + (rmask.sum() if w is None else w[rmask].sum())
    return count


def _restricted_term(
    rows: torch.Tensor,
    targets: torch.Tensor,
    restricted: torch.Tensor,
    w: torch.Tensor | None,
    choice_ids: torch.Tensor,
) -> torch.Tensor:
    """The target scored against the other allowed labels only; reads k columns of a row, never copies the row."""
    sel = (restricted >= 0).nonzero().squeeze(1)
    if not sel.numel():
        return rows.new_zeros((), dtype=torch.float32)
    sets = choice_ids[restricted[sel]]  # [m, k]
    picked = rows[sel.unsqueeze(1), sets.clamp(min=0)].float().masked_fill(sets < 0, float("-inf"))
    want = (sets == targets[sel].unsqueeze(1)).float().argmax(1)
    per = F.cross_entropy(picked, want, reduction="none")
    return per.sum() if w is None else (per * w[sel]).sum()


def _ce_sum(rows: torch.Tensor, targets: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    per = F.cross_entropy(rows.float(), targets, reduction="none")
    return per.sum() if w is None else (per * w).sum()


def _chunked_cross_entropy(
    rows: torch.Tensor, targets: torch.Tensor, w: torch.Tensor | None, chunk_elements: int | None = None
) -> torch.Tensor:
    """Summed cross-entropy in chunks of positions; each chunk's fp32 softmax is recomputed in backward, not kept."""
    n, vocab = rows.shape
    step = max(1, (chunk_elements or CE_CHUNK_ELEMENTS) // vocab)
    if n <= step:
        return _ce_sum(rows, targets, w)
    grad = torch.is_grad_enabled()
    total = rows.new_zeros((), dtype=torch.float32)
    for i in range(0, n, step):
        part = (rows[i : i + step], targets[i : i + step], w[i : i + step] if w is not None else None)
        total = total + (checkpoint(_ce_sum, *part, use_reentrant=False) if grad else _ce_sum(*part))
    return total


def output_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module that turns hidden states into logits, through DDP/DeepSpeed (.module) and peft wrappers."""
    inner = getattr(model, "module", model)
    get = getattr(inner, "get_output_embeddings", None)
    try:
        head = get() if callable(get) else None
    except (AttributeError, NotImplementedError):
        head = None
    return head if isinstance(head, torch.nn.Module) else None


@contextmanager
def head_sees_only(head: torch.nn.Module, mask: torch.Tensor) -> Iterator[dict[str, bool]]:
    """While open, the head's first call with [batch, length, width] input gets only the rows where mask is set."""
    state = {"done": False}

    def gather(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        hidden = args[0] if args else None
        if state["done"] or not torch.is_tensor(hidden) or hidden.dim() != 3 or hidden.shape[:2] != mask.shape:
            return None
        state["done"] = True
        return (hidden[mask].unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        yield state
    finally:
        handle.remove()


def _warn_once(model_name: str, why: str) -> None:
    if model_name not in _warned:
        _warned.add(model_name)
        warnings.warn(f"{model_name} {why}; its loss uses full logits (slower with a large vocabulary)", stacklevel=3)
