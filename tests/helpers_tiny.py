"""Tiny recipes, runs and comparisons shared by the reliability tests.

Run as a script it is `ft` with a fault injected from the environment, so a
test can SIGKILL a real process at an exact point (``FT_TEST_KILL``):

    backward:N  SIGKILL after the N-th backward pass of this process (N odd
                with grad_accum 2 = between the micro-steps of one optimizer step)
    term:N      SIGTERM (the graceful stop) at the same point
    saved:S     SIGKILL right after the checkpoint of step S is complete
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
WORDS = (
    "the risk of a loan depends on income duration purpose savings and history "
    "of the applicant who asks for credit at a small bank in town"
).split()
CORE = {"layers": 2, "width": 32, "heads": 4, "context_length": 64}
KILL_ENV = "FT_TEST_KILL"


# ---------------------------------------------------------------- recipes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A test module's pretraining corpus (import this fixture into the module)."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def write_corpus(path: Path, documents: int = 60, seed: int = 0) -> Path:
    """Paragraphs (blank-line separated) of random words: ~2.5k tokens, fast to tokenize and train on."""
    import random

    rng = random.Random(seed)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) for _ in range(documents)]
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return path


# the scenarios whose label words the tiny bases' tokenizers learn: pinned, so the golden trace and every
# test base stay the same when ft gains scenarios
BASE_SCENARIOS = ("content_writing", "medical_records", "tutoring", "financial_analysis", "risk_assessment")


def pretrain_recipe(corpus: Path, out: Path, seed: int = 0, **train: Any) -> dict[str, Any]:
    """Pretraining only, cache off (the model lands in ``out/pretrain/model``); one log line per step."""
    spec = {"max_steps": 20, "batch_size": 4, "learning_rate": 3e-3, "log_every": 1, "threads": 1, **train}
    return {
        "name": "tiny-pretrain",
        "seed": seed,
        "output": str(out),
        "model": {"core": dict(CORE)},
        "train": {"threads": 1},  # the accelerator reads the top-level train section, not pretrain.train
        "pretrain": {
            "corpus": {"kind": "file", "path": str(corpus), "scenarios": list(BASE_SCENARIOS)},
            "tokenizer": {"vocab_size": 300},
            "block_size": 32,
            "cache": False,
            "validation_fraction": 0.1,
            "train": spec,
        },
    }


def finetune_recipe(
    base: Path, out: Path, method: dict[str, Any], seed: int = 0, train_rows: int = 32, **train: Any
) -> dict[str, Any]:
    """Fine-tune ``base`` on generated risk-assessment rows; no evaluation stage."""
    spec = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "log_every": 1, "threads": 1, **train}
    return {
        "name": "tiny-finetune",
        "seed": seed,
        "output": str(out),
        "model": {"path": str(base)},
        "data": {
            "sources": [{"scenario": "risk_assessment", "sizes": {"train": train_rows, "validation": 8, "test": 8}}],
            "max_length": 64,
        },
        "method": method,
        "train": spec,
    }


def write_recipe(data: dict[str, Any], path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ---------------------------------------------------------------- tiny Hugging Face models

# what every test's tiny Llama / Gemma 3 shares: 2 layers, width 32, 4 query heads over 2 key/value heads (GQA)
TINY_LLAMA = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}
TINY_GEMMA3 = {**TINY_LLAMA, "head_dim": 8, "query_pre_attn_scalar": 8, "sliding_window": 4}


def tiny_llama_model(vocab_size: int, **config: Any) -> Any:
    """A random ``LlamaForCausalLM`` of TINY_LLAMA's shape; ``config`` overrides or adds LlamaConfig fields.

    Weights come from torch's global generator as it stands: a test that compares models seeds it first.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, "vocab_size": vocab_size, **config}))


def tiny_gemma3_model(vocab_size: int, **config: Any) -> Any:
    """A random ``Gemma3ForCausalLM`` of TINY_GEMMA3's shape (a 4-token sliding window, so it matters in short
    tests; attention scaled by 1/sqrt(head_dim)); ``config`` overrides or adds Gemma3TextConfig fields. Seed torch
    first, as for tiny_llama_model."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return Gemma3ForCausalLM(Gemma3TextConfig(**{**TINY_GEMMA3, "vocab_size": vocab_size, **config}))


LABEL_TEXTS = [f"Sentence {i}: the market rose {i} points and the patient felt good, or bad." for i in range(200)]
LABEL_PROMPTS = ["the patient felt", "the market", "Sentence 12: the market rose 4 points and", "or"]


def label_tokenizer(out: Path) -> Any:
    """A 320-token tokenizer trained on LABEL_TEXTS, whose words make labels with shared and distinct first tokens."""
    from finetune.model.tokenizer import load_tokenizer, train_tokenizer

    train_tokenizer(LABEL_TEXTS, 320, out)
    return load_tokenizer(out)


def tiny_core_model(vocab_size: int) -> Any:
    """Our core at test size: 2 layers, width 32, 4 heads, 64 positions."""
    from finetune.model.core import CoreConfig, CoreForCausalLM

    return CoreForCausalLM(CoreConfig(vocab_size=vocab_size, width=32, layers=2, heads=4, context_length=64))


# ---------------------------------------------------------------- runs


def run_inprocess(data: dict[str, Any], resume: bool = False) -> Any:
    """pipeline.run on a recipe dict; torch's thread count is restored afterwards (recipes set threads: 1)."""
    import torch

    from finetune.config import recipe_from_dict
    from finetune.pipeline import run

    threads = torch.get_num_threads()
    try:
        return run(recipe_from_dict(data), resume=resume)
    finally:
        torch.set_num_threads(threads)


def start_cli(args: list[str], kill: str | None = None) -> subprocess.Popen:
    """`ft ARGS` in a child process (this file as the entry point), optionally with a kill point."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(KILL_ENV, None)
    if kill:
        env[KILL_ENV] = kill
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_cli(args: list[str], kill: str | None = None, timeout: float = 120) -> tuple[int, str]:
    """(exit code, output) of `ft ARGS`; -9 when the kill point was reached."""
    proc = start_cli(args, kill)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def signal_when(proc: subprocess.Popen, ready: Path, sig: int, min_step: int, timeout: float = 120) -> tuple[int, str]:
    """Send ``sig`` once ``ready`` (a metrics.jsonl) logs ``min_step``; (exit code, output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if max(losses(ready), default=0) >= min_step:
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


# ---------------------------------------------------------------- comparisons


def losses(metrics: Path) -> dict[int, float]:
    """step -> training loss from a metrics.jsonl (a half-written last line is ignored)."""
    out: dict[int, float] = {}
    if not metrics.is_file():
        return out
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in record:
            out[record["step"]] = record["loss"]
    return out


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in ``run_dir`` (a stage folder), oldest first."""
    from finetune.train.checkpoint import complete_checkpoints

    return [int(p.name.split("-")[1]) for p in complete_checkpoints(run_dir)]


def tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest elementwise difference between two tensor dicts with the same keys and shapes."""
    assert sorted(a) == sorted(b), f"different tensors: {sorted(set(a) ^ set(b))}"
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def loss_diff(a: dict[int, float], b: dict[int, float]) -> float:
    assert sorted(a) == sorted(b), f"different logged steps: {sorted(a)} vs {sorted(b)}"
    return max(abs(a[s] - b[s]) for s in a)


def assert_same_run(got: Path, want: Path, weights: str, tol: float = 1e-6) -> None:
    """Two stage folders logged the same loss at every step and ended with the same ``weights`` file."""
    got_losses, want_losses = losses(got / "metrics.jsonl"), losses(want / "metrics.jsonl")
    assert sorted(want_losses) == list(range(1, len(want_losses) + 1)) and len(want_losses) >= 4
    assert loss_diff(got_losses, want_losses) <= tol
    assert max_abs_diff(tensors(got / weights), tensors(want / weights)) <= tol


# ---------------------------------------------------------------- fault injection (child side)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def signalling_backward(original: Any, n: int, *signals: int) -> Any:
    """A stand-in for Accelerator.backward that sends ``signals`` to this process right after its n-th call."""
    calls = [0]

    def backward(self: Any, loss: Any, **kwargs: Any) -> None:
        original(self, loss, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            for sig in signals:
                os.kill(os.getpid(), sig)

    return backward


def install_kill(spec: str) -> None:
    """Patch the kill point ``spec`` (see the module docstring) into this process."""
    kind, _, value = spec.partition(":")
    n = int(value)
    if kind in ("backward", "term"):
        from accelerate import Accelerator

        sig = signal.SIGKILL if kind == "backward" else signal.SIGTERM
        Accelerator.backward = signalling_backward(Accelerator.backward, n, sig)
    elif kind == "saved":
        from finetune.train import checkpoint

        save = checkpoint.save_checkpoint

        def save_then_die(run_dir: Path, step: int, *args: Any, **kwargs: Any) -> Path:
            path = save(run_dir, step, *args, **kwargs)
            if step == n:
                _die()
            return path

        checkpoint.save_checkpoint = save_then_die
    else:
        raise SystemExit(f"{KILL_ENV}: unknown kill point {spec!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    if os.environ.get(KILL_ENV):
        install_kill(os.environ[KILL_ENV])
    import cli

    cli.app(prog_name="ft")
