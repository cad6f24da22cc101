"""What is written is never lost, and a run stops or fails with one line (issue 12, points 6-10).

- ft merge never replaces a folder it was not told to (--force), and never the adapter, its base,
  a run or an adapter folder; it writes through a temporary folder.
- overwrite: true moves aside only a run, never other files.
- Two runs cannot share a run folder: the second exits 2 naming the first one's pid.
- SIGTERM during setup or evaluation exits 75 with one line; run.json records how a run ended;
  a resume after a stop during evaluation goes straight to evaluation.

SIGTERM is sent in-process with a safety-net handler installed, so on code without ft's own
handler the test fails instead of killing pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_tiny import (  # noqa: F401 - corpus is a fixture
    REPO,
    corpus,
    finetune_recipe,
    losses,
    pretrain_recipe,
    run_inprocess,
    write_recipe,
)
from typer.testing import CliRunner

from finetune.config import recipe_from_dict
from finetune.errors import EXIT_STOPPED, EXIT_USER_ERROR, UserError
from finetune.rundir import open_run_dir


def ft(*args: str) -> tuple[int, str]:
    """`ft ARGS` in this process: (exit code, everything it printed)."""
    import cli

    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.output


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def lora(tmp_path_factory, corpus) -> tuple[Path, Path]:
    """(a tiny pretrained base, a finished LoRA run on it)."""
    base = tmp_path_factory.mktemp("base")
    run_inprocess(pretrain_recipe(corpus, base, max_steps=4))
    out = tmp_path_factory.mktemp("lora")
    run_inprocess(finetune_recipe(base / "pretrain" / "model", out, {"kind": "lora", "r": 4}, max_steps=2))
    return base / "pretrain" / "model", out


# ---------------------------------------------------------------- 6: ft merge --out


def test_merge_refuses_a_folder_with_files_and_replaces_it_only_with_force(lora, tmp_path):
    _, run = lora
    out = tmp_path / "merged"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"another model")
    code, message = ft("merge", str(run), "--out", str(out))
    assert code == EXIT_USER_ERROR and "already holds files" in message and "--force" in message, message
    assert (out / "model.safetensors").read_bytes() == b"another model"
    code, message = ft("merge", str(run), "--out", str(out), "--force")
    assert code == 0, message
    assert (out / "model.safetensors").read_bytes() != b"another model" and (out / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["merged"], "temporary folders left behind"


@pytest.mark.parametrize("where", ["base", "inside the run", "another run", "adapter folder", "above the adapter"])
def test_merge_never_writes_over_the_base_a_run_or_an_adapter_even_with_force(lora, tmp_path, where):
    base, run = lora
    if where == "adapter folder":
        target = tmp_path / "adapter"
        target.mkdir()
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            (target / name).write_bytes((run / "model" / name).read_bytes())
    elif where == "another run":
        target = tmp_path / "other-run"
        target.mkdir()
        (target / "run.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"their model")
    else:
        target = {"base": base, "inside the run": run / "merged", "above the adapter": run.parent}[where]
    watched = base.parent if where == "base" else target if target.exists() else run
    before = snapshot(watched)
    code, message = ft("merge", str(run), "--out", str(target), "--force")
    assert code == EXIT_USER_ERROR, message
    assert message.startswith("error: --out") and len(message.strip().splitlines()) == 1, message
    assert snapshot(watched) == before
    assert not (run / "merged").exists()


def test_a_merge_that_fails_midway_leaves_the_old_folder_and_no_half_model(lora, tmp_path, monkeypatch):
    from finetune.model import hf

    _, run = lora
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    real = hf.save_model

    def dies_halfway(model, tokenizer, folder):
        real(model, tokenizer, folder)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hf, "save_model", dies_halfway)
    with pytest.raises(OSError):
        from finetune.methods import merge

        merge(run / "model", out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ---------------------------------------------------------------- 7: overwrite moves only runs


def _recipe(out: Path, **extra) -> object:
    return recipe_from_dict({"name": "guard", "output": str(out), "model": {"path": "m"}, **extra})


def test_overwrite_never_moves_a_folder_that_is_not_a_run(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("text,label\nhello,yes\n")
    (work / "recipe.yaml").write_text("name: mine\n")
    before = snapshot(work)
    monkeypatch.chdir(work)
    with pytest.raises(UserError, match=r"not an ft run.*overwrite: true only moves a previous run"):
        open_run_dir(_recipe(Path("."), overwrite=True), resume=False)
    assert snapshot(work) == before and sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_overwrite_does_not_move_the_current_folder_even_when_it_holds_a_run(tmp_path, monkeypatch):
    (tmp_path / "run.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="current folder"):
        open_run_dir(_recipe(Path("."), overwrite=True), resume=False)
    assert (tmp_path / "run.json").read_text() == "{}"
    assert not [p for p in tmp_path.parent.iterdir() if p.name.startswith(f"{tmp_path.name}.old-")]


# ---------------------------------------------------------------- 8: one run per folder


HOLDER = """
import json, sys, time
sys.path.insert(0, {repo!r})
from finetune.config import recipe_from_dict
from finetune.rundir import open_run_dir
open_run_dir(recipe_from_dict(json.loads(sys.argv[1])), resume=False)
print("holding", flush=True)
time.sleep(120)
"""


def hold(recipe: dict) -> subprocess.Popen:
    """A child process that opens ``recipe``'s run folder as a run does (and so locks it), then waits."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(repo=str(REPO)), json.dumps(recipe)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "holding", line + proc.communicate(timeout=30)[0]
    return proc


def test_a_second_run_on_a_busy_folder_exits_2_naming_the_first_ones_pid(corpus, tmp_path):
    out = tmp_path / "run"
    recipe = pretrain_recipe(corpus, out, max_steps=2)
    first = hold(recipe)
    try:
        before = snapshot(out)
        assert run_info(out)["pid"] == first.pid
        for args in (["--resume"], []):
            code, message = ft("run", str(write_recipe(recipe, tmp_path / "r.yaml")), *args)
            assert code == EXIT_USER_ERROR, message
            assert f"run folder {out} is in use by pid {first.pid}" in message.replace("\n", ""), message
        assert snapshot(out) == before, "the refused run wrote into the folder"
    finally:
        first.kill()
        first.communicate(timeout=30)


def test_the_lock_goes_with_a_killed_holder(corpus, tmp_path):
    out = tmp_path / "run"
    recipe = pretrain_recipe(corpus, out, max_steps=2)
    first = hold(recipe)
    first.kill()
    first.communicate(timeout=30)
    assert run_info(out)["status"] == "running"  # kill -9: nothing could record the end
    result = run_inprocess(recipe, resume=True)
    assert result.metrics["pretrain.steps"] == 2 and run_info(out)["status"] == "done"


def test_the_lock_is_released_when_a_run_ends_in_this_process(corpus, tmp_path):
    out = tmp_path / "run"
    run_inprocess(pretrain_recipe(corpus, out, max_steps=2))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)",
            str(out / ".lock"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode == 0, probe.stderr


# ---------------------------------------------------------------- 10: stopping and how a run ended


@pytest.fixture
def sigterm_net():
    """SIGTERM must meet ft's handler: if it reaches this one instead, the test fails (before the fix the process died)."""

    def net(signum, frame):
        raise RuntimeError("SIGTERM reached no handler of ft: a real process would have died with 143")

    old = signal.signal(signal.SIGTERM, net)
    yield
    signal.signal(signal.SIGTERM, old)


def sigterm_when_called(monkeypatch, module: object, name: str) -> None:
    """``module.name`` sends this process SIGTERM when called, then does its work."""
    real = getattr(module, name)

    def stop_here(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, stop_here)


def _one_stop_line(code: int, output: str) -> str:
    assert code == EXIT_STOPPED, output
    assert "Traceback" not in output, output
    lines = [line[line.index("stopped: ") :] for line in output.replace("\r", "\n").splitlines() if "stopped: " in line]
    assert len(lines) == 1, output
    return lines[0]


def test_sigterm_during_setup_exits_75_with_one_line_and_run_json_says_stopped(
    lora, tmp_path, monkeypatch, sigterm_net
):
    import finetune.data.sources as sources

    base, _ = lora
    out = tmp_path / "run"
    recipe = write_recipe(finetune_recipe(base, out, {"kind": "lora", "r": 4}, max_steps=2), tmp_path / "r.yaml")
    sigterm_when_called(monkeypatch, sources, "load_sources")
    line = _one_stop_line(*ft("run", str(recipe)))
    assert "SIGTERM during fine-tuning" in line and "--resume" in line, line
    assert run_info(out)["status"] == "stopped" and run_info(out)["exit_code"] == EXIT_STOPPED


def test_sigterm_during_evaluation_exits_75_and_resume_goes_straight_to_evaluation(
    lora, tmp_path, monkeypatch, sigterm_net
):
    import finetune.eval.run as eval_run
    import finetune.stages.finetune as stage

    base, _ = lora
    out = tmp_path / "run"
    data = finetune_recipe(base, out, {"kind": "lora", "r": 4}, max_steps=2)
    data["eval"] = {"before": False, "samples": 2, "max_new_tokens": 2}
    recipe = write_recipe(data, tmp_path / "r.yaml")
    sigterm_when_called(monkeypatch, eval_run, "evaluate_model")
    line = _one_stop_line(*ft("run", str(recipe)))
    assert "SIGTERM during evaluation" in line and f"model is saved in {out / 'model'}" in line.replace("\n", ""), line
    assert run_info(out)["status"] == "stopped" and run_info(out)["exit_code"] == EXIT_STOPPED
    assert not (out / "eval.json").exists()
    metrics = (out / "metrics.jsonl").read_text()
    monkeypatch.undo()

    def must_not_train(*args, **kwargs):
        raise AssertionError("the resume fine-tuned again instead of going straight to evaluation")

    monkeypatch.setattr(stage, "finetune", must_not_train)
    code, message = ft("run", str(recipe), "--resume")
    assert code == 0, message
    assert "going straight to evaluation" in message
    assert (out / "eval.json").is_file() and (out / "metrics.jsonl").read_text() == metrics
    info = run_info(out)
    assert info["status"] == "done" and info["exit_code"] == 0


def test_a_changed_train_section_still_trains_on_resume(lora, tmp_path):
    """Going past a finished fine-tuning needs the same inputs: more steps on resume continue training."""
    base, _ = lora
    out = tmp_path / "run"
    data = finetune_recipe(base, out, {"kind": "lora", "r": 4}, max_steps=2)
    run_inprocess(data)
    data["train"]["max_steps"] = 3
    result = run_inprocess(data, resume=True)
    assert result.metrics["finetune.steps"] == 3 and sorted(losses(out / "metrics.jsonl")) == [1, 2, 3]


def test_run_json_records_a_failure_and_its_exit_code(lora, tmp_path):
    base, _ = lora
    out = tmp_path / "run"
    data = finetune_recipe(base, out, {"kind": "lora", "r": 4}, max_steps=2)
    data["data"]["sources"] = [{"path": str(tmp_path / "missing.csv"), "fields": {"input": "text", "output": "label"}}]
    code, message = ft("run", str(write_recipe(data, tmp_path / "r.yaml")))
    assert code == EXIT_USER_ERROR, message
    info = run_info(out)
    assert info["status"] == "failed" and info["exit_code"] == EXIT_USER_ERROR
