"""A tiny LoRA DPO run end to end in ft's loop, and the loop's guarantees kept: kill -9 between micro-steps and
resume ends equal to an uninterrupted run; two processes equal one process with grad_accum 2."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
from helpers_tiny import (
    assert_same_run,
    pretrain_recipe,
    run_cli,
    run_inprocess,
    write_corpus,
    write_recipe,
)

ADAPTER = "model/adapter_model.safetensors"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pref-base")
    run_inprocess(pretrain_recipe(write_corpus(folder / "corpus.txt"), folder / "run"))
    return folder / "run" / "pretrain" / "model"


def dpo_recipe(base: Path, out: Path, evaluate: bool = False, **train) -> dict:
    spec = {"max_steps": 4, "batch_size": 2, "grad_accum": 2, "learning_rate": 1e-2, "log_every": 1, "threads": 1}
    return {
        "name": "tiny-dpo",
        "output": str(out),
        "model": {"path": str(base)},
        "data": {
            "shape": "preference",
            "sources": [{"scenario": "tutoring", "sizes": {"train": 16, "validation": 6, "test": 4}}],
            "max_length": 64,
        },
        "method": {"kind": "lora", "r": 4, "targets": "all-linear", "objective": "dpo", "beta": 0.1},
        "train": {**spec, **train},
        **({"eval": {"samples": 4, "max_new_tokens": 8}} if evaluate else {}),
    }


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_lora_dpo_run_logs_pair_numbers_and_starts_at_log_2(base, tmp_path):
    """At step 1 the adapter is zero, so the policy is its reference: every pair's DPO loss is log 2."""
    result = run_inprocess(dpo_recipe(base, tmp_path / "run", evaluate=True))
    records = _records(tmp_path / "run")
    assert abs(records[0]["loss"] - math.log(2)) <= 1e-6 and records[0]["reward_margin"] == 0.0
    assert all({"reward_accuracy", "chosen_logps", "rejected_logps"} <= set(r) for r in records if "loss" in r)
    val = [r for r in records if "val_loss" in r][-1]
    assert 0.0 <= val["val_reward_accuracy"] <= 1.0 and "val_ppl" not in val
    assert result.metrics["finetune.objective"] == "dpo"
    assert result.metrics["finetune.preference"]["val_reward_accuracy"] == val["val_reward_accuracy"]
    assert abs(result.metrics["finetune.base_val_loss"] - math.log(2)) <= 1e-6
    assert "eval.tutoring.telling_rate.after" in result.metrics  # the test pairs are scored as tutoring rows
    report = (tmp_path / "run" / "report.md").read_text()
    assert "reward accuracy" in report


def test_dpo_killed_between_micro_steps_resumes_to_the_same_adapter(base, tmp_path):
    want = tmp_path / "whole"
    run_inprocess(dpo_recipe(base, want, save_every=1))
    got = tmp_path / "killed"
    recipe = write_recipe(dpo_recipe(base, got, save_every=1), tmp_path / "killed.yaml")
    code, log = run_cli(["run", str(recipe)], kill="backward:5")  # mid step 3, after the step-2 checkpoint
    assert code == -signal.SIGKILL, log[-2000:]
    code, log = run_cli(["run", str(recipe), "--resume"])
    assert code == 0, log[-2000:]
    assert "resumed from" in log
    assert_same_run(got, want, ADAPTER)
    assert [r.get("reward_margin") for r in _records(got)] == [r.get("reward_margin") for r in _records(want)]


def test_dpo_two_processes_equal_one_process_with_accumulation(base, tmp_path):
    one = tmp_path / "one"
    run_inprocess(dpo_recipe(base, one))
    recipe = write_recipe(dpo_recipe(base, tmp_path / "two", grad_accum=1), tmp_path / "two.yaml")
    code, log = run_cli(["run", str(recipe), "--processes", "2"], timeout=240)
    assert code == 0, log[-2000:]
    assert "2 per process x 1 grad_accum x 2 processes = 4 sequences" in log
    assert_same_run(tmp_path / "two", one, ADAPTER)
