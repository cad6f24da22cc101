"""General text as documents and token streams: what the retention probe scores and what replay trains on.

Three sources: a user's file (plain text split at blank lines, or JSONL with a ``text`` field), the
text shipped with ft (``general_text.txt``, see general_gen.py), and this recipe's pretraining
corpus, split exactly as the pretraining stage splits it so "held out" means the documents the base
never trained on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from finetune.data.general_gen import SHIPPED
from finetune.data.jsonl_text import read_jsonl_texts
from finetune.data.tokenized import TokenizedData
from finetune.errors import UserError

HELD_OUT = 0.1  # a text file both replayed and probed: this share of its documents is kept for the probe


def read_documents(path: str | Path, key: str) -> list[str]:
    """Documents of a plain-text or JSONL file; ``key`` (e.g. data.replay.text) names the recipe field in errors."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{key}: {p} is not a file; give a plain-text or JSONL file")
    if p.suffix.lower() == ".jsonl":
        docs = [t for t in read_jsonl_texts(p, "text", key) if t.strip()]
    else:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{key}: {p} is not UTF-8 text; save it as UTF-8 plain text or JSONL") from None
        docs = [" ".join(d.split()) for d in text.split("\n\n") if d.strip()]
    if not docs:
        raise UserError(f"{key}: {p} holds no text; give paragraphs separated by blank lines or JSONL rows")
    return docs


def shipped_documents() -> list[str]:
    """The general English text that ships with ft (synthetic, CC0; data_cards/general_text.md)."""
    return read_documents(SHIPPED, "the shipped general text")


def split_held_out(docs: list[str], seed: int, fraction: float) -> tuple[list[str], list[str]]:
    """(train, held-out): shuffled by seed, the first ``fraction`` held out; the pretraining stage's own rule."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    n_val = max(1, int(len(docs) * fraction))
    return docs[n_val:], docs[:n_val]


def pretrain_documents(pretrain: Any, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) documents of a recipe's pretraining corpus, as stages/pretrain.py splits them."""
    from finetune.data.corpus import load_corpus

    return split_held_out(load_corpus(pretrain.corpus, seed), seed, pretrain.validation_fraction)


def token_stream(tokenizer: Any, docs: list[str], limit: int | None = None) -> list[int]:
    """Documents tokenized and joined with EOS (as pretraining joins them); stops once ``limit`` tokens are in."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for start in range(0, len(docs), 256):
        for enc in tokenizer(docs[start : start + 256], add_special_tokens=False)["input_ids"]:
            ids.extend(enc)
            if eos is not None:
                ids.append(eos)
        if limit is not None and len(ids) >= limit:
            return ids[:limit]
    return ids


def lm_blocks(ids: list[int], size: int, pad_id: int) -> TokenizedData:
    """Whole blocks of ``size`` tokens, every token scored; a stream shorter than a block is one short block."""
    chunks = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)] or ([ids] if len(ids) > 1 else [])
    return TokenizedData([{"input_ids": c, "labels": list(c)} for c in chunks], pad_id=pad_id)
