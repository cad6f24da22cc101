"""The one small interface every scenario implements.

A scenario is a plug-in: one module under ``finetune/scenarios/`` that exposes a
module-level ``SCENARIO = Scenario(...)``. Rows are plain dicts so that
generators, real-format readers and evaluators can be tested without torch.

Row schema (every row): ``id`` (str), ``input`` (str), ``output`` (str, the
reference target). Classification rows also carry ``choices`` (list of label
strings, the target is one of them). Anything else a row carries is ground truth
for the evaluator (slots, planted identifiers, protected group, numeric answer...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from finetune.errors import UserError

Row = dict[str, Any]
Splits = dict[str, list[Row]]  # keys: "train", "validation", "test"
Task = Literal["generation", "classification", "numeric", "mixed"]

SPLITS: tuple[str, ...] = ("train", "validation", "test")


class ScenarioDataError(UserError):
    """A user's file does not fit the format: the message names the file and the row."""


@dataclass(frozen=True)
class Scenario:
    name: str
    task: Task
    system: str  # instruction text the prompt template puts before the input
    card: str  # name of the data card (data_cards/<card>.md) of the generated data
    generate: Callable[..., Splits]  # generate(seed=0, sizes=None, **options) -> Splits
    read: Callable[..., list[Row]]  # read(path, fmt=None) -> rows in the schema above
    evaluate: Callable[..., dict[str, float]]  # evaluate(predictions, rows, label_probs=None)
    formats: dict[str, str] = field(default_factory=dict)  # real format name -> data card name
    default_sizes: dict[str, int] = field(default_factory=lambda: {"train": 800, "validation": 100, "test": 100})
    # preference_pairs(seed=0, sizes=None, **options) -> Splits of prompt/chosen/rejected rows (data.shape: preference)
    preference_pairs: Callable[..., Splits] | None = None

    def read_file(self, path: str | Path, fmt: str | None = None) -> list[Row]:
        return self.read(Path(path), fmt)
