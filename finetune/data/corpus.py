"""Pretraining text that needs no download.

The generated corpus mixes English prose that ships with Python itself (the
documentation topics in ``pydoc_data``) with the *inputs* of the scenario
generators, so a pretrained base knows the domains' vocabulary but has never
seen a single answer: fine-tuning, not pretraining, must teach the tasks.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from finetune.config.schema import CorpusSpec
from finetune.data.jsonl_text import read_jsonl_texts
from finetune.errors import UserError


def load_corpus(spec: CorpusSpec, seed: int) -> list[str]:
    """The corpus as a list of documents, per the recipe's corpus section."""
    if spec.kind == "generated":
        return generated_corpus(spec.documents, seed, spec.scenarios)
    if spec.kind == "file":
        return _read_text_file(Path(spec.path), spec.text_field)
    from datasets import load_dataset

    ds = load_dataset(spec.path, spec.subset, split=spec.split, revision=spec.revision)
    if spec.text_field not in ds.column_names:
        raise UserError(f"dataset {spec.path} has no column {spec.text_field!r}; columns: {ds.column_names}")
    return [t for t in ds[spec.text_field] if isinstance(t, str) and t.strip()]


def generated_corpus(documents: int, seed: int, names: list[str] | None = None) -> list[str]:
    """About half Python documentation paragraphs, half inputs of ``names`` (default: every scenario), shuffled by seed."""
    from finetune import scenarios

    names = list(names or scenarios.NAMES)
    rng = random.Random(seed)
    prose = _python_doc_paragraphs()
    rng.shuffle(prose)
    docs = prose[: documents // 2]
    per_scenario = max(1, (documents - len(docs)) // len(names))
    for name in names:
        scenario = scenarios.get(name)
        # a seed far from the fine-tuning seeds; train split only, so held-out test entities never appear
        rows = scenario.generate(seed=10_000 + seed, sizes={"train": per_scenario, "validation": 1, "test": 1})["train"]
        docs.extend(row["input"] for row in rows)
    rng.shuffle(docs)
    return docs


def label_words(names: list[str] | None = None, repeat: int = 50) -> list[str]:
    """The scenarios' label words as standalone lines, for tokenizer training only.

    A label starts a response right after a newline; without these lines BPE learns
    the words only mid-sentence (" positive") and splits the bare label into pieces
    whose first tokens collide (ne|gat|ive, ne|ut|ral), which defeats the
    label-restricted loss. They never enter the language-model corpus. ``names``: the
    scenarios whose labels count (default: every scenario).
    """
    from finetune import scenarios

    words: set[str] = set()
    for name in names or scenarios.NAMES:
        rows = scenarios.get(name).generate(seed=0, sizes={"train": 50, "validation": 1, "test": 1})["train"]
        for row in rows:
            words.update(row.get("choices") or ())
    return sorted(words) * repeat


def _python_doc_paragraphs() -> list[str]:
    from pydoc_data.topics import topics

    paragraphs = []
    for text in topics.values():
        for para in re.split(r"\n\s*\n", text):
            para = " ".join(para.split())
            if len(para) > 80 and not para.startswith((">>>", "...")):
                paragraphs.append(para)
    return paragraphs


def _read_text_file(path: Path, field: str) -> list[str]:
    if not path.is_file():
        raise UserError(f"corpus file {path} does not exist")
    if path.suffix == ".jsonl":
        return read_jsonl_texts(path, field)
    text = path.read_text(encoding="utf-8")
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]
