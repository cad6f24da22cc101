"""Learning rate as a pure function of the step, so a resume needs no scheduler state."""

from __future__ import annotations

import math

from finetune.config.schema import TrainSpec


def warmup_steps(spec: TrainSpec, total_steps: int) -> int:
    return int(spec.warmup * total_steps) if spec.warmup < 1 else int(spec.warmup)


def lr_at(step: int, total_steps: int, spec: TrainSpec) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``."""
    peak = spec.learning_rate
    warm = warmup_steps(spec, total_steps)
    if step < warm:
        return peak * (step + 1) / warm
    if spec.schedule == "constant":
        return peak
    floor = peak * spec.min_lr_ratio
    progress = min(1.0, (step - warm) / max(1, total_steps - warm - 1))
    if spec.schedule == "linear":
        return peak - (peak - floor) * progress
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))
