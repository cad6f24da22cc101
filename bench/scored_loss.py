"""A/B of the loss head: full logits then cross-entropy, against logits only at scored positions (scored_loss).

    python -m bench.scored_loss [--steps 15] [--rounds 3] [--threads 2]

LoRA fine-tuning (r 16, all-linear, AdamW) on the quickstart's data mix (risk rows, tutoring rows twice, label
loss, example-averaged loss, length-grouped batches of 16) for two models: the quickstart's core (width 128,
2 layers, vocabulary 1024) and a tiny Llama with a 32k vocabulary, where the head dominates. Both variants train
their own copy of the same model on the same batches, in alternating rounds in one process, so the ratio holds
under the same load; the load average is recorded beside each round. Writes
bench/results/scored-loss-<date>.md and .json.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"


def build_data(seed: int = 0) -> tuple[Any, int]:
    """Tokenized risk + tutoring rows as the quickstart tokenizes them (vocabulary 1024 trained on the rows)."""
    from finetune.config.schema import DataSpec
    from finetune.data.format import Template
    from finetune.data.tokenize import tokenize_rows
    from finetune.data.tokenized import TokenizedData, weigh_examples
    from finetune.model.tokenizer import train_tokenizer
    from finetune.scenarios import get

    risk = get("risk_assessment").generate(seed=seed, sizes={"train": 960, "validation": 8, "test": 8})["train"]
    tutor = get("tutoring").generate(seed=seed, sizes={"train": 96, "validation": 8, "test": 8}, difficulty=1)["train"]
    tok = train_tokenizer(
        [r["input"] + " " + r["output"] for r in risk + tutor], 1024, Path(tempfile.mkdtemp()) / "tok"
    )
    spec = DataSpec(sources=[{"scenario": "risk_assessment"}], max_length=160, label_loss=True)
    merged = TokenizedData(examples=[], choice_sets=[], pad_id=tok.pad_token_id)
    for name, rows, weight in (("risk_assessment", risk, 1), ("tutoring", tutor, 2)):
        template = Template.for_tokenizer(tok, get(name).system, None, "instruction")
        data, _ = tokenize_rows(rows, template, tok, spec, None)
        offset = len(merged.choice_sets)
        merged.choice_sets.extend(data.choice_sets)
        for e in data.examples * weight:
            ci = e.get("choice_index", [-1] * len(e["input_ids"]))
            merged.examples.append({**e, "choice_index": [c + offset if c >= 0 else -1 for c in ci]})
    return weigh_examples(merged), len(tok)


def build_model(kind: str, vocab: int) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    if kind == "core":
        from finetune.model.core import CoreConfig, CoreForCausalLM

        base = CoreForCausalLM(CoreConfig(vocab_size=vocab, width=128, layers=2, heads=4, context_length=256))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        base = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=32000,
                hidden_size=128,
                intermediate_size=344,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                max_position_embeddings=256,
            )
        )
    return get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")).train()


def run_steps(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batches: list[dict[str, torch.Tensor]],
    choice_ids: torch.Tensor,
    variant: str,
) -> dict[str, float]:
    """Forward, backward and step per batch; wall and CPU seconds, non-padding tokens, the mean step loss."""
    from finetune.model.loss import causal_lm_loss, scored_loss

    tokens, losses = 0, []
    wall, cpu = time.perf_counter(), time.process_time()
    for b in batches:
        inputs = {k: b[k] for k in ("input_ids", "attention_mask") if k in b}
        if variant == "full":
            logits = model(**inputs).logits
            s, c = causal_lm_loss(logits, b["labels"], b["choice_index"], choice_ids, b["loss_weight"])
        else:
            s, c = scored_loss(model, inputs, b["labels"], b["choice_index"], choice_ids, b["loss_weight"])
        (s / c).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel()
        losses.append(float(s / c))
    return {
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "tokens": tokens,
        "loss": statistics.fmean(losses),
    }


def bench_model(kind: str, data: Any, vocab: int, steps: int, rounds: int) -> dict[str, Any]:
    from finetune.train.batching import collate, micro_batches

    order = micro_batches([len(e["input_ids"]) for e in data.examples], 16, 0, 0, True)
    batches = [collate([data.examples[i] for i in mb], data.pad_id) for mb in order[: steps * (rounds + 1)]]
    choice_ids = torch.tensor(data.choice_sets, dtype=torch.long)
    model = build_model(kind, vocab)
    runs = {v: copy.deepcopy(model) for v in ("full", "scored")}
    opts = {v: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3) for v, m in runs.items()}
    for v in runs:  # warm-up on the first batches, not timed
        run_steps(runs[v], opts[v], batches[:steps], choice_ids, v)
    rows = []
    for r in range(rounds):
        chunk = batches[steps * (r + 1) : steps * (r + 2)]
        for v in ("full", "scored") if r % 2 == 0 else ("scored", "full"):
            load = os.getloadavg()[0]
            rows.append({"round": r, "variant": v, "load": load, **run_steps(runs[v], opts[v], chunk, choice_ids, v)})
    return {"model": kind, "rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in ("full", "scored"):
        mine = [r for r in rows if r["variant"] == v]
        out[v] = {
            "tok_s": statistics.median(r["tokens"] / r["seconds"] for r in mine),
            "tok_cpu_s": statistics.median(r["tokens"] / r["cpu_seconds"] for r in mine),
            "loss": statistics.fmean(r["loss"] for r in mine),
        }
    out["ratio_wall"] = out["scored"]["tok_s"] / out["full"]["tok_s"]
    out["ratio_cpu"] = out["scored"]["tok_cpu_s"] / out["full"]["tok_cpu_s"]
    return out


def write(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"scored-loss-{result['date']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Loss head A/B: full logits vs logits at scored positions ({result['date']})",
        "",
        f"torch {torch.__version__}, {result['threads']} threads, fp32 GEMM ceiling {result['gemm']:.1f} GFLOP/s; "
        f"load average {result['load_start']:.2f} at start, {result['load_end']:.2f} at end. LoRA r16 all-linear, "
        f"batch 16, {result['steps']} steps per round, {result['rounds']} alternating rounds after a warm-up round; "
        "medians of rounds.",
        "",
        "| model | full tok/s (CPU) | scored tok/s (CPU) | ratio wall | ratio CPU | mean loss full / scored |",
        "|---|---|---|---|---|---|",
    ]
    for m in result["models"]:
        s = m["summary"]
        lines.append(
            f"| {m['model']} | {s['full']['tok_s']:.0f} ({s['full']['tok_cpu_s']:.0f}) | "
            f"{s['scored']['tok_s']:.0f} ({s['scored']['tok_cpu_s']:.0f}) | {s['ratio_wall']:.2f}x | "
            f"{s['ratio_cpu']:.2f}x | {s['full']['loss']:.4f} / {s['scored']['loss']:.4f} |"
        )
    lines += ["", "Rounds (tokens/s wall, load average at the round's start):", ""]
    for m in result["models"]:
        lines.append(
            f"- {m['model']}: "
            + "; ".join(
                f"r{r['round']} {r['variant']} {r['tokens'] / r['seconds']:.0f} (load {r['load']:.1f})"
                for r in m["rows"]
            )
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".md")


def main() -> None:
    from bench.measure import gemm_gflops

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="core,llama32k")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "threads": args.threads,
        "steps": args.steps,
        "rounds": args.rounds,
        "load_start": os.getloadavg()[0],
        "gemm": max(gemm_gflops().values()),
    }
    data, vocab = build_data()
    result["models"] = [bench_model(kind, data, vocab, args.steps, args.rounds) for kind in args.models.split(",")]
    result["load_end"] = os.getloadavg()[0]
    print(write(result).read_text())


if __name__ == "__main__":
    main()
