"""Our model raises no deprecation warning when peft wraps or loads it (issue 12, point 19: a FutureWarning about
`is_gradient_checkpointing` was printed on every run)."""

from __future__ import annotations

import warnings

from finetune.config.schema import MethodSpec
from finetune.methods.lora import prepare_lora
from finetune.model.core import CoreConfig, CoreForCausalLM


def _tiny() -> CoreForCausalLM:
    return CoreForCausalLM(CoreConfig(vocab_size=300, width=32, layers=2, heads=4, context_length=64))


def test_lora_wrap_and_adapter_load_warn_nothing(tmp_path):
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        wrapped = prepare_lora(_tiny(), MethodSpec(kind="lora", r=2))
        wrapped.save_pretrained(tmp_path / "adapter")
        PeftModel.from_pretrained(_tiny(), str(tmp_path / "adapter"))


def test_the_flag_follows_gradient_checkpointing():
    model = _tiny()
    assert model.is_gradient_checkpointing is False
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing is True
