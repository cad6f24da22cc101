"""Speed and memory of LoRA with completion-only loss on a real model: ft against TRL's SFTTrainer and a bare loop.

    python -m bench.real_speed --model-dir DIR [--steps 8] [--warmup 3] [--reps 2] [--batch 8] [--out bench/results]
    python -m bench.real_speed --tiny        # a tiny Llama folder built here: checks the script in seconds

DIR is a Hugging Face model folder (Gemma 3 270M: the folder `ft import` converts its GGUF into). Every contender
trains LoRA r 16, alpha 32, all-linear on the same tokenized examples, one child process each (its peak RSS is
its own), contenders alternating across repetitions so a change of load hits all of them; the first ``--warmup``
steps are not timed, then ``--steps`` are. The examples are what label loss is for: financial_analysis sentiment
rows rendered with ft's template and the model's tokenizer, a prompt of 30-80 tokens and an answer of 1-5 (the
label and eos). Only the answer is scored, so a model with a 262k vocabulary spends most of a full-logits step in
its output head. Writes ``<out>/real-speed-<date>.json`` and ``.md`` (``real-speed-tiny-<date>`` for ``--tiny``).

The peers: TRL's SFTTrainer with ``completion_only_loss`` (plain, with ``group_by_length``, and ``padding_free``;
TRL 1.16 computes the loss with its fused chunked head, which on a CPU scores every position without building full
logits: only on Triton devices does it keep the scored ones alone), and a bare peft loop calling
``model(**batch, labels=labels)``, which builds the full [batch, length, vocab] logits.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from bench.config import BenchConfig
from bench.runner import RESULTS

ROOT = Path(__file__).resolve().parent
OURS = "real_ours"
CHECKPOINTED = "real_ours_checkpointed"  # the memory-saving setting: a second ft row against the same lines
BARE = "real_bare_full_logits"
TRL = ("real_trl_completion", "real_trl_completion_grouped", "real_trl_completion_padding_free")
NAMES = (OURS, CHECKPOINTED, BARE, *TRL)
FT_ROWS = ((OURS, "ft"), (CHECKPOINTED, "ft + gradient checkpointing"))  # each measured against every line
SPEED_VS_TRL, SPEED_VS_BARE, MEMORY_VS_TRL = 3.0, 1.5, 0.6  # issue 14's acceptance lines
SCENARIO = "financial_analysis"
PROMPT_TOKENS, ANSWER_TOKENS = (30, 80), (1, 5)


def settings(batch: int, warmup: int, steps: int, reps: int, threads: int, tiny: bool) -> BenchConfig:
    """The run's settings: exactly ``warmup + steps + 1`` batches (the clock stops at the last step's forward)."""
    return replace(
        BenchConfig(),
        batch_size=batch,
        warmup_steps=warmup,
        examples=batch * (warmup + steps + 1),
        max_length=128,
        reps=reps,
        threads=threads,
        lr=3e-4,
        lora_r=16,
        lora_alpha=32,
        lora_targets="all-linear",
        hidden=64 if tiny else 0,  # hidden..vocab describe the tiny model only; 0: a given folder's own
        layers=2 if tiny else 0,
        heads=4 if tiny else 0,
        intermediate=128 if tiny else 0,
        vocab=600 if tiny else 0,
    )


def build_assets(cfg: BenchConfig, model_dir: Path, folder: Path, prompt_tokens: tuple[int, int]) -> dict[str, Any]:
    """An assets folder the contenders read: the model folder linked as ``llama`` and ``tokenizer``, and the examples.

    The link makes a given folder a model source for the same contender code that trains the tiny bench models.
    """
    from finetune.model.tokenizer import load_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("llama", "tokenizer"):
        (folder / name).symlink_to(model_dir.resolve(), target_is_directory=True)
    tokenizer = load_tokenizer(model_dir)
    examples = select_examples(tokenizer, cfg, prompt_tokens)
    (folder / "examples.json").write_text(json.dumps({"examples": examples, "pad_id": tokenizer.pad_token_id}))
    prompts = [sum(x == -100 for x in e["labels"]) for e in examples]
    answers = [len(e["labels"]) - p for e, p in zip(examples, prompts)]
    meta = {
        "model_dir": str(model_dir),
        "examples": len(examples),
        "tokens": sum(len(e["input_ids"]) for e in examples),
        "prompt_tokens": [min(prompts), sorted(prompts)[len(prompts) // 2], max(prompts)],
        "answer_tokens": [min(answers), max(answers)],
        "scored_share": round(sum(answers) / sum(len(e["input_ids"]) for e in examples), 4),
        "tokenizer_vocab": len(tokenizer),
        "source": f"{SCENARIO} sentiment rows (seed {cfg.seed}), ft's instruction template, the model's tokenizer",
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def select_examples(tokenizer: Any, cfg: BenchConfig, prompt_tokens: tuple[int, int]) -> list[dict[str, list[int]]]:
    """``cfg.examples`` tokenized sentiment rows whose prompt and answer lengths fall in the stated ranges."""
    from finetune import scenarios
    from finetune.data.format import Template, encode_example

    scenario = scenarios.get(SCENARIO)
    template = Template.for_tokenizer(tokenizer, scenario.system, None, "instruction")
    rows = scenario.generate(seed=cfg.seed, sizes={"train": 6 * cfg.examples + 100, "validation": 1, "test": 1})
    kept = []
    for row in rows["train"]:
        if row.get("subtask") != "sentiment":
            continue
        e = encode_example(template, tokenizer, row, cfg.max_length, "truncate", train_on_prompt=False)
        answer = sum(x != -100 for x in e["labels"]) if e else 0
        prompt = len(e["input_ids"]) - answer if e else 0
        if e and prompt_tokens[0] <= prompt <= prompt_tokens[1] and ANSWER_TOKENS[0] <= answer <= ANSWER_TOKENS[1]:
            kept.append({"input_ids": e["input_ids"], "labels": e["labels"]})
    if len(kept) < cfg.examples:
        raise ValueError(f"only {len(kept)} {SCENARIO} sentiment rows fit the length ranges; {cfg.examples} wanted")
    random.Random(cfg.seed).shuffle(kept)
    return kept[: cfg.examples]


def tiny_model(folder: Path) -> Path:
    """A tiny Llama (2 layers, width 64, tied head like Gemma's) with a tokenizer trained on the scenario's text."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from finetune import scenarios
    from finetune.model.tokenizer import train_tokenizer

    scenario = scenarios.get(SCENARIO)
    rows = scenario.generate(seed=0, sizes={"train": 200, "validation": 1, "test": 1})["train"]
    tokenizer = train_tokenizer([scenario.system] + [r["input"] + " " + r["output"] for r in rows], 600, folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def run(
    cfg: BenchConfig,
    model_dir: Path,
    names: list[str],
    out_dir: Path,
    *,
    tiny: bool = False,
    isolate: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the examples, run ``names`` ``cfg.reps`` times each (alternating), write the results; returns them."""
    from bench import report
    from bench.assets import Assets
    from bench.contenders import available
    from bench.runner import _gemm, _load, _machine, _run, alternate

    runnable, skipped = available(names)
    for name, why in skipped.items():
        log(f"skip {name}: {why}")
    started, load_start = time.time(), _load()
    with tempfile.TemporaryDirectory(prefix="ft-real-speed-") as tmp:
        prompt_range = (1, cfg.max_length) if tiny else PROMPT_TOKENS  # a tiny vocabulary writes longer prompts
        meta = build_assets(cfg, model_dir, Path(tmp) / "assets", prompt_range)
        assets = Assets(Path(tmp) / "assets")
        gemm_start = _gemm(cfg, isolate)
        records = []
        for rep in range(cfg.reps):
            for name in alternate(runnable, rep):
                records.append(_run(name, rep, cfg, assets, isolate))
                log(_line(records[-1], rep, cfg.reps))
        gemm_end = _gemm(cfg, isolate)
    ceiling = max([*gemm_start.values(), *gemm_end.values()])
    summary = report.summarize(records, ceiling)
    for name, stats in summary.items():
        done = [r["seconds"] / r["steps"] for r in records if r["contender"] == name and "error" not in r]
        if done:
            stats["s_per_step"] = round(statistics.median(done), 3)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "wall_s": round(time.time() - started, 1),
        "tiny": tiny,
        "config": asdict(cfg),
        "data": meta,
        "machine": {**_machine(), "load_start": load_start, "load_end": _load()},
        "gemm": {"start": max(gemm_start.values()), "end": max(gemm_end.values()), "ceiling": ceiling},
        "summary": summary,
        "comparison": compare(summary),
        "skipped": skipped,
        "runs": records,
    }
    write(result, out_dir)
    return result


def _line(record: dict[str, Any], rep: int, reps: int) -> str:
    head = f"rep {rep + 1}/{reps} {record['contender']}: "
    if "error" in record:
        return head + f"FAILED {record['error'].splitlines()[-1][:200]}"
    return head + f"{record['tokens_per_s']:,.0f} tokens/s, peak RSS {record['peak_rss_mb']:,.0f} MiB"


def compare(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """ft's median tokens/s over each peer's, its peak RSS over TRL's, and issue 14's lines met or not (default and
    checkpointed ft).

    The TRL peer of the targets is its fastest variant (its best settings); the memory line compares with that
    same run, and also states the ratio to TRL's leanest variant.
    """
    ours = summary.get(OURS, {})
    ok = {n: s for n, s in summary.items() if s.get("runs")}
    if not ours.get("runs"):
        return {"error": f"{OURS} did not run"}
    speed = {n: round(ours["tokens_per_s"] / s["tokens_per_s"], 3) for n, s in ok.items() if n != OURS}
    memory = {n: round(ours["peak_rss_mb"] / s["peak_rss_mb"], 3) for n, s in ok.items() if n != OURS}
    trl = [n for n in TRL if n in ok]
    out: dict[str, Any] = {"speed": speed, "memory": memory, "targets": []}
    if trl:
        best = max(trl, key=lambda n: ok[n]["tokens_per_s"])
        leanest = min(trl, key=lambda n: ok[n]["peak_rss_mb"])
        out["trl_best"], out["trl_leanest"] = best, leanest
        for name, who in ((n, w) for n, w in FT_ROWS if n in ok):
            fast = ok[name]["tokens_per_s"] / ok[best]["tokens_per_s"]
            lean = ok[name]["peak_rss_mb"] / ok[best]["peak_rss_mb"]
            out["targets"] += [
                _target(f"{who} >= {SPEED_VS_TRL}x TRL's best tokens/s", round(fast, 3), SPEED_VS_TRL, best, True),
                _target(f"{who} peak RSS <= {MEMORY_VS_TRL}x TRL's", round(lean, 3), MEMORY_VS_TRL, best, False),
            ]
    if BARE in ok:
        for name, who in ((n, w) for n, w in FT_ROWS if n in ok):
            fast = round(ok[name]["tokens_per_s"] / ok[BARE]["tokens_per_s"], 3)
            out["targets"].append(
                _target(f"{who} >= {SPEED_VS_BARE}x the full-logits loop", fast, SPEED_VS_BARE, BARE, True)
            )
    return out


def _target(name: str, ratio: float, line: float, peer: str, higher: bool) -> dict[str, Any]:
    return {"target": name, "peer": peer, "ratio": ratio, "met": ratio >= line if higher else ratio <= line}


def markdown(result: dict[str, Any]) -> str:
    from bench.contenders import lookup

    cfg, data, machine, gemm = result["config"], result["data"], result["machine"], result["gemm"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    lines = [
        f"# LoRA speed and memory on {'a tiny Llama (script check)' if result['tiny'] else 'a real model'}, "
        f"{result['date']}",
        "",
        f"Model folder: `{data['model_dir']}` (vocabulary {data['tokenizer_vocab']:,}). Machine: {machine['cpu']}, "
        f"{machine['cores']} cores, torch threads {cfg['threads']}; load average {machine['load_start']} before, "
        f"{machine['load_end']} after; fp32 GEMM ceiling {gemm['ceiling']:.1f} GFLOP/s (start {gemm['start']:.1f}, "
        f"end {gemm['end']:.1f}). Versions: {versions}. Wall {result['wall_s'] / 60:.1f} min.",
        "",
        f"Work: LoRA r {cfg['lora_r']}, alpha {cfg['lora_alpha']}, {cfg['lora_targets']}; batch {cfg['batch_size']}; "
        f"{cfg['examples']} examples = {cfg['warmup_steps']} warm-up steps (not timed) + timed steps + 1 (the clock "
        f"stops at the last step's forward); {cfg['reps']} repetition(s), contenders alternating, one process each. "
        f"Data: {data['source']}: prompt {data['prompt_tokens'][0]}-{data['prompt_tokens'][2]} tokens (median "
        f"{data['prompt_tokens'][1]}), answer {data['answer_tokens'][0]}-{data['answer_tokens'][1]} tokens; "
        f"{100 * data['scored_share']:.1f}% of the tokens are scored. Loss: cross-entropy over the full vocabulary "
        "at the answer tokens only, for every contender.",
        "",
        "| contender (name) | tokens/s median (min-max) | s/step | peak RSS MiB | trainable | ft / it: speed, memory |",
        "|---|---|---|---|---|---|",
    ]
    comparison = result["comparison"]
    for name, s in result["summary"].items():
        label = lookup(name).label
        if not s.get("runs"):
            lines.append(f"| {label} (`{name}`) | failed: {s['errors'][0].splitlines()[-1][:120]} | | | | |")
            continue
        vs = (
            f"{comparison['speed'][name]:.2f}x, {comparison['memory'][name]:.2f}x"
            if name in comparison.get("speed", {})
            else ""
        )
        lines.append(
            f"| {label} (`{name}`) | {s['tokens_per_s']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f}) | {s['s_per_step']:.2f} | "
            f"{s['peak_rss_mb']:,.0f} | {s['extra'].get('trainable_params', 0):,} | {vs} |"
        )
    for name, why in result["skipped"].items():
        lines.append(f"| {lookup(name).label} (`{name}`) | skipped: {why} | | | | |")
    lines += ["", "Tokens/s counts every non-padding token of the timed steps (prompt and answer).", ""]
    if comparison.get("targets"):
        lines += ["| target | peer | ratio | met |", "|---|---|---|---|"]
        lines += [
            f"| {t['target']} | `{t['peer']}` | {t['ratio']:.2f}x | {'yes' if t['met'] else 'no'} |"
            for t in comparison["targets"]
        ]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``<out_dir>/real-speed[-tiny]-<date>.json`` and ``.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"real-speed{'-tiny' if result['tiny'] else ''}-{result['date'][:10]}"
    json_path, md_path = Path(f"{stem}.json"), Path(f"{stem}.md")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(markdown(result))
    return json_path, md_path


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.real_speed", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="a Hugging Face model folder (e.g. Gemma 3 270M's conversion)")
    source.add_argument("--tiny", action="store_true", help="a tiny Llama built here, 2 timed steps: checks the script")
    p.add_argument("--steps", type=int, help="timed steps per run (default 8; --tiny 2)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 3; --tiny 1)")
    p.add_argument("--reps", type=int, default=1, help="repetitions per contender (default 1)")
    p.add_argument("--batch", type=int, default=8, help="examples per step (default 8)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per contender (default 2)")
    p.add_argument("--only", help="comma-separated contender names (default: all six)")
    p.add_argument("--out", type=Path, help="results folder (default bench/results; --tiny: bench/work)")
    args = p.parse_args(argv)
    for name in ("steps", "warmup", "reps", "batch", "threads"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            p.error(f"--{name} must be at least {0 if name == 'warmup' else 1}, got {value}")
    if args.model_dir is not None and not (args.model_dir / "config.json").is_file():
        p.error(f"--model-dir {args.model_dir} has no config.json; give a Hugging Face model folder (ft import)")
    names = [n.strip() for n in args.only.split(",")] if args.only else list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        p.error(f"--only {unknown[0]!r} is not a contender here; use {', '.join(NAMES)}")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    steps = args.steps or (2 if args.tiny else 8)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    cfg = settings(args.batch, warmup, steps, args.reps, args.threads, args.tiny)
    out = args.out or (ROOT / "work" if args.tiny else RESULTS)
    with tempfile.TemporaryDirectory(prefix="ft-real-speed-model-") as tmp:
        model_dir = tiny_model(Path(tmp) / "tiny") if args.tiny else args.model_dir
        result = run(cfg, model_dir, args.names, out, tiny=args.tiny)
    print(markdown(result))
    failed = [n for n, s in result["summary"].items() if not s.get("runs")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
