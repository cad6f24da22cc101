"""report.json, report.md, the loss-curve PNG and the terminal table.

Every number in a report comes from the run's own stage results and logs,
never from the recipe.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from finetune.config.load import recipe_hash
from finetune.config.schema import Recipe
from finetune.rundir import package_versions, read_run_info
from finetune.stages.result import StageResult, TrainingCost

# The GPU-hours estimate: the run's FLOPs on this reference at this utilisation.
REFERENCE_GPU = "NVIDIA A100 80GB, bf16 dense"
REFERENCE_PEAK_FLOPS = 312e12
REFERENCE_UTILISATION = 0.40


def write_report(recipe: Recipe, run_dir: Path, stages: dict[str, StageResult]) -> Path:
    """Write report.json, report.md and loss_curve.png into the run folder; return report.md."""
    from finetune.rundir import write_json

    report = build_report(recipe, run_dir, stages)
    pretrain = stages.get("pretrain")
    unit = (
        "nats per term, averaged per example" if recipe.data and recipe.data.loss_average == "example" else "nats/token"
    )
    curve = plot_losses(run_dir, pretrain.model_dir.parent if pretrain else None, finetune_unit=unit)
    if curve:
        report["loss_curve"] = curve.name
    if recipe.method is not None and recipe.method.objective != "sft":
        pairs = plot_preference(run_dir)
        if pairs:
            report["preference_curve"] = pairs.name
    write_json(run_dir / "report.json", report)
    md = run_dir / "report.md"
    md.write_text(render_markdown(report), encoding="utf-8")
    return md


def build_report(recipe: Recipe, run_dir: Path, stages: dict[str, StageResult]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "name": recipe.name,
        "recipe_hash": recipe_hash(recipe),
        "seed": recipe.seed,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run_dir": str(run_dir),
        "versions": package_versions(),
    }
    base = read_run_info(run_dir).get("base_model")  # a .gguf base: its file, sha256 and licence terms
    if isinstance(base, dict):
        report["base_model"] = base
    for name, stage in stages.items():
        report[name] = stage.report_dict()
    report["cost"] = cost(stages)
    if "eval" in report and (classes := _class_tables(run_dir)):
        report["eval"]["classes"] = classes
    if (run_dir / "harness.json").is_file():  # `ft eval --harness` on this run folder (see report_html)
        report["harness"] = json.loads((run_dir / "harness.json").read_text(encoding="utf-8"))
    return report


def cost(stages: dict[str, StageResult]) -> dict[str, Any]:
    """Tokens, FLOPs and wall time of the stages that trained in this run, and the GPU-hours those FLOPs mean."""
    tokens = flops = wall = 0.0
    formulas = []
    for name, stage in stages.items():
        spent = stage.training_cost()
        if spent is None:
            continue
        tokens += spent.tokens
        wall += spent.wall_time
        f, formula = training_flops(spent)
        flops += f
        formulas.append(f"{name}: {formula}")
    gpu_hours = flops / (REFERENCE_PEAK_FLOPS * REFERENCE_UTILISATION) / 3600
    return {
        "tokens": int(tokens),
        "train_flops": flops,
        "flops_formula": "; ".join(formulas),
        "wall_time_s": round(wall, 1),
        "reference_gpu": REFERENCE_GPU,
        "reference_utilisation": REFERENCE_UTILISATION,
        "reference_gpu_hours": gpu_hours,
    }


def training_flops(spent: TrainingCost) -> tuple[float, str]:
    """6·N·T for full training; LoRA: 4·N·T (forward + activation gradients) + 6·N_trainable·T."""
    n_total, n_train, tokens = spent.parameters, spent.trainable, spent.tokens
    if n_train >= n_total:
        return 6 * n_total * tokens, f"6 x {n_total:,} params x {tokens:,} tokens"
    return (4 * n_total + 6 * n_train) * tokens, (
        f"(4 x {n_total:,} + 6 x {n_train:,} trainable) params x {tokens:,} tokens"
    )


def plot_losses(run_dir: Path, pretrain_dir: Path | None, finetune_unit: str = "nats/token") -> Path | None:
    """Train and validation loss against step, one panel per training stage that logged."""
    candidates = (
        ("pretrain", pretrain_dir / "metrics.jsonl" if pretrain_dir else None),
        ("fine-tune", run_dir / "metrics.jsonl"),
    )
    logs = [(title, p) for title, p in candidates if p is not None and p.exists()]
    if not logs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    general = _general_ppl(run_dir / "metrics.jsonl")
    panels = len(logs) + bool(general)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    if general:
        _plot_general(axes[0][-1], general)
    for ax, (title, path) in zip(axes[0], logs):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if train:
            ax.plot(*zip(*train), label="train loss")
        if val:
            ax.plot(*zip(*val), "o-", label="validation loss")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"loss ({'nats/token' if title == 'pretrain' else finetune_unit})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = run_dir / "loss_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_preference(run_dir: Path) -> Path | None:
    """Chosen and rejected completions' summed log-probs against step (train, and validation where logged)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not any("chosen_logps" in r for r in rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (
        ("chosen_logps", "-"),
        ("rejected_logps", "-"),
        ("val_chosen_logps", "o-"),
        ("val_rejected_logps", "o-"),
    ):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points), style, label=key.replace("_logps", "").replace("_", " "))
    ax.set_title("preference pairs")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("completion log-prob (nats, summed)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = run_dir / "preference_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _preference_lines(f: dict[str, Any]) -> list[str]:
    """Held-out pair numbers of a dpo / orpo fine-tuning (its losses are per pair, not per token)."""
    p = f.get("preference") or {}
    if f.get("objective", "sft") == "sft" or not p:
        return []
    return [
        f"- objective **{f['objective']}** (losses above are nats per pair): held-out reward accuracy "
        f"**{_f(p.get('val_reward_accuracy'))}**, mean reward margin {_f(p.get('val_reward_margin'))}; "
        f"completion log-probs chosen {_f(p.get('val_chosen_logps'))}, rejected {_f(p.get('val_rejected_logps'))}"
    ]


def _general_ppl(path: Path) -> list[tuple[int, float]]:
    """(step, general-text perplexity) the fine-tuning logged with its validation losses (eval.retention, eval_every)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["step"], r["general_ppl"]) for r in rows if "general_ppl" in r]


def _plot_general(ax: Any, points: list[tuple[int, float]]) -> None:
    ax.plot(*zip(*points), "o-", color="tab:red", label="general-text perplexity")
    ax.set_title("fine-tune: what it cost")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("perplexity on general text")
    ax.grid(alpha=0.3)
    ax.legend()


def _cost_section(ev: dict[str, Any]) -> list[str]:
    """'What it cost': the task's gain beside the general-text perplexity and off-target scenarios (eval.retention)."""
    from finetune.eval.retention import cost_rows

    retention = ev.get("retention") or {}
    if not retention.get("after"):
        return []
    out = [
        "## What it cost",
        "",
        f"General text: {retention.get('text')}. Kept: the share of the base's ability left "
        "(before / after for perplexity, after / before for a metric).",
        "",
        "| kind | set | metric | before | after | change | kept |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in cost_rows(ev):
        change = "" if r["change"] is None else f"{r['change']:+.3f}"
        if r["metric"] == "ppl" and r["relative"] is not None:
            change += f" ({100 * r['relative']:+.1f}%)"
        kept = "" if r["kept"] is None else f"{100 * r['kept']:.1f}%"
        out.append(
            f"| {r['kind']} | {r['name']} | {r['metric']} | {_f(r['before'])} | {_f(r['after'])} | {change} | {kept} |"
        )
    return out + [""]


def render_markdown(report: dict[str, Any]) -> str:
    out = [
        f"# Run `{report['name']}`",
        "",
        f"Recipe hash `{report['recipe_hash']}`, seed {report['seed']}, written {report['written']}.",
        "",
    ]
    if report.get("base_model"):
        out += [_base_model_line(report["base_model"]), ""]
    if "eval" in report:
        out += ["## Results: before and after fine-tuning", ""]
        out += _metric_tables(report["eval"])
        out += _cost_section(report["eval"])
        out += _class_sections(report["eval"].get("classes", {}))
    if report.get("harness"):
        out += _harness_lines(report["harness"])
    if "pretrain" in report:
        p = report["pretrain"]
        out += [
            "## Pretraining",
            "",
            f"- final validation loss **{_f(p.get('val_loss'))}** nats/token; the corpus' unigram entropy "
            f"{_f(p.get('unigram_entropy'))} nats/token (a model that ignores context scores that)",
            f"- {p.get('parameters', 0):,} parameters, {p.get('steps')} steps, {p.get('tokens', 0):,} tokens"
            + (" (reused from the cache)" if p.get("reused") else ""),
            "",
        ]
    if "finetune" in report:
        f = report["finetune"]
        out += [
            "## Fine-tuning",
            "",
            f"- method **{f.get('method')}**: {f.get('trainable_params', 0):,} trainable of {f.get('total_params', 0):,} parameters",
            f"- held-out loss before {_f(f.get('base_val_loss'))} -> after **{_f(f.get('val_loss'))}**",
            *_preference_lines(f),
            f"- {f.get('steps')} steps, {f.get('tokens', 0):,} tokens, padding {100 * f.get('padding_fraction', 0):.1f}% of batch tokens",
            *(f"- {split['note']}" for split in f.get("data_stats", {}).get("splits", {}).values()),
            f"- data cards: {_cards(f.get('cards', {}))}",
            f"- PII scrubbed: {_counts(f.get('scrub_counts'))}; rows skipped: {f.get('skipped_rows', 0)}",
            "",
        ]
        out += _overlap_section(f.get("data_stats", {}).get("overlap"))
    if report.get("loss_curve"):
        out += [f"![loss curve]({report['loss_curve']})", ""]
    if report.get("preference_curve"):
        out += [f"![chosen and rejected log-probs]({report['preference_curve']})", ""]
    if "eval" in report and report["eval"].get("samples"):
        out += ["## Sample generations", ""]
        for source, samples in report["eval"]["samples"].items():
            out += [f"### {source}", ""]
            for s in samples:
                out += [f"- **input**: {_short(s['input'])}", f"  - reference: {_short(s['reference'])}"]
                for key in ("before", "after"):
                    if key in s:
                        out.append(f"  - {key}: {_short(s[key])}")
            out.append("")
    c = report["cost"]
    out += [
        "## Cost",
        "",
        f"- tokens seen in training: {c['tokens']:,}; wall time {c['wall_time_s']} s",
        f"- estimated training FLOPs: {c['train_flops']:.3g} ({c['flops_formula'] or 'no training'})",
        f"- the same FLOPs on one {c['reference_gpu']} at {int(100 * c['reference_utilisation'])}% utilisation: "
        f"{c['reference_gpu_hours']:.2g} GPU-hours",
        "",
    ]
    return "\n".join(out)


def _metric_tables(ev: dict[str, Any]) -> list[str]:
    out = []
    for source, after in ev.get("after", {}).items():
        before = ev.get("before", {}).get(source, {})
        out += [f"### {source}", "", "| metric | before | after | change |", "|---|---:|---:|---:|"]
        for key in after:
            if key.startswith("ref_"):
                continue
            b, a = before.get(key), after[key]
            delta = f"{a - b:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
            out.append(f"| {key} | {_with_failures(key, b, before)} | {_with_failures(key, a, after)} | {delta} |")
        refs = {k: v for k, v in after.items() if k.startswith("ref_")}
        if refs:
            out += [
                "",
                "Reference points (do not depend on the model): "
                + ", ".join(f"{k[4:]} {_f(v)}" for k, v in refs.items()),
            ]
        out += _decision_lines(ev, source, "- ")
        out.append("")
    return out


def _harness_lines(harness: dict[str, Any]) -> list[str]:
    """lm-evaluation-harness results on this run's model (harness.json), in lm_eval's own scoring."""
    out = [
        "## lm-evaluation-harness",
        "",
        f"lm_eval {harness.get('lm_eval')} on `{harness.get('model')}`; prompt: {harness.get('prompt')}.",
        "",
        "| task | metric | value | stderr | documents |",
        "|---|---|---:|---:|---:|",
    ]
    for task, result in harness.get("tasks", {}).items():
        for metric, m in result.get("metrics", {}).items():
            err = "" if m.get("stderr") is None else f"{m['stderr']:.4f}"
            out.append(
                f"| {task} | {metric} | {_f(m['value'])} | {err} | {result.get('documents')} of {result.get('of')} |"
            )
    return out + [""]


def _decision_lines(ev: dict[str, Any], source: str, bullet: str = "") -> list[str]:
    """The decision rule behind the constrained metrics and the single-class warning, for the evaluated (final) model;
    the base model's own warnings stay in eval.json and the console, where an untrained model's one class is expected."""
    from finetune.eval.decision import describe

    lines = []
    rule = ev.get("decisions", {}).get("after", {}).get(source)
    if rule is not None:
        lines.append(f"{bullet}{describe(rule)}")
    lines += [f"{bullet}{w}" for w in ev.get("warnings", {}).get("after", {}).get(source, [])]
    return [""] + lines if lines else []


def print_summary(result: Any) -> None:
    """The terminal table at the end of `ft run` (also `ft report RUN_DIR`)."""
    print_report(result.run_dir)


def print_report(run_dir: Path) -> None:
    from rich.console import Console

    path = Path(run_dir) / "report.json"
    if not path.exists():
        from finetune.errors import UserError

        raise UserError(f"{run_dir} has no report.json; is it a finished ft run folder?")
    report = json.loads(path.read_text())
    console = Console()
    console.print(f"[bold]{report['name']}[/bold]  ({run_dir})")
    if "pretrain" in report:
        p = report["pretrain"]
        console.print(
            f"pretrain: validation loss {_f(p.get('val_loss'))} nats/token vs unigram entropy "
            f"{_f(p.get('unigram_entropy'))} nats/token"
        )
    if "finetune" in report:
        f = report["finetune"]
        console.print(
            f"fine-tune ({f.get('method')}): held-out loss {_f(f.get('base_val_loss'))} -> {_f(f.get('val_loss'))}; "
            f"trainable {f.get('trainable_params', 0):,} / {f.get('total_params', 0):,}"
        )
    ev = report.get("eval", {})
    for source, after in ev.get("after", {}).items():
        print_metrics(source, after, ev.get("before", {}).get(source), console)
        for line in _decision_lines(ev, source)[1:]:
            console.print(line, markup=False)
    for line in _cost_section(ev)[2:]:
        console.print(line, markup=False)
    print_class_tables(ev.get("classes", {}), console)
    c = report["cost"]
    console.print(
        f"cost: {c['tokens']:,} tokens, {c['train_flops']:.3g} FLOPs, {c['wall_time_s']} s; "
        f"~{c['reference_gpu_hours']:.2g} GPU-hours on {c['reference_gpu']}"
    )
    console.print(f"report: {Path(run_dir) / 'report.md'}")


def print_metrics(
    title: str, after: dict[str, float], before: dict[str, float] | None = None, console: Any = None
) -> None:
    """One table of metrics; with ``before``, the before/after/change columns."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = ("metric", "before", "after", "change") if before else ("metric", "value")
    for col in columns:
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, a in after.items():
        if before is None:
            table.add_row(key, _with_failures(key, a, after))
            continue
        b = before.get(key)
        delta = f"{a - b:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
        table.add_row(
            key, _with_failures(key, b, before), _with_failures(key, a, after), "" if key.startswith("ref_") else delta
        )
    (console or Console()).print(table)


def _base_model_line(base: dict[str, Any]) -> str:
    """Where an imported base came from and under which terms: what a user of the tuned model must know."""
    return (
        f"Base model converted from GGUF `{base.get('source_file')}` (sha256 `{base.get('sha256')}`, "
        f"{base.get('name') or base.get('architecture')}, {base.get('quantization') or 'unknown type'}); "
        f"licence: {base.get('terms')}."
    )


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def _overlap_section(overlap: dict[str, Any] | None) -> list[str]:
    """'Train/test overlap': rows per (training source, test set) sharing a 13-gram or their whole text, examples."""
    if not overlap or not overlap.get("pairs"):
        return []
    action = overlap.get("action", "report")
    out = [
        "## Train/test overlap",
        "",
        f"Test rows sharing a {overlap['ngram']}-gram (lower-cased, punctuation and spaces collapsed) or their whole "
        "text with a training source; "
        + ("they were left out of the evaluation (eval.overlap: drop)." if action == "drop" else "kept and scored.")
        + _template_rule(overlap.get("template"))
        + " Row numbers in overlap.json.",
        "",
        "| training source | test set | test rows | overlapping | 13-gram | exact |",
        "|---|---|---:|---:|---:|---:|",
    ]
    out += [
        f"| {p['train']} | {p['test']} | {p['test_rows']} | {p['rows']} | {p['ngram_rows']} | {p['exact_rows']} |"
        for p in overlap["pairs"]
    ]
    out.append("")
    for p in overlap["pairs"]:
        for e in p["examples"]:
            shared = f' (shared: "{_short(e["shared"], 120)}")' if e.get("shared") else ""
            out.append(
                f"- {p['test']} row {e['test_row']} / {p['train']}, {e['kind']}{shared}: {_short(e['test'], 160)}"
            )
    return out + [""]


def _template_rule(template: dict[str, Any] | None) -> str:
    """The frequency cut that tells prompt template wording from leakage, when the check applied one."""
    if not template:
        return ""
    return (
        f" Wording held by more than {100 * template['fraction']:g}% (and at least {template['min_rows']}) of a "
        "source's training rows is prompt template, not leakage, and is not matched."
    )


def _short(text: str, n: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _cards(cards: dict[str, str | None]) -> str:
    return ", ".join(f"{source}: {card or 'NONE'}" for source, card in cards.items()) or "none"


def _counts(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "none"


# ---------------------------------------------------------------- per-class results and parse failures


def _with_failures(key: str, value: Any, metrics: dict[str, Any] | None) -> str:
    """A generated-label or parsed-number metric with the share of answers its parser could not read."""
    rate = _failure_rate(key, metrics or {})
    return _f(value) if rate is None or value is None else f"{_f(value)} ({100 * rate:.1f}% unparsed)"


def _failure_rate(key: str, metrics: dict[str, Any]) -> float | None:
    if key.startswith("gen_") or key == "exact_match":
        return metrics.get("parse_failure_rate")
    if key.startswith("numeric_em"):
        if "_last" in key:
            return metrics.get("parse_failure_rate_last")
        return metrics.get("numeric_parse_failure_rate", metrics.get("parse_failure_rate"))
    return None


def _class_tables(run_dir: Path) -> dict[str, Any]:
    """Confusion matrices and per-class P/R/F1 per eval set, from the run's predictions.jsonl."""
    from finetune.eval.predictions import FILE, class_tables, read_predictions

    return class_tables(read_predictions(run_dir / FILE))


def _class_sections(tables: dict[str, Any]) -> list[str]:
    out = []
    for source, models in tables.items():
        out += [
            f"### Per-class results: {source}",
            "",
            "Rows are the reference, columns the prediction; constrained = the decision rule over the "
            "label scores, generated = the label the answer starts with.",
            "",
        ]
        for model in ("after", "before"):
            for kind, table in models.get(model, {}).items():
                out += [f"**{model}, {kind}**", ""] + _matrix_lines(table) + [""] + _per_class_lines(table) + [""]
    return out


def _shown_rows(table: dict[str, Any]) -> list[int]:
    """Matrix rows worth a line: every label of the task; an unparsed row is always empty."""
    return [i for i, lab in enumerate(table["labels"]) if lab in table["per_class"] or any(table["matrix"][i])]


def _matrix_lines(table: dict[str, Any]) -> list[str]:
    labels = table["labels"]
    out = ["| reference \\ predicted | " + " | ".join(map(str, labels)) + " |", "|---" + "|---:" * len(labels) + "|"]
    for i in _shown_rows(table):
        out.append(f"| {labels[i]} | " + " | ".join(str(n) for n in table["matrix"][i]) + " |")
    return out


def _per_class_lines(table: dict[str, Any]) -> list[str]:
    out = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, s in table["per_class"].items():
        out.append(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    return out


def print_class_tables(tables: dict[str, Any], console: Any = None, models: tuple[str, ...] = ("after",)) -> None:
    """Confusion matrix and per-class P/R/F1 on the console, one pair of tables per set and kind."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for source, by_model in tables.items():
        for model in models:
            for kind, table in by_model.get(model, {}).items():
                matrix = Table(title=f"{source}: {kind} labels (rows reference, columns predicted)")
                matrix.add_column("reference")
                for label in table["labels"]:
                    matrix.add_column(str(label), justify="right")
                for i in _shown_rows(table):
                    matrix.add_row(str(table["labels"][i]), *(str(n) for n in table["matrix"][i]))
                per = Table(title=f"{source}: {kind} per class")
                for col in ("class", "precision", "recall", "F1", "support"):
                    per.add_column(col, justify="left" if col == "class" else "right")
                for label, s in table["per_class"].items():
                    per.add_row(
                        str(label), f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"])
                    )
                console.print(matrix)
                console.print(per)
