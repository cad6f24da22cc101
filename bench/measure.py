"""The three measurements every contender shares: a step clock, resident memory and a GEMM ceiling.

The clock sits on the model itself (a forward pre-hook), not inside any trainer,
so TRL, the HF Trainer, a bare loop and ours are timed by the same code: from the
forward of the first step after warm-up to the forward of the last step, with the
non-padding tokens of every step in between. Each contender runs one forward per
optimizer step (no accumulation), so a forward marks a step.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch
from torch import nn


class StepClock:
    """Timestamps and non-padding token counts of each training forward of ``model``."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        self.pad_id = pad_id
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # process CPU time (all threads): far less disturbed by other processes
        self.tokens: list[int] = []
        self.setup_rss_mb = 0.0  # at the first training forward: imports, model, data and trainer in place
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if not torch.is_grad_enabled():  # evaluation and generation; not module.training, which loaders leave False
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if not self.times:
            self.setup_rss_mb = rss_mb()
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())
        self.tokens.append(int((ids != self.pad_id).sum()))

    def close(self) -> None:
        self._handle.remove()

    def result(self, model: nn.Module, warmup: int, **extra: Any) -> dict[str, Any]:
        """The timed window, from the start of step ``warmup`` to the start of the last step, as a child reports it."""
        self.close()
        if len(self.times) < warmup + 2:
            raise RuntimeError(
                f"only {len(self.times)} training steps ran; the timed window needs at least {warmup + 2}"
            )
        return {
            "tokens": sum(self.tokens[warmup:-1]),
            "seconds": self.times[-1] - self.times[warmup],
            "cpu_seconds": self.cpu_times[-1] - self.cpu_times[warmup],
            "steps": len(self.times) - 1 - warmup,
            "setup_rss_mb": self.setup_rss_mb,
            "matmul_params": matmul_params(model),
            "extra": {"all_steps": len(self.times), "trainable_params": trainable_params(model), **extra},
        }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident set size, from /proc (falls back to the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except OSError:
        return peak_rss_mb()
    return pages * resource.getpagesize() / 2**20


def trainable_params(model: nn.Module) -> int:
    """Parameters the optimizer updates: equal across LoRA contenders when their adapters are the same."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matmul_params(model: nn.Module) -> int:
    """Weights that multiply activations (every Linear, the LM head included; embeddings are lookups)."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel()
    return total


def gemm_gflops(sizes: tuple[int, ...] = (512, 1024, 1536), repeats: int = 5) -> dict[str, float]:
    """Best fp32 GFLOP/s of square matmuls at the current thread count: the machine's ceiling for MFU."""
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # first call: allocation and kernel selection
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        out[str(n)] = 2 * n**3 / best / 1e9
    return out
