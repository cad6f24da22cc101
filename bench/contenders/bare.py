"""A bare PyTorch loop, as one would write it by hand: pad, forward, cross-entropy, backward, clip, step.

It uses the same batch plan as ours (the index lists of ``micro_batches``, or our
packed blocks), so the comparison measures only the loop around the model.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from bench.assets import Assets
from bench.config import BenchConfig
from bench.contenders import common
from bench.measure import StepClock


def lora(cfg: BenchConfig, assets: Assets, packed: bool, hf_loss: bool = False) -> dict[str, Any]:
    """``hf_loss``: the loss the usual way, ``model(**batch, labels=labels).loss`` (full logits, the model's own
    shift and cross-entropy), instead of cross-entropy over logits taken out of the model."""
    from peft import get_peft_model

    from finetune.data.pack import pack
    from finetune.data.tokenized import TokenizedData
    from finetune.train.batching import micro_batches

    rows, pad_id = common.examples(assets)
    if packed:
        rows = pack(TokenizedData(examples=rows, pad_id=pad_id), cfg.max_length).examples
    plan = micro_batches([len(r["input_ids"]) for r in rows], cfg.batch_size, cfg.seed, 0, group_by_length=not packed)
    model = get_peft_model(common.hf_model(assets.llama), common.lora_config(cfg))
    return _loop(cfg, model, [[rows[i] for i in idx] for idx in plan], pad_id, cfg.lr, hf_loss)


def pretrain(cfg: BenchConfig, assets: Assets) -> dict[str, Any]:
    """Our core decoder (the model, not our loop) on the pretraining blocks in a seeded order."""
    import finetune.model.core  # noqa: F401  (registers model_type "ft_core" with the Auto classes)

    data = assets.load("blocks")
    order = list(range(len(data["blocks"])))
    random.Random(cfg.seed).shuffle(order)
    rows = [{"input_ids": data["blocks"][i], "labels": data["blocks"][i]} for i in order]
    batches = [rows[i : i + cfg.batch_size] for i in range(0, len(rows) - cfg.batch_size + 1, cfg.batch_size)]
    model = common.hf_model(assets.core)
    return _loop(cfg, model, batches, data["pad_id"], common.learning_rate(cfg, full=True))


def _loop(
    cfg: BenchConfig, model: torch.nn.Module, batches: list[list[dict]], pad_id: int, lr: float, hf_loss: bool = False
) -> dict[str, Any]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    clock = StepClock(common.base_model(model), pad_id)
    for rows in batches:
        inputs, labels = _collate(rows, pad_id)
        if hf_loss:
            loss = model(**inputs, labels=labels).loss
        else:
            logits = model(**inputs).logits
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return clock.result(model, cfg.warmup_steps)


def _collate(rows: list[dict], pad_id: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Right padding; packed rows carry position_ids and go without a mask (and without a KV cache)."""

    def padded(key: str, value: int) -> torch.Tensor:
        return pad_sequence([torch.tensor(r[key]) for r in rows], batch_first=True, padding_value=value)

    inputs = {"input_ids": padded("input_ids", pad_id)}
    if "position_ids" in rows[0]:
        inputs.update(position_ids=padded("position_ids", 0), use_cache=False)
    else:
        inputs["attention_mask"] = (padded("input_ids", -1) != -1).long()
    return inputs, padded("labels", -100)
