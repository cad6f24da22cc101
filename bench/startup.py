"""python -m bench.startup [--reps N]: how long `ft validate` takes next to `ft --help`.

`ft --help` imports typer only; `ft validate` adds pydantic, PyYAML and the recipe schema.
Both are timed as fresh processes, alternating, so machine load falls on both alike; the
ratio of medians is the number that counts (target: validate <= 1.5x help).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"help": ["--help"], "validate": ["validate", "recipes/quickstart.yaml"]}


def _time(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    load_before = os.getloadavg()[0]
    for _ in range(args.reps):
        for name, cmd in COMMANDS.items():
            times[name].append(_time(cmd))
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "reps": args.reps,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "seconds": times,
        "median": medians,
        "ratio_validate_to_help": medians["validate"] / medians["help"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"startup-{time.strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(
        f"# CLI start-up, {result['date']} (load {load_before:.2f} -> {result['load_after']:.2f})\n\n"
        "| command | median s | min-max s |\n|---|---|---|\n"
        + "".join(
            f"| ft {' '.join(COMMANDS[n])} | {medians[n]:.2f} | {min(t):.2f}-{max(t):.2f} |\n" for n, t in times.items()
        )
        + f"\nvalidate / help: {result['ratio_validate_to_help']:.2f}x (target <= 1.5x)\n"
    )
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
