"""Atomic, verified checkpoints.

A checkpoint is written into a temporary folder, flushed, listed in a manifest
with the sha256 of every file, marked COMPLETE, and only then renamed into
place. A crash at any moment therefore leaves either the old latest checkpoint
or the new one, never a half-written one that looks complete. Loading checks
every hash, so a flipped byte names its file instead of training on garbage.
Folders on their way in or out (``.tmp-*``) are renamed first and removed
after, and leftovers are cleaned at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from finetune.errors import UserError
from finetune.fingerprint import hash_file  # always reads the bytes: a checkpoint is verified, not trusted

MARKER = "COMPLETE"
MANIFEST = "MANIFEST.json"
PREFIX = "step-"
TMP = ".tmp-"  # a checkpoint being written, or an old one being deleted
REPLACED = ".replaced-"  # a checkpoint of the same step moved aside during a re-save
REQUIRED = ("weights.safetensors", "optimizer.pt", "state.json")


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete or corrupt."""


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints that carry the COMPLETE marker, oldest first (half-written ones are ignored)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    done = [
        p
        for p in root.iterdir()
        if p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit() and (p / MARKER).is_file()
    ]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def clean_partial(run_dir: Path) -> None:
    """Remove leftovers of saves and deletions that crashed; put back a checkpoint a crashed re-save moved aside."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith(TMP):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(REPLACED):
            original = root / p.name[len(REPLACED) :]
            if (original / MARKER).is_file():
                shutil.rmtree(p, ignore_errors=True)
            else:
                shutil.rmtree(original, ignore_errors=True)
                os.replace(p, original)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(state: tuple) -> list:
    kind, keys, pos, has_gauss, cached = state
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    *,
    rank: int = 0,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically; every rank calls this (each saves its RNG state).

    A write that fails (full disk, lost permission) removes its temporary folder and
    raises CheckpointError; the previous checkpoint stays the latest complete one.
    """
    root = checkpoint_root(run_dir)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{TMP}{final.name}"
    with _write_errors(tmp, run_dir, step, is_main):
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
        barrier()
        if is_main:
            save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
            torch.save(optimizer_state, tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
            manifest = {p.name: hash_file(p) for p in sorted(tmp.iterdir())}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            for p in tmp.iterdir():
                _fsync(p)
            (tmp / MARKER).write_text("ok\n")
            _fsync(tmp / MARKER)
            _publish(tmp, final)
    if is_main:
        rotate(run_dir, keep)
    barrier()
    return final


@contextlib.contextmanager
def _write_errors(tmp: Path, run_dir: Path, step: int, is_main: bool) -> Iterator[None]:
    """Any failure of the write -> CheckpointError naming the folder; the partial folder goes (it may fill the disk).

    Not only OSError: under a file-size limit torch.save raises RuntimeError ("basic_ios::clear"),
    and safetensors its own errors. KeyboardInterrupt (a second Ctrl-C) passes through untouched:
    the user wants out now, and the next start cleans the partial folder.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - torch, safetensors and the OS each raise their own types
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = latest_checkpoint(run_dir)
        raise CheckpointError(
            f"cannot write checkpoint step {step} in {checkpoint_root(run_dir)}: {_reason(exc)}; "
            f"the latest complete checkpoint is {kept or 'none yet'}. "
            "Free space, raise the file-size limit or fix permissions, then resume"
        ) from exc


def _reason(exc: BaseException) -> str:
    """One line saying why a write failed: the OS's wording when there is one, else the error's first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished folder into place; a checkpoint of the same step is moved aside first, not deleted."""
    root = final.parent
    aside = root / f"{REPLACED}{final.name}"
    if final.exists():  # a re-save of the same step
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        _fsync_dir(root)
    try:
        os.replace(tmp, final)
    except BaseException:
        if aside.exists() and not final.exists():  # a crash that kills the process leaves this to clean_partial
            os.replace(aside, final)
        raise
    _fsync_dir(root)
    shutil.rmtree(aside, ignore_errors=True)


def rotate(run_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; the latest complete one always survives.

    Each old one is renamed out of sight before it is deleted, so a crash mid-delete
    never leaves a half-deleted folder that still looks complete.
    """
    done = complete_checkpoints(run_dir)
    for old in done[: max(0, len(done) - max(1, keep))]:
        doomed = old.with_name(f"{TMP}{old.name}")
        shutil.rmtree(doomed, ignore_errors=True)
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def load_checkpoint(path: Path, rank: int = 0) -> dict[str, Any]:
    """Verify every file against the manifest, then load with safe loaders only.

    Tensors come from safetensors; the optimizer and RNG states go through
    ``torch.load(weights_only=True)``, which refuses to build arbitrary objects, so a
    crafted pickle fails here (naming its file) instead of running code.
    """
    if not (path / MARKER).is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete (no {MARKER} marker)")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path}: manifest missing or unreadable") from None
    rng_name = f"rng-rank{rank}.pt"
    if not isinstance(manifest, dict) or not all(isinstance(d, str) for d in manifest.values()):
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is not a map of file names to sha256 digests")
    if rng_name not in manifest:
        raise CheckpointError(
            f"checkpoint {path} has no RNG state for rank {rank}: resume with the same number of processes"
        )
    unlisted = [name for name in REQUIRED if name not in manifest]
    if unlisted:
        raise CheckpointError(f"checkpoint {path}: {', '.join(unlisted)} not in its {MANIFEST}; it cannot be verified")
    for name, digest in manifest.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing")
        if hash_file(file) != digest:
            raise CheckpointError(
                f"checkpoint file {file} is corrupt (sha256 mismatch); delete {path} to use an older one"
            )
    return {
        "weights": _read(path / "weights.safetensors", lambda f: load_file(str(f))),
        "optimizer": _read(path / "optimizer.pt", _safe_torch_load),
        "state": _read(path / "state.json", lambda f: json.loads(f.read_text())),
        "rng": _read(path / rng_name, _safe_torch_load),
    }


def _safe_torch_load(file: Path) -> Any:
    return torch.load(file, weights_only=True, map_location="cpu")


def _read(file: Path, loader: Callable[[Path], Any]) -> Any:
    """Any failure to parse a verified file (a pickle with code in it, a broken format) names the file."""
    try:
        return loader(file)
    except Exception as exc:  # noqa: BLE001 - pickle, safetensors and json each raise their own types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"checkpoint file {file} cannot be loaded safely ({type(exc).__name__}: {first[:200]}); "
            "it was not written by ft or has been tampered with"
        ) from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:  # some filesystems cannot fsync a directory
        pass
