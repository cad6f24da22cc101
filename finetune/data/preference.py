"""Preference rows (prompt, chosen, rejected) -> token pairs scored on their completions only.

A prompt is text or chat messages; chosen and rejected are text (or one assistant message).
Each side is rendered through the source's ordinary template (an instruction prompt, or the
chat template), so the prompt an evaluation generates from is the prompt training scored
after; prompt tokens are masked and only the completion (and its end-of-sequence token) is
scored. Both sides share the prompt's tokens, and a pair over ``max_length`` loses the same
prompt tokens on both sides (from the left), so the two completions are always conditioned
on the same text.
"""

from __future__ import annotations

from typing import Any

from finetune.data.format import IGNORE, Template, _join, encode_many
from finetune.data.tokenized import TokenizedData

Row = dict[str, Any]
FIELDS = ("prompt", "chosen", "rejected")


# ---------------------------------------------------------------- rows


def row_problem(row: Row) -> str | None:
    """What keeps ``row`` from being a preference pair, or None."""
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        if not prompt or not all(isinstance(t, dict) and isinstance(t.get("content"), str) for t in prompt):
            return "'prompt' as messages must be a non-empty list of {role, content} turns"
        if prompt[-1].get("role") != "user":
            return "'prompt' as messages must end with a user turn"
    elif not isinstance(prompt, str):
        return f"needs 'prompt', a string or a list of messages, got {type(prompt).__name__}"
    texts = {}
    for key in ("chosen", "rejected"):
        text = completion_text(row.get(key))
        if text is None or not text.strip():
            return f"needs a non-empty string {key!r} (or one assistant message)"
        texts[key] = text
    if texts["chosen"] == texts["rejected"]:
        return "'chosen' and 'rejected' are the same text, so there is no preference to learn"
    return None


def completion_text(value: Any) -> str | None:
    """A completion as text: a string, or the content of a one-message assistant list (TRL's conversational form)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        content = value[0].get("content")
        return content if isinstance(content, str) and value[0].get("role", "assistant") == "assistant" else None
    return None


def as_sft_row(row: Row, side: str = "chosen") -> Row:
    """The row as an ordinary one with ``side`` as the answer: what templates render and evaluation scores."""
    text = completion_text(row[side])
    if isinstance(row["prompt"], list):
        return {**row, "messages": [*row["prompt"], {"role": "assistant", "content": text}]}
    return {**row, "input": row["prompt"], "output": text}


def template_shape(rows: list[Row]) -> str:
    """The template shape a preference source renders with: chat when its prompts are messages."""
    return "chat" if rows and isinstance(rows[0].get("prompt"), list) else "instruction"


# ---------------------------------------------------------------- tokens


def encode_pair(
    template: Template, tokenizer: Any, row: Row, max_length: int, truncation: str, stats: dict[str, int]
) -> dict[str, list] | None:
    """input_ids/labels of the chosen side and rejected_input_ids/rejected_labels; None when dropped."""
    sides = [_encode_side(template, tokenizer, as_sft_row(row, side)) for side in ("chosen", "rejected")]
    longest = max(len(prompt) + len(answer) for prompt, answer in sides)
    stats["longest"] = max(stats.get("longest", 0), longest)
    overflow = longest - max_length
    if overflow > 0:
        if truncation == "drop":
            stats["dropped"] = stats.get("dropped", 0) + 1
            return None
        stats["truncated"] = stats.get("truncated", 0) + 1
        cut = min(overflow, len(sides[0][0]))  # both sides share the prompt: cut it alike, from the left
        sides = [(prompt[cut:], answer[: max_length - len(prompt) + cut]) for prompt, answer in sides]
    (cp, ca), (rp, ra) = sides
    return {
        "input_ids": cp + ca,
        "labels": [IGNORE] * len(cp) + ca,
        "rejected_input_ids": rp + ra,
        "rejected_labels": [IGNORE] * len(rp) + ra,
    }


def _encode_side(template: Template, tokenizer: Any, row: Row) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids): the last trained part of the rendered row is the completion, the rest prompt.

    Earlier assistant turns of a chat prompt are context here, not scored.
    """
    parts = [(pieces, trained) for pieces, trained in template.parts(row) if _join(pieces)]
    last = max(k for k, (_, trained) in enumerate(parts) if trained)
    encoded = encode_many(tokenizer, [pieces for pieces, _ in parts])
    prompt = [t for ids in encoded[:last] for t in ids]
    answer = [t for ids in encoded[last:] for t in ids]
    return prompt, answer


def tokenize_pairs(
    rows: list[Row], template: Template, tokenizer: Any, max_length: int, truncation: str, pad_id: int
) -> tuple[TokenizedData, dict[str, Any]]:
    """Encoded pairs and the same stats the SFT tokenizer reports."""
    counts: dict[str, int] = {}
    examples = [e for row in rows if (e := encode_pair(template, tokenizer, row, max_length, truncation, counts))]
    stats = {
        "examples": len(examples),
        "truncated": counts.get("truncated", 0),
        "dropped": counts.get("dropped", 0),
        "label_loss_fallbacks": 0,
        "longest": counts.get("longest", 0),
        "tokens": sum(len(e["input_ids"]) + len(e["rejected_input_ids"]) for e in examples),
        "cached": False,
    }
    return TokenizedData(examples=examples, pad_id=pad_id), stats


def collate_pairs(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """One batch of 2B rows, the chosen sides first, right-padded; ``ref_logps`` when the pairs carry them."""
    import torch

    ids = [e["input_ids"] for e in examples] + [e["rejected_input_ids"] for e in examples]
    labels = [e["labels"] for e in examples] + [e["rejected_labels"] for e in examples]
    longest = max(len(x) for x in ids)
    batch: dict[str, Any] = {
        "input_ids": torch.tensor([x + [pad_id] * (longest - len(x)) for x in ids], dtype=torch.long),
        "labels": torch.tensor([x + [IGNORE] * (longest - len(x)) for x in labels], dtype=torch.long),
    }
    if any(len(x) < longest for x in ids):
        batch["attention_mask"] = torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in ids])
    if "ref_chosen" in examples[0]:
        refs = [e["ref_chosen"] for e in examples] + [e["ref_rejected"] for e in examples]
        batch["ref_logps"] = torch.tensor(refs, dtype=torch.float32)
    return batch
