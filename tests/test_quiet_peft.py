"""Wrapping or loading a LoRA adapter on a Hugging Face model prints no FutureWarning (issue 12, point 19): peft
reads transformers 5's deprecated ``is_gradient_checkpointing`` alias every time."""

from __future__ import annotations

import warnings

from helpers_tiny import tiny_llama_model
from peft import PeftModel

from finetune.config.schema import MethodSpec
from finetune.methods.lora import prepare_lora, quiet_checkpointing_alias


def _alias_warnings(caught: list) -> list:
    return [w for w in caught if "is_gradient_checkpointing" in str(w.message)]


def test_lora_wrap_and_adapter_load_print_no_checkpointing_future_warning(tmp_path):
    base = tiny_llama_model(64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = prepare_lora(base, MethodSpec(kind="lora", r=2, alpha=4, targets="all-linear"))
        model.save_pretrained(tmp_path / "adapter")
        with quiet_checkpointing_alias():  # how methods.load_trained loads an adapter
            PeftModel.from_pretrained(tiny_llama_model(64), str(tmp_path / "adapter"))
    assert _alias_warnings(caught) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PeftModel.from_pretrained(tiny_llama_model(64), str(tmp_path / "adapter"))
    assert len(_alias_warnings(caught)) >= 1  # unwrapped, peft's read still warns: the filter is what quiets it
