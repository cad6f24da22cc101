"""Tokenize rows once per content: a cache keyed by everything that changes the tokens.

The key hashes the rows themselves, the template, the tokenizer's vocabulary and
the encoding options, so editing a data file, a system text or a tokenizer
re-tokenizes, and nothing else does. Entries are written to a temporary folder
and renamed into place, so an interrupted run never leaves a half entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finetune.codehash import source_hash
from finetune.config.schema import DataSpec
from finetune.data.format import ChoiceRegistry, Template, encode_examples
from finetune.data.tokenized import TokenizedData

log = logging.getLogger(__name__)

META = "ft_tokenized.json"
COUNTS = ("truncated", "dropped", "label_loss_fallbacks")


def tokenize_rows(
    rows: list[dict[str, Any]],
    template: Template,
    tokenizer: Any,
    spec: DataSpec,
    cache_dir: Path | None,
) -> tuple[TokenizedData, dict[str, Any]]:
    """Encoded examples and stats (examples, truncated, dropped, label_loss_fallbacks, tokens, cached)."""
    key = fingerprint(rows, template, tokenizer, spec)
    pad_id = _pad_id(tokenizer)
    if cache_dir is not None:
        hit = _load(Path(cache_dir) / key, pad_id)
        if hit is not None:
            log.info("tokenized data: reused cache %s", key)
            return hit
    registry = ChoiceRegistry()
    counts: dict[str, int] = {}
    encoded = encode_examples(
        template,
        tokenizer,
        rows,
        spec.max_length,
        spec.truncation,
        spec.train_on_prompt,
        choices=registry if spec.label_loss else None,
        stats=counts,
    )
    examples = [e for e in encoded if e is not None]
    if any("choice_index" in e for e in examples):  # collate needs one set of keys per batch
        for e in examples:
            e.setdefault("choice_index", [-1] * len(e["input_ids"]))
    stats: dict[str, Any] = {
        "examples": len(examples),
        **{name: counts.get(name, 0) for name in COUNTS},
        "longest": counts.get("longest", 0),  # before truncation
        "tokens": sum(len(e["input_ids"]) for e in examples),
        "cached": False,
    }
    data = TokenizedData(examples=examples, choice_sets=registry.sets, pad_id=pad_id)
    if cache_dir is not None and examples:
        _save(Path(cache_dir) / key, data, stats)
    return data, stats


def truncation_warning(name: str, stats: dict[str, Any], max_length: int) -> str | None:
    """A line for the user when truncation is not the exception but the rule (more than 1 in 10)."""
    seen = stats["examples"] + stats["dropped"]
    cut = stats["truncated"] + stats["dropped"]
    if not seen or cut * 10 <= seen:
        return None
    return (
        f"warning: data {name}: {cut} of {seen} examples are longer than data.max_length {max_length} "
        f"(longest {stats['longest']} tokens); the model will not see them whole"
    )


def fingerprint(rows: list[dict[str, Any]], template: Template, tokenizer: Any, spec: DataSpec) -> str:
    """sha256 of everything the tokens depend on."""
    h = hashlib.sha256()
    settings = {
        "code": source_hash("finetune.data.format", "finetune.data.tokenize"),
        "template": template.to_dict(),
        "vocabulary": vocabulary_hash(tokenizer),
        "max_length": spec.max_length,
        "truncation": spec.truncation,
        "train_on_prompt": spec.train_on_prompt,
        "label_loss": spec.label_loss,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


def vocabulary_hash(tokenizer: Any) -> str:
    """The full tokenizer definition when it is a fast tokenizer (merges, normalizer...), else its vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _save(path: Path, data: TokenizedData, stats: dict[str, Any]) -> None:
    from datasets import Dataset

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet():
        Dataset.from_list(data.examples).save_to_disk(str(tmp))
    (tmp / META).write_text(json.dumps({"choice_sets": data.choice_sets, "stats": stats}))
    try:
        os.replace(tmp, path)
    except OSError:  # another process stored the same key first; its entry is identical
        shutil.rmtree(tmp, ignore_errors=True)


def _load(path: Path, pad_id: int) -> tuple[TokenizedData, dict[str, Any]] | None:
    meta_file = path / META
    if not meta_file.is_file():
        return None
    from datasets import load_from_disk

    meta = json.loads(meta_file.read_text())
    with _quiet():
        examples = load_from_disk(str(path)).to_list()
    stats = {**meta["stats"], "cached": True}
    return TokenizedData(examples=examples, choice_sets=meta["choice_sets"], pad_id=pad_id), stats


@contextmanager
def _quiet():
    """No datasets progress bars for a cache read or write: the run prints one line about the cache instead."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()
