"""Inputs every training contender shares, so that only the training code differs between them."""

from __future__ import annotations

from typing import Any

from bench.assets import Assets
from bench.config import BenchConfig

FULL_LR = 1e-4


def examples(assets: Assets) -> tuple[list[dict[str, list[int]]], int]:
    """(tokenized examples with input_ids and labels, pad id)."""
    data = assets.load("examples")
    return data["examples"], data["pad_id"]


def lora_targets(cfg: BenchConfig) -> str | list[str]:
    """The settings' target modules as peft and ft take them: "all-linear" (every projection, never the head) or names."""
    return "all-linear" if cfg.lora_targets == "all-linear" else [t.strip() for t in cfg.lora_targets.split(",")]


def lora_config(cfg: BenchConfig) -> Any:
    """The adapter of every LoRA contender (default r 8 on q/k/v/o), no dropout."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=lora_targets(cfg),
        task_type="CAUSAL_LM",
    )


def hf_model(path: Any) -> Any:
    """A model folder loaded the plain Hugging Face way (peers do not go through our loader)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path))


def base_model(model: Any) -> Any:
    """The causal LM under a peft wrapper: where the step clock hooks in."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def learning_rate(cfg: BenchConfig, full: bool) -> float:
    return FULL_LR if full else cfg.lr
