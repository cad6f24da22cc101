"""python -m bench.serve [--model DIR] [--clients 16] [--rounds 3]: `ft serve` throughput, concurrent vs one at a time.

The real server (a fresh `ft serve` process on a free port) answers the same greedy requests twice per
round: one client after another, then all clients at once (the batcher decodes them together). Greedy
answers are the same both ways, so the work is identical and the ratio of wall times is the ratio of
throughputs (target: concurrent >= 3x sequential). Rounds alternate so machine load falls on both alike.
Without --model a random core model (width 256, 4 layers) is built: its answers are noise, its cost is real.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the loan risk of an applicant depends on income savings history duration and the purpose of the credit".split()


def build_model(out: Path, width: int = 256, layers: int = 4) -> Path:
    """A random core model with a tokenizer trained on the bench's words; special tokens never win the argmax."""
    import random

    import torch

    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import train_tokenizer

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(300)]
    tok = train_tokenizer(texts, 512, out)
    torch.manual_seed(0)
    config = CoreConfig(
        vocab_size=len(tok),
        width=width,
        layers=layers,
        heads=max(width // 64, 1),
        context_length=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
    )
    model = CoreForCausalLM(config)
    with torch.no_grad():  # the answers run to max_tokens, so both modes do the full work
        model.get_input_embeddings().weight[tok.all_special_ids] = 0
    model.save_pretrained(out)
    return out


def start_server(model: Path, name: str, threads: int) -> tuple[subprocess.Popen, str]:
    """`ft serve MODEL --port 0 --threads N`; the base URL once /v1/models answers."""
    import httpx

    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "serve",
            str(model),
            "--port",
            "0",
            "--name",
            name,
            "--threads",
            str(threads),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        raise SystemExit(f"ft serve did not start: {line!r}")
    base = line.split(" at ")[1].split()[0]
    for _ in range(600):
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("ft serve did not answer /v1/models")


def ask(client: Any, name: str, prompt: str, max_tokens: int) -> tuple[str, int]:
    reply = client.completions.create(model=name, prompt=prompt, max_tokens=max_tokens, temperature=0)
    return reply.choices[0].text, reply.usage.completion_tokens


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    p.add_argument("--model", type=Path, help="a model, adapter or run folder (default: a random 256-wide core)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    import openai

    prompts = [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 9)) for i in range(args.clients)]
    with tempfile.TemporaryDirectory(prefix="ft-bench-serve-") as tmp:
        model = args.model or build_model(Path(tmp) / "model")
        load_before = os.getloadavg()[0]
        proc, base = start_server(model, "bench", args.threads)
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
        one = lambda prompt: ask(client, "bench", prompt, args.max_tokens)
        try:
            one(prompts[0])  # warm-up: first-call costs (allocations, lazy imports) in neither mode
            seq, conc, same = [], [], True
            for _ in range(args.rounds):
                t_seq, alone = timed(lambda: [one(q) for q in prompts])
                with ThreadPoolExecutor(args.clients) as pool:
                    t_conc, together = timed(lambda: list(pool.map(one, prompts)))
                seq.append(t_seq)
                conc.append(t_conc)
                same = same and alone == together
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    tokens = sum(n for _, n in alone)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": str(args.model or "random core, width 256, 4 layers, context 512"),
        "clients": args.clients,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "completion_tokens_per_round": tokens,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "sequential_s": seq,
        "concurrent_s": conc,
        "ratio": statistics.median(seq) / statistics.median(conc),
        "same_answers": same,
        "server_exit_code": code,
    }
    write(result, args.out)
    return 0 if same and code == 0 else 1


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"serve-{time.strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    seq, conc = statistics.median(result["sequential_s"]), statistics.median(result["concurrent_s"])
    tokens = result["completion_tokens_per_round"]
    stem.with_suffix(".md").write_text(
        f"# ft serve throughput, {result['date']} (load {result['load_before']:.2f} -> {result['load_after']:.2f}, "
        f"{result['cpus']} CPUs)\n\n"
        f"Model: {result['model']}; {result['clients']} greedy completions of {result['max_tokens']} tokens "
        f"({tokens} tokens a round), {len(result['sequential_s'])} rounds, medians; server --threads {result['threads']}.\n\n"
        "| mode | wall s | tokens/s |\n|---|---|---|\n"
        f"| one client at a time | {seq:.2f} | {tokens / seq:.1f} |\n"
        f"| {result['clients']} clients at once | {conc:.2f} | {tokens / conc:.1f} |\n\n"
        f"Concurrent / sequential throughput: {result['ratio']:.2f}x (target >= 3x); "
        f"answers identical both ways: {result['same_answers']}; server exit on SIGTERM: {result['server_exit_code']}\n"
    )
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    raise SystemExit(main())
