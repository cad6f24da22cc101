"""Position encodings and attention-mask construction for the core transformer.

Everything here is computed from `position_ids` on the fly (no buffers), so the tables
never need re-initialising after `from_pretrained` builds the model on the meta device,
and packed rows (positions restarting at 0) get the right encodings for free.
"""

from __future__ import annotations

import torch


def _inverse_frequencies(dim: int, base: float, device: torch.device) -> torch.Tensor:
    """1 / base^(2i/dim) for i in [0, dim/2): shared by the sinusoidal table and RoPE."""
    exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim
    return (1.0 / (base**exponents)).float()


def sinusoidal_encoding(position_ids: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Vaswani et al. table: PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)).

    Returns float32 of shape position_ids.shape + (dim,); sin and cos are interleaved.
    """
    angles = position_ids[..., None].float() * _inverse_frequencies(dim, base, position_ids.device)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for rotary embeddings, shape (batch, seq, head_dim), Llama's half-split layout."""
    freqs = position_ids[..., None].float() * _inverse_frequencies(head_dim, theta, position_ids.device)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k of shape (batch, heads, seq, head_dim) by their positions."""
    cos = cos.unsqueeze(1).to(q.dtype)
    sin = sin.unsqueeze(1).to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def positions_from_mask(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor:
    """Position of each of the last `query_length` tokens: cumsum(mask) - 1, pads clipped to 0.

    With left padding this makes the first real token position 0, which generation relies on.
    """
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return positions[:, -query_length:]


def is_packed(position_ids: torch.Tensor | None) -> bool:
    """True when some row restarts its positions at 0 after the first token (several examples per row)."""
    if position_ids is None or position_ids.shape[-1] < 2:
        return False
    return bool((position_ids[:, 1:] == 0).any())


def build_attention_mask(
    batch: int,
    query_length: int,
    past_length: int,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """Boolean (batch, 1, query, key) mask, True = may attend.

    Combines causality (by index in the key sequence), padding (2D `attention_mask` over past+new
    tokens) and, without a cache, block-diagonal packing from positions restarting at 0. Each query
    may always see itself, so rows that are all padding stay finite instead of turning into NaN.
    """
    key_length = past_length + query_length
    key_index = torch.arange(key_length, device=device)
    query_index = torch.arange(past_length, key_length, device=device)
    allowed = (key_index[None, :] <= query_index[:, None])[None].expand(batch, -1, -1)
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape[-1] != key_length:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected 2D (batch, {key_length}) "
                "covering cached plus new tokens; pass a 2D 1/0 mask"
            )
        allowed = allowed & attention_mask.bool()[:, None, :]
    if past_length == 0 and is_packed(position_ids):
        segments = (position_ids == 0).long().cumsum(-1)
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    allowed = allowed | (key_index[None, :] == query_index[:, None])[None]
    return allowed[:, None]
