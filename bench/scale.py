"""How our training scales: tokens/s and peak memory across model widths and sequence lengths.

Each point is our pretraining path (core decoder, full training, fixed-length
blocks through train()) in its own process, at a constant number of tokens per
step (batch = tokens_per_step / length), so only the shape changes. Tokens per
CPU-second sit beside wall-clock tokens/s: with one thread (--threads 1) they
barely move when other work shares the machine.

    python -m bench --scale [--threads 1]   # -> bench/results/<date>-scale.json and .md
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.config import BenchConfig

WIDTHS = (128, 256, 512, 1024)  # at length 256
LENGTHS = (256, 512, 1024, 2048)  # at width 256
TOKENS_PER_STEP = 2048
SMOKE = {"widths": (16, 32), "lengths": (16, 32), "tokens_per_step": 64}


def points(smoke: bool) -> list[tuple[int, int]]:
    widths, lengths = (SMOKE["widths"], SMOKE["lengths"]) if smoke else (WIDTHS, LENGTHS)
    base_len, base_width = lengths[0], widths[1]
    grid = [(w, base_len) for w in widths] + [(base_width, n) for n in lengths]
    return list(dict.fromkeys(grid))


def point(cfg: BenchConfig, width: int, length: int, tokens_per_step: int) -> dict[str, Any]:
    """One epoch of train() on random-token blocks; the step clock times all but the first and last step."""
    import torch

    from bench.child import quiet_environment
    from bench.contenders.ours import _run_train
    from finetune.data.tokenized import TokenizedData
    from finetune.model.core import CoreConfig, CoreForCausalLM

    quiet_environment(cfg.threads)
    torch.manual_seed(cfg.seed)
    heads = max(1, width // 64)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=cfg.vocab, width=width, layers=cfg.layers, heads=heads, context_length=length, pad_token_id=0
        )
    )
    batch = max(1, tokens_per_step // length)
    steps = 5
    gen = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(1, cfg.vocab, (batch * steps, length), generator=gen).tolist()
    data = TokenizedData([{"input_ids": row, "labels": row} for row in ids], pad_id=0)
    cfg = replace(cfg, batch_size=batch, warmup_steps=1)
    out = _run_train(cfg, model, data, group_by_length=False, forward_kwargs=None, lr=1e-4)
    import os

    from bench.measure import peak_rss_mb

    return {
        "width": width,
        "length": length,
        "batch": batch,
        "heads": heads,
        "load_1min": round(os.getloadavg()[0], 2),
        "tokens_per_s": round(out["tokens"] / out["seconds"], 1),
        "tokens_per_cpu_s": round(out["tokens"] / max(out["cpu_seconds"], 1e-9), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "setup_rss_mb": round(out["setup_rss_mb"], 1),
        "matmul_params": out["matmul_params"],
    }


def run_scale(cfg: BenchConfig, out_dir: Path, smoke: bool = False) -> dict[str, Any]:
    from bench.runner import REPO, child_env, write_named

    tokens_per_step = SMOKE["tokens_per_step"] if smoke else TOKENS_PER_STEP
    rows = []
    for width, length in points(smoke):
        with tempfile.TemporaryDirectory(prefix="ft-bench-scale-") as tmp:
            out = Path(tmp) / "out.json"
            cmd = [
                sys.executable,
                "-m",
                "bench.scale",
                cfg.to_json(),
                str(width),
                str(length),
                str(tokens_per_step),
                str(out),
            ]
            proc = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True)
            row = (
                json.loads(out.read_text())
                if proc.returncode == 0 and out.is_file()
                else {"width": width, "length": length, "error": proc.stderr[-1500:]}
            )
        rows.append(row)
        print(
            f"width {width}, length {length}: "
            + (
                f"{row['tokens_per_s']:,.0f} tokens/s, peak RSS {row['peak_rss_mb']:,.0f} MiB"
                if "error" not in row
                else "FAILED " + row["error"].splitlines()[-1]
            )
        )
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "tokens_per_step": tokens_per_step,
        "layers": cfg.layers,
        "threads": cfg.threads,
        "points": rows,
    }
    write_named(result, out_dir, "scale", markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# ft scaling, {result['date']}",
        "",
        f"Our pretraining path (core decoder, {result['layers']} layers, full training, fp32, "
        f"{result['threads']} threads), {result['tokens_per_step']} tokens per step.",
        "",
        "| width | length | batch | matmul params | tokens/s | tokens/CPU-s | peak RSS MiB | load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["points"]:
        if "error" in r:
            lines.append(f"| {r['width']} | {r['length']} | | | failed | | | |")
        else:
            lines.append(
                f"| {r['width']} | {r['length']} | {r['batch']} | {r['matmul_params']:,} | "
                f"{r['tokens_per_s']:,.0f} | {r['tokens_per_cpu_s']:,.0f} | {r['peak_rss_mb']:,.0f} | {r['load_1min']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    cfg_json, width, length, tokens, out_path = sys.argv[1:]
    result = point(BenchConfig.from_json(cfg_json), int(width), int(length), int(tokens))
    Path(out_path).write_text(json.dumps(result))
