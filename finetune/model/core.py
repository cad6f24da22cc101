"""The core causal LM: a pre-norm "Attention is all you need" decoder as a transformers model.

Being a real `PreTrainedModel` is what buys save/from_pretrained (safetensors), `generate()` with
a `DynamicCache`, gradient checkpointing and peft LoRA/DoRA without any glue code elsewhere.
Position encodings and mask building live in `positions.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
)
from transformers.modeling_utils import slice_logits_to_keep

from finetune.model.loss import causal_lm_loss as summed_loss
from finetune.model.positions import (
    apply_rope,
    build_attention_mask,
    is_packed,
    positions_from_mask,
    rope_cos_sin,
    sinusoidal_encoding,
)

POSITION_TYPES = ("sinusoidal", "rope", "learned")
FFN_TYPES = ("relu", "gelu", "swiglu")
NORM_TYPES = ("layernorm", "rmsnorm")


class CoreConfig(PretrainedConfig):
    """Hyper-parameters of the core decoder; standard HF names are aliases (see attribute_map)."""

    model_type = "ft_core"
    attribute_map = {
        "hidden_size": "width",
        "num_hidden_layers": "layers",
        "num_attention_heads": "heads",
        "max_position_embeddings": "context_length",
        "tie_word_embeddings": "tie_embeddings",
    }

    vocab_size: int = 8000
    width: int = 64
    layers: int = 2
    heads: int = 4
    context_length: int = 256
    positions: str = "rope"
    ffn: str = "swiglu"
    ffn_mult: float = 4.0
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    dropout: float = 0.0
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)  # applies aliases such as hidden_size= first
        for field, allowed in (("positions", POSITION_TYPES), ("ffn", FFN_TYPES), ("norm", NORM_TYPES)):
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"CoreConfig.{field}={getattr(self, field)!r} is not supported; use one of {', '.join(allowed)}"
                )
        for field in ("vocab_size", "width", "layers", "heads", "context_length"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise ValueError(f"CoreConfig.{field}={getattr(self, field)!r} must be a positive integer")
        if self.width % self.heads:
            raise ValueError(
                f"CoreConfig.width={self.width} is not divisible by heads={self.heads}; pick width as a multiple of heads"
            )
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(
                f"CoreConfig: rope needs an even head size, got width/heads={self.head_dim}; change width or heads"
            )
        if self.positions == "sinusoidal" and self.width % 2:
            raise ValueError(f"CoreConfig: sinusoidal positions need an even width, got {self.width}; change width")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"CoreConfig.dropout={self.dropout} must be in [0, 1)")
        if self.ffn_mult <= 0:
            raise ValueError(f"CoreConfig.ffn_mult={self.ffn_mult} must be positive")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def ffn_hidden(self) -> int:
        """int(mult*width); SwiGLU keeps the parameter count with 2/3 of it, rounded up to 8 like Llama."""
        if self.ffn == "swiglu":
            return 8 * math.ceil(int(2 / 3 * self.ffn_mult * self.width) / 8)
        return int(self.ffn_mult * self.width)


class RMSNorm(nn.Module):
    """Root-mean-square norm (no centring, no bias), computed in float32 for stability."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def make_norm(config: CoreConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.width, config.norm_eps)
    return nn.LayerNorm(config.width, eps=config.norm_eps)


class CoreAttention(nn.Module):
    """Multi-head causal self-attention through torch's scaled_dot_product_attention."""

    def __init__(self, config: CoreConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.width, config.width, bias=False)
        self.k_proj = nn.Linear(config.width, config.width, bias=False)
        self.v_proj = nn.Linear(config.width, config.width, bias=False)
        self.o_proj = nn.Linear(config.width, config.width, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        """`attention_mask` is a boolean (b, 1, q, k) mask; None means plain causal (the fast path)."""
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.heads, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, k, *rope)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=attention_mask is None,
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class CoreMLP(nn.Module):
    """Position-wise feed-forward: relu/gelu (paper) or SwiGLU (modern)."""

    def __init__(self, config: CoreConfig):
        super().__init__()
        hidden = config.ffn_hidden
        self.kind = config.ffn
        if self.kind == "swiglu":
            self.gate_proj = nn.Linear(config.width, hidden, bias=False)
        self.up_proj = nn.Linear(config.width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, config.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        act = F.relu if self.kind == "relu" else F.gelu
        return self.down_proj(act(self.up_proj(x)))


class CoreBlock(GradientCheckpointingLayer):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: CoreConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = CoreAttention(config, layer_idx)
        self.mlp_norm = make_norm(config)
        self.mlp = CoreMLP(config)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        # use_cache is only read by GradientCheckpointingLayer, which drops the cache while checkpointing.
        attn_out = self.attn(self.attn_norm(hidden_states), attention_mask, rope, cache)
        hidden_states = hidden_states + self.resid_dropout(attn_out)
        return hidden_states + self.resid_dropout(self.mlp(self.mlp_norm(hidden_states)))


class CorePreTrainedModel(PreTrainedModel):
    config_class = CoreConfig
    config: CoreConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CoreBlock"]
    _supports_sdpa = True

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether any block recomputes activations.

        peft reads this name whenever it wraps or loads an adapter; transformers 5 made it a
        deprecated alias that warns on every read (a FutureWarning on every LoRA run and eval).
        Our model answers under the name peft asks for, computed the way transformers does.
        """
        return any(getattr(module, "gradient_checkpointing", False) is True for module in self.modules())

    def _init_weights(self, module: nn.Module) -> None:
        """normal(0, initializer_range) for Linear/Embedding, zeros for biases, ones for norm weights."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (RMSNorm, nn.LayerNorm)):
            init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)


class CoreModel(CorePreTrainedModel):
    """Embeddings + blocks + final norm; returns hidden states (the LM head lives in CoreForCausalLM)."""

    def __init__(self, config: CoreConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.width)
        if config.positions == "learned":
            self.embed_positions = nn.Embedding(config.context_length, config.width)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(CoreBlock(config, i) for i in range(config.layers))
        self.norm = make_norm(config)
        self.gradient_checkpointing = False
        self.post_init()

    def _add_positions(self, embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        if self.config.positions == "sinusoidal":
            return embeds + sinusoidal_encoding(position_ids, self.config.width).to(embeds.dtype)
        if self.config.positions == "learned":
            if int(position_ids.max()) >= self.config.context_length:
                raise ValueError(
                    f"position id {int(position_ids.max())} exceeds CoreConfig.context_length="
                    f"{self.config.context_length} of the learned position table; shorten the input"
                )
            return embeds + self.embed_positions(position_ids)
        return embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("CoreModel.forward: pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache is None:  # a training step has no use for a cache; building one only costs memory
            use_cache = self.config.use_cache and not (self.training and torch.is_grad_enabled())
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        batch, length = inputs_embeds.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        device = inputs_embeds.device
        if position_ids is None:
            if attention_mask is not None:
                position_ids = positions_from_mask(attention_mask, length)
            else:
                position_ids = torch.arange(past, past + length, device=device)[None].expand(batch, -1)
        padded = attention_mask is not None and not bool(attention_mask.all())
        mask = None
        if past > 0 or padded or is_packed(position_ids):
            mask = build_attention_mask(batch, length, past, attention_mask, position_ids, device)

        hidden = self.embed_dropout(self._add_positions(inputs_embeds, position_ids))
        rope = None
        if self.config.positions == "rope":
            rope = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta)
        all_hidden: list[torch.Tensor] = []
        for block in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden = block(hidden, attention_mask=mask, rope=rope, cache=cache, use_cache=use_cache)
        hidden = self.norm(hidden)
        if output_hidden_states:
            all_hidden.append(hidden)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            cache=cache if use_cache else None,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
        )


class CoreForCausalLM(CorePreTrainedModel, GenerationMixin):
    """CoreModel plus a (by default tied) LM head and the shifted next-token loss."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: CoreConfig):
        super().__init__(config)
        self.model = CoreModel(config)
        self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        cache_position: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: Cache | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        """Llama-style forward. `cache` is transformers 5's name for `past_key_values` (both accepted);
        `cache_position` is accepted for older callers and ignored (positions come from the cache length).
        `num_items_in_batch` in kwargs (from Trainer) switches the loss to sum / num_items."""
        if cache is not None and past_key_values is not None:
            raise ValueError("CoreForCausalLM.forward: pass the KV cache as `cache` or `past_key_values`, not both")
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        loss = None
        if labels is not None:
            loss = causal_lm_loss(logits, labels, kwargs.get("num_items_in_batch"))
        result = CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )
        return result.to_tuple() if return_dict is False else result


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """The Hugging Face contract on top of our summed loss: mean over labelled positions, or sum / num_items_in_batch."""
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}; "
            "labels must align with input_ids and logits_to_keep must be 0 when training"
        )
    total, count = summed_loss(logits, labels.to(logits.device))
    if num_items_in_batch is None:
        return total / count
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


AutoConfig.register(CoreConfig.model_type, CoreConfig, exist_ok=True)
AutoModelForCausalLM.register(CoreConfig, CoreForCausalLM, exist_ok=True)
