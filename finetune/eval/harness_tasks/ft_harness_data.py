"""Rows of ft's lm_eval tasks: read the jsonl beside this file (generated from ft's scenarios; no network)."""

import json
from pathlib import Path


def load(file, **_):
    """A DatasetDict with one "test" split; lm_eval passes the task's metadata as keywords too."""
    import datasets

    rows = [json.loads(line) for line in (Path(__file__).parent / file).read_text(encoding="utf-8").splitlines()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
