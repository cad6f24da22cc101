"""Atomic, verified checkpoints.

A checkpoint is written into a temporary folder, flushed, listed in a manifest
with the sha256 of every file, marked COMPLETE, and only then renamed into
place. A crash at any moment therefore leaves either the old latest checkpoint
or the new one, never a half-written one that looks complete. Loading checks
every hash, so a flipped byte names its file instead of training on garbage.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from finetune.errors import UserError

MARKER = "COMPLETE"
MANIFEST = "MANIFEST.json"
PREFIX = "step-"


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete or corrupt."""


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that carries the COMPLETE marker (half-written ones are ignored)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / MARKER).is_file()]
    return max(done, key=lambda p: int(p.name[len(PREFIX):]), default=None)


def clean_partial(run_dir: Path) -> None:
    """Remove leftovers of saves that crashed before their rename."""
    root = checkpoint_root(run_dir)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


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
    """Write checkpoint ``step`` atomically; every rank calls this (each saves its RNG state)."""
    root = checkpoint_root(run_dir)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}"
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
        manifest = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        for p in tmp.iterdir():
            _fsync(p)
        (tmp / MARKER).write_text("ok\n")
        _fsync(tmp / MARKER)
        if final.exists():  # a re-save of the same step after a resume
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        rotate(run_dir, keep)
    barrier()
    return final


def rotate(run_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; the latest complete one always survives."""
    root = checkpoint_root(run_dir)
    done = sorted(
        (p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / MARKER).is_file()),
        key=lambda p: int(p.name[len(PREFIX):]),
    )
    for old in done[: max(0, len(done) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, rank: int = 0) -> dict[str, Any]:
    """Verify every file against the manifest, then load with safe loaders only."""
    if not (path / MARKER).is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete (no {MARKER} marker)")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path}: manifest missing or unreadable") from None
    for name, digest in manifest.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"checkpoint file {file} is corrupt (sha256 mismatch); delete {path} to use an older one")
    rng_file = path / f"rng-rank{rank}.pt"
    if not rng_file.is_file():
        raise CheckpointError(f"checkpoint {path} has no RNG state for rank {rank}: resume with the same number of processes")
    return {
        "weights": load_file(str(path / "weights.safetensors")),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True),
        "state": json.loads((path / "state.json").read_text()),
        "rng": torch.load(rng_file, weights_only=True),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
