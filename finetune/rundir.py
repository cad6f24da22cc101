"""The run folder: never silently overwritten, always says what ran in it."""
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


def open_run_dir(recipe: Recipe, resume: bool, is_main: bool = True) -> Path:
    """Check the output folder may hold this run, then record the recipe and its hash there."""
    run_dir = recipe.output_dir
    if not is_main:
        return run_dir
    marker = run_dir / RUN_FILE
    occupied = run_dir.is_dir() and any(run_dir.iterdir())
    if occupied and not resume:
        if not recipe.overwrite:
            what = "a run" if marker.exists() else "files that are not an ft run"
            raise UserError(
                f"output folder {run_dir} already holds {what}; continue it with --resume (resume: auto), "
                "set overwrite: true to move it aside, or choose another output"
            )
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(run_dir), aside)
        print(f"moved the previous contents of {run_dir} to {aside}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {run_dir}: {exc.strerror or exc}") from None
    dump_recipe(recipe, run_dir / "recipe.yaml")
    info = {"name": recipe.name, "recipe_hash": recipe_hash(recipe), "seed": recipe.seed,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running", "pid": os.getpid()}
    write_json(marker, info)
    (run_dir / "recipe.sha256").write_text(info["recipe_hash"] + "\n")
    return run_dir


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
