"""Inputs every training contender shares, so that only the training code differs between them."""

from __future__ import annotations

from typing import Any

from bench.assets import Assets
from bench.config import BenchConfig

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
LORA_R, LORA_ALPHA = 8, 16
FULL_LR = 1e-4


def examples(assets: Assets) -> tuple[list[dict[str, list[int]]], int]:
    """(tokenized examples with input_ids and labels, pad id)."""
    data = assets.load("examples")
    return data["examples"], data["pad_id"]


def lora_config() -> Any:
    """The adapter of every LoRA contender: r 8 on q/k/v/o, no dropout."""
    from peft import LoraConfig

    return LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM"
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
