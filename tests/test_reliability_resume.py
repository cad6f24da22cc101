"""Exact resume, graceful stop, determinism and the golden trace (RELIABILITY.md properties 1, 4 and 8).

Real `ft run` processes are killed with SIGKILL at chosen points (between the two
micro-steps of a gradient-accumulation step, right after the checkpoint that ends
an epoch, and from outside at whatever step the run has reached) or stopped with
SIGTERM; each is resumed with --resume, and the final weights and the per-step
loss log must equal an uninterrupted run's. The three kill chains run in the
background, two at a time, while the uninterrupted references train in-process.
"""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers_tiny import (  # noqa: F401 - corpus is a fixture
    assert_same_run,
    checkpoint_steps,
    corpus,
    finetune_recipe,
    loss_diff,
    losses,
    pretrain_recipe,
    run_cli,
    run_inprocess,
    signal_when,
    start_cli,
    write_recipe,
)

GOLDEN = Path(__file__).parent / "golden" / "pretrain_trace.json"
PRETRAIN = {"grad_accum": 2, "save_every": 1}  # 20 steps, 9 per epoch: the run crosses two epoch boundaries
FINETUNE = {"grad_accum": 2, "save_every": 1}  # 32 rows / batch 4 / accumulation 2 = 4 steps per epoch, 2 epochs
LORA = {"kind": "lora", "r": 4}
FULL = {"kind": "full"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> Path:
    """The uninterrupted pretraining run; its model is also the base for the fine-tuning runs."""
    out = tmp_path_factory.mktemp("pretrain-reference")
    run_inprocess(pretrain_recipe(corpus, out, **PRETRAIN))
    return out


@pytest.fixture(scope="module")
def chains(tmp_path_factory, corpus, reference) -> dict[str, Future]:
    """Start the three interrupted runs (each a chain of processes) in the background."""
    base = reference / "pretrain" / "model"
    recipes = {
        "pretrain": pretrain_recipe(corpus, tmp_path_factory.mktemp("pretrain-killed"), **PRETRAIN),
        "full": finetune_recipe(base, tmp_path_factory.mktemp("full-killed"), FULL, **FINETUNE),
        "lora": finetune_recipe(base, tmp_path_factory.mktemp("lora-killed"), LORA, **FINETUNE),
    }
    paths = {name: write_recipe(r, Path(r["output"]).parent / f"{name}.yaml") for name, r in recipes.items()}
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {
        "pretrain": pool.submit(_pretrain_chain, paths["pretrain"], Path(recipes["pretrain"]["output"])),
        "full": pool.submit(_full_chain, paths["full"], Path(recipes["full"]["output"])),
        "lora": pool.submit(_lora_chain, paths["lora"], Path(recipes["lora"]["output"])),
    }
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _expect(code: int, wanted: int, out: str, what: str) -> None:
    assert code == wanted, f"{what}: exit code {code}, expected {wanted}\n{out[-3000:]}"


def _pretrain_chain(recipe: Path, out: Path) -> Path:
    """kill -9 between the micro-steps of step 4; resume; kill -9 from outside past step 12; resume to the end."""
    stage = out / "pretrain"
    code, log = run_cli(["run", str(recipe)], kill="backward:7")
    _expect(code, -signal.SIGKILL, log, "kill between micro-steps")
    assert checkpoint_steps(stage)[-1] == 3, "the step cut in half must not have been checkpointed"
    proc = start_cli(["run", str(recipe), "--resume"])
    code, log = signal_when(proc, stage / "metrics.jsonl", signal.SIGKILL, min_step=12)
    _expect(code, -signal.SIGKILL, log, "kill from outside")
    code, log = run_cli(["run", str(recipe), "--resume"])
    _expect(code, 0, log, "final resume")
    return stage


def _full_chain(recipe: Path, out: Path) -> Path:
    """kill -9 right after the checkpoint that closes epoch 0 (position = end of the plan); resume."""
    code, log = run_cli(["run", str(recipe)], kill="saved:4")
    _expect(code, -signal.SIGKILL, log, "kill at the epoch boundary")
    progress = json.loads((out / "checkpoints" / "step-00000004" / "state.json").read_text())["progress"]
    assert (progress["epoch"], progress["pos"]) == (0, 4), progress
    code, log = run_cli(["run", str(recipe), "--resume"])
    _expect(code, 0, log, "resume after the epoch boundary")
    return out


def _lora_chain(recipe: Path, out: Path) -> Path:
    """SIGTERM mid-step 2 -> checkpoint at step 2, exit 75; resume; kill -9 mid-step 5; resume to the end."""
    from finetune.errors import EXIT_STOPPED

    code, log = run_cli(["run", str(recipe)], kill="term:3")
    _expect(code, EXIT_STOPPED, log, "SIGTERM")
    assert "--resume" in log, log[-2000:]
    assert checkpoint_steps(out)[-1] == 2, "SIGTERM must checkpoint at the next step boundary"
    code, log = run_cli(["run", str(recipe), "--resume"], kill="backward:5")
    _expect(code, -signal.SIGKILL, log, "kill between micro-steps after a resume")
    assert checkpoint_steps(out)[-1] == 4
    code, log = run_cli(["run", str(recipe), "--resume"])
    _expect(code, 0, log, "final resume")
    return out


def test_pretraining_resumes_exactly_after_kills(chains, reference):
    stage = chains["pretrain"].result(timeout=300)
    assert_same_run(stage, reference / "pretrain", "model/model.safetensors")


@pytest.mark.parametrize(
    "name, method, weights",
    [
        ("full", FULL, "model/model.safetensors"),
        ("lora", LORA, "model/adapter_model.safetensors"),
    ],
)
def test_finetuning_resumes_exactly_after_kills_and_sigterm(chains, reference, tmp_path, name, method, weights):
    uninterrupted = tmp_path / "uninterrupted"
    run_inprocess(finetune_recipe(reference / "pretrain" / "model", uninterrupted, method, **FINETUNE))
    interrupted = chains[name].result(timeout=300)
    assert_same_run(interrupted, uninterrupted, weights)


def test_same_seed_same_trace_other_seed_different(reference, corpus, tmp_path):
    want = losses(reference / "pretrain" / "metrics.jsonl")
    run_inprocess(pretrain_recipe(corpus, tmp_path / "again", **PRETRAIN))
    assert losses(tmp_path / "again" / "pretrain" / "metrics.jsonl") == want
    run_inprocess(pretrain_recipe(corpus, tmp_path / "seed1", seed=1, **PRETRAIN))
    other = losses(tmp_path / "seed1" / "pretrain" / "metrics.jsonl")
    assert sorted(other) == sorted(want) and loss_diff(other, want) > 1e-3
    assert json.loads((tmp_path / "seed1" / "report.json").read_text())["seed"] == 1


def test_pretraining_trace_matches_golden(reference):
    """Regenerate with FT_UPDATE_GOLDEN=1 only when a loss change is intended."""
    trace = [loss for _, loss in sorted(losses(reference / "pretrain" / "metrics.jsonl").items())]
    assert len(trace) == 20
    if os.environ.get("FT_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"recipe": "tests/test_reliability_resume.py reference", "loss": trace}, indent=1))
    golden = json.loads(GOLDEN.read_text())["loss"]
    assert len(golden) == len(trace)
    assert max(abs(a - b) for a, b in zip(trace, golden)) <= 1e-5


def test_resuming_a_finished_run_leaves_its_metrics_log_as_it_was(reference, tmp_path):
    """Issue 12 point 13: the final val_loss line was appended a second time on every resume of a finished run."""
    recipe = finetune_recipe(reference / "pretrain" / "model", tmp_path / "run", LORA, max_steps=3)
    run_inprocess(recipe)
    metrics = tmp_path / "run" / "metrics.jsonl"
    before = metrics.read_text()
    assert sum('"val_loss"' in line for line in before.splitlines()) == 1
    run_inprocess(recipe, resume=True)
    assert metrics.read_text() == before
