"""Checkpoints: complete state, atomic writes, verified and safe loading (RELIABILITY.md properties 2, 3, 10, 12).

Crashes are simulated in-process by making the writers fail halfway; a crafted
pickle that would create a file when unpickled must be refused without running.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from helpers_tiny import (  # noqa: F401 - corpus is a fixture
    KILL_ENV,
    REPO,
    assert_same_run,
    checkpoint_steps,
    corpus,
    pretrain_recipe,
    run_inprocess,
    signalling_backward,
    write_recipe,
)

from finetune.errors import EXIT_USER_ERROR, StopRequested
from finetune.train import checkpoint as ckpt
from finetune.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

STEPS = {"max_steps": 6, "save_every": 1}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    run_inprocess(pretrain_recipe(corpus, out, **STEPS))
    return out / "pretrain"


def _tiny_state(step: int) -> tuple[dict, dict, dict]:
    weights = {"w": torch.full((3, 2), float(step)), "b": torch.arange(4.0)}
    optimizer = {
        "state": {0: {"step": torch.tensor(float(step)), "exp_avg": torch.ones(3, 2)}},
        "param_groups": [{"lr": 0.1, "params": [0]}],
    }
    return weights, optimizer, {"progress": {"step": step}}


def _save(run_dir: Path, step: int, keep: int = 2) -> Path:
    weights, optimizer, state = _tiny_state(step)
    return save_checkpoint(run_dir, step, weights, optimizer, state, keep=keep)


def _reseal(folder: Path) -> None:
    """Recompute the manifest, as an attacker who can write the folder would."""
    manifest = {
        p.name: ckpt.hash_file(p) for p in sorted(folder.iterdir()) if p.name not in (ckpt.MANIFEST, ckpt.MARKER)
    }
    (folder / ckpt.MANIFEST).write_text(json.dumps(manifest))


def _fail_on_call(n: int, exc: BaseException, real, half_write: bool = False):
    """A stand-in for a writer that works n-1 times, then writes half a file (optionally) and raises."""
    calls = [0]

    def writer(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            if half_write:
                Path(args[1]).write_bytes(b"\x00" * 100)
            raise exc
        return real(*args, **kwargs)

    return writer


# ---------------------------------------------------------------- complete state (2)


def test_checkpoint_holds_everything_a_resume_needs(uninterrupted):
    latest = ckpt.latest_checkpoint(uninterrupted)
    assert latest.name == "step-00000006"
    loaded = load_checkpoint(latest)
    state = loaded["state"]
    assert {"step", "epoch", "pos", "samples", "tokens"} <= set(state["progress"])
    assert state["progress"]["step"] == 6 and state["progress"]["samples"] == 6 * 4
    assert {"stage", "pretrain", "model", "batch_size", "grad_accum", "optimizer"} <= set(state["fingerprint"])
    assert {"torch", "transformers"} <= set(state["versions"])
    assert set(loaded["rng"]) >= {"python", "numpy", "torch"}
    assert loaded["optimizer"]["state"] and loaded["weights"]
    assert all(torch.isfinite(t).all() for t in loaded["weights"].values())


# ---------------------------------------------------------------- atomic writes (3, 12)


class _Crash(BaseException):
    """The process dies mid-save (kill -9, power loss): no handler of ours runs, nothing is cleaned up."""


def test_crash_mid_save_keeps_previous_latest_and_next_start_cleans_up(corpus, uninterrupted, tmp_path, monkeypatch):
    recipe = pretrain_recipe(corpus, tmp_path / "run", **STEPS)
    monkeypatch.setattr(ckpt, "save_file", _fail_on_call(4, _Crash("simulated crash"), ckpt.save_file, half_write=True))
    with pytest.raises(_Crash, match="simulated crash"):
        run_inprocess(recipe)
    stage = tmp_path / "run" / "pretrain"
    assert checkpoint_steps(stage)[-1] == 3
    assert load_checkpoint(ckpt.latest_checkpoint(stage))["state"]["progress"]["step"] == 3
    leftover = stage / "checkpoints" / ".tmp-step-00000004"
    assert (leftover / "weights.safetensors").stat().st_size == 100
    with (stage / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 4, "epoch": 0, "lo')  # a kill while logging leaves half a line
    monkeypatch.undo()
    run_inprocess(recipe, resume=True)
    assert not leftover.exists()
    assert_same_run(stage, uninterrupted, "model/model.safetensors")


def test_full_disk_on_save_is_a_clear_error_with_the_previous_checkpoint_intact(corpus, tmp_path, monkeypatch):
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt, "save_file", _fail_on_call(3, disk_full, ckpt.save_file, half_write=True))
    with pytest.raises(CheckpointError) as err:
        run_inprocess(pretrain_recipe(corpus, tmp_path / "run", **STEPS))
    stage = tmp_path / "run" / "pretrain"
    message = str(err.value)
    assert "step 3" in message and "No space left on device" in message and "step-00000002" in message
    assert checkpoint_steps(stage) == [1, 2]
    assert not [p for p in (stage / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    load_checkpoint(ckpt.latest_checkpoint(stage))


def _with_file_size_limit(limit: int):
    """preexec_fn for a child that may write no file larger than ``limit`` bytes (``ulimit -f``).

    SIGXFSZ is ignored as Python does at start-up, so the write fails with an error instead of
    killing the child: this is how torch.save ends up raising RuntimeError, not OSError.
    """

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("limit_kb, writer", [(64, "SafetensorError"), (200, "RuntimeError")])
def test_file_size_limit_during_a_save_exits_2_with_one_line_and_keeps_the_previous_checkpoint(
    corpus, tmp_path, monkeypatch, limit_kb, writer
):
    recipe = pretrain_recipe(corpus, tmp_path / "run", max_steps=4, save_every=1)
    monkeypatch.setattr(Accelerator, "backward", signalling_backward(Accelerator.backward, 2, signal.SIGINT))
    with pytest.raises(StopRequested):  # checkpoints 1 and 2, then a graceful stop
        run_inprocess(recipe)
    monkeypatch.undo()
    stage = tmp_path / "run" / "pretrain"
    assert checkpoint_steps(stage) == [1, 2]
    path = write_recipe(recipe, tmp_path / "r.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(KILL_ENV, None)
    # 64 KB: the logs, tokenizer and RNG state fit, the weights (~140 KB, safetensors) do not;
    # 200 KB: the weights fit, the optimizer state (~290 KB, torch.save) does not
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "helpers_tiny.py"), "run", str(path), "--resume"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_with_file_size_limit(limit_kb * 1024),
    )
    errors = [
        line[line.index("error: ") :] for line in proc.stderr.replace("\r", "\n").splitlines() if "error: " in line
    ]
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    assert "cannot write checkpoint step 3" in errors[0] and writer in errors[0] and "step-00000002" in errors[0], (
        errors[0]
    )
    assert not [p for p in (stage / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert checkpoint_steps(stage) == [1, 2]
    assert load_checkpoint(ckpt.latest_checkpoint(stage))["state"]["progress"]["step"] == 2


def test_failed_rename_leaves_previous_checkpoint_latest(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    monkeypatch.setattr(ckpt.os, "replace", _fail_on_call(1, OSError(errno.EIO, "I/O error"), os.replace))
    with pytest.raises(CheckpointError, match="step 2"):
        _save(tmp_path, 2)
    monkeypatch.undo()
    assert checkpoint_steps(tmp_path) == [1]
    assert load_checkpoint(ckpt.latest_checkpoint(tmp_path))["state"]["progress"]["step"] == 1


def test_failed_resave_of_the_same_step_keeps_the_old_one_in_place(tmp_path, monkeypatch):
    _save(tmp_path, 3, keep=1)
    monkeypatch.setattr(ckpt.os, "replace", _fail_on_call(2, OSError(errno.ENOSPC, "No space left"), os.replace))
    with pytest.raises(CheckpointError, match="step-00000003"):
        _save(tmp_path, 3, keep=1)
    monkeypatch.undo()
    assert checkpoint_steps(tmp_path) == [3]
    load_checkpoint(ckpt.latest_checkpoint(tmp_path))


def test_resave_killed_between_its_renames_is_put_back_at_the_next_start(tmp_path, monkeypatch):
    _save(tmp_path, 3, keep=1)
    real, calls = os.replace, [0]

    def dies_after_first_rename(*args):  # the process is gone after moving step 3 aside: nothing else runs
        calls[0] += 1
        if calls[0] > 1:
            raise SystemExit("killed")
        real(*args)

    monkeypatch.setattr(ckpt.os, "replace", dies_after_first_rename)
    with pytest.raises(SystemExit):
        _save(tmp_path, 3, keep=1)
    monkeypatch.undo()
    assert checkpoint_steps(tmp_path) == []  # step 3 sits aside
    ckpt.clean_partial(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000003"]
    load_checkpoint(ckpt.latest_checkpoint(tmp_path))


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_rotation_keeps_the_newest_complete_checkpoints(tmp_path, keep):
    stray = tmp_path / "checkpoints" / "step-00000099"  # a higher step without the COMPLETE marker
    stray.mkdir(parents=True)
    for step in range(1, 6):
        _save(tmp_path, step, keep=keep)
    assert checkpoint_steps(tmp_path) == list(range(6 - keep, 6))
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000005"
    load_checkpoint(ckpt.latest_checkpoint(tmp_path))


# ---------------------------------------------------------------- verified loading (3)


@pytest.mark.parametrize("name", ["weights.safetensors", "optimizer.pt", "rng-rank0.pt", "state.json"])
def test_flipped_byte_fails_the_load_naming_the_file(tmp_path, name):
    folder = _save(tmp_path, 1)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{name}.*corrupt"):
        load_checkpoint(folder)


def test_unlisted_or_missing_files_fail_the_load(tmp_path):
    folder = _save(tmp_path, 1)
    manifest = json.loads((folder / ckpt.MANIFEST).read_text())
    del manifest["weights.safetensors"]
    (folder / ckpt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="weights.safetensors not in"):
        load_checkpoint(folder)
    (folder / ckpt.MARKER).unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(folder)


def test_garbage_weights_with_a_matching_manifest_fail_naming_the_file(tmp_path):
    folder = _save(tmp_path, 1)
    (folder / "weights.safetensors").write_bytes(b"not a safetensors file at all")
    _reseal(folder)
    with pytest.raises(CheckpointError, match="weights.safetensors cannot be loaded safely"):
        load_checkpoint(folder)


# ---------------------------------------------------------------- safe loading (10)


class Plant:
    """Unpickling this creates ``path``: the stand-in for arbitrary code in a pickle."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_planted_pickle_is_live(tmp_path):
    """Control: plain unpickling does run it, so the next test's silence means something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Plant(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("name", ["optimizer.pt", "rng-rank0.pt"])
def test_crafted_pickle_in_a_checkpoint_is_not_executed(tmp_path, name):
    folder = _save(tmp_path / "run", 1)
    marker = tmp_path / "pwned"
    torch.save({"state": Plant(marker)}, folder / name)
    _reseal(folder)
    with pytest.raises(CheckpointError, match=f"{name} cannot be loaded safely"):
        load_checkpoint(folder)
    assert not marker.exists()
