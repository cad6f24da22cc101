"""Pretraining stage: corpus -> tokenizer -> fixed-length blocks -> our transformer -> next-token training.

With ``pretrain.cache: true`` the result lives in the cache folder under a hash of
everything that shapes it, so a second recipe with the same settings reuses it
(and a crashed pretraining resumes there).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config.load import section_hash, with_retired_keys
from finetune.config.schema import Recipe
from finetune.data.tokenized import TokenizedData
from finetune.paths import cache_root
from finetune.stages.result import StageResult, TrainingCost

DONE = "PRETRAINED"


@dataclass
class PretrainResult(StageResult):
    model_dir: Path
    val_loss: float | None
    unigram_entropy: float
    tokens: int
    steps: int
    wall_time: float
    reused: bool
    parameters: int

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready: what the cache's DONE marker records (less ``reused``)."""
        return {**self.__dict__, "model_dir": str(self.model_dir)}

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k != "model_dir"}

    def report_dict(self) -> dict[str, Any]:
        """The summary: the model folder may be the shared cache, which the report does not point into."""
        return self.summary()

    def training_cost(self) -> TrainingCost | None:
        """A base reused from the cache cost this run nothing; every parameter of a pretraining is trained."""
        if self.reused:
            return None
        return TrainingCost(self.tokens, self.wall_time, self.parameters, self.parameters)


# Settings that change how a pretraining is watched or kept, never the model it produces.
NOT_RESULT_FIELDS = {
    "cache": True,
    "train": {
        "log_every",
        "eval_every",
        "save_every",
        "save_total_limit",
        "threads",
        "log_with",
        "max_bad_steps",
        "precision",
    },
}


def pretrain_dir(recipe: Recipe, run_dir: Path) -> Path:
    if recipe.pretrain.cache:
        return cache_root() / "pretrained" / cache_key(recipe)  # shared by every recipe with the same base settings
    return run_dir / "pretrain"


def cache_key(recipe: Recipe) -> str:
    """Everything that shapes the pretrained base: its settings, the corpus and tokenizer bytes, the code.

    Logging, checkpointing and thread settings are left out, so changing them reuses
    the base. The precision that counts is the top-level one (the accelerator's);
    the pretrain section's own is ignored at run time and so here.
    """
    from finetune.train.accel import resolve_precision

    return section_hash(
        result_settings(recipe.pretrain),
        recipe.model.core,
        recipe.seed,
        _code_version(),
        resolve_precision(recipe.train.precision),
        content_fingerprint(recipe.pretrain),
    )


def result_settings(spec: Any) -> dict[str, Any]:
    """The pretrain section without the fields that cannot change the model (NOT_RESULT_FIELDS)."""
    data = with_retired_keys(spec.model_dump(mode="json"))  # fingerprints of older pretrainings still match
    for key, drop in NOT_RESULT_FIELDS.items():
        if drop is True:
            data.pop(key, None)
        else:
            data[key] = {k: v for k, v in data[key].items() if k not in drop}
    return data


def content_fingerprint(spec: Any) -> dict[str, str]:
    """sha256 of a file corpus and of a reused tokenizer folder (generated and hub corpora are known by settings)."""
    from finetune.fingerprint import model_digests, source_digests

    content = source_digests(spec.corpus.path, "corpus file") if spec.corpus.kind == "file" else {}
    content.update(model_digests(spec.tokenizer.path, "tokenizer file"))
    return content


def pretrain(recipe: Recipe, run_dir: Path, accelerator: Any, resume: bool) -> PretrainResult:
    out = pretrain_dir(recipe, run_dir)
    if (out / DONE).is_file():
        saved = json.loads((out / DONE).read_text())
        accelerator.print(f"pretrain: reusing {out / 'model'} (same settings)")
        return PretrainResult(**{**saved, "model_dir": Path(saved["model_dir"]), "reused": True})
    from finetune.data.corpus import label_words, load_corpus
    from finetune.methods import count_trainable
    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import load_tokenizer, train_tokenizer
    from finetune.train.loop import train

    spec = recipe.pretrain
    if spec.train.threads:  # the accelerator is built from the top-level train section
        import torch

        torch.set_num_threads(spec.train.threads)
    docs = load_corpus(spec.corpus, recipe.seed)
    if len(docs) < 2:
        from finetune.errors import UserError

        raise UserError(
            f"the pretraining corpus has {len(docs)} document(s); it needs at least 2 "
            "(paragraphs separated by blank lines, or JSONL rows) to hold out a validation split"
        )
    random.Random(recipe.seed).shuffle(docs)
    n_val = max(1, int(len(docs) * spec.validation_fraction))
    val_docs, train_docs = docs[:n_val], docs[n_val:]
    if spec.tokenizer.path:
        tokenizer = load_tokenizer(spec.tokenizer.path)
    elif accelerator.is_main_process:
        tokenizer = train_tokenizer(
            train_docs + label_words(spec.corpus.scenarios),
            spec.tokenizer.vocab_size,
            out / "tokenizer",
            split_digits=spec.tokenizer.split_digits,
        )
    accelerator.wait_for_everyone()
    if not spec.tokenizer.path and not accelerator.is_main_process:
        tokenizer = load_tokenizer(out / "tokenizer")
    train_ids = _encode(tokenizer, train_docs)
    val_ids = _encode(tokenizer, val_docs)
    entropy = unigram_entropy(train_ids)
    core = recipe.model.core
    config = CoreConfig(
        vocab_size=len(tokenizer),
        width=core.width,
        layers=core.layers,
        heads=core.heads,
        context_length=recipe.pretrained_context,
        positions=core.positions,
        ffn=core.ffn,
        ffn_mult=core.ffn_mult,
        norm=core.norm,
        tie_embeddings=core.tie_embeddings,
        dropout=core.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    import torch

    torch.manual_seed(recipe.seed)
    model = CoreForCausalLM(config)
    _, n_params = count_trainable(model)
    accelerator.print(f"pretrain: {n_params:,} parameters, {len(train_ids):,} training tokens, block {spec.block_size}")
    result = train(
        model,
        blocks(train_ids, spec.block_size, tokenizer.pad_token_id),
        blocks(val_ids, spec.block_size, tokenizer.pad_token_id),
        spec.train,
        out,
        accelerator,
        seed=recipe.seed,
        fingerprint={
            "stage": "pretrain",
            "pretrain": section_hash(result_settings(spec)),
            "model": section_hash(core),
            "processes": accelerator.num_processes,
            "content": content_fingerprint(spec),
        },
        resume=resume or spec.cache,
        group_by_length=False,
        desc="pretrain",
    )
    res = PretrainResult(
        out / "model", result.val_loss, entropy, result.tokens, result.steps, result.wall_time, False, n_params
    )
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out / "model", safe_serialization=True)
        tokenizer.save_pretrained(out / "model")
        (out / DONE).write_text(json.dumps({k: v for k, v in res.to_dict().items() if k != "reused"}, indent=1))
    accelerator.wait_for_everyone()
    return res


def _encode(tokenizer: Any, docs: list[str]) -> list[int]:
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return ids


def blocks(ids: list[int], size: int, pad_id: int) -> TokenizedData:
    """Fixed-length blocks of the token stream; every position is scored (labels = inputs, shifted in the loss)."""
    chunks = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
    return TokenizedData([{"input_ids": c, "labels": list(c)} for c in chunks], pad_id=pad_id)


def unigram_entropy(ids: list[int]) -> float:
    """Entropy of the token frequency distribution, in nats per token (the loss of a unigram model)."""
    counts = Counter(ids)
    n = len(ids)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def _code_version() -> str:
    """What else shapes a pretrained base: the code of the model, tokenizer, corpus, scenarios and loop."""
    from finetune.codehash import source_hash

    return source_hash(
        "finetune.model", "finetune.data.corpus", "finetune.scenarios", "finetune.train", "finetune.stages.pretrain"
    )
