"""ft itself: methods.prepare + train() with our batching (length-grouped, or packed), our generate()."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.assets import Assets
from bench.config import BenchConfig
from bench.contenders import common
from bench.measure import StepClock, matmul_params, rss_mb


def lora(cfg: BenchConfig, assets: Assets, packed: bool, checkpointing: bool = False) -> dict[str, Any]:
    """``checkpointing``: what ``train.gradient_checkpointing: true`` does in a recipe."""
    from finetune import methods
    from finetune.config.schema import MethodSpec
    from finetune.model.hf import load_model

    model = methods.prepare(
        load_model(str(assets.llama)),
        MethodSpec(kind="lora", r=cfg.lora_r, alpha=cfg.lora_alpha, targets=common.lora_targets(cfg)),
    )
    if checkpointing:
        methods.enable_checkpointing(model)
    return _train(cfg, assets, model, packed=packed, full=False)


def full(cfg: BenchConfig, assets: Assets) -> dict[str, Any]:
    from finetune import methods
    from finetune.config.schema import MethodSpec
    from finetune.model.hf import load_model

    model = methods.prepare(load_model(str(assets.llama)), MethodSpec(kind="full"))
    return _train(cfg, assets, model, packed=False, full=True)


def pretrain(cfg: BenchConfig, assets: Assets) -> dict[str, Any]:
    """Our core decoder on fixed-length blocks, cut by the pretraining stage's own blocks()."""
    from finetune.model.hf import load_model
    from finetune.stages.pretrain import blocks

    data = assets.load("blocks")
    stream = [t for block in data["blocks"] for t in block]
    model = load_model(str(assets.core))
    return _run_train(
        cfg,
        model,
        blocks(stream, cfg.block_size, data["pad_id"]),
        group_by_length=False,
        forward_kwargs=None,
        lr=common.learning_rate(cfg, full=True),
    )


def generate_batched(cfg: BenchConfig, assets: Assets) -> dict[str, Any]:
    from finetune.eval.generate import generate
    from finetune.model.hf import load_model
    from finetune.model.tokenizer import load_tokenizer

    model, tokenizer = load_model(str(assets.llama)), load_tokenizer(assets.tokenizer)
    prompts = assets.load("prompts")
    generate(model, tokenizer, prompts[:2], max_new_tokens=2, batch_size=cfg.gen_batch_size)  # warm-up
    setup = rss_mb()
    start = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, max_new_tokens=cfg.gen_new_tokens, batch_size=cfg.gen_batch_size)
    return generation_result(tokenizer, outputs, time.perf_counter() - start, setup, model)


def generation_result(
    tokenizer: Any, outputs: list[str], seconds: float, setup_rss: float, model: Any
) -> dict[str, Any]:
    """New tokens (re-encoded from the text, the same way for every generator) per second, and a digest of the text."""
    import hashlib

    tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    digest = hashlib.sha256("\x00".join(outputs).encode()).hexdigest()[:16]
    return {
        "tokens": tokens,
        "seconds": seconds,
        "steps": len(outputs),
        "setup_rss_mb": setup_rss,
        "matmul_params": matmul_params(model),
        "extra": {"outputs_sha": digest},
    }


def _train(cfg: BenchConfig, assets: Assets, model: Any, packed: bool, full: bool) -> dict[str, Any]:
    """The fine-tuning stage's path: examples, packed to max_length when asked (then no length grouping)."""
    from finetune.data.pack import pack, packed_forward_kwargs
    from finetune.data.tokenized import TokenizedData

    rows, pad_id = common.examples(assets)
    data = TokenizedData(examples=rows, pad_id=pad_id)
    if packed:
        data = pack(data, cfg.max_length)
    return _run_train(
        cfg,
        model,
        data,
        group_by_length=not packed,
        forward_kwargs=packed_forward_kwargs(model) if packed else None,
        lr=common.learning_rate(cfg, full),
    )


def _run_train(
    cfg: BenchConfig, model: Any, data: Any, group_by_length: bool, forward_kwargs: dict | None, lr: float
) -> dict[str, Any]:
    """One epoch of train() over ``data``, timed by the step clock; the final checkpoint falls outside the window."""
    from finetune.config.schema import DistributedSpec, TrainSpec
    from finetune.train.accel import make_accelerator
    from finetune.train.loop import train

    spec = TrainSpec(epochs=1, batch_size=cfg.batch_size, learning_rate=lr, precision="fp32", threads=cfg.threads)
    accelerator = make_accelerator(spec, DistributedSpec())
    model.to(accelerator.device)
    clock = StepClock(common.base_model(model), data.pad_id)
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as run_dir:
        result = train(
            model,
            data,
            None,
            spec,
            Path(run_dir),
            accelerator,
            seed=cfg.seed,
            fingerprint={},
            resume=False,
            group_by_length=group_by_length,
            forward_kwargs=forward_kwargs,
            desc="bench",
        )
    return clock.result(
        model,
        cfg.warmup_steps,
        skipped_steps=result.skipped_steps,
        padding_fraction=round(result.padding_fraction, 4),
        train_loss=result.train_loss,
    )
