"""Preference tuning: memory of LoRA DPO against LoRA SFT, and the SFT -> DPO tutoring study.

    python -m bench.preference [--skip-study] [--skip-memory]

1. Memory: the same base (a 4-layer, width-256 core), the same tutoring pairs (SFT trains on the chosen side),
   the same batch size and steps, each run in its own process; peak RSS (ru_maxrss) of each. Acceptance:
   DPO <= 1.15x SFT (DPO's reference is the base with the adapter disabled, so no second copy).
2. Study: recipes/preference/tutoring_sft.yaml once, then tutoring_dpo.yaml on its model with each of --seeds
   (default 0 1 2). Telling rate (hint replies that state the final number) and exact match on solve requests,
   after SFT alone and after SFT -> DPO, on each DPO run's 500 test problems (its own evaluation before and
   after); reward accuracy on the held-out pairs.
   Acceptance: telling rate at most half of SFT's, exact match down by at most 0.02, reward accuracy >= 0.9.

Writes bench/results/preference-<date>.md (and .json) with the machine's load averages (preference-memory-<date>
or preference-study-<date> when one part is skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.measure import gemm_gflops

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MEMORY_STEPS = 20


def _child_recipe(base: Path, out: Path, objective: str) -> dict:
    """LoRA on tutoring pairs: dpo on the pairs, or sft on their chosen sides (the same rows, the same prompts)."""
    source = {"scenario": "tutoring", "sizes": {"train": 160, "validation": 16, "test": 4}}
    data = {"shape": "preference" if objective == "dpo" else "instruction", "sources": [source], "max_length": 192}
    if objective == "sft":
        source["options"] = {"mode": "mixed", "hint_share": 0.5}
    return {
        "name": f"mem-{objective}",
        "output": str(out),
        "model": {"path": str(base)},
        "data": data,
        "method": {"kind": "lora", "r": 16, "targets": "all-linear", "objective": objective},
        "train": {"max_steps": MEMORY_STEPS, "batch_size": 8, "learning_rate": 1e-3, "log_every": 5},
        "eval": {"before": False, "after": False},
    }


def _peak_rss_child(recipe: dict) -> None:
    """In the child: run the recipe, print the peak RSS in MiB as the last line."""
    import resource

    from finetune.config import recipe_from_dict
    from finetune.pipeline import run

    run(recipe_from_dict(recipe))
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory(work: Path, rounds: int = 2) -> dict:
    """Peak RSS of LoRA SFT and LoRA DPO, alternating, ``rounds`` each; the median ratio."""
    from bench.gpu_check import build_base

    base = build_base(work / "base", width=256, layers=4, heads=8)
    peaks: dict[str, list[float]] = {"sft": [], "dpo": []}
    for r in range(rounds):
        for objective in ("sft", "dpo"):
            recipe = _child_recipe(base, work / f"{objective}-{r}", objective)
            code = f"import json,sys; from bench.preference import _peak_rss_child; _peak_rss_child(json.loads({json.dumps(json.dumps(recipe))}))"
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
            out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{objective} run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            peaks[objective].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"])
    med = {k: sorted(v)[len(v) // 2] for k, v in peaks.items()}
    return {"peaks_mib": peaks, "median_mib": med, "ratio": med["dpo"] / med["sft"]}


def _ft_run(recipe: Path, out: Path, *overrides: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "cli.py"), "run", str(recipe), f"output={out}", "overwrite=true", *overrides]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{recipe.name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text())


def study(work: Path, seeds: list[int]) -> dict:
    """SFT once, then DPO on its model with each seed (other pairs, test prompts and batch order); the numbers the
    acceptance reads, per seed: one seed cannot place a run against lines 0.02 wide."""
    sft_dir = work / "tutoring-sft"
    started = time.perf_counter()
    sft = _ft_run(ROOT / "recipes/preference/tutoring_sft.yaml", sft_dir)
    keys = ("exact_match", "telling_rate", "question_rate", "step_validity")
    runs = {}
    for seed in seeds:
        dpo = _ft_run(
            ROOT / "recipes/preference/tutoring_dpo.yaml",
            work / f"tutoring-dpo-{seed}",
            f"model.path={sft_dir / 'model'}",
            f"seed={seed}",
        )
        # the DPO run's "before" is the SFT model on the DPO run's own test prompts: SFT alone and SFT -> DPO on the
        # same rows (the SFT run's own test split draws other problems, so its numbers are kept only beside them)
        pairs = dpo["finetune"].get("preference", {})
        runs[str(seed)] = {
            "sft": {k: dpo["eval"]["before"]["tutoring"].get(k) for k in keys},
            "dpo": {k: dpo["eval"]["after"]["tutoring"].get(k) for k in keys},
            "reward_accuracy": pairs.get("val_reward_accuracy"),
            "reward_margin": pairs.get("val_reward_margin"),
        }
    return {
        "sft_on_its_own_test": {k: sft["eval"]["after"]["tutoring"].get(k) for k in keys},
        "seeds": runs,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _met(run: dict) -> tuple[bool, bool, bool]:
    """Telling at most half of SFT's, exact match down by at most 0.02, reward accuracy >= 0.9."""
    tell_s, tell_d = run["sft"]["telling_rate"], run["dpo"]["telling_rate"]
    halved = tell_s is not None and tell_d is not None and tell_s > 0 and tell_d <= tell_s / 2
    kept = run["dpo"]["exact_match"] >= run["sft"]["exact_match"] - 0.02
    return halved, kept, (run["reward_accuracy"] or 0) >= 0.9


def verdicts(mem: dict | None, st: dict | None) -> list[str]:
    out = []
    if mem:
        out += [
            "| target | measured | met |",
            "|---|---|---|",
            f"| LoRA DPO peak RSS <= 1.15x LoRA SFT | {mem['ratio']:.3f}x | {'yes' if mem['ratio'] <= 1.15 else 'no'} |",
            "",
        ]
    if st:
        yes = {True: "yes", False: "no"}
        out += [
            "| DPO seed | exact match SFT -> DPO (line: down <= 0.02) | telling rate SFT -> DPO (line: <= half) "
            "| held-out reward accuracy (line: >= 0.9) |",
            "|---:|---|---|---|",
        ]
        for seed, run in st["seeds"].items():
            halved, kept, accurate = _met(run)
            em_s, em_d = run["sft"]["exact_match"], run["dpo"]["exact_match"]
            tell_s, tell_d = run["sft"]["telling_rate"], run["dpo"]["telling_rate"]
            out.append(
                f"| {seed} | {em_s:.3f} -> {em_d:.3f} ({em_d - em_s:+.3f}): {yes[kept]} "
                f"| {tell_s:.3f} -> {tell_d:.3f} ({tell_d / tell_s if tell_s else float('nan'):.2f} kept): {yes[halved]} "
                f"| {run['reward_accuracy']}: {yes[accurate]} |"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the DPO stage's seeds")
    args = parser.parse_args()
    load_before = os.getloadavg()
    ceiling_before = max(gemm_gflops().values())
    with tempfile.TemporaryDirectory(prefix="ft-pref-bench-") as tmp:
        work = Path(tmp)
        mem = None if args.skip_memory else memory(work)
        st = None if args.skip_study else study(work, args.seeds)
    load_after = os.getloadavg()
    ceiling_after = max(gemm_gflops().values())
    result = {
        "date": str(date.today()),
        "load_before": load_before,
        "load_after": load_after,
        "gemm_gflops_before": ceiling_before,
        "gemm_gflops_after": ceiling_after,
        "memory": mem,
        "study": st,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    part = "-memory" if st is None else "-study" if mem is None else ""  # a partial run keeps the whole one's file
    stem = RESULTS / f"preference{part}-{date.today()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [
        f"# Preference tuning ({date.today()})",
        "",
        f"Load averages before {tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in load_after)}; "
        f"fp32 GEMM ceiling {ceiling_before:.0f} GFLOP/s before, {ceiling_after:.0f} after.",
        "",
        *verdicts(mem, st),
        "",
        "```json",
        json.dumps(result, indent=1),
        "```",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
