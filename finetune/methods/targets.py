"""Which modules an adapter wraps by default, by `config.model_type`.

Attention projections are the classic LoRA choice: a small adapter that fits most domain
shifts. Unknown architectures fall back to peft's "all-linear" (every Linear but the head).
"""

from __future__ import annotations

_LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj")

DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "ft_core": _LLAMA_STYLE,
    "llama": _LLAMA_STYLE,
    "mistral": _LLAMA_STYLE,
    "mixtral": _LLAMA_STYLE,
    "qwen2": _LLAMA_STYLE,
    "qwen3": _LLAMA_STYLE,
    "gemma": _LLAMA_STYLE,
    "gemma2": _LLAMA_STYLE,
    "olmo": _LLAMA_STYLE,
    "olmo2": _LLAMA_STYLE,
    "starcoder2": _LLAMA_STYLE,
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    # Phi-3 fuses q/k/v into one projection.
    "phi3": ("qkv_proj", "o_proj"),
    "gpt2": ("c_attn", "c_proj"),
    "gpt_bigcode": ("c_attn", "c_proj"),
    "gpt_neox": ("query_key_value", "dense"),
    "falcon": ("query_key_value", "dense"),
    "bloom": ("query_key_value", "dense"),
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "gptj": ("q_proj", "k_proj", "v_proj", "out_proj"),
}

FALLBACK = "all-linear"


def default_targets(model_type: str | None) -> list[str] | str:
    """The table's module names for this architecture, or "all-linear" when it is not listed."""
    names = DEFAULT_TARGETS.get(model_type or "")
    return list(names) if names else FALLBACK
