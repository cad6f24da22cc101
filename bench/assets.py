"""Build the benchmark's inputs once per settings: tokenizer, two tiny models, examples, blocks, prompts.

Everything is local: the tokenizer is trained on scenario text, the models are
randomly initialised (throughput does not depend on what the weights know), the
examples are scenario rows rendered with our template and tokenized with loss
masks. Children load these files, so every contender sees identical tokens.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import BenchConfig

ROOT = Path(__file__).resolve().parent
SCENARIOS = ("content_writing", "medical_records", "tutoring", "financial_analysis", "risk_assessment")
DONE = "ASSETS_DONE"


@dataclass(frozen=True)
class Assets:
    folder: Path

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer"

    @property
    def llama(self) -> Path:
        return self.folder / "llama"

    @property
    def core(self) -> Path:
        return self.folder / "core"

    def load(self, name: str) -> Any:
        return json.loads((self.folder / f"{name}.json").read_text())


def build(cfg: BenchConfig, work: Path | None = None) -> Assets:
    """The assets for ``cfg`` under ``work`` (default bench/work/), built unless already complete."""
    folder = (work or ROOT / "work") / cfg.assets_key()
    if (folder / DONE).is_file():
        return Assets(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _build_into(cfg, Assets(tmp))
    (tmp / DONE).write_text("ok\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return Assets(folder)


def _build_into(cfg: BenchConfig, assets: Assets) -> None:
    import torch

    from finetune import scenarios
    from finetune.model.tokenizer import train_tokenizer

    splits = {
        name: scenarios.get(name).generate(
            seed=cfg.seed,
            sizes={
                "train": cfg.train_rows_per_scenario,
                "validation": 1,
                "test": max(1, cfg.gen_prompts // len(SCENARIOS) + 1),
            },
        )
        for name in SCENARIOS
    }
    texts = [scenarios.get(name).system for name in SCENARIOS]
    texts += [row[k] for s in splits.values() for row in s["train"] for k in ("input", "output")]
    corpus = _corpus(cfg)
    tokenizer = train_tokenizer(texts + corpus, cfg.vocab, assets.tokenizer)
    examples, prompts = _examples(cfg, tokenizer, splits)
    _dump(assets, "examples", {"examples": examples, "pad_id": tokenizer.pad_token_id})
    _dump(assets, "prompts", prompts)
    _dump(assets, "blocks", {"blocks": _blocks(cfg, tokenizer, corpus), "pad_id": tokenizer.pad_token_id})
    torch.manual_seed(cfg.seed)
    _llama(cfg, tokenizer).save_pretrained(assets.llama, safe_serialization=True)
    tokenizer.save_pretrained(assets.llama)
    torch.manual_seed(cfg.seed)
    _core(cfg, tokenizer).save_pretrained(assets.core, safe_serialization=True)
    tokenizer.save_pretrained(assets.core)
    lengths = sorted(len(e["input_ids"]) for e in examples)
    _dump(
        assets,
        "meta",
        {
            "examples": len(examples),
            "tokens": sum(lengths),
            "min_len": lengths[0],
            "median_len": lengths[len(lengths) // 2],
            "max_len": lengths[-1],
            "tokenizer_vocab": len(tokenizer),
        },
    )


def _examples(cfg: BenchConfig, tokenizer: Any, splits: dict[str, Any]) -> tuple[list[dict], list[str]]:
    """Training examples (input_ids, labels) of min_tokens..max_length tokens, and generation prompts."""
    from finetune import scenarios
    from finetune.data.format import Template, encode_example

    rng = random.Random(cfg.seed)
    examples, prompts = [], []
    for name in SCENARIOS:
        template = Template.for_tokenizer(tokenizer, scenarios.get(name).system, None, "instruction")
        for row in splits[name]["train"]:
            e = encode_example(template, tokenizer, row, cfg.max_length, "truncate", train_on_prompt=False)
            if e is not None and len(e["input_ids"]) >= cfg.min_tokens:
                examples.append(e)
        prompts += [template.prompt(row) for row in splits[name]["test"]]
    rng.shuffle(examples)
    rng.shuffle(prompts)
    if len(examples) < cfg.examples:
        raise ValueError(
            f"bench data: {len(examples)} examples of {cfg.min_tokens}-{cfg.max_length} tokens, "
            f"{cfg.examples} wanted; raise train_rows_per_scenario"
        )
    return examples[: cfg.examples], prompts[: cfg.gen_prompts]


def _corpus(cfg: BenchConfig) -> list[str]:
    """The generated pretraining corpus (Python docs + scenario inputs), sized to the pretraining workload."""
    from finetune.data.corpus import generated_corpus

    return generated_corpus(max(40, cfg.pretrain_blocks * cfg.block_size // 40), cfg.seed)


def _blocks(cfg: BenchConfig, tokenizer: Any, docs: list[str]) -> list[list[int]]:
    """Fixed-length pretraining blocks of the corpus, every position scored."""
    want = cfg.pretrain_blocks * cfg.block_size
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids += enc + [tokenizer.eos_token_id]
    while len(ids) < want:  # a small corpus is repeated rather than leaving the workload short
        ids += ids
    return [ids[i : i + cfg.block_size] for i in range(0, want, cfg.block_size)]


def _llama(cfg: BenchConfig, tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        vocab_size=cfg.vocab,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def _core(cfg: BenchConfig, tokenizer: Any) -> Any:
    from finetune.model.core import CoreConfig, CoreForCausalLM

    config = CoreConfig(
        vocab_size=cfg.vocab,
        width=cfg.hidden,
        layers=cfg.layers,
        heads=cfg.heads,
        context_length=max(2048, cfg.block_size),
        ffn_mult=1.5 * cfg.intermediate / cfg.hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CoreForCausalLM(config)


def _dump(assets: Assets, name: str, data: Any) -> None:
    (assets.folder / f"{name}.json").write_text(json.dumps(data))
