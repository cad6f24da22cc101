"""What every stage hands back, so the pipeline and the report read any stage the same way.

The report asks each stage for its section of report.json and for what its training cost; it never
probes a result for attributes, so a new stage (or a renamed field) cannot silently drop out of the cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingCost:
    """What one training stage of this run consumed: the inputs of the FLOPs estimate and the wall time."""

    tokens: int
    wall_time: float
    parameters: int  # all parameters of the trained model (tied tensors once)
    trainable: int  # those the optimizer updated; below ``parameters`` for LoRA/DoRA


class StageResult(ABC):
    """The result of one stage (pretrain, finetune, eval)."""

    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """Flat final numbers; the pipeline prefixes them with the stage name for RunResult.metrics."""

    @abstractmethod
    def report_dict(self) -> dict[str, Any]:
        """This stage's section of report.json (JSON-ready)."""

    def training_cost(self) -> TrainingCost | None:
        """What training this run paid for in this stage; None when it trained nothing (evaluation, a reused base)."""
        return None
