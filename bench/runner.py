"""Run the contenders, one process each, alternating across repetitions; write the JSON and markdown results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from bench import report
from bench.assets import Assets, build
from bench.config import BenchConfig

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CHILD_TIMEOUT_S = 900


def run_benchmark(
    cfg: BenchConfig,
    names: list[str],
    out_dir: Path = RESULTS,
    *,
    work: Path | None = None,
    isolate: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure ``names`` ``cfg.reps`` times each and write ``<out_dir>/<date>.json`` and ``.md``; returns the result."""
    from bench.contenders import available

    runnable, skipped = available(names)
    for name, why in skipped.items():
        log(f"skip {name}: {why}")
    started = time.time()
    load_start = _load()
    assets = build(cfg, work)
    gemm_start = _gemm(cfg, isolate)
    records: list[dict[str, Any]] = []
    for rep in range(cfg.reps):
        for name in alternate(runnable, rep):
            record = _run(name, rep, cfg, assets, isolate)
            records.append(record)
            log(
                f"rep {rep + 1}/{cfg.reps} {name}: "
                + (
                    f"FAILED {record['error'].splitlines()[-1][:200]}"
                    if "error" in record
                    else f"{record['tokens_per_s']:,.0f} tokens/s, peak RSS {record['peak_rss_mb']:,.0f} MiB"
                )
            )
    gemm_end = _gemm(cfg, isolate)
    ceiling = max([*gemm_start.values(), *gemm_end.values()])
    summary = report.summarize(records, ceiling)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "wall_s": round(time.time() - started, 1),
        "config": asdict(cfg),
        "data": assets.load("meta"),
        "machine": {**_machine(), "load_start": load_start, "load_end": _load()},
        "gemm": {
            "start": max(gemm_start.values()),
            "end": max(gemm_end.values()),
            "ceiling": ceiling,
            "by_size": {"start": gemm_start, "end": gemm_end},
        },
        "summary": summary,
        "ratios": report.ratios(summary),
        "targets": report.targets(summary),
        "skipped": skipped,
        "runs": records,
    }
    write(result, out_dir)
    return result


def alternate(names: list[str], rep: int) -> list[str]:
    """Rotate the order each repetition and reverse it every other one, so no contender always runs first or after the same one."""
    if not names:
        return []
    k = rep % len(names)
    order = names[k:] + names[:k]
    return order[::-1] if rep % 2 else order


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    return write_named(result, out_dir, "", report.markdown(result))


def write_named(result: dict[str, Any], out_dir: Path, kind: str, text: str) -> tuple[Path, Path]:
    """``<out_dir>/<date>[-kind].json`` and ``.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (result["date"][:10] + (f"-{kind}" if kind else ""))
    json_path, md_path = Path(f"{stem}.json"), Path(f"{stem}.md")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(text)
    return json_path, md_path


def child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _run(name: str, rep: int, cfg: BenchConfig, assets: Assets, isolate: bool) -> dict[str, Any]:
    if not isolate:
        import torch

        from bench.child import run_one

        threads = torch.get_num_threads()
        try:
            return asdict(run_one(name, rep, cfg, assets))
        except Exception as exc:  # a failing contender is a result, not the end of the benchmark
            return {"contender": name, "rep": rep, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            torch.set_num_threads(threads)  # the caller's process goes on with its own setting
    return _child(name, rep, cfg, str(assets.folder))


def _child(name: str, rep: int, cfg: BenchConfig, assets_dir: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ft-bench-child-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "bench.child", name, str(rep), cfg.to_json(), assets_dir, str(out)]
        try:
            proc = subprocess.run(
                cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return {"contender": name, "rep": rep, "error": f"timed out after {CHILD_TIMEOUT_S} s"}
        if proc.returncode != 0 or not out.is_file():
            return {"contender": name, "rep": rep, "error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
        return json.loads(out.read_text())


def _gemm(cfg: BenchConfig, isolate: bool) -> dict[str, float]:
    if not isolate:
        from bench.measure import gemm_gflops

        return gemm_gflops()
    record = _child("gemm", 0, cfg, "-")
    if "error" in record:
        raise RuntimeError(f"the GEMM measurement failed: {record['error']}")
    return record


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _machine() -> dict[str, Any]:
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "transformers", "peft", "accelerate", "trl"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions}
