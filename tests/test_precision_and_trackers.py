"""Combinations this machine cannot run are one-line errors (exit 2) before any training, and
train.log_with: [tensorboard] writes the training loss as TensorBoard events in the run folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from test_distributed import finetune_recipe, ft, metrics, tiny_base, write_recipe
from typer.testing import CliRunner

from finetune.config.load import recipe_from_dict
from finetune.errors import UserError
from finetune.train.accel import tracker_env, validate_distributed

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a CPU-only machine")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base"))


def cli_error(recipe_path: Path, *args: str) -> str:
    """Run `ft run` in this process (nothing may start training) and return its one error line."""
    import cli

    result = CliRunner().invoke(cli.app, ["run", str(recipe_path), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@CPU_ONLY
@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.precision=bf16", "train.precision bf16 needs a GPU"),
        ("train.precision=fp16", "train.precision fp16 needs a CUDA GPU"),
        ("distributed.strategy=fsdp", "distributed.strategy fsdp needs CUDA GPUs"),
        ("train.log_with=[mlflow]", "pip install mlflow"),
        (
            "distributed.config_file=/nonexistent/accelerate.yaml",
            "distributed.config_file /nonexistent/accelerate.yaml does not exist",
        ),
    ],
)
@pytest.mark.parametrize("processes", ["1", "2"])
def test_impossible_combinations_fail_before_training(base, tmp_path, override, expected, processes):
    if "mlflow" in override and importlib.util.find_spec("mlflow"):
        pytest.skip("mlflow is installed")
    path = write_recipe(tmp_path, finetune_recipe(base, tmp_path / "run"))
    line = cli_error(path, override, "--processes", processes)
    assert expected in line
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed")
def test_deepspeed_without_the_package_names_the_install(base, tmp_path):
    path = write_recipe(tmp_path, finetune_recipe(base, tmp_path / "run"))
    line = cli_error(path, "distributed.strategy=deepspeed", "--processes", "2")
    assert "pip install deepspeed" in line


def test_validate_distributed_checks_the_precision_pretraining_runs_at(tmp_path):
    """One precision per run: pretrain.train.precision is refused (it was ignored); the top-level one is checked."""
    core = {"name": "x", "model": {"core": {"layers": 1, "width": 32, "heads": 4}}}
    with pytest.raises(UserError, match="did you mean train.precision"):
        recipe_from_dict({**core, "pretrain": {"train": {"precision": "fp16"}}})
    recipe = recipe_from_dict({**core, "pretrain": {}, "train": {"precision": "fp16"}})
    if torch.cuda.is_available():
        validate_distributed(recipe, 1)
    else:
        with pytest.raises(UserError, match="fp16"):
            validate_distributed(recipe, 1)


def test_global_batch_larger_than_the_data_is_an_error_in_every_process(base, tmp_path):
    """batch 20 fits 32 examples in one process, not in two: the processes count in the check."""
    path = write_recipe(tmp_path, finetune_recipe(base, tmp_path / "run", batch_size=20, grad_accum=1))
    out = ft("run", str(path), "--processes", "2")
    assert out.returncode == 2, out.stderr[-2000:]
    errors = {line for line in out.stderr.splitlines() if line.startswith("error:")}
    assert len(errors) == 1, errors  # each rank says it; the same one line
    assert "batch_size 20 x grad_accum 1 x processes 2" in errors.pop()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_tensorboard_events_hold_the_training_loss(base, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "tb"
    path = write_recipe(tmp_path, finetune_recipe(base, run_dir, log_with=["tensorboard"]))
    out = ft("run", str(path))
    assert out.returncode == 0, out.stderr[-2000:]
    events = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert events and all(run_dir in e.parents for e in events)
    found = []
    for folder in {e.parent for e in events}:
        acc = EventAccumulator(str(folder))
        acc.Reload()
        found += [(acc, t) for t in acc.Tags()["scalars"] if t.endswith("/loss")]
    ((acc, tag),) = found
    logged = {e.step: e.value for e in acc.Scalars(tag)}
    expected = {r["step"]: r["loss"] for r in metrics(run_dir) if "loss" in r}
    assert logged.keys() == expected.keys() == {1, 2, 3}
    for step, loss in expected.items():
        assert logged[step] == pytest.approx(loss, rel=1e-6)


def test_trackers_stay_local_unless_the_user_chose(tmp_path, monkeypatch):
    for key in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    tracker_env(["mlflow", "wandb"], tmp_path)
    assert os.environ["MLFLOW_TRACKING_URI"] == (tmp_path / "mlruns").as_uri()
    assert os.environ["WANDB_MODE"] == "online"  # the user's choice stands
    assert os.environ["WANDB_DIR"] == str(tmp_path)
    monkeypatch.delenv("WANDB_MODE")
    tracker_env(["wandb"], tmp_path)
    assert os.environ["WANDB_MODE"] == "offline"


def test_a_failed_run_closes_its_distributed_group(base, tmp_path, monkeypatch):
    """A gloo group left open to interpreter teardown can abort a rank (exit 134 instead of 2)."""
    import torch.distributed as dist

    from finetune import run
    from finetune.config.load import load_recipe

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    path = write_recipe(tmp_path, finetune_recipe(base, tmp_path / "run", batch_size=40, grad_accum=1))
    try:
        with pytest.raises(UserError, match="fewer than one optimizer step"):
            run(load_recipe(path))
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_max_length_beyond_the_models_context_is_a_one_line_error(base, tmp_path):
    path = write_recipe(tmp_path, finetune_recipe(base, tmp_path / "run"))
    line = cli_error(path, "data.max_length=4096")
    assert "data.max_length 4096 exceeds the model's context length 256 (config.max_position_embeddings)" in line
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
