"""report.html: the run's report as one self-contained page, for people who read reports in a browser.

It renders the same report.json that report.md comes from (plus harness.json when lm-evaluation-harness
ran on the run), with the same number formatting, so the two never disagree. Plots are inline base64
PNGs and the style sheet is inline: the page loads nothing from the network or from beside it, so it
can be mailed or archived as one file. It sits above ``finetune.report`` (it reuses its helpers), so the
pipeline writes it right after report.md.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from finetune.report import (
    _base_model_line,
    _cost_section,
    _decision_lines,
    _f,
    _overlap_section,
    _preference_lines,
    _shown_rows,
    _with_failures,
    render_markdown,
)

FILE = "report.html"
SAMPLE_CHARS = 1500  # a sample cell longer than this is cut (the whole text is in predictions.jsonl)

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2329;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2rem;margin-top:2rem}
h3{margin-bottom:.4rem}.meta{color:#5a6570;font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #d5dbe1;padding:.3rem .6rem;vertical-align:top}th{background:#f1f4f7;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.samples td{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.82rem;width:25%}
.note{color:#5a6570;font-size:.9rem;margin:.2rem 0}
img{max-width:100%;border:1px solid #e3e7eb}
"""


def write_html(run_dir: Path, report: dict[str, Any] | None = None) -> Path:
    """Write report.html from ``report`` (default: the folder's report.json); atomic, like every run file."""
    import os

    run_dir = Path(run_dir)
    report = report if report is not None else json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    out = run_dir / FILE
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(report, run_dir), encoding="utf-8")
    os.replace(tmp, out)
    return out


def refresh_reports(run_dir: Path, harness: dict[str, Any]) -> None:
    """Put harness results into a finished run's report.json, report.md and report.html."""
    import os

    from finetune.rundir import write_json

    run_dir = Path(run_dir)
    path = run_dir / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    report["harness"] = harness
    write_json(path, report)
    md = run_dir / "report.md"
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text(render_markdown(report), encoding="utf-8")
    os.replace(tmp, md)
    write_html(run_dir, report)


def open_report(run_dir: Path) -> Path:
    """Open report.html in the default browser, writing it first when the run predates it or its report changed."""
    import webbrowser

    from finetune.errors import UserError

    run_dir = Path(run_dir)
    source = run_dir / "report.json"
    if not source.exists():
        raise UserError(f"{run_dir} has no report.json; is it a finished ft run folder?")
    page = run_dir / FILE
    if not page.exists() or page.stat().st_mtime < source.stat().st_mtime:
        write_html(run_dir)
    if not webbrowser.open(page.resolve().as_uri()):
        print(f"no browser found; open {page.resolve().as_uri()}")
    return page


# ---------------------------------------------------------------- the page


def render_html(report: dict[str, Any], run_dir: Path) -> str:
    e = html.escape
    body = [
        f"<h1>Run <code>{e(report['name'])}</code></h1>",
        f"<p class='meta'>Recipe hash <code>{e(str(report['recipe_hash']))}</code>, seed {e(str(report['seed']))}, "
        f"written {e(str(report['written']))}; "
        + ", ".join(f"{e(k)} {e(str(v))}" for k, v in report.get("versions", {}).items())
        + "</p>",
    ]
    if report.get("base_model"):
        body += _from_markdown([_base_model_line(report["base_model"])])
    if "eval" in report:
        body += ["<h2>Results: before and after fine-tuning</h2>"] + _results(report["eval"])
        body += _from_markdown(_cost_section(report["eval"]))
        body += _classes(report["eval"].get("classes", {}))
    if report.get("harness"):
        body += _harness(report["harness"])
    if "eval" in report and report["eval"].get("samples"):
        body += _samples(report["eval"]["samples"])
    body += _training(report, run_dir)
    body += _cost(report)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>ft report: {e(report['name'])}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1, cls: str = "") -> str:
    """A table of already-escaped cells; columns from ``numeric_from`` on are right-aligned numbers."""

    def cell(i: int, c: Any) -> str:
        text, extra = c if isinstance(c, tuple) else (c, "")
        classes = " ".join(x for x in ("num" if i >= numeric_from else "", extra) if x)
        return f"<td class='{classes}'>{text}</td>" if classes else f"<td>{text}</td>"

    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    attr = f" class='{cls}'" if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _results(ev: dict[str, Any]) -> list[str]:
    e = html.escape
    out = []
    for source, after in ev.get("after", {}).items():
        before = ev.get("before", {}).get(source, {})
        rows = []
        for key, a in after.items():
            if key.startswith("ref_"):
                continue
            b = before.get(key)
            delta = a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
            change = "" if delta is None else f"{delta:+.3f}"
            rows.append(
                [
                    e(key),
                    e(_with_failures(key, b, before)),
                    e(_with_failures(key, a, after)),
                    change,
                ]
            )
        out += [f"<h3>{e(source)}</h3>", _table(["metric", "before", "after", "change"], rows)]
        refs = {k: v for k, v in after.items() if k.startswith("ref_")}
        if refs:
            out.append(
                "<p class='note'>Reference points (do not depend on the model): "
                + e(", ".join(f"{k[4:]} {_f(v)}" for k, v in refs.items()))
                + "</p>"
            )
        out += [f"<p class='note'>{e(line)}</p>" for line in _decision_lines(ev, source)[1:]]
        chart = _metric_chart(source, before, after)
        if chart:
            out.append(f"<p><img alt='{e(source)}: before and after' src='{chart}'></p>")
    return out


def _metric_chart(source: str, before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """Before/after bars of the metrics that live between -1 and 1 (rates, F1, MCC), as a data: URI."""
    keys = [
        k
        for k, a in after.items()
        if not k.startswith("ref_")
        and isinstance(a, (int, float))
        and isinstance(before.get(k), (int, float))
        and abs(a) <= 1
        and abs(before[k]) <= 1
    ]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.7 * len(keys)), 3.2))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [before[k] for k in keys], 0.4, label="before", color="#9aa7b4")
    ax.bar([x + 0.2 for x in xs], [after[k] for k in keys], 0.4, label="after", color="#2f6fb0")
    ax.set_xticks(list(xs), keys, rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="#555", linewidth=0.6)
    ax.set_title(f"{source}: before and after", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return _png_uri(buf.getvalue())


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _classes(tables: dict[str, Any]) -> list[str]:
    e = html.escape
    out = []
    for source, models in tables.items():
        out += [
            f"<h3>Per-class results: {e(source)}</h3>",
            "<p class='note'>Rows are the reference, columns the prediction; constrained = the decision rule over "
            "the label scores, generated = the label the answer starts with.</p>",
        ]
        for model in ("after", "before"):
            for kind, table in models.get(model, {}).items():
                labels = [e(str(lab)) for lab in table["labels"]]
                matrix = [[labels[i]] + [str(n) for n in table["matrix"][i]] for i in _shown_rows(table)]
                per = [
                    [e(str(lab)), f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"])]
                    for lab, s in table["per_class"].items()
                ]
                out += [
                    f"<p><b>{e(model)}, {e(kind)}</b></p>",
                    _table(["reference \\ predicted"] + labels, matrix),
                    _table(["class", "precision", "recall", "F1", "support"], per),
                ]
    return out


def _harness(harness: dict[str, Any]) -> list[str]:
    e = html.escape
    rows = []
    for task, result in harness.get("tasks", {}).items():
        for metric, m in result.get("metrics", {}).items():
            err = "" if m.get("stderr") is None else f"± {m['stderr']:.4f}"
            rows.append([e(task), e(metric), _f(m["value"]), err, f"{result.get('documents')} of {result.get('of')}"])
    return [
        "<h2>lm-evaluation-harness</h2>",
        f"<p class='note'>lm_eval {e(str(harness.get('lm_eval')))} on {e(str(harness.get('model')))}; "
        f"prompt: {e(str(harness.get('prompt')))}.</p>",
        _table(["task", "metric", "value", "stderr", "documents"], rows, numeric_from=2),
    ]


def _samples(samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    e = html.escape
    out = ["<h2>Sample generations</h2>"]
    for source, items in samples.items():
        columns = ["input", "reference"] + [k for k in ("before", "after") if any(k in s for s in items)]
        rows = [[e(_cut(s.get(c, ""))) for c in columns] for s in items]
        out += [f"<h3>{e(source)}</h3>", _table(columns, rows, numeric_from=len(columns), cls="samples")]
    return out


def _cut(text: Any) -> str:
    text = str(text)
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"


def _training(report: dict[str, Any], run_dir: Path) -> list[str]:
    e = html.escape
    out = []
    if "pretrain" in report:
        p = report["pretrain"]
        out += [
            "<h2>Pretraining</h2>",
            _table(
                ["", "value"],
                [
                    ["final validation loss (nats/token)", _f(p.get("val_loss"))],
                    [
                        "unigram entropy of the corpus (a model that ignores context scores this)",
                        _f(p.get("unigram_entropy")),
                    ],
                    ["parameters", f"{p.get('parameters', 0):,}"],
                    [
                        "steps; tokens",
                        f"{p.get('steps')}; {p.get('tokens', 0):,}"
                        + (" (reused from the cache)" if p.get("reused") else ""),
                    ],
                ],
            ),
        ]
    if "finetune" in report:
        f = report["finetune"]
        out += [
            "<h2>Fine-tuning</h2>",
            _table(
                ["", "value"],
                [
                    ["method", e(str(f.get("method")))],
                    [
                        "trainable / total parameters",
                        f"{f.get('trainable_params', 0):,} / {f.get('total_params', 0):,}",
                    ],
                    ["held-out loss before -> after", f"{_f(f.get('base_val_loss'))} -> {_f(f.get('val_loss'))}"],
                    ["steps; tokens", f"{f.get('steps')}; {f.get('tokens', 0):,}"],
                    ["padding share of batch tokens", f"{100 * f.get('padding_fraction', 0):.1f}%"],
                    [
                        "PII scrubbed",
                        e(", ".join(f"{k} {v}" for k, v in sorted((f.get("scrub_counts") or {}).items())) or "none"),
                    ],
                    ["rows skipped", str(f.get("skipped_rows", 0))],
                ],
            ),
        ]
        out += _from_markdown(_preference_lines(f))
        out += [f"<p class='note'>{e(s['note'])}</p>" for s in f.get("data_stats", {}).get("splits", {}).values()]
        out += _cards(f.get("cards", {}))
        out += _from_markdown(_overlap_section(f.get("data_stats", {}).get("overlap")))
    plots = [
        (report.get("loss_curve"), "loss curve"),
        (report.get("preference_curve"), "chosen and rejected log-probs"),
    ]
    plots = [(run_dir / name, alt) for name, alt in plots if name and (run_dir / name).is_file()]
    if plots:
        out.append("<h2>Loss curves</h2>")
        out += [f"<p><img alt='{alt}' src='{_png_uri(path.read_bytes())}'></p>" for path, alt in plots]
    return out


def _cards(cards: dict[str, str | None]) -> list[str]:
    """Each source's data card: title, licence and what it demands, where the data came from, its personal data."""
    from finetune.data.cards import CardError, find_card

    e = html.escape
    rows = []
    for source, name in cards.items():
        card = None
        if name:
            try:
                card = find_card(name)
            except CardError:
                card = None
        if card is None:
            rows.append([e(source), e(name or "NONE"), "", "", "", ""])
            continue
        rows.append(
            [
                e(source),
                e(card.name),
                e(card.title),
                e(f"{card.licence}; {card.licence_restrictions}"),
                e(card.source),
                e(card.pii),
            ]
        )
    if not rows:
        return []
    return [
        "<h3>Data cards</h3>",
        _table(["source", "card", "title", "licence", "origin", "personal data"], rows, numeric_from=6),
    ]


def _cost(report: dict[str, Any]) -> list[str]:
    c = report["cost"]
    stages = [
        [
            name,
            f"{report[name].get('tokens', 0):,}",
            str(report[name].get("steps", "")),
            _seconds(report[name].get("wall_time")),
        ]
        for name in ("pretrain", "finetune")
        if name in report
    ]
    if "pretrain" in report and report["pretrain"].get("reused"):
        stages[0][0] = "pretrain (reused from the cache: not paid in this run)"
    total = [
        ["tokens seen in training (this run)", f"{c['tokens']:,}"],
        ["training wall time", f"{c['wall_time_s']} s"],
        ["estimated training FLOPs", f"{c['train_flops']:.3g}"],
        [
            html.escape(
                f"the same FLOPs on one {c['reference_gpu']} at {int(100 * c['reference_utilisation'])}% utilisation"
            ),
            f"{c['reference_gpu_hours']:.2g} GPU-hours",
        ],
    ]
    out = ["<h2>Cost</h2>"]
    if stages:
        out.append(_table(["stage", "tokens", "steps", "wall time"], stages))
    formula = html.escape(c["flops_formula"] or "no training")
    return out + [_table(["", "value"], total), f"<p class='note'>FLOPs: {formula}.</p>"]


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "-"


# ---------------------------------------------------------------- report.md sections, as HTML


def _from_markdown(lines: list[str]) -> list[str]:
    """report.md's own section lines (headings, bullets, pipe tables, paragraphs) as HTML, so sections other
    modules add to report.md show here with the same text instead of being written twice."""
    out: list[str] = []
    table: list[list[str]] = []
    bullets: list[str] = []

    def flush() -> None:
        if table:
            right = [c.endswith(":") for c in table[1]] if len(table) > 1 else []
            first = next((i for i, r in enumerate(right) if r), len(table[0]))
            out.append(_table([_inline(h) for h in table[0]], [[_inline(c) for c in row] for row in table[2:]], first))
            table.clear()
        if bullets:
            out.append("<ul>" + "".join(f"<li>{b}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in lines:
        if line.startswith("|"):
            if bullets:
                flush()
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif line.startswith("- "):
            if table:
                flush()
            bullets.append(_inline(line[2:]))
        else:
            flush()
            if line.startswith("### "):
                out.append(f"<h3>{_inline(line[4:])}</h3>")
            elif line.startswith("## "):
                out.append(f"<h2>{_inline(line[3:])}</h2>")
            elif line.strip():
                out.append(f"<p>{_inline(line)}</p>")
    flush()
    return out


def _inline(text: str) -> str:
    """Escape, then report.md's two inline marks: `code` and **bold**."""
    import re

    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
