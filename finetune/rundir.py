"""The run folder: never silently overwritten, always says what ran in it.

A resume is refused before anything in the folder is rewritten when the recipe
changed something its checkpoints depend on, naming each changed field.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from finetune.config.load import dump_recipe, recipe_hash
from finetune.config.schema import Recipe
from finetune.errors import UserError

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
# what checkpoints depend on: a resume with any of these changed would train a different run
RESUME_SECTIONS = ("seed", "model", "pretrain", "data", "method")
RESUME_TRAIN_FIELDS = ("batch_size", "grad_accum", "optimizer")  # the shape of the saved data position


def open_run_dir(recipe: Recipe, resume: bool, is_main: bool = True) -> Path:
    """Check the output folder may hold this run, then record the recipe and its hash there."""
    run_dir = recipe.output_dir
    if not is_main:
        return run_dir
    marker = run_dir / RUN_FILE
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output {run_dir} is a file, not a folder; set output to a folder path")
    occupied = _has_files(run_dir)
    if occupied and resume:
        if not marker.exists():
            raise UserError(
                f"output folder {run_dir} holds files that are not an ft run, so there is nothing to resume; "
                "choose another output"
            )
        check_resumable(recipe, run_dir)
    elif occupied:
        if not recipe.overwrite:
            what = "a run" if marker.exists() else "files that are not an ft run"
            raise UserError(
                f"output folder {run_dir} already holds {what}; continue it with --resume (resume: auto), "
                "set overwrite: true to move it aside, or choose another output"
            )
        resolved = run_dir.resolve()
        aside = resolved.with_name(f"{resolved.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(resolved), aside)
        print(f"moved the previous contents of {run_dir} to {aside}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {run_dir}: {exc.strerror or exc}") from None
    dump_recipe(recipe, run_dir / RECIPE_FILE)
    info = {"name": recipe.name, "recipe_hash": recipe_hash(recipe), "seed": recipe.seed,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running", "pid": os.getpid()}
    write_json(marker, info)
    (run_dir / "recipe.sha256").write_text(info["recipe_hash"] + "\n")
    return run_dir


def _has_files(run_dir: Path) -> bool:
    try:
        return run_dir.is_dir() and any(run_dir.iterdir())
    except OSError as exc:
        raise UserError(f"cannot read output folder {run_dir}: {exc.strerror or exc}") from None


def check_resumable(recipe: Recipe, run_dir: Path) -> None:
    """Refuse to resume when the recipe changed what the run's checkpoints depend on."""
    import yaml

    try:
        old = yaml.safe_load((run_dir / RECIPE_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return  # nothing to compare; the training loop still checks each checkpoint's fingerprint
    if not isinstance(old, dict):
        return
    new = recipe.model_dump(mode="json")
    changes: list[str] = []
    for key in RESUME_SECTIONS:
        changes += changed_fields(old.get(key), new.get(key), key)
    old_train = old.get("train") if isinstance(old.get("train"), dict) else {}
    for key in RESUME_TRAIN_FIELDS:
        changes += changed_fields(old_train.get(key), new["train"].get(key), f"train.{key}")
    if changes:
        raise UserError(
            f"cannot resume the run in {run_dir}: the recipe changed {'; '.join(changes)}. "
            "Restore those fields, or start a new run in another output folder"
        )


def changed_fields(old: Any, new: Any, path: str) -> list[str]:
    """Dotted ``path: old -> new`` for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += changed_fields(old.get(key), new.get(key), f"{path}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in changed_fields(a, b, f"{path}.{i}")]
    if old == new:
        return []
    return [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def close_run_dir(run_dir: Path, **fields: Any) -> None:
    marker = run_dir / RUN_FILE
    info = json.loads(marker.read_text()) if marker.exists() else {}
    info.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **fields)
    write_json(marker, info)


def write_json(path: Path, data: Any) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
