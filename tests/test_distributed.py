"""Two CPU processes (gloo, through `ft run --processes 2`) train exactly what one process with
grad_accum 2 trains: same global batch, same weights, one set of run files, a world of two."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers_tiny import run_inprocess
from safetensors.torch import load_file

from finetune.config.load import recipe_from_dict
from finetune.launch import child_environment, global_batch_lines

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "cli.py"
WORDS = "the clerk files a report nurse checks ledger tutor explains chart analyst reviews notes invoice on day".split()


def ft(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """`ft ...` in a fresh process, as a user would run it (offline, caches from conftest)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(CLI), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def write_recipe(folder: Path, data: dict) -> Path:
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def tiny_base(folder: Path) -> Path:
    """A 2-layer, width-32 core model with its own small tokenizer."""
    from bench.gpu_check import build_base

    return build_base(folder, width=32, layers=2, heads=4)


def finetune_recipe(base: Path, output: Path, evaluate: bool = True, **train: object) -> dict:
    """``evaluate=False`` leaves out the before/after generation: the reliability tests look at training only."""
    return {
        "name": "dist-ft",
        "output": str(output),
        "model": {"path": str(base)},
        "data": {
            "sources": [{"scenario": "risk_assessment", "sizes": {"train": 32, "validation": 8, "test": 8}}],
            "max_length": 128,
        },
        "method": {"kind": "lora", "r": 4},
        "train": {"batch_size": 4, "grad_accum": 2, "max_steps": 3, "learning_rate": 1e-2, "log_every": 1, **train},
        **({} if evaluate else {"eval": {"before": False, "after": False}}),
    }


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def world_seen(run_dir: Path) -> int:
    """The world size the loop trained in, from the final checkpoint (fingerprint and one rng file per rank)."""
    (last,) = sorted((run_dir / "checkpoints").iterdir())[-1:]
    fingerprint = json.loads((last / "state.json").read_text())["fingerprint"]
    assert len(list(last.glob("rng-rank*.pt"))) == fingerprint["processes"]
    return fingerprint["processes"]


def assert_same_run(one: Path, two: Path, weights: str) -> None:
    """Final weights and logged losses agree; the 2-process run wrote each file and each log line once."""
    a, b = load_file(one / weights), load_file(two / weights)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=0, msg=k)
    m1, m2 = metrics(one), metrics(two)
    assert [r["step"] for r in m2] == [r["step"] for r in m1]
    for r1, r2 in zip(m1, m2):
        for key in ("loss", "val_loss", "grad_norm"):
            if key in r1:
                assert r2[key] == pytest.approx(r1[key], abs=1e-5)
    assert world_seen(one) == 1 and world_seen(two) == 2


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base"))


def test_lora_two_processes_equal_one_process_with_accumulation(base, tmp_path):
    data = finetune_recipe(base, tmp_path / "one")
    one = write_recipe(tmp_path, data)
    run_inprocess(data)  # the one-process reference, in this process (a fresh interpreter costs seconds)
    r2 = ft("run", str(one), "train.grad_accum=1", f"output={tmp_path / 'two'}", "--processes", "2")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "4 per process x 1 grad_accum x 2 processes = 8 sequences" in r2.stdout
    assert_same_run(tmp_path / "one", tmp_path / "two", "model/adapter_model.safetensors")
    adapter = load_file(tmp_path / "two" / "model" / "adapter_model.safetensors")
    assert max(v.abs().max().item() for k, v in adapter.items() if "lora_B" in k) > 0  # it trained
    files = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert files(tmp_path / "two") == files(tmp_path / "one")  # one report.json, no per-rank copies
    assert json.loads((tmp_path / "two" / "report.json").read_text())["finetune"]["steps"] == 3


def test_pretraining_two_processes_equal_one_process_with_accumulation(tmp_path):
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(120)))
    recipe = {
        "name": "dist-pt",
        "output": str(tmp_path / "one"),
        "model": {"core": {"layers": 2, "width": 32, "heads": 4, "context_length": 64}},
        "pretrain": {
            "corpus": {"kind": "file", "path": str(corpus)},
            "tokenizer": {"vocab_size": 300},
            "block_size": 32,
            "cache": False,
            "train": {"batch_size": 4, "grad_accum": 2, "max_steps": 3, "learning_rate": 1e-2, "log_every": 1},
        },
    }
    path = write_recipe(tmp_path, recipe)
    run_inprocess(recipe)
    r2 = ft("run", str(path), "pretrain.train.grad_accum=1", f"output={tmp_path / 'two'}", "--processes", "2")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert_same_run(tmp_path / "one" / "pretrain", tmp_path / "two" / "pretrain", "model/model.safetensors")
    assert (tmp_path / "two" / "report.json").is_file()


def test_children_are_told_they_are_a_cpu_world_and_share_the_cores():
    assert child_environment(2, cuda=False, cores=2) == {"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    assert child_environment(4, cuda=True, cores=16) == {"OMP_NUM_THREADS": "4"}
    assert child_environment(8, cuda=False, cores=2)["OMP_NUM_THREADS"] == "1"


def test_global_batch_is_reported_per_training_stage(base):
    recipe = recipe_from_dict(finetune_recipe(base, Path("unused"), batch_size=3, grad_accum=5))
    (line,) = global_batch_lines(recipe, 4)
    assert line.startswith("fine-tune:") and "= 60 sequences per optimizer step" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this is the no-GPU path")
def test_gpu_check_skips_without_cuda():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = ROOT / "bench" / "results"
    before = set(results.glob("gpu_check-*.json")) if results.is_dir() else set()
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "skipped" in out.stdout
    assert (set(results.glob("gpu_check-*.json")) if results.is_dir() else set()) == before  # nothing measured


# Loaded by every Python process started with this folder first on PYTHONPATH: rank 1 dies abruptly
# (no cleanup, like a kill -9 or an OOM kill) as soon as the named checkpoint is complete.
CRASH_RANK_1 = """
import os, pathlib, threading, time
if os.environ.get("RANK") == "1" and os.environ.get("FT_TEST_CRASH_AFTER"):
    marker = pathlib.Path(os.environ["FT_TEST_CRASH_AFTER"])
    def _watch():
        while not marker.exists():
            time.sleep(0.002)
        os._exit(9)
    threading.Thread(target=_watch, daemon=True).start()
"""


def test_a_crashed_rank_stops_the_run_and_resume_with_the_same_world_finishes_it(base, tmp_path):
    """RELIABILITY property 13: one rank of two dies mid-run; the run stops with an error, every checkpoint
    left is complete and verifies, and --resume with two processes ends where an uninterrupted run ends."""
    from finetune.train.checkpoint import complete_checkpoints, load_checkpoint

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_RANK_1)
    run_dir = tmp_path / "crash"
    recipe = write_recipe(tmp_path, finetune_recipe(base, run_dir, False, max_steps=16, save_every=4, grad_accum=1))
    env = {
        **os.environ,
        "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}",
        "HF_HUB_OFFLINE": "1",
        "FT_TEST_CRASH_AFTER": str(run_dir / "checkpoints" / "step-00000008" / "COMPLETE"),
    }
    crashed = subprocess.run(
        [sys.executable, str(CLI), "run", str(recipe), "--processes", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=ROOT,
    )
    assert crashed.returncode != 0
    assert "of 2 failed with exit code" in crashed.stderr, crashed.stderr[-2000:]
    assert not (run_dir / "model").exists() and not (run_dir / "report.json").exists()
    left = complete_checkpoints(run_dir)
    assert left and int(left[-1].name.split("-")[1]) >= 8 and int(left[-1].name.split("-")[1]) < 16
    for ckpt in left:
        for rank in (0, 1):
            load_checkpoint(ckpt, rank=rank)  # verifies the manifest's sha256 of every file

    resumed = ft("run", str(recipe), "--processes", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    # the uninterrupted reference: one process with grad_accum 2 is the same training (the first test shows it)
    whole = finetune_recipe(base, tmp_path / "whole", False, max_steps=16, save_every=4, grad_accum=2)
    run_inprocess(whole)
    a = load_file(tmp_path / "whole" / "model" / "adapter_model.safetensors")
    b = load_file(run_dir / "model" / "adapter_model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=0, msg=k)
    assert world_seen(run_dir) == 2


# The launcher (the process without a RANK) sends itself SIGTERM as soon as the named checkpoint is
# complete: the stop lands at a known point, so the run can be short and the test never races its end.
TERM_LAUNCHER = """
import os, pathlib, signal, threading, time
if "RANK" not in os.environ and os.environ.get("FT_TEST_TERM_AFTER"):
    marker = pathlib.Path(os.environ["FT_TEST_TERM_AFTER"])
    def _watch():
        while not marker.exists():
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=_watch, daemon=True).start()
"""


def test_sigterm_to_a_two_process_run_checkpoints_both_ranks_exits_75_and_resumes(base, tmp_path):
    """The launcher passes SIGTERM on; each rank saves at the next step boundary and exits 75
    (skipping interpreter teardown, which could abort a gloo process), and --resume finishes."""
    from finetune.train.checkpoint import complete_checkpoints, load_checkpoint

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(TERM_LAUNCHER)
    run_dir = tmp_path / "stopped"
    recipe = write_recipe(tmp_path, finetune_recipe(base, run_dir, False, max_steps=24, save_every=4, grad_accum=1))
    env = {
        **os.environ,
        "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}",
        "HF_HUB_OFFLINE": "1",
        "FT_TEST_TERM_AFTER": str(run_dir / "checkpoints" / "step-00000004" / "COMPLETE"),
    }
    stopped = subprocess.run(
        [sys.executable, str(CLI), "run", str(recipe), "--processes", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=ROOT,
    )
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    assert "--resume" in stopped.stderr
    last = complete_checkpoints(run_dir)[-1]
    assert 4 <= int(last.name.split("-")[1]) < 24
    for rank in (0, 1):
        load_checkpoint(last, rank=rank)

    resumed = ft("run", str(recipe), "--processes", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run_dir / "model" / "adapter_model.safetensors").exists()
