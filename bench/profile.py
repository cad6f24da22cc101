"""Where our LoRA training step spends its time: operators (torch.profiler) and loop phases (py-spy, if installed).

python -m bench --profile        # -> bench/results/<date>-profile.json and .md
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.assets import build
from bench.config import BenchConfig

CATEGORIES = (  # (category, substrings of aten op names), first match wins
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("attention", ("scaled_dot_product",)),
    ("loss (log-softmax, nll)", ("log_softmax", "nll_loss")),
    ("optimizer (foreach)", ("_foreach",)),
    ("memory (fill, copy, cat, index)", ("fill_", "copy_", "aten::cat", "index", "zero_", "clone", "empty")),
    ("elementwise", ("mul", "add", "silu", "neg", "pow", "sqrt", "div", "sum", "mean", "where", "cos", "sin", "sub")),
)
LOOP_FRAME = "train (finetune/train/loop.py"
SAVE_FRAME = "train.<locals>.save"


def run_profile(cfg: BenchConfig, out_dir: Path, work: Path | None = None) -> dict[str, Any]:
    from bench.runner import write_named

    assets = build(cfg, work)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": cfg.threads,
        "examples": cfg.examples,
        "operators": operator_profile(cfg, assets),
        "phases": phase_profile(cfg, assets),
    }
    write_named(result, out_dir, "profile", markdown(result))
    print(markdown(result))
    return result


def operator_profile(cfg: BenchConfig, assets: Any, active_steps: int = 10) -> dict[str, Any]:
    """Self CPU time by operator and by category over ``active_steps`` steps of ours (LoRA, length-grouped)
    after warm-up; a forward hook advances the profiler's schedule, so set-up and saving stay out."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from bench.child import quiet_environment
    from bench.contenders import ours

    quiet_environment(cfg.threads)
    plan = schedule(wait=cfg.warmup_steps, warmup=1, active=active_steps, repeat=1)
    with profile(activities=[ProfilerActivity.CPU], schedule=plan) as prof:

        def tick(module: Any, args: Any) -> None:
            if torch.is_grad_enabled():
                prof.step()

        handle = torch.nn.modules.module.register_module_forward_pre_hook(_only_top(tick))
        try:
            ours.lora(cfg, assets, packed=False)
        finally:
            handle.remove()
    ops = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(t for _, t, _ in ops) or 1.0
    by_cat: dict[str, float] = collections.Counter()
    for name, t, _ in ops:
        by_cat[next((c for c, keys in CATEGORIES if any(k in name for k in keys)), "other")] += t
    top = sorted(ops, key=lambda o: -o[1])[:15]
    return {
        "total_s": round(total, 2),
        "categories": {c: round(t / total, 4) for c, t in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top": [{"op": n, "share": round(t / total, 4), "calls": c} for n, t, c in top],
    }


def _only_top(hook: Any) -> Any:
    """A global forward pre-hook that fires once per step: for the causal LM's forward, not its submodules'
    nor peft's wrapper around it."""

    def fire(module: Any, args: Any) -> None:
        cls = type(module)
        if cls.__name__.endswith("ForCausalLM") and not cls.__module__.startswith("peft"):
            hook(module, args)

    return fire


def phase_profile(cfg: BenchConfig, assets: Any) -> dict[str, Any]:
    """Samples under our train() by the call it was in (forward, backward, loss, optimizer, collate...)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    from bench.runner import REPO, child_env

    with tempfile.TemporaryDirectory(prefix="ft-bench-spy-") as tmp:
        raw, out = Path(tmp) / "raw.txt", Path(tmp) / "out.json"
        cmd = [
            spy,
            "record",
            "-f",
            "raw",
            "-r",
            "100",
            "-o",
            str(raw),
            "--",
            sys.executable,
            "-m",
            "bench.child",
            "ours_lora_grouped",
            "0",
            cfg.to_json(),
            str(assets.folder),
            str(out),
        ]
        proc = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True)
        if proc.returncode != 0 or not raw.is_file():
            return {
                "skipped": f"py-spy failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
            }
        return phases(raw.read_text())


def phases(raw: str) -> dict[str, Any]:
    """Collapsed stacks -> share of train()'s samples by the frame directly under train()."""
    counts: dict[str, int] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        inside = [i for i, f in enumerate(frames) if f.startswith(LOOP_FRAME)]
        if not inside or not n.isdigit():
            continue
        below = frames[inside[-1] + 1] if inside[-1] + 1 < len(frames) else "train() itself"
        counts[below.split(" (")[0]] += int(n)
    saving = counts.pop(SAVE_FRAME, 0)  # the end-of-run checkpoint, outside every timed window
    total = sum(counts.values()) or 1
    return {
        "samples": total,
        "checkpoint_samples": saving,
        "shares": {k: round(v / total, 4) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])},
    }


def markdown(result: dict[str, Any]) -> str:
    ops = result["operators"]
    lines = [
        f"# Profile of ft LoRA training, {result['date']}",
        "",
        f"One epoch over {result['examples']} examples, length-grouped batches, {result['threads']} threads.",
        "",
        "| operator category | share of self CPU time |",
        "|---|---|",
    ]
    lines += [f"| {c} | {100 * s:.1f}% |" for c, s in ops["categories"].items()]
    lines += ["", "| top operators | share | calls |", "|---|---|---|"]
    lines += [f"| {o['op']} | {100 * o['share']:.1f}% | {o['calls']} |" for o in ops["top"]]
    ph = result["phases"]
    lines += [""]
    if "skipped" in ph:
        lines.append(f"Loop phases: skipped ({ph['skipped']}).")
    else:
        lines += [
            f"| call under train(), final checkpoint excluded (py-spy, {ph['samples']} samples) | share |",
            "|---|---|",
        ]
        lines += [f"| {k} | {100 * v:.1f}% |" for k, v in list(ph["shares"].items())[:10]]
    return "\n".join(lines) + "\n"
