"""Guards: non-finite steps, Ctrl-C, the run folder and the resume check (RELIABILITY.md properties 4, 5, 7, 12).

All in-process: NaN is injected by wrapping the model's forward, Ctrl-C is a real
SIGINT sent from inside a backward pass, and the CLI runs through typer's runner
so its exit codes are checked without starting a new Python.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from helpers_tiny import (  # noqa: F401 - corpus is a fixture
    checkpoint_steps,
    corpus,
    finetune_recipe,
    losses,
    pretrain_recipe,
    run_inprocess,
    signalling_backward,
    tensors,
    write_recipe,
)
from typer.testing import CliRunner

from finetune.config import recipe_from_dict
from finetune.errors import EXIT_NON_FINITE, EXIT_STOPPED, EXIT_USER_ERROR, UserError
from finetune.model.core import CoreForCausalLM
from finetune.rundir import open_run_dir
from finetune.train.checkpoint import latest_checkpoint, load_checkpoint

NAN = float("nan")


def ft(*args: str) -> tuple[int, str]:
    """`ft ARGS` in this process: (exit code, everything it printed)."""
    import cli

    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.output


def poison_forward(monkeypatch, first: int, last: int, where: str) -> None:
    """Training forwards number first..last (1-based) give NaN logits, or NaN gradients through finite logits."""
    original = CoreForCausalLM.forward
    calls = [0]

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training:
            calls[0] += 1
            if first <= calls[0] <= last:
                if where == "loss":
                    out.logits = out.logits * NAN
                else:
                    out.logits.register_hook(lambda grad: grad * NAN)
        return out

    monkeypatch.setattr(CoreForCausalLM, "forward", forward)


def step_weights(stage: Path, step: int) -> dict[str, torch.Tensor]:
    return tensors(stage / "checkpoints" / f"step-{step:08d}" / "weights.safetensors")


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- non-finite guard (5)


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_non_finite_step_is_skipped_and_logged_with_its_step(corpus, tmp_path, monkeypatch, capsys, where):
    poison_forward(monkeypatch, 3, 3, where)
    result = run_inprocess(pretrain_recipe(corpus, tmp_path, max_steps=5, save_every=1, save_total_limit=10))
    stage = tmp_path / "pretrain"
    assert result.metrics["pretrain.steps"] == 5
    assert same(step_weights(stage, 2), step_weights(stage, 3)), "the bad step changed the weights"
    assert not same(step_weights(stage, 3), step_weights(stage, 4)), "training did not go on after the bad step"
    assert "step 3: non-finite" in capsys.readouterr().out
    records = {r["step"]: r for r in map(json.loads, (stage / "metrics.jsonl").read_text().splitlines()) if "loss" in r}
    assert records[3].get("skipped") is True and not records[4].get("skipped")


def test_too_many_non_finite_steps_stop_with_exit_3_and_keep_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    poison_forward(monkeypatch, 4, 10**6, "loss")
    recipe = write_recipe(
        pretrain_recipe(corpus, tmp_path / "run", max_steps=10, save_every=1, max_bad_steps=2), tmp_path / "r.yaml"
    )
    code, out = ft("run", str(recipe))
    assert code == EXIT_NON_FINITE, out
    assert "2 non-finite steps in a row (last at step 5)" in out
    stage = tmp_path / "run" / "pretrain"
    latest = latest_checkpoint(stage)
    assert latest.name == "step-00000004" and latest.name in out.replace("\n", "")
    loaded = load_checkpoint(latest)
    assert all(torch.isfinite(t).all() for t in loaded["weights"].values())
    assert same(loaded["weights"], step_weights(stage, 3))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and info["exit_code"] == EXIT_NON_FINITE, "run.json must not say running"


# ---------------------------------------------------------------- graceful stop (4)


def test_ctrl_c_checkpoints_at_the_step_boundary_and_exits_75(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(Accelerator, "backward", signalling_backward(Accelerator.backward, 5, signal.SIGINT))
    recipe = write_recipe(pretrain_recipe(corpus, tmp_path / "run", grad_accum=2), tmp_path / "r.yaml")
    code, out = ft("run", str(recipe))
    assert code == EXIT_STOPPED, out
    assert "--resume" in out
    assert checkpoint_steps(tmp_path / "run" / "pretrain") == [3]  # SIGINT mid-step 3: that step finishes first
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "stopped" and info["exit_code"] == EXIT_STOPPED, "run.json must not say running"


def test_second_ctrl_c_interrupts_at_once_and_keeps_the_last_checkpoint(corpus, tmp_path, monkeypatch):
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(
        Accelerator, "backward", signalling_backward(Accelerator.backward, 3, signal.SIGINT, signal.SIGINT)
    )
    recipe = write_recipe(pretrain_recipe(corpus, tmp_path / "run", save_every=1), tmp_path / "r.yaml")
    code, out = ft("run", str(recipe))
    assert code == 130, out
    stage = tmp_path / "run" / "pretrain"
    assert checkpoint_steps(stage) == [1, 2]
    load_checkpoint(latest_checkpoint(stage))
    assert signal.getsignal(signal.SIGINT) is handler, "the run must put the caller's handler back"


# ---------------------------------------------------------------- run folder and resume guard (7, 12)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, corpus) -> tuple[dict, Path]:
    """A pretrained tiny base and a LoRA run on it with checkpoints: (the LoRA recipe, its folder)."""
    base = tmp_path_factory.mktemp("base")
    run_inprocess(pretrain_recipe(corpus, base, max_steps=4))
    out = tmp_path_factory.mktemp("lora")
    recipe = finetune_recipe(base / "pretrain" / "model", out, {"kind": "lora", "r": 4}, max_steps=3, save_every=1)
    run_inprocess(recipe)
    return recipe, out


def test_a_folder_holding_a_run_is_never_overwritten_silently(lora_run, tmp_path):
    recipe, out = lora_run
    before = snapshot(out)
    code, message = ft("run", str(write_recipe(recipe, tmp_path / "r.yaml")))
    assert code == EXIT_USER_ERROR
    assert str(out) in message.replace("\n", "") and "already holds a run" in message
    assert snapshot(out) == before


def change(recipe: dict, dotted: str, value) -> dict:
    data = json.loads(json.dumps(recipe))
    *path, last = dotted.split(".")
    node = data
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return data


@pytest.mark.parametrize(
    "dotted, value",
    [
        ("method.r", 8),
        ("data.sources.0.sizes.train", 40),
        ("model.path", "/somewhere/else"),
        ("seed", 1),
        ("train.batch_size", 2),
    ],
)
def test_resume_with_changed_fields_is_refused_naming_them(lora_run, dotted, value):
    recipe, out = lora_run
    before = snapshot(out)
    with pytest.raises(UserError) as err:
        run_inprocess(change(recipe, dotted, value), resume=True)
    message = str(err.value)
    assert f"{dotted}: " in message and str(out) in message
    assert snapshot(out) == before, "a refused resume must not rewrite the run folder"


def test_checkpoint_fingerprint_refuses_even_without_the_recorded_recipe(lora_run, tmp_path):
    recipe, out = lora_run
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy)
    (copy / "recipe.yaml").unlink()
    changed = change(recipe, "method.r", 8)
    changed["output"] = str(copy)
    with pytest.raises(UserError, match=r"cannot resume from .*step-00000003: method changed"):
        run_inprocess(changed, resume=True)


def test_resume_with_unchanged_recipe_continues(lora_run):
    recipe, out = lora_run
    more = change(recipe, "train.max_steps", 4)
    run_inprocess(more, resume=True)
    assert checkpoint_steps(out)[-1] == 4 and sorted(losses(out / "metrics.jsonl")) == [1, 2, 3, 4]


def _recipe(out: Path, **extra) -> object:
    return recipe_from_dict({"name": "guard", "output": str(out), "model": {"path": "m"}, **extra})


def test_resume_into_a_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an ft run"):
        open_run_dir(_recipe(tmp_path), resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_overwrite_moves_the_old_run_aside(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    open_run_dir(_recipe(out, overwrite=True), resume=False)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "run.json").read_text() == "{}"
    assert json.loads((out / "run.json").read_text())["status"] == "running"


def test_missing_output_folder_is_created_but_a_file_in_the_way_is_an_error(tmp_path):
    open_run_dir(_recipe(tmp_path / "new" / "deeper"), resume=False)
    assert (tmp_path / "new" / "deeper" / "run.json").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        open_run_dir(_recipe(blocker), resume=False)
    with pytest.raises(UserError, match=f"cannot write to output folder {blocker / 'sub'}"):
        open_run_dir(_recipe(blocker / "sub"), resume=False)


def test_unwritable_output_folder_is_a_clear_error(tmp_path, monkeypatch):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    if os.access(out, os.W_OK):  # root ignores the mode: refuse the write the way the OS would
        real = Path.write_text

        def refuse(self, *args, **kwargs):
            if self.parent == out:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", refuse)
    try:
        with pytest.raises(UserError, match=f"cannot write to output folder {out}: Permission denied"):
            open_run_dir(_recipe(out), resume=False)
    finally:
        out.chmod(0o755)
