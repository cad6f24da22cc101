"""Our core transformer re-expressed as a Hugging Face Llama, so every runtime that reads Llama reads it.

With rope positions, SwiGLU and RMSNorm the core *is* a Llama block for block: pre-norm, bias-free
projections, the same half-split rotary layout (no weight permutation between the two), the same
eps placement and 1/sqrt(head_dim) attention scale. Only the names differ. Every other setting has
no counterpart in the Llama layout (llama.cpp, vLLM and SGLang would compute something else), so it
is refused here with the setting named, instead of exporting a file that loads and answers wrong.
"""

from __future__ import annotations

import re
from typing import Any

from finetune.errors import UserError

# setting -> (the value Llama needs, why another value cannot be exported)
EXPORTABLE = {
    "positions": ("rope", "Llama has rotary positions only (no sinusoidal or learned position table)"),
    "ffn": ("swiglu", "Llama's feed-forward is SwiGLU (gate, up, down); relu/gelu MLPs have no gate"),
    "norm": ("rmsnorm", "Llama normalises with RMSNorm (no bias, no centring); LayerNorm has no slot"),
}

# core parameter name -> Llama parameter name (layer index kept)
_RENAMES = (
    (r"^model\.layers\.(\d+)\.attn_norm\.", r"model.layers.\1.input_layernorm."),
    (r"^model\.layers\.(\d+)\.attn\.", r"model.layers.\1.self_attn."),
    (r"^model\.layers\.(\d+)\.mlp_norm\.", r"model.layers.\1.post_attention_layernorm."),
)


def check_exportable(config: Any, where: str) -> None:
    """Refuse a core whose settings the Llama layout cannot carry, naming the setting and the reason."""
    for field, (needed, why) in EXPORTABLE.items():
        value = getattr(config, field)
        if value != needed:
            raise UserError(
                f"{where}: core setting model.core.{field}={value!r} cannot be exported ({why}); "
                f"only cores with positions=rope, ffn=swiglu, norm=rmsnorm map onto Llama"
            )


def llama_config(config: Any) -> Any:
    """The LlamaConfig that computes what ``config`` (a CoreConfig) computes."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.width,
        intermediate_size=config.ffn_hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.context_length,
        rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_embeddings,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


def llama_name(core_name: str) -> str:
    """The Llama parameter name of one core parameter (embeddings, final norm and head keep theirs)."""
    for pattern, replacement in _RENAMES:
        renamed, hits = re.subn(pattern, replacement, core_name)
        if hits:
            return renamed
    return core_name


def core_to_llama(model: Any, where: str) -> Any:
    """A LlamaForCausalLM holding ``model``'s weights (a CoreForCausalLM), checked to load every tensor."""
    from transformers import LlamaForCausalLM

    check_exportable(model.config, where)
    config = llama_config(model.config)
    llama = LlamaForCausalLM(config)  # built for real: the rotary buffers must exist; the weights are replaced below
    state = {llama_name(name): tensor for name, tensor in model.state_dict().items()}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = llama.load_state_dict(state, strict=False)
    missing = [name for name in missing if not (config.tie_word_embeddings and name == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"core -> llama mapping left out {missing} and could not place {unexpected}")
    if config.tie_word_embeddings:
        llama.tie_weights()
    return llama.to(dtype=next(model.parameters()).dtype).eval()
