"""Batched, KV-cached, left-padded generation: the same tokens as one-by-one greedy decoding, much faster.

Prompts are encoded as in training (``finetune.data.format.encode_text``: a template's ``Prompt``
keeps data text plain). A prompt longer than the model's context leaves no room to answer, so it
is cut from the left to fit the context with the answer, and counted (``stats["truncated"]``) and
said in one line, instead of a library warning and an empty answer.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import torch

from finetune.data.format import encode_text
from finetune.errors import UserError

log = logging.getLogger(__name__)

PromptLike = str | list[int]  # a string (a template's Prompt, or trusted text) or ids
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "context_length", "max_sequence_length", "seq_length")


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[PromptLike],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stats: dict[str, int] | None = None,
    progress: bool | None = None,
    score_ids: Sequence[Sequence[int] | None] | None = None,
    first_scores: list[list[float] | None] | None = None,
) -> list[str]:
    """Completions for ``prompts`` (prompt text excluded), stopping at any eos (``stop_ids``) or ``max_new_tokens``.

    ``stats["truncated"]`` counts prompts cut from the left to leave ``max_new_tokens`` of context;
    ``progress`` None shows a bar on the main process only. With ``score_ids`` (per prompt: token ids, or None),
    ``first_scores`` receives each prompt's next-token log-probabilities of those ids at the first generated
    position, from the forward pass generation makes anyway (None for a prompt that was cut or has no ids): labels
    that differ in their first token are decided there, so evaluation need not run the prompt a second time.
    """
    model.eval()
    context = model_context(model)
    if context is not None and max_new_tokens >= context:
        raise UserError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's context of "
            f"{context} tokens; lower eval.max_new_tokens (or --max-new-tokens)"
        )
    limit = None if context is None else context - max_new_tokens
    full = [_ids(tokenizer, p) for p in prompts]
    encoded, cut = fit_left(full, limit)
    _count(stats, cut, len(prompts), limit, context, f"max_new_tokens {max_new_tokens}")
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(encoded)
    with _bar(len(encoded), "generate", progress) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            kwargs: dict[str, Any] = {"do_sample": do_sample}
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p)
            if score_ids is not None:
                kwargs.update(output_logits=True, return_dict_in_generate=True)
            tokens = generate_batch(model, tokenizer, [encoded[i] for i in idx], max_new_tokens, **kwargs)
            if score_ids is not None:
                tokens, first = tokens.sequences, torch.log_softmax(tokens.logits[0].float(), -1)
                for row, i in enumerate(idx):
                    if score_ids[i] is not None and len(encoded[i]) == len(full[i]):
                        first_scores[i] = first[row, list(score_ids[i])].tolist()
            for i, row in zip(idx, tokens):
                out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
            bar.update(len(idx))
    return out


@torch.no_grad()
def generate_batch(model: Any, tokenizer: Any, encoded: list[list[int]], max_new_tokens: int, **kwargs: Any) -> Any:
    """The new tokens of one left-padded batch of prompt ids (rows that ended early are padded); with
    ``return_dict_in_generate`` transformers' output object, its ``sequences`` cut to the new tokens likewise.

    The one place ``model.generate`` is called, so ``generate`` and the server (``finetune.serve``,
    which passes per-row logits processors and stopping criteria in ``kwargs``) decode alike.
    """
    model.eval()
    ids, mask = _left_padded(encoded, _pad_id(tokenizer), next(model.parameters()).device)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_ids(model, tokenizer),
        pad_token_id=_pad_id(tokenizer),
        use_cache=True,
        **kwargs,
    )
    if kwargs.get("return_dict_in_generate"):  # the caller wants the step logits too (output_logits)
        out.sequences = out.sequences[:, ids.shape[1] :]
        return out
    return out[:, ids.shape[1] :]


def stop_ids(model: Any, tokenizer: Any) -> list[int] | None:
    """Every id that ends an answer: the tokenizer's eos and the model's generation_config eos ids.

    An instruction model ends its turn with a token other than the tokenizer's eos (Gemma's ``<end_of_turn>``,
    id 106, sits beside ``<eos>`` in its generation_config list); passing the tokenizer's eos alone would let
    such a model run on to ``max_new_tokens``. None when neither names one.
    """
    config = getattr(model, "generation_config", None)
    ids = [*_as_ids(getattr(tokenizer, "eos_token_id", None)), *_as_ids(getattr(config, "eos_token_id", None))]
    unique = list(dict.fromkeys(ids))
    return unique or None


def _as_ids(value: Any) -> list[int]:
    """An eos setting (None, one id, or a list of ids) as a list."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if v is not None]
    return [int(value)]


def model_context(model: Any) -> int | None:
    """The most positions the model takes (its config's context length), or None when it states none."""
    config = getattr(model, "config", None)
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def fit_left(encoded: list[list[int]], limit: int | None) -> tuple[list[list[int]], int]:
    """Each sequence cut to its last ``limit`` tokens (the end of a prompt is where the answer starts);
    how many were cut."""
    if limit is None:
        return encoded, 0
    cut = sum(len(ids) > limit for ids in encoded)
    return [ids[-limit:] if len(ids) > limit else ids for ids in encoded], cut


def _ids(tokenizer: Any, prompt: PromptLike) -> list[int]:
    return list(prompt) if isinstance(prompt, list) else encode_text(tokenizer, prompt)


def _count(
    stats: dict[str, int] | None, cut: int, total: int, limit: int | None, context: int | None, room_for: str
) -> None:
    """Add to ``stats["truncated"]`` and say the cut in one line (once per call)."""
    if stats is not None:
        stats["truncated"] = stats.get("truncated", 0) + cut
    if cut:
        kept = f"kept the last {limit} tokens of each" if limit is not None else "kept their ends"
        log.warning(
            "warning: %d of %d prompts are longer than the model's context of %d tokens less room for %s; "
            "cut from the left (%s)",
            cut,
            total,
            context,
            room_for,
            kept,
        )


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _left_padded(seqs: list[list[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding: generated tokens must follow every prompt directly."""
    longest = max(map(len, seqs))
    ids = torch.tensor([[pad] * (longest - len(s)) + s for s in seqs], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (longest - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long, device=device)
    return ids, mask


def _bar(total: int, desc: str, show: bool | None):
    """A tqdm bar with rows/s and ETA like training's; by default on the main process, for more than one row."""
    from tqdm.auto import tqdm

    if show is None:
        show = os.environ.get("RANK", "0") == "0" and total > 1
    return tqdm(total=total, desc=desc, disable=not show, dynamic_ncols=True, leave=False, mininterval=1.0, unit="row")
