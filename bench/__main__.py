"""python -m bench [--quick | --smoke] [--reps N] [--threads N] [--only NAME[,NAME]] [--scale] [--profile] [--out DIR]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.config import preset
from bench.runner import RESULTS


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="one repetition, half the workload (a few minutes)")
    size.add_argument("--smoke", action="store_true", help="a tiny model and a handful of examples (seconds; tests)")
    p.add_argument("--reps", type=int, help="repetitions per contender (default 3; quick and smoke: 1)")
    p.add_argument("--threads", type=int, help="torch threads in every contender (default 2; smoke: 1)")
    p.add_argument(
        "--only", help="contender names, groups (lora, full, pretrain, generate) or prefixes, comma-separated"
    )
    p.add_argument("--scale", action="store_true", help="instead: ours' tokens/s and memory across widths and lengths")
    p.add_argument(
        "--profile", action="store_true", help="instead: where our LoRA step spends its time (torch.profiler)"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    p.add_argument("--work", type=Path, help="where built models and data are cached (default bench/work)")
    p.add_argument(
        "--in-process", action="store_true", help="run contenders in this process (peak memory is then shared)"
    )
    args = p.parse_args(argv)
    for name in ("reps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be at least 1, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    cfg = preset("smoke" if args.smoke else "quick" if args.quick else "full", reps=args.reps, threads=args.threads)
    if args.scale:
        from bench.scale import run_scale

        run_scale(cfg, args.out, smoke=args.smoke)
        return 0
    if args.profile:
        from bench.profile import run_profile

        run_profile(cfg, args.out, work=args.work)
        return 0
    from bench.contenders import select
    from bench.report import markdown
    from bench.runner import run_benchmark

    try:
        names = select(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_benchmark(cfg, names, args.out, work=args.work, isolate=not args.in_process)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
