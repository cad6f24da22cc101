"""Run one contender once and write its RunRecord as JSON: the process whose peak RSS is the contender's.

python -m bench.child NAME REP CONFIG_JSON ASSETS_DIR OUT_JSON
python -m bench.child gemm 0 CONFIG_JSON - OUT_JSON      # the fp32 GEMM ceiling at the same thread count
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.assets import Assets
from bench.config import BenchConfig, RunRecord


def quiet_environment(threads: int) -> None:
    """Offline, no tokenizer thread pool, ``threads`` compute threads: the same for every contender."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(threads)


def run_one(name: str, rep: int, cfg: BenchConfig, assets: Assets) -> RunRecord:
    from bench.contenders import lookup
    from bench.measure import peak_rss_mb

    contender = lookup(name)
    quiet_environment(cfg.threads)
    out: dict[str, Any] = contender.load()(cfg, assets, **contender.kwargs)
    extra = {**out["extra"], "load_1min": round(os.getloadavg()[0], 2)}
    if "cpu_seconds" in out:  # all threads' CPU time over the window: a second view when the machine is shared
        extra["cpu_seconds"] = round(out["cpu_seconds"], 3)
    return RunRecord(
        contender=name,
        rep=rep,
        tokens_per_s=out["tokens"] / max(out["seconds"], 1e-9),
        tokens=out["tokens"],
        seconds=out["seconds"],
        steps=out["steps"],
        peak_rss_mb=peak_rss_mb(),
        setup_rss_mb=out["setup_rss_mb"],
        matmul_params=out["matmul_params"],
        extra=extra,
    )


def main(argv: list[str]) -> int:
    name, rep, cfg_json, assets_dir, out_path = argv
    cfg = BenchConfig.from_json(cfg_json)
    if name == "gemm":
        quiet_environment(cfg.threads)
        from bench.measure import gemm_gflops

        result: Any = gemm_gflops()
    else:
        result = asdict(run_one(name, int(rep), cfg, Assets(Path(assets_dir))))
    Path(out_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
