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

from finetune.config.load import dump_recipe, recipe_hash, stable_dump, without_retired_keys
from finetune.config.schema import Recipe
from finetune.errors import UserError

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
# what checkpoints depend on: a resume with any of these changed would train a different run
RESUME_SECTIONS = ("seed", "model", "pretrain", "data", "method")
RESUME_TRAIN_FIELDS = ("batch_size", "grad_accum", "optimizer")  # the shape of the saved data position


LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # run folder (resolved) -> file descriptor of its lock, held by this process


def open_run_dir(recipe: Recipe, resume: bool, is_main: bool = True) -> Path:
    """Check the output folder may hold this run, lock it, then record the recipe and its hash there.

    The lock (flock on ``<run>/.lock``) is held until release_run_dir or the end of the process;
    the OS drops it when the process dies, so a killed run never leaves the folder locked.
    Only the main process takes it: the other ranks of a launched world share the folder.
    """
    run_dir = recipe.output_dir
    if not is_main:
        return run_dir
    try:
        return _open(recipe, resume, run_dir)
    except BaseException:  # a refused start leaves the folder free for the run that may continue it
        release_run_dir(run_dir)
        raise


def _open(recipe: Recipe, resume: bool, run_dir: Path) -> Path:
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output {run_dir} is a file, not a folder; set output to a folder path")
    is_run = (run_dir / RUN_FILE).exists()
    if _has_files(run_dir) and not is_run:
        raise UserError(_not_a_run(run_dir, resume, recipe.overwrite))
    if is_run:
        lock_run_dir(run_dir)
        if resume:
            check_resumable(recipe, run_dir)
        elif not recipe.overwrite:
            raise UserError(
                f"output folder {run_dir} already holds a run; continue it with --resume (resume: auto), "
                "set overwrite: true to move it aside, or choose another output"
            )
        else:
            _move_aside(run_dir)
    _make_writable(run_dir)
    lock_run_dir(run_dir)
    _record_holder(run_dir)
    finished = read_run_info(run_dir).get("stages") if resume else None  # a resume goes past finished stages
    dump_recipe(recipe, run_dir / RECIPE_FILE)
    info = {
        "name": recipe.name,
        "recipe_hash": recipe_hash(recipe),
        "seed": recipe.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": "running",
        "pid": os.getpid(),
    }
    if isinstance(finished, dict):
        info["stages"] = finished
    write_json(run_dir / RUN_FILE, info)
    (run_dir / "recipe.sha256").write_text(info["recipe_hash"] + "\n")
    return run_dir


def _not_a_run(run_dir: Path, resume: bool, overwrite: bool) -> str:
    """Why a folder of someone's files is refused: never resumed into, never moved aside, never written over."""
    if resume:
        return (
            f"output folder {run_dir} holds files that are not an ft run, so there is nothing to resume; "
            "choose another output"
        )
    if overwrite:
        return (
            f"output folder {run_dir} holds files that are not an ft run (no {RUN_FILE}); overwrite: true only "
            "moves a previous run aside, never other files: choose another output"
        )
    return (
        f"output folder {run_dir} already holds files that are not an ft run; "
        "choose another output (an empty or new folder)"
    )


def _move_aside(run_dir: Path) -> None:
    """overwrite: true on a folder holding a run: rename it to ``<name>.old-<time>`` beside it.

    Never the folder we are working in or one above it: the recipe's relative paths would move with it.
    """
    resolved = run_dir.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UserError(
            f"output folder {run_dir} holds a run but is the current folder (or above it), so it "
            "cannot be moved aside; set output to a subfolder such as runs/NAME"
        )
    aside = resolved.with_name(f"{resolved.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    release_run_dir(run_dir)
    shutil.move(str(resolved), aside)
    print(f"moved the previous contents of {run_dir} to {aside}")


def _make_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {run_dir}: {exc.strerror or exc}") from None


def lock_run_dir(run_dir: Path) -> None:
    """Take the folder's exclusive lock (non-blocking); a run holding it already is a one-line error naming its pid.

    Two processes training into one folder interleave metrics.jsonl and race on checkpoints.
    """
    import fcntl

    key = run_dir.resolve()
    if key in _held:
        return
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write to output folder {run_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise UserError(
            f"run folder {run_dir} is in use by pid {holder} (another ft run); wait for it to finish "
            "or stop it, or choose another output"
        ) from None
    _held[key] = fd


def _record_holder(run_dir: Path) -> None:
    """The holder's pid goes into the lock file only once the folder is ours, so a refused start leaves it as it was."""
    fd = _held[run_dir.resolve()]
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def release_run_dir(run_dir: Path) -> None:
    """Drop this process's lock on the folder (the file stays; a lock is the flock, not the file)."""
    fd = _held.pop(run_dir.resolve(), None)
    if fd is not None:
        os.close(fd)


def _has_files(run_dir: Path) -> bool:
    """Anything in the folder besides a lock file left by an earlier run."""
    try:
        return run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir())
    except OSError as exc:
        raise UserError(f"cannot read output folder {run_dir}: {exc.strerror or exc}") from None


def _stable(dumped: dict[str, Any]) -> dict[str, Any]:
    """A recipe.yaml as ``stable_dump`` gives it; one today's schema cannot read is compared as written."""
    from pydantic import ValidationError

    try:
        return stable_dump(Recipe.model_validate(dumped))
    except ValidationError:
        return dumped


def check_resumable(recipe: Recipe, run_dir: Path) -> None:
    """Refuse to resume when the recipe changed what the run's checkpoints depend on."""
    import yaml

    try:
        old = yaml.safe_load((run_dir / RECIPE_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return  # nothing to compare; the training loop still checks each checkpoint's fingerprint
    if not isinstance(old, dict):
        return
    old = without_retired_keys(old)  # keys an older ft wrote under pretrain.train, never used
    old = _stable(old)
    new = stable_dump(recipe)  # fields added since the run was written count only when set, on both sides
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


def close_run_dir(run_dir: Path, status: str = "done", exit_code: int = 0, **fields: Any) -> None:
    """Record how the run ended (done, failed, stopped) and its exit code, so run.json never says "running" for a dead run."""
    info = read_run_info(run_dir)
    info.update(status=status, exit_code=exit_code, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **fields)
    write_json(run_dir / RUN_FILE, info)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """run.json as a dict; an unreadable or foreign one counts as empty (it is rewritten, never trusted)."""
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def record_stage(run_dir: Path, name: str, key: str, result: dict[str, Any]) -> None:
    """Note in run.json that stage ``name`` finished with inputs ``key``, so a resume can go past it."""
    info = read_run_info(run_dir)
    stages = info.get("stages") if isinstance(info.get("stages"), dict) else {}
    info["stages"] = {**stages, name: {"key": key, "result": result}}
    write_json(run_dir / RUN_FILE, info)


def finished_stage(run_dir: Path, name: str, key: str) -> dict[str, Any] | None:
    """The recorded result of stage ``name`` when it finished with exactly these inputs, else None."""
    entry = read_run_info(run_dir).get("stages", {})
    entry = entry.get(name) if isinstance(entry, dict) else None
    if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("result"), dict):
        return entry["result"]
    return None


def write_json(path: Path, data: Any) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def replace_folder(new: Path, out: Path) -> None:
    """Rename ``new`` to ``out``; an existing ``out`` is moved aside first and deleted only after the swap.

    A folder's write_json: ``ft merge`` and ``ft export`` write a model into ``new`` beside ``out`` first, so a
    crash leaves the old folder or the new one, never half of either.
    """
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def package_versions() -> dict[str, str]:
    """Versions recorded in checkpoints and reports, so a run says what produced it."""
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
