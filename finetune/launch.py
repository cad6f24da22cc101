"""`ft run --processes N`: start N copies of `ft run` in one torchrun world on this machine.

torchrun's elastic launcher runs in this process so the children's own exit code
(2 for a user error, 75 after a requested stop) comes back instead of torchrun's
generic 1. With `distributed.config_file` the children go through
`accelerate launch --config_file` instead, which answers 0 or 1.

On a machine without CUDA the children get ACCELERATE_USE_CPU=1: without it
accelerate 1.15 lets each torchrun child train alone in a world of one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

from finetune.config.schema import Recipe
from finetune.errors import EXIT_NON_FINITE, EXIT_STOPPED, EXIT_USER_ERROR, UserError

# exit codes whose reason the failing process has already printed
EXPLAINED = (EXIT_USER_ERROR, EXIT_STOPPED, EXIT_NON_FINITE)


def launch(
    recipe_path: str | Path, overrides: Sequence[str], processes: int, resume: bool, recipe: Recipe | None = None
) -> int:
    """Run the recipe in ``processes`` processes; return the children's exit code (0 when all succeeded)."""
    from finetune.config.load import load_recipe
    from finetune.train.accel import validate_distributed

    recipe = recipe or load_recipe(recipe_path, overrides)
    validate_distributed(recipe, processes)
    for line in global_batch_lines(recipe, processes):
        print(line, flush=True)
    script = [str(cli_path()), "run", str(recipe_path), *overrides] + (["--resume"] if resume else [])
    with child_env(processes):
        if recipe.distributed.config_file:
            return subprocess.call([*accelerate_command(recipe.distributed.config_file, processes), *script])
        return _torchrun(processes, script)


def global_batch_lines(recipe: Recipe, processes: int) -> list[str]:
    """What one optimizer step consumes, per training stage: the number to compare across machines."""
    stages = [("pretrain", recipe.pretrain.train)] if recipe.pretrain else []
    stages += [("fine-tune", recipe.train)] if recipe.method else []
    return [
        f"{name}: global batch {t.batch_size} per process x {t.grad_accum} grad_accum x {processes} processes "
        f"= {t.batch_size * t.grad_accum * processes} sequences per optimizer step"
        for name, t in stages
    ]


def cli_path() -> Path:
    """The `ft` entry file, run by path so the children need no installed console script."""
    spec = importlib.util.find_spec("cli")
    path = Path(spec.origin) if spec and spec.origin else Path(__file__).resolve().parent.parent / "cli.py"
    if not path.is_file():
        raise UserError(f"cannot find the ft command file (looked for {path}); reinstall ft")
    return path


def torchrun_args(processes: int, script: Sequence[str]) -> list[str]:
    return ["--standalone", "--nproc_per_node", str(processes), *script]


def accelerate_command(config_file: str, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "--num_processes",
        str(processes),
    ]


def child_environment(processes: int, cuda: bool, cores: int) -> dict[str, str]:
    """Variables the children need: CPU worlds must be told they are CPU worlds; threads split the cores."""
    env = {"OMP_NUM_THREADS": str(max(1, cores // processes))}
    if not cuda:
        env["ACCELERATE_USE_CPU"] = "1"
    return env


@contextlib.contextmanager
def child_env(processes: int) -> Iterator[None]:
    """Set the children's variables in this process (the launcher copies os.environ) and restore them after."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    new = child_environment(processes, torch.cuda.is_available(), cores)
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _torchrun(processes: int, script: Sequence[str]) -> int:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        with _quiet("torch.distributed"):
            torchrun.run(torchrun.parse_args(torchrun_args(processes, script)))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
        if code not in EXPLAINED:
            print(
                f"error: process {rank} of {processes} failed with exit code {code}; its output is above",
                file=sys.stderr,
            )
        return code
    except SignalException as exc:
        print(
            f"stopped by {signal.Signals(exc.sigval).name}; the processes saved a checkpoint if they reached "
            "a step boundary. Continue with: ft run RECIPE --resume",
            file=sys.stderr,
        )
        return EXIT_STOPPED
    return 0


@contextlib.contextmanager
def _quiet(prefix: str) -> Iterator[None]:
    """torchrun's agent logs each child's failure again at length; the children's own messages say it once."""
    loggers = [
        lg
        for name, lg in logging.root.manager.loggerDict.items()
        if name.startswith(prefix) and isinstance(lg, logging.Logger)
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
