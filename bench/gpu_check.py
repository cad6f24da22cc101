"""GPU smoke check: does the toolkit train in bf16 and under FSDP on this machine, how fast, in how much memory?

    python bench/gpu_check.py        # -> bench/results/gpu_check-<date>.json

Three tiny runs, each in its own process (accelerate's state is per process):
a bf16 LoRA fine-tune in one process, then full and LoRA fine-tunes under FSDP
through torchrun on min(2, GPUs) processes (a world of one on a single GPU still
goes through FSDP's wrapping, sharding and state-dict paths). Each records
tokens/s and peak GPU memory; a failure is recorded with its output tail and
makes the exit code 1. Without CUDA it prints that it skipped and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHECKS = {  # name -> (processes: "one" or "fsdp", recipe overrides)
    "bf16_lora": ("one", ["train.precision=bf16", "method.kind=lora"]),
    "fsdp_full": ("fsdp", ["distributed.strategy=fsdp", "method.kind=full"]),
    "fsdp_lora": ("fsdp", ["distributed.strategy=fsdp", "method.kind=lora"]),
}


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check skipped: no CUDA device visible to torch {torch.__version__}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="ft-gpu-check-"))
    base = build_base(work)
    fsdp_procs = min(2, torch.cuda.device_count())
    results = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "gpu": torch.cuda.get_device_name(0),
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "checks": {},
    }
    for name, (kind, overrides) in CHECKS.items():
        recipe = write_recipe(work, name, base, overrides)
        out = work / f"{name}.json"
        launcher = (
            []
            if kind == "one"
            else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(fsdp_procs)]
        )
        cmd = [sys.executable, *launcher, __file__, "--one", str(recipe), "--out", str(out)]
        env = {**os.environ, "FT_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        entry = (
            json.loads(out.read_text())
            if proc.returncode == 0 and out.is_file()
            else {"ok": False, "returncode": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-3000:]}
        )
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results["checks"][name] = entry
        print(
            f"{name}: "
            + (
                f"{entry['tokens_per_s']:.0f} tokens/s, peak {entry['peak_memory_gib']:.2f} GiB, "
                f"{entry['distributed_type']} x {entry['processes']}"
                if entry["ok"]
                else f"FAILED (exit {entry['returncode']})"
            )
        )
    dest = ROOT / "bench" / "results" / f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=1))
    print(f"wrote {dest}")
    return 0 if all(c["ok"] for c in results["checks"].values()) else 1


def build_base(work: Path, width: int = 256, layers: int = 4, heads: int = 8) -> Path:
    """A small core model with its own tokenizer, saved like any HF model (the default loads a GPU a little)."""
    import torch

    from finetune.model import hf
    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import train_tokenizer

    texts = [f"applicant {i} income {i * 37 % 1000} debt {i * 13 % 500} approve deny risk low high" for i in range(300)]
    tok = train_tokenizer(texts, 400, work / "tok")
    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=width,
            layers=layers,
            heads=heads,
            context_length=256,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    return hf.save_model(model, tok, work / "base")


def write_recipe(work: Path, name: str, base: Path, overrides: list[str]) -> Path:
    from finetune.config.load import dump_recipe, recipe_from_dict

    data = {
        "name": name.replace("_", "-"),
        "output": str(work / name),
        "model": {"path": str(base)},
        "data": {
            "sources": [{"scenario": "risk_assessment", "sizes": {"train": 256, "validation": 16, "test": 8}}],
            "max_length": 256,
        },
        "method": {"kind": "lora", "r": 8},
        "train": {"batch_size": 8, "grad_accum": 1, "max_steps": 20, "learning_rate": 1e-3, "log_every": 5},
    }
    recipe = recipe_from_dict(data, overrides)  # the overrides applied and checked once, here
    path = work / f"{name}.yaml"
    dump_recipe(recipe, path)
    return path


def run_one(recipe_path: Path, out: Path) -> None:
    """Inside the launched process(es): run the recipe; the main process writes the measurements."""
    import torch
    from accelerate.state import AcceleratorState

    from finetune.config.load import load_recipe
    from finetune.pipeline import run

    torch.cuda.reset_peak_memory_stats()
    result = run(load_recipe(recipe_path))
    state = AcceleratorState()
    if state.is_main_process:
        tokens, wall = result.metrics["finetune.tokens"], result.metrics["finetune.wall_time"]
        out.write_text(
            json.dumps(
                {
                    "ok": True,
                    "tokens": tokens,
                    "train_seconds": round(wall, 2),
                    "tokens_per_s": tokens / max(wall, 1e-9),
                    "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
                    "processes": state.num_processes,
                    "distributed_type": str(state.distributed_type),
                    "mixed_precision": state.mixed_precision,
                    "val_loss": result.metrics.get("finetune.val_loss"),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.out)
        sys.exit(0)
    sys.exit(main())
