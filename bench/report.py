"""Turn the children's records into medians, MFU, ratios to peers, acceptance targets and a markdown table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.contenders import CONTENDERS, lookup

FLOPS_PER_TOKEN = {"generate": 2}  # forward only; training groups use 6 (forward + backward, the usual 6*N)


@dataclass(frozen=True)
class Target:
    name: str
    ours: tuple[str, ...]  # the best of these (by median tokens/s) is ours
    peers: tuple[str, ...]  # ... against the best of these
    required: float
    memory: bool  # also require ours' peak RSS <= the peer's


TARGETS = (
    Target(
        "LoRA: ft >= 3x TRL default, no more memory",
        ("ours_lora_grouped", "ours_lora_packed"),
        ("trl_default",),
        3.0,
        True,
    ),
    Target(
        "LoRA: ft >= 1.6x TRL best, no more memory",
        ("ours_lora_grouped", "ours_lora_packed"),
        ("trl_default", "trl_packed_bfd", "trl_packed_wrapped"),
        1.6,
        True,
    ),
    Target("LoRA grouped: ft >= 0.9x bare loop", ("ours_lora_grouped",), ("bare_lora_grouped",), 0.9, False),
    Target("LoRA packed: ft >= 0.9x bare loop", ("ours_lora_packed",), ("bare_lora_packed",), 0.9, False),
    Target(
        "full: ft >= 1.0x HF Trainer group_by_length, no more memory", ("ours_full",), ("hf_trainer_full",), 1.0, True
    ),
    Target("pretraining: ft >= 0.95x bare loop", ("ours_pretrain",), ("bare_pretrain",), 0.95, False),
    Target("generation: batched >= 4x one-by-one", ("ours_generate",), ("hf_generate_one_by_one",), 4.0, False),
)


def summarize(records: list[dict[str, Any]], ceiling_gflops: float) -> dict[str, dict[str, Any]]:
    """Per contender: tokens/s median, min, max; peak and setup RSS (median); MFU against the GEMM ceiling."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["contender"] for r in records):
        ok = [r for r in records if r["contender"] == name and "error" not in r]
        errors = [r["error"] for r in records if r["contender"] == name and "error" in r]
        if not ok:
            out[name] = {"runs": 0, "errors": errors}
            continue
        speeds = [r["tokens_per_s"] for r in ok]
        median = statistics.median(speeds)
        flops = FLOPS_PER_TOKEN.get(lookup(name).group, 6) * ok[0]["matmul_params"] * median
        out[name] = {
            "runs": len(ok),
            "tokens_per_s": round(median, 1),
            "min": round(min(speeds), 1),
            "max": round(max(speeds), 1),
            "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in ok), 1),
            "setup_rss_mb": round(statistics.median(r["setup_rss_mb"] for r in ok), 1),
            "mfu": round(flops / (ceiling_gflops * 1e9), 4) if ceiling_gflops > 0 else None,
            "timed_steps": ok[0]["steps"],
            "timed_tokens": ok[0]["tokens"],
            "errors": errors,
            "extra": ok[0]["extra"],
        }
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """For each of our contenders: its median tokens/s over each peer's of the same group (ratio of medians)."""
    out: dict[str, dict[str, float]] = {}
    for name, stats in summary.items():
        if not name.startswith("ours_") or not stats.get("runs"):
            continue
        group = CONTENDERS[name].group
        out[name] = {
            peer: round(stats["tokens_per_s"] / s["tokens_per_s"], 3)
            for peer, s in summary.items()
            if peer != name and not peer.startswith("ours_") and s.get("runs") and CONTENDERS[peer].group == group
        }
    return out


def targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each acceptance target: the contenders compared, the ratio, whether memory and speed are met."""
    out = []
    for t in TARGETS:
        ours = _best(summary, t.ours)
        peer = _best(summary, t.peers)
        row: dict[str, Any] = {"target": t.name, "required": t.required, "ours": ours, "peer": peer}
        if ours is None or peer is None:
            out.append({**row, "ratio": None, "met": None, "note": "not run"})
            continue
        ratio = summary[ours]["tokens_per_s"] / summary[peer]["tokens_per_s"]
        memory_ok = summary[ours]["peak_rss_mb"] <= summary[peer]["peak_rss_mb"] if t.memory else None
        met = ratio >= t.required and memory_ok is not False
        out.append(
            {
                **row,
                "ratio": round(ratio, 3),
                "memory_ok": memory_ok,
                "met": met,
                "rss_mb": [summary[ours]["peak_rss_mb"], summary[peer]["peak_rss_mb"]],
            }
        )
    return out


def _best(summary: dict[str, dict[str, Any]], names: tuple[str, ...]) -> str | None:
    ran = [n for n in names if summary.get(n, {}).get("runs")]
    return max(ran, key=lambda n: summary[n]["tokens_per_s"]) if ran else None


def markdown(result: dict[str, Any]) -> str:
    """The results table, the targets table and the conditions they were measured in."""
    summary, machine, cfg = result["summary"], result["machine"], result["config"]
    lines = [
        f"# ft benchmark, {result['date']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch threads {cfg['threads']}, "
        f"load average {machine['load_start']} at start, {machine['load_end']} at end. "
        f"fp32 GEMM ceiling {result['gemm']['ceiling']:.1f} GFLOP/s (start {result['gemm']['start']:.1f}, "
        f"end {result['gemm']['end']:.1f}). Versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}.",
        "",
        f"Model: Llama architecture, hidden {cfg['hidden']}, {cfg['layers']} layers, {cfg['heads']} heads, "
        f"intermediate {cfg['intermediate']}, vocab {cfg['vocab']}, fp32; pretraining uses our core decoder of the "
        f"same shape. Data: {result['data']['examples']} instruction examples of {result['data']['min_len']}-"
        f"{result['data']['max_len']} tokens (median {result['data']['median_len']}), batch {cfg['batch_size']}, "
        f"one epoch each; LoRA r 8 on q/k/v/o. {cfg['reps']} repetition(s), contenders alternating; "
        f"the first {cfg['warmup_steps']} steps of each run are not timed.",
        "",
        "| group | contender (name) | tokens/s median (min-max) | peak RSS MiB | MFU | ft / peer |",
        "|---|---|---|---|---|---|",
    ]
    rel = result["ratios"]
    for name, s in summary.items():
        c = CONTENDERS[name]
        if not s.get("runs"):
            lines.append(f"| {c.group} | {c.label} | failed: {_short(s['errors'])} | | | |")
            continue
        vs = ", ".join(f"{r:.2f}x {p}" for p, r in rel.get(name, {}).items())
        mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "-"
        lines.append(
            f"| {c.group} | {c.label} (`{name}`) | {s['tokens_per_s']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f}) | "
            f"{s['peak_rss_mb']:,.0f} | {mfu} | {vs} |"
        )
    for name, why in result.get("skipped", {}).items():
        lines.append(f"| {CONTENDERS[name].group} | {CONTENDERS[name].label} | skipped: {why} | | | |")
    lines += [
        "",
        "Generation rows count new tokens per second (MFU with 2N per token); training rows count "
        "non-padding tokens per second (MFU with 6N per token, N = weights of every Linear, LM head included).",
        "",
        "| target | ft | peer | ratio | memory | met |",
        "|---|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        if t["ratio"] is None:
            lines.append(f"| {t['target']} | | | not run | | - |")
            continue
        memory = (
            "-"
            if t.get("memory_ok") is None
            else (f"{t['rss_mb'][0]:,.0f} vs {t['rss_mb'][1]:,.0f} MiB {'ok' if t['memory_ok'] else 'MORE'}")
        )
        lines.append(
            f"| {t['target']} | {CONTENDERS[t['ours']].label} | {CONTENDERS[t['peer']].label} | "
            f"{t['ratio']:.2f}x | {memory} | {'yes' if t['met'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def _short(errors: list[str]) -> str:
    return (errors[-1].strip().splitlines() or ["?"])[-1][:120].replace("|", "/") if errors else "?"
