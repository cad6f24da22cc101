"""ft scale: the grid of pretrainings, the fits, the prediction for the held-out run, then that run, the report.

    lock the sweep folder -> one tokenizer -> grid runs (cached, resumable) -> fit -> predict -> predict run -> report

The predicted loss is computed and written before the held-out run starts, so the comparison is honest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from finetune.config.schema import Recipe
from finetune.errors import UserError


def scale(recipe: Recipe, budget_minutes: float | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the recipe's sweep and return the summary written to scale.json."""
    if recipe.scale is None:
        raise UserError(
            f"recipe {recipe.name!r} has no scale: section; add one with depths, widths and tokens "
            "(see recipes/scale_tiny.yaml)"
        )
    from finetune.rundir import lock_run_dir, release_run_dir
    from finetune.stopping import StopSignals

    folder = recipe.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    lock_run_dir(folder)
    try:
        with StopSignals() as stop:
            from finetune.train.accel import leave_world, make_accelerator

            accelerator = make_accelerator(recipe.train, recipe.distributed)
            try:
                return _sweep(recipe, folder, budget_minutes or recipe.scale.budget_minutes, accelerator, stop, say)
            finally:
                leave_world()
    finally:
        release_run_dir(folder)


def _sweep(
    recipe: Recipe, folder: Path, budget: float | None, accelerator: Any, stop: Any, say: Callable
) -> dict[str, Any]:
    from finetune.scale.grid import GRID, expand
    from finetune.scale.sweep import Sweep, register, run_all, shared_tokenizer

    began = time.perf_counter()
    sweep = Sweep(folder, recipe, None if budget is None else budget * 60, say)
    stop.phase = "training the sweep's tokenizer"
    runs = expand(recipe, shared_tokenizer(recipe, folder))
    grid = [r for r in runs if r.role == GRID]
    held = [r for r in runs if r.role != GRID]
    register(sweep, runs)
    say(f"scale: {len(grid)} grid runs{' and 1 held-out run' if held else ''}; progress in {sweep.path}")
    complete = run_all(sweep, grid, accelerator, stop) if grid else True
    summary = _summary(recipe, folder, sweep, began, _fit(recipe, sweep, held))
    if held and complete:
        _write(folder, summary)  # the prediction is on disk before the run it predicts starts
        say(f"scale: predicted loss of {held[0].id}: {_predicted(summary)}; training it now")
        run_all(sweep, held, accelerator, stop)
        summary = _summary(recipe, folder, sweep, began, summary["fit"])
    elif held:
        run_all(sweep, held, accelerator, stop)  # records it as left out by the budget
        summary = _summary(recipe, folder, sweep, began, summary["fit"])
    _write(folder, summary)
    return summary


def _fit(recipe: Recipe, sweep: Any, held: list[Any]) -> dict[str, Any]:
    from finetune.scale.fit import analyse

    done = [r for r in sweep.records.values() if r["role"] == "grid" and r.get("val_loss") is not None]
    predict = sweep.records[held[0].id] if held else None
    return analyse(done, predict, recipe.scale.bootstrap, recipe.seed)


def _predicted(summary: dict[str, Any]) -> str:
    pred = summary["fit"].get("prediction")
    return "n/a (no law fitted)" if not pred else f"{pred['loss']:.4f}"


def _summary(recipe: Recipe, folder: Path, sweep: Any, began: float, fit: dict[str, Any]) -> dict[str, Any]:
    runs = list(sweep.records.values())
    return {
        "recipe": recipe.name,
        "folder": str(folder),
        "status": _status(runs),
        "finished": sum(r["status"] == "done" for r in runs),
        "wall_s": time.perf_counter() - began,
        "machine": {"cores": os.cpu_count(), "load": [round(x, 2) for x in os.getloadavg()]},
        "runs": runs,
        "fit": fit,
    }


def _status(runs: list[dict[str, Any]]) -> str:
    if all(r["status"] == "done" for r in runs):
        return "complete"
    return "partial: " + ", ".join(sorted({r["status"] for r in runs if r["status"] != "done"}))


def _write(folder: Path, summary: dict[str, Any]) -> None:
    """scale.json, the plots and scale.md (which shows the plots)."""
    from finetune.scale import plots
    from finetune.scale.fit import Law
    from finetune.scale.report import write_scale

    fit = summary["fit"]
    law = Law(**fit["law"]) if fit.get("law") else None
    runs = [r for r in summary["runs"] if r.get("val_loss") is not None]
    names = []
    if runs:
        plots.loss_vs_flops(runs, law, fit["frontier"]["runs"], fit.get("prediction"), folder / plots.LOSS_VS_FLOPS)
        names.append(plots.LOSS_VS_FLOPS)
    if law is not None:
        plots.iso_loss([r for r in runs if r["role"] == "grid"], law, folder / plots.ISO_LOSS)
        names.append(plots.ISO_LOSS)
    summary["plots"] = names
    write_scale(folder, summary)
