"""Scenario registry: names map to modules in this package, never to arbitrary import paths."""

from __future__ import annotations

import importlib

from finetune.scenarios.base import Row, Scenario, ScenarioDataError, Splits

NAMES: tuple[str, ...] = (
    "content_writing",
    "medical_records",
    "tutoring",
    "financial_analysis",
    "risk_assessment",
    "legal",
    "diagnosis",
    "customer_support",
)


def get(name: str) -> Scenario:
    """The scenario called ``name``; unknown names are a ValueError listing the known ones."""
    if name not in NAMES:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"finetune.scenarios.{name}").SCENARIO


__all__ = ["NAMES", "Row", "Scenario", "ScenarioDataError", "Splits", "get"]
