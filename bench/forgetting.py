"""python -m bench.forgetting [--out DIR] [--work DIR] [--only NAME,...] [k=v ...]

The forgetting study (issue 16): recipes/study/forgetting_{full,lora}_{replay0,replay5}.yaml, run one after
the other on one cached base (400 pretraining steps, the quickstart's settings until 2026-12-02), then the task metric and the
general-text perplexity (held-out split of the pretraining corpus) before and after, side by side, with the
literature's expectations checked against what was measured:

- full fine-tuning forgets more than LoRA r=8 (a larger perplexity increase);
- replay at 0.05 cuts full fine-tuning's perplexity increase by at least 30%, task metric within 0.02.

Writes ``<out>/forgetting-<date>.md`` and ``.json``; the load average and the wall time of each run go in too.
Extra ``k=v`` arguments override every recipe (e.g. ``train.epochs=1`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "recipes" / "study"
NAMES = ("full_replay0", "full_replay5", "lora_replay0", "lora_replay5")
TASK_METRIC = "exact_match"
GENERAL = "general_text"
MIN_CUT = 0.30  # replay must cut full FT's perplexity increase by this share
TASK_WITHIN = 0.02


def run_one(name: str, work: Path, overrides: list[str]) -> dict[str, Any]:
    """Run one study recipe in this process; its numbers from the run's eval.json and report.json."""
    from finetune import Recipe, run

    recipe = Recipe.from_yaml(STUDY / f"forgetting_{name}.yaml", overrides)
    recipe = recipe.model_copy(update={"output": str(work / recipe.name)})
    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = run(recipe)
    wall = time.perf_counter() - started
    ev = json.loads((result.run_dir / "eval.json").read_text())
    report = json.loads((result.run_dir / "report.json").read_text())
    task = next(iter(ev["after"]))
    ret = ev["retention"]
    return {
        "name": name,
        "run_dir": str(result.run_dir),
        "task": task,
        "task_before": ev["before"][task][TASK_METRIC],
        "task_after": ev["after"][task][TASK_METRIC],
        "ppl_before": ret["before"][GENERAL]["ppl"],
        "ppl_after": ret["after"][GENERAL]["ppl"],
        "tokens_scored": ret["after"][GENERAL]["tokens"],
        "replay": report.get("finetune", {}).get("replay", {}),
        "steps": report.get("finetune", {}).get("steps"),
        "wall_s": round(wall, 1),
        "load_at_start": round(load, 2),
    }


def verdicts(rows: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(expectation, what was measured, met) for each of the literature's claims that the rows can answer."""
    rise = {n: r["ppl_after"] - r["ppl_before"] for n, r in rows.items()}
    out = []
    if "full_replay0" in rise and "lora_replay0" in rise:
        full, lora = rise["full_replay0"], rise["lora_replay0"]
        out.append(
            (
                "full FT forgets more than LoRA r=8",
                f"perplexity increase {full:+.3f} (full) vs {lora:+.3f} (LoRA)",
                full > lora,
            )
        )
    if "full_replay0" in rise and "full_replay5" in rise:
        base, replay = rise["full_replay0"], rise["full_replay5"]
        cut = 1 - replay / base if base > 0 else float("nan")
        out.append(
            (
                f"replay 0.05 cuts full FT's perplexity increase by >= {100 * MIN_CUT:.0f}%",
                f"{base:+.3f} -> {replay:+.3f} ({100 * cut:.0f}% cut)"
                if base > 0
                else f"no increase to cut ({base:+.3f})",
                base > 0 and cut >= MIN_CUT,
            )
        )
        d = rows["full_replay5"]["task_after"] - rows["full_replay0"]["task_after"]
        out.append((f"... with the task metric within {TASK_WITHIN}", f"{TASK_METRIC} {d:+.3f}", abs(d) <= TASK_WITHIN))
    return out


def render(rows: dict[str, dict[str, Any]], overrides: list[str]) -> str:
    first = next(iter(rows.values()))
    lines = [
        f"# Forgetting study, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "`" + " ".join(["python -m bench.forgetting", *overrides]) + "`",
        "",
        f"Task: {first['task']} ({TASK_METRIC} on its test split); general text: held-out split of the "
        f"pretraining corpus ({first['tokens_scored']:,} tokens). Seed 0, one run each; CPU "
        f"({os.cpu_count()} cores), load average at each run's start in the table.",
        "",
        f"| recipe | {TASK_METRIC} before | after | general ppl before | after | change | replay rows | wall s | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        rise = r["ppl_after"] - r["ppl_before"]
        lines.append(
            f"| {name} | {r['task_before']:.3f} | {r['task_after']:.3f} | {r['ppl_before']:.3f} | {r['ppl_after']:.3f} "
            f"| {rise:+.3f} ({100 * rise / r['ppl_before']:+.1f}%) | {r['replay'].get('rows', 0)} | {r['wall_s']} "
            f"| {r['load_at_start']} |"
        )
    lines += ["", "| expectation (literature) | measured | met |", "|---|---|---|"]
    lines += [f"| {e} | {m} | {'yes' if ok else 'no'} |" for e, m, ok in verdicts(rows)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forgetting", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "study")
    parser.add_argument("--only", default=",".join(NAMES), help="comma-separated subset of " + ", ".join(NAMES))
    parser.add_argument("overrides", nargs="*", help="k=v recipe overrides applied to every run")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown study run(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    rows = {n: run_one(n, args.work, args.overrides) for n in names}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"forgetting-{time.strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps({"rows": rows, "overrides": args.overrides}, indent=1))
    stem.with_suffix(".md").write_text(render(rows, args.overrides))
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
