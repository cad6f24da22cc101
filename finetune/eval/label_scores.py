"""Constrained classification: P(label | prompt), renormalised over the row's labels.

When the labels' first tokens differ (the usual case: "good"/"bad", 77 intents, "A".."E"), that token is the
decision, so one forward pass per prompt decides among all its labels, and the output head runs at that one
position only. With a 262k vocabulary the head is most of a forward's cost, and scoring one sequence per
(row, label) pair would multiply the rest by the number of labels (77 for BANKING77). Labels that share a first
token are scored on their summed log-likelihood, one sequence per (row, label), the head only at label tokens.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import torch

from finetune.data.format import encode_plain
from finetune.eval.generate import PromptLike, _bar, _count, _ids, _pad_id, fit_left, model_context
from finetune.model.loss import head_sees_only, output_head


@torch.no_grad()
def label_probs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[PromptLike],
    choices: list[list[str]],
    batch_size: int = 32,
    stats: dict[str, int] | None = None,
    progress: bool | None = None,
) -> list[dict[str, float]]:
    """P(label | prompt) per row, renormalised over that row's labels.

    A prompt is cut from the left to fit the context with its longest label; ``stats["truncated"]``
    counts such prompts.
    """
    model.eval()
    label_ids = {c: encode_plain(tokenizer, c) for cs in choices for c in cs}
    decided_by_first = [len({tuple(label_ids[c][:1]) for c in cs}) == len(cs) for cs in choices]
    encoded = _fitted_prompts(model, tokenizer, prompts, choices, label_ids, stats)
    scores: dict[tuple[int, str], float] = {}
    with _bar(len(choices), "score labels", progress) as bar:
        first = [i for i, d in enumerate(decided_by_first) if d]
        _score_first_tokens(model, tokenizer, encoded, choices, label_ids, first, batch_size, scores, bar)
        pairs = [(i, c) for i, d in enumerate(decided_by_first) if not d for c in choices[i]]
        _score_whole_labels(model, tokenizer, encoded, choices, label_ids, pairs, batch_size, scores, bar)
    return [renormalised(cs, [scores[(i, c)] for c in cs]) for i, cs in enumerate(choices)]


def first_token_ids(tokenizer: Any, choices: Sequence[Sequence[str] | None]) -> list[list[int] | None]:
    """Per row, its labels' first token ids when those tell the labels apart (else None: whole labels are scored).

    Such a row is decided by the next-token distribution at the prompt's end, which generation computes anyway.
    """
    out: list[list[int] | None] = []
    for cs in choices:
        firsts = [tuple(encode_plain(tokenizer, c)[:1]) for c in cs] if cs else []
        out.append([f[0] for f in firsts] if firsts and all(firsts) and len(set(firsts)) == len(cs) else None)
    return out


def renormalised(choices: Sequence[str], log_probs: Sequence[float]) -> dict[str, float]:
    """P(label | prompt) over the row's labels from their log-probabilities."""
    return dict(zip(choices, torch.softmax(torch.tensor(list(log_probs)), 0).tolist()))


def _fitted_prompts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[PromptLike],
    choices: list[list[str]],
    label_ids: dict[str, list[int]],
    stats: dict[str, int] | None,
) -> list[list[int]]:
    """Prompt ids cut from the left so the prompt and its longest label fit the model's context."""
    context = model_context(model)
    encoded, cut = [], 0
    for p, cs in zip(prompts, choices):
        need = max((len(label_ids[c]) for c in cs), default=0)
        fitted, n = fit_left([_ids(tokenizer, p)], None if context is None else max(context - need, 1))
        encoded.append(fitted[0])
        cut += n
    _count(stats, cut, len(prompts), None, context, "its labels")
    return encoded


def _score_first_tokens(
    model: Any,
    tokenizer: Any,
    encoded: list[list[int]],
    choices: list[list[str]],
    label_ids: dict[str, list[int]],
    rows: list[int],
    batch_size: int,
    scores: dict[tuple[int, str], float],
    bar: Any,
) -> None:
    """One pass per prompt: the log-probability of each label's first token at the prompt's last position."""
    rows = sorted(rows, key=lambda i: len(encoded[i]))  # similar lengths share a batch: less padding
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs = [encoded[i] for i in chunk]
        last = [len(s) - 1 for s in seqs]
        logp = _log_probs_at(model, tokenizer, seqs, [[t] for t in last])
        for row, i in enumerate(chunk):
            for c in choices[i]:
                scores[(i, c)] = float(logp[row][0, label_ids[c][0]])
        bar.update(len(chunk))


def _score_whole_labels(
    model: Any,
    tokenizer: Any,
    encoded: list[list[int]],
    choices: list[list[str]],
    label_ids: dict[str, list[int]],
    pairs: list[tuple[int, str]],
    batch_size: int,
    scores: dict[tuple[int, str], float],
    bar: Any,
) -> None:
    """Labels sharing a first token: the summed log-likelihood of all of the label's tokens, per (row, label)."""
    ends = list(accumulate(len(choices[i]) for i in dict.fromkeys(i for i, _ in pairs)))  # a row counts once
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        seqs = [encoded[i] + label_ids[c] for i, c in chunk]
        where = [list(range(len(encoded[i]) - 1, len(s) - 1)) for (i, _), s in zip(chunk, seqs)]
        logp = _log_probs_at(model, tokenizer, seqs, where)
        for row, (i, c) in enumerate(chunk):
            targets = torch.tensor(label_ids[c])
            scores[(i, c)] = float(logp[row].gather(1, targets[:, None]).sum())
        bar.update(bisect_right(ends, start + len(chunk)) - bisect_right(ends, start))


def _log_probs_at(model: Any, tokenizer: Any, seqs: list[list[int]], positions: list[list[int]]) -> list[torch.Tensor]:
    """Next-token log-probabilities [len(positions[b]), vocab] of each right-padded sequence at the given positions.

    The head sees only those positions (a pre-hook gathers them, as the training loss does), so the model's own
    forward still applies whatever follows the head (Gemma's final logit soft-capping). A causal model's real
    tokens never attend to the right padding, so batching does not change a sequence's numbers.
    """
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    longest = max(map(len, seqs))
    ids = torch.tensor([s + [pad] * (longest - len(s)) for s in seqs], device=device)
    attn = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in seqs], device=device)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for b, pos in enumerate(positions):
        mask[b, pos] = True
    head = output_head(model)
    if head is None:
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        return [torch.log_softmax(logits[b, pos].float(), -1) for b, pos in enumerate(positions)]
    with head_sees_only(head, mask) as hooked:
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
    if not hooked["done"] or logits.shape[:2] != (1, int(mask.sum())):  # a head ft cannot narrow: the full path
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        return [torch.log_softmax(logits[b, pos].float(), -1) for b, pos in enumerate(positions)]
    rows = torch.log_softmax(logits[0].float(), -1)  # in the order of mask's True positions: row-major
    counts = [len(p) for p in positions]
    return list(torch.split(rows, counts))
