"""run(recipe): the table of contents of a run.

    open the run folder -> pretrain? -> fine-tune? -> evaluate (before/after)? -> report

Each stage writes into the run folder; heavy imports happen inside the stages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.config.schema import Recipe


@dataclass
class RunResult:
    run_dir: Path
    model_dir: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)  # final numbers, flat: "pretrain.val_loss", ...
    report: Path | None = None


def run(recipe: Recipe, resume: bool | None = None) -> RunResult:
    """Run every stage the recipe asks for and return where things went and the final numbers."""
    from finetune.train.accel import leave_world, make_accelerator

    resume = recipe.resume == "auto" if resume is None else resume
    accelerator = make_accelerator(recipe.train, recipe.distributed)
    try:
        return _stages(recipe, resume, accelerator)
    finally:
        leave_world()


def _stages(recipe: Recipe, resume: bool, accelerator: Any) -> RunResult:
    from accelerate.utils import set_seed

    from finetune.rundir import close_run_dir, open_run_dir
    from finetune.train.accel import end_trackers, start_trackers

    run_dir = open_run_dir(recipe, resume, accelerator.is_main_process)
    accelerator.wait_for_everyone()
    start_trackers(accelerator, recipe, run_dir)
    set_seed(recipe.seed)
    stages: dict[str, Any] = {}

    if recipe.pretrain:
        from finetune.stages.pretrain import pretrain

        stages["pretrain"] = pretrain(recipe, run_dir, accelerator, resume)
    base_model = stages["pretrain"].model_dir if recipe.pretrain else Path(recipe.model.path) if recipe.model.path else None

    if recipe.method:
        from finetune.stages.finetune import finetune

        set_seed(recipe.seed)  # the same adapter init and data order whether the base was trained now or cached
        stages["finetune"] = finetune(recipe, run_dir, str(base_model), accelerator, resume)
    final_model = stages["finetune"].model_dir if recipe.method else base_model

    if recipe.eval:
        from finetune.stages.evaluate import evaluate_run

        set_seed(recipe.seed)
        stages["eval"] = evaluate_run(recipe, run_dir, str(base_model), final_model, accelerator)

    report = None
    if accelerator.is_main_process:
        from finetune.report import write_report

        report = write_report(recipe, run_dir, stages)
        close_run_dir(run_dir, model_dir=str(final_model), processes=accelerator.num_processes)
    end_trackers(accelerator)
    accelerator.wait_for_everyone()
    metrics = {f"{name}.{k}": v for name, stage in stages.items() for k, v in stage.summary().items()}
    return RunResult(run_dir, final_model, metrics, report)
