"""run(recipe): the table of contents of a run.

    open the run folder -> pretrain? -> fine-tune? -> evaluate (before/after)? -> report

Each stage writes into the run folder; heavy imports happen inside the stages.
"""

from __future__ import annotations

import contextlib
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
    """Run every stage the recipe asks for and return where things went and the final numbers.

    SIGTERM/Ctrl-C stop the run at any point with StopRequested (exit 75 from the CLI): during
    training at the next step boundary after a checkpoint, elsewhere at once. The handler is in
    place before torch is imported, so no moment of the run ends with a bare 143.
    """
    from finetune.stopping import StopSignals

    resume = recipe.resume == "auto" if resume is None else resume
    with StopSignals() as stop:
        from finetune.train.accel import leave_world, make_accelerator

        accelerator = make_accelerator(recipe.train, recipe.distributed)
        try:
            return _in_run_dir(recipe, resume, accelerator, stop)
        finally:
            leave_world()


def _in_run_dir(recipe: Recipe, resume: bool, accelerator: Any, stop: Any) -> RunResult:
    """Hold the run folder for the stages; however they end, run.json records it (status and exit code)."""
    from finetune.rundir import close_run_dir, open_run_dir, release_run_dir

    run_dir = open_run_dir(recipe, resume, accelerator.is_main_process)
    try:
        return _stages(recipe, resume, accelerator, stop, run_dir)
    except BaseException as exc:
        ended = _as_stop(exc, stop)
        if accelerator.is_main_process:
            with contextlib.suppress(OSError):  # a full disk must not hide why the run ended
                close_run_dir(run_dir, *_ending(ended))
        if ended is exc:
            raise
        raise ended from None
    finally:
        release_run_dir(run_dir)


def _as_stop(exc: BaseException, stop: Any) -> BaseException:
    """A library that caught our StopRequested and raised its own error (a data reader, say) still means: stopped."""
    from finetune.errors import StopRequested
    from finetune.stopping import caused_by_stop

    if stop.raised and not isinstance(exc, StopRequested) and caused_by_stop(exc):
        return stop.request()
    return exc


def _ending(exc: BaseException) -> tuple[str, int]:
    """(status, exit code) run.json records for a run that ended with ``exc``; the codes the CLI exits with."""
    from finetune.errors import (
        EXIT_NON_FINITE,
        EXIT_STOPPED,
        EXIT_USER_ERROR,
        StopRequested,
        UserError,
    )
    from finetune.train.loop import NonFiniteError

    if isinstance(exc, StopRequested):
        return "stopped", EXIT_STOPPED
    if isinstance(exc, KeyboardInterrupt):
        return "stopped", 130
    if isinstance(exc, NonFiniteError):
        return "failed", EXIT_NON_FINITE
    if isinstance(exc, (UserError, FileNotFoundError)):
        return "failed", EXIT_USER_ERROR
    return "failed", 1


def _stages(recipe: Recipe, resume: bool, accelerator: Any, stop: Any, run_dir: Path) -> RunResult:
    from accelerate.utils import set_seed

    from finetune.rundir import close_run_dir
    from finetune.train.accel import end_trackers, start_trackers

    accelerator.wait_for_everyone()
    start_trackers(accelerator, recipe, run_dir)
    set_seed(recipe.seed)
    stages: dict[str, Any] = {}

    if recipe.pretrain:
        from finetune.stages.pretrain import pretrain

        stop.check()
        stop.phase = "pretraining"
        stages["pretrain"] = pretrain(recipe, run_dir, accelerator, resume)
    base_model = (
        stages["pretrain"].model_dir if recipe.pretrain else Path(recipe.model.path) if recipe.model.path else None
    )
    if base_model is not None and not recipe.pretrain:  # a .gguf base: its converted folder, provenance in run.json
        from finetune.model.gguf_import import resolve_for_run

        base_model = resolve_for_run(str(base_model), run_dir, accelerator)

    if recipe.method:
        stop.check()
        stop.phase = "fine-tuning"
        stages["finetune"] = _finetune_stage(recipe, run_dir, str(base_model), accelerator, resume)
    final_model = stages["finetune"].model_dir if recipe.method else base_model
    if recipe.method:
        stop.note = f"the fine-tuned model is saved in {final_model}; --resume goes straight to evaluation"
    elif recipe.pretrain:
        stop.note = f"the pretrained model is saved in {final_model}"

    if recipe.eval and (recipe.eval.before or recipe.eval.after or not recipe.method):  # both off: no evaluation
        from finetune.stages.evaluate import evaluate_run

        stop.check()
        stop.phase = "evaluation"
        set_seed(recipe.seed)
        stages["eval"] = evaluate_run(recipe, run_dir, str(base_model), final_model, accelerator)

    stop.check()
    stop.phase = "writing the report"
    report = None
    if accelerator.is_main_process:
        from finetune.report import write_report
        from finetune.report_html import write_html

        report = write_report(recipe, run_dir, stages)
        write_html(run_dir)
        close_run_dir(run_dir, model_dir=str(final_model), processes=accelerator.num_processes)
    end_trackers(accelerator)
    accelerator.wait_for_everyone()
    metrics = {f"{name}.{k}": v for name, stage in stages.items() for k, v in stage.summary().items()}
    return RunResult(run_dir, final_model, metrics, report)


def _finetune_stage(recipe: Recipe, run_dir: Path, base: str, accelerator: Any, resume: bool) -> Any:
    """Fine-tune, or on a resume take the result an earlier process of this run recorded when it finished.

    A run stopped during evaluation then goes straight back to evaluation instead of loading the
    data and the model again to train zero steps.
    """
    from accelerate.utils import set_seed

    from finetune.rundir import finished_stage, record_stage
    from finetune.stages.finetune import finetune

    key = _finetune_key(recipe, base, accelerator.num_processes)
    earlier = _earlier_finetune(finished_stage(run_dir, "finetune", key)) if resume else None
    if earlier is not None:
        accelerator.print(
            f"fine-tune: finished earlier in this run folder; reusing {earlier.model_dir} "
            "and going straight to evaluation"
        )
        return earlier
    set_seed(recipe.seed)  # the same adapter init and data order whether the base was trained now or cached
    result = finetune(recipe, run_dir, base, accelerator, resume)
    if accelerator.is_main_process:
        record_stage(run_dir, "finetune", key, result.report_dict())
    return result


def _earlier_finetune(saved: dict[str, Any] | None) -> Any:
    """The recorded FinetuneResult, if it still fits the code and its model folder is there."""
    from finetune.stages.finetune import FinetuneResult

    if saved is None:
        return None
    try:
        result = FinetuneResult(**{**saved, "model_dir": Path(saved["model_dir"])})
    except (TypeError, KeyError):  # recorded by another version of ft: fine-tune again (zero steps if it finished)
        return None
    return result if result.model_dir.is_dir() and any(result.model_dir.iterdir()) else None


def _finetune_key(recipe: Recipe, base: str, processes: int) -> str:
    """What a finished fine-tuning depends on: the recipe's sections and the size and mtime of every input file.

    Conservative on purpose: any change at all (even log_every, or a touched data file) runs the stage
    again, where the checkpoint's own checks decide between continuing and refusing.
    """
    import hashlib
    import json

    sections = recipe.model_dump(mode="json", include={"seed", "model", "pretrain", "data", "method", "train"})
    paths = [base, recipe.model.tokenizer] + [s.path for s in (recipe.data.sources if recipe.data else [])]
    if recipe.data and recipe.data.replay and recipe.data.replay.text:  # a rewritten replay file trains again
        paths.append(recipe.data.replay.text)
    files = [_file_stats(Path(p)) for p in paths if p]
    test_part = recipe.eval is None or recipe.eval.data is None  # with eval.data, files train on their test part
    blob = json.dumps(
        {"recipe": sections, "base": base, "processes": processes, "files": files, "test_part": test_part},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _file_stats(path: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of a file, or of the files directly in a folder; nothing for a hub id."""
    try:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        return [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    except OSError:
        return [(str(path), -1, -1)]
