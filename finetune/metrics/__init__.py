"""Offline metrics: plain functions (fast to import) and local ``evaluate`` modules.

``import evaluate`` costs ~10 s, so it happens only inside :func:`load`; the
module folders under ``modules/`` are loaded from disk, never from the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.metrics.classification import (
    accuracy,
    brier,
    demographic_parity_difference,
    ece,
    equal_opportunity_difference,
    f1,
    mcc,
)
from finetune.metrics.numeric import exact_match, numeric_match, parse_number
from finetune.metrics.text import rouge

MODULES_DIR = Path(__file__).resolve().parent / "modules"
MODULE_NAMES: tuple[str, ...] = ("ft_rouge", "ft_classification", "ft_fairness", "ft_numeric")


def module_path(name: str) -> Path:
    """Folder of a shipped evaluate module, in the form ``evaluate.load(<dir>)`` expects."""
    if name not in MODULE_NAMES:
        raise ValueError(f"unknown metric module {name!r}; known: {', '.join(MODULE_NAMES)}")
    return MODULES_DIR / name


def load(name: str) -> Any:
    """``evaluate.load`` on our local module folder; the Hub is never consulted."""
    path = module_path(name)
    import evaluate  # deferred: ~10 s import

    return evaluate.load(str(path))


__all__ = [
    "MODULE_NAMES",
    "accuracy",
    "brier",
    "demographic_parity_difference",
    "ece",
    "equal_opportunity_difference",
    "exact_match",
    "f1",
    "load",
    "mcc",
    "module_path",
    "numeric_match",
    "parse_number",
    "rouge",
]
