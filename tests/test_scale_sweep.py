"""ft scale's sweep: cached pretraining runs, a stopped sweep continues without redoing finished runs,
each run's schedule ends at its own budget, and the budget leaves runs out instead of overrunning."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from finetune.config.load import recipe_from_dict
from finetune.errors import StopRequested
from finetune.scale.main import scale
from finetune.scale.sweep import SWEEP_FILE
from tests.helpers_tiny import corpus, pretrain_recipe  # noqa: F401 - fixture


def _scale_recipe(corpus: Path, out: Path) -> object:
    """A 1 x 2 grid of micro pretrainings (width 16, one block; 5 and 10 steps of 128 tokens)."""
    data = pretrain_recipe(corpus, out, max_steps=None, learning_rate=5e-3, min_lr_ratio=0.1, log_every=1)
    data["model"]["core"].update(layers=1, width=16, heads=4)
    data["scale"] = {"depths": [1], "widths": [16], "tokens": [640, 1280], "bootstrap": 0}
    return recipe_from_dict(data)


def _records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads((out / SWEEP_FILE).read_text())["runs"]}


def test_stopped_sweep_continues_without_redoing_finished_runs(corpus, tmp_path, monkeypatch):
    from finetune.stages import pretrain as stage

    recipe = _scale_recipe(corpus, tmp_path / "sweep")
    real = stage.pretrain
    calls = []

    def stop_at_second(*args, **kwargs):
        calls.append(args[0].model.core.width)
        if len(calls) == 2:  # a SIGTERM as the second run starts: the real handler turns it into StopRequested
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "pretrain", stop_at_second)
    with pytest.raises(StopRequested):
        scale(recipe, say=lambda _: None)
    first = _records(tmp_path / "sweep")
    assert [r["status"] for r in first.values()] == ["done", "stopped"]
    assert first["L1-W16-T640"]["reused"] is False

    monkeypatch.setattr(stage, "pretrain", real)
    summary = scale(recipe, say=lambda _: None)
    again = _records(tmp_path / "sweep")
    assert again["L1-W16-T640"]["reused"] is True  # found in the pretrain cache, not trained again
    assert again["L1-W16-T640"]["val_loss"] == first["L1-W16-T640"]["val_loss"]
    assert again["L1-W16-T1280"]["status"] == "done" and again["L1-W16-T1280"]["reused"] is False
    assert summary["status"] == "complete" and summary["fit"]["law"] is None  # two runs: too few for the law
    assert (tmp_path / "sweep" / "scale.md").is_file() and (tmp_path / "sweep" / "scale.json").is_file()

    # each run's cosine ends at its own budget: the last step's lr is the floor, peak x min_lr_ratio
    for run in again.values():
        log = [json.loads(x) for x in (Path(run["model_dir"]).parent / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in log if "lr" in r]
        assert len(steps) == run["steps"]
        assert steps[-1]["lr"] == pytest.approx(5e-3 * 0.1)


def test_budget_leaves_runs_out_and_a_later_call_finishes_them(corpus, tmp_path):
    recipe = _scale_recipe(corpus, tmp_path / "sweep")
    partial = scale(recipe, budget_minutes=1e-6, say=lambda _: None)  # the first run sets the pace; the next won't fit
    assert [r["status"] for r in partial["runs"]] == ["done", "left out (budget)"]
    assert json.loads((tmp_path / "sweep" / SWEEP_FILE).read_text())["status"] == "budget"
    done = scale(recipe, say=lambda _: None)
    assert [r.get("reused") for r in done["runs"]] == [True, False]
