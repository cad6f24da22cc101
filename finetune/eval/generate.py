"""Batched, KV-cached, left-padded generation: the same tokens as one-by-one greedy decoding, much faster."""
from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[str]:
    """Completions for ``prompts`` (prompt text excluded), stopping at eos or ``max_new_tokens``."""
    model.eval()
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(prompts)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            kwargs: dict[str, Any] = {"do_sample": do_sample}
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p)
            tokens = model.generate(
                **enc, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, use_cache=True, **kwargs,
            )
            new = tokens[:, enc["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
    return out


@torch.no_grad()
def label_probs(model: Any, tokenizer: Any, prompts: list[str], choices: list[list[str]], batch_size: int = 32) -> list[dict[str, float]]:
    """Constrained classification: P(label | prompt), renormalised over the labels.

    Scored on each label's first token when those differ (the decision), else on the summed
    log-likelihood of all the label's tokens.
    """
    model.eval()
    device = next(model.parameters()).device
    pairs = [(i, c) for i, cs in enumerate(choices) for c in cs]
    # When the labels' first tokens differ, that token is the decision (it is what the label loss
    # trains); the remaining tokens only spell the label out, so they are not scored.
    first = {c: tuple(tokenizer(c, add_special_tokens=False)["input_ids"][:1]) for cs in choices for c in cs}
    decided_by_first = [len({first[c] for c in cs}) == len(cs) for cs in choices]
    scores: dict[tuple[int, str], float] = {}
    pad = tokenizer.pad_token_id
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        seqs, spans = [], []
        for i, choice in chunk:
            p = tokenizer(prompts[i], add_special_tokens=False)["input_ids"]
            c = tokenizer(choice, add_special_tokens=False)["input_ids"]
            seqs.append(p + c)
            spans.append((len(p), len(p) + len(c)))
        longest = max(map(len, seqs))
        ids = torch.tensor([s + [pad] * (longest - len(s)) for s in seqs], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in seqs], device=device)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        for row, ((i, choice), (a, b)) in enumerate(zip(chunk, spans)):
            b = a + 1 if decided_by_first[i] else b
            targets = ids[row, a:b]
            scores[(i, choice)] = float(logp[row, a - 1:b - 1].gather(1, targets[:, None]).sum())
    out = []
    for i, cs in enumerate(choices):
        vals = torch.tensor([scores[(i, c)] for c in cs])
        probs = torch.softmax(vals, 0).tolist()
        out.append(dict(zip(cs, probs)))
    return out
