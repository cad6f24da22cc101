"""scale.json (everything, machine-readable) and scale.md (the tables a reader wants), written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SCALE_JSON = "scale.json"
SCALE_MD = "scale.md"
CHINCHILLA_TOKENS_PER_PARAMETER = 20


def write_scale(folder: Path, summary: dict[str, Any]) -> tuple[Path, Path]:
    from finetune.rundir import write_json

    write_json(folder / SCALE_JSON, summary)
    md = folder / SCALE_MD
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text("\n".join(markdown(summary)) + "\n", encoding="utf-8")
    os.replace(tmp, md)
    return folder / SCALE_JSON, md


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.2e}"


def _ci(ci: Any, digits: int = 3) -> str:
    return "n/a" if not ci else f"[{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def markdown(s: dict[str, Any]) -> list[str]:
    fit = s["fit"]
    lines = [
        f"# Scaling sweep `{s['recipe']}`",
        "",
        f"{s['finished']} of {len(s['runs'])} runs finished ({s['status']}); this invocation took "
        f"{s['wall_s'] / 60:.1f} min on {s['machine']['cores']} cores (load average {s['machine']['load']}).",
        "Loss: validation loss in nats/token after the run's whole schedule (each run's lr decays to its own budget).",
        "",
        *_runs_table(s["runs"]),
        "",
        *_law_lines(fit),
        *_optimum_lines(fit),
        *_frontier_lines(fit),
        *_depth_width_lines(fit["depth_vs_width"]),
        *_prediction_lines(s),
    ]
    for name in s.get("plots", []):
        lines += ["", f"![{name}]({name})"]
    return lines


def _runs_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| run | role | layers | width | N (non-emb.) | D (tokens) | D/N | 6ND | val loss | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['id']} | {r['role']} | {r['layers']} | {r['width']} | {r['parameters']:,} | {r['tokens']:,} | "
            f"{r['tokens'] / r['parameters']:.1f} | {r['flops']:.2e} | {_num(r.get('val_loss'), 4)} | "
            f"{r['status']}{' (cache)' if r.get('reused') else ''} |"
        )
    return lines


def _law_lines(fit: dict[str, Any]) -> list[str]:
    if fit.get("law") is None:
        return ["## Fitted law", "", fit.get("note", "not fitted"), ""]
    law, ci = fit["law"], fit["law_ci"]
    err = fit["fit_error"]
    lines = [
        "## Fitted law (approach 3)",
        "",
        "L(N, D) = E + A / N^alpha + B / D^beta; Huber (delta 1e-3) on log L, L-BFGS from the best points of a "
        f"grid of initialisations; 95% intervals from {fit['bootstrap']} bootstrap resamples of the runs.",
        "",
        "| parameter | value | 95% CI |",
        "|---|---:|---|",
    ]
    lines += [f"| {k} | {_num(law[k], 4)} | {_ci(ci[k])} |" for k in ("alpha", "beta", "E", "A", "B")]
    lines += [
        "",
        f"Fit error over the runs: mean {err['mean_relative']:.2%}, max {err['max_relative']:.2%} (relative, in loss).",
        "",
    ]
    return lines


def _optimum_lines(fit: dict[str, Any]) -> list[str]:
    opt = fit.get("optimum")
    if not opt:
        return []
    ratio = opt["tokens_per_parameter"]
    return [
        f"## Compute-optimal size at C = {fit['reference_flops']:.2e} FLOPs",
        "",
        f"By the law: N_opt = {_num(opt['parameters'])} {_ci(opt['parameters_ci'])}, D_opt = {_num(opt['tokens'])} "
        f"{_ci(opt['tokens_ci'])}, **{_num(ratio)} tokens per parameter** {_ci(opt['tokens_per_parameter_ci'])} "
        f"(Chinchilla: about {CHINCHILLA_TOKENS_PER_PARAMETER}); N_opt grows as C^{_num(opt['n_exponent'])} "
        f"{_ci(opt['n_exponent_ci'])} (Chinchilla: about 0.5). The ratio depends on C unless alpha = beta.",
        "",
    ]


def _frontier_lines(fit: dict[str, Any]) -> list[str]:
    fr = fit["frontier"]
    lines = ["## Measured frontier (approach 1)", "", f"Runs no cheaper run beats: {', '.join(fr['runs']) or 'none'}."]
    if fr.get("a") is not None:
        lines.append(f"Through them N_opt = {_num(fr['k'])} x C^{_num(fr['a'])}.")
    if fr.get("optimum"):
        o = fr["optimum"]
        lines.append(
            f"At C = {fit['reference_flops']:.2e}: N_opt = {_num(o['parameters'])}, D_opt = {_num(o['tokens'])}, "
            f"{_num(o['tokens_per_parameter'])} tokens per parameter."
        )
    return lines + [""]


def _depth_width_lines(dw: dict[str, Any]) -> list[str]:
    lines = ["## Depth vs width", ""]
    if not dw["pairs"]:
        return lines + ["No two shapes of nearly equal N (within 25%) were trained on the same tokens.", ""]
    lines += ["| tokens | deep (N) | loss | wide (N) | loss | lower loss |", "|---:|---|---:|---|---:|---|"]
    for p in dw["pairs"]:
        deep, wide = p["deep"], p["wide"]
        lines.append(
            f"| {p['tokens']:,} | {deep['id'].rsplit('-T', 1)[0]} ({deep['parameters']:,}) | {deep['val_loss']:.4f} | "
            f"{wide['id'].rsplit('-T', 1)[0]} ({wide['parameters']:,}) | {wide['val_loss']:.4f} | {p['winner']} |"
        )
    return lines + ["", f"Deeper won {dw['wins']['deep']}, wider won {dw['wins']['wide']} of {len(dw['pairs'])}.", ""]


def _prediction_lines(s: dict[str, Any]) -> list[str]:
    pred = s["fit"].get("prediction")
    if not pred:
        return []
    held = next(r for r in s["runs"] if r["id"] == pred["id"])
    line = f"Predicted loss of {pred['id']} ({held['parameters']:,} params, {held['tokens']:,} tokens): {pred['loss']:.4f} {_ci(pred['ci'], 4)}"
    if held.get("val_loss") is not None:
        rel = held["val_loss"] / pred["loss"] - 1
        line += f"; measured {held['val_loss']:.4f} ({rel:+.2%})."
    else:
        line += "; not trained yet (budget or stop): run ft scale again to measure it."
    return ["## Prediction for the held-out larger run", "", line, ""]


def console_lines(s: dict[str, Any]) -> list[str]:
    """The few lines ft scale prints at the end."""
    fit = s["fit"]
    out = [f"scale: {s['finished']} of {len(s['runs'])} runs finished; report {s['folder']}/{SCALE_MD}"]
    if fit.get("law"):
        law, ci = fit["law"], fit["law_ci"]
        out.append(
            f"law: L = {law['E']:.3f} + {law['A']:.3g}/N^{law['alpha']:.3f} + {law['B']:.3g}/D^{law['beta']:.3f}; "
            f"alpha {_ci(ci['alpha'])}, beta {_ci(ci['beta'])}"
        )
    if fit.get("optimum"):
        o = fit["optimum"]
        out.append(
            f"compute-optimal at {fit['reference_flops']:.2e} FLOPs: {_num(o['tokens_per_parameter'])} tokens/parameter {_ci(o['tokens_per_parameter_ci'])} (Chinchilla ~20)"
        )
    out += [line for line in _prediction_lines(s)[2:3]]
    return out
