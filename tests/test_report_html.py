"""report.html: one self-contained page with the report.md numbers, written for every run; `ft report --open`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from finetune.report import render_markdown
from finetune.report_html import open_report, render_html, write_html
from tests.helpers_tiny import corpus, pretrain_recipe, run_inprocess

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Tags, attributes and table rows (as lists of cell texts) of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.text = text
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _report(run_dir: Path) -> dict:
    """A report.json as a LoRA run with pretraining writes it, with a loss curve beside it."""
    from finetune.report import plot_losses

    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 3.0 / s}) + "\n" for s in range(1, 6))
        + json.dumps({"step": 5, "val_loss": 0.7})
        + "\n"
    )
    curve = plot_losses(run_dir, None)
    table = {
        "labels": ["good", "bad", "<unparsed>"],
        "matrix": [[7, 1, 0], [2, 5, 0], [0, 0, 0]],
        "per_class": {
            "good": {"precision": 0.778, "recall": 0.875, "f1": 0.824, "support": 8},
            "bad": {"precision": 0.833, "recall": 0.714, "f1": 0.769, "support": 7},
        },
    }
    return {
        "name": "tiny-risk",
        "recipe_hash": "abc123",
        "seed": 0,
        "written": "2026-12-01T12:00:00",
        "run_dir": str(run_dir),
        "versions": {"torch": "2.13"},
        "pretrain": {"val_loss": 2.5, "unigram_entropy": 5.1, "tokens": 8192, "steps": 20, "wall_time": 3.2},
        "finetune": {
            "method": "lora",
            "trainable_params": 1000,
            "total_params": 50000,
            "base_val_loss": 4.0,
            "val_loss": 0.7,
            "tokens": 4096,
            "steps": 5,
            "wall_time": 1.5,
            "padding_fraction": 0.1,
            "scrub_counts": {"email": 2},
            "skipped_rows": 0,
            "cards": {"risk_assessment": "risk_assessment_synthetic", "mine": None},
            "data_stats": {
                "splits": {},
                "overlap": {
                    "ngram": 13,
                    "action": "report",
                    "pairs": [
                        {
                            "train": "risk_assessment",
                            "test": "risk_assessment",
                            "test_rows": 15,
                            "rows": 1,
                            "ngram_rows": 1,
                            "exact_rows": 0,
                            "examples": [{"test_row": 3, "kind": "13-gram", "shared": "a b", "test": "x < y"}],
                        }
                    ],
                },
            },
        },
        "eval": {
            "before": {"risk_assessment": {"mcc": 0.05, "gen_mcc": 0.0, "parse_failure_rate": 1.0, "length": 40.0}},
            "after": {
                "risk_assessment": {
                    "mcc": 0.6,
                    "gen_mcc": 0.55,
                    "parse_failure_rate": 0.25,
                    "length": 3.0,
                    "ref_bayes_mcc": 0.79,
                }
            },
            "samples": {
                "risk_assessment": [
                    {
                        "input": "age: 35-49 <script>alert(1)</script>",
                        "reference": "good",
                        "before": "Doctor: hi",
                        "after": "good",
                    }
                ]
            },
            "classes": {"risk_assessment": {"after": {"constrained": table}}},
        },
        "cost": {
            "tokens": 12288,
            "train_flops": 3.1e9,
            "flops_formula": "pretrain: 6 x 50,000 params x 8,192 tokens",
            "wall_time_s": 4.7,
            "reference_gpu": "NVIDIA A100 80GB, bf16 dense",
            "reference_utilisation": 0.4,
            "reference_gpu_hours": 6.9e-12,
        },
        "loss_curve": curve.name,
        "base_model": {"source_file": "m.gguf", "sha256": "ff", "name": "tiny", "quantization": "F32", "terms": "MIT"},
    }


def test_page_is_self_contained_and_shows_the_reports_numbers(tmp_path):
    report = _report(tmp_path)
    page = Page(render_html(report, tmp_path))
    names = [t for t, _ in page.tags]
    assert not {"script", "link", "iframe", "object", "embed"} & set(names)
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == 2  # the before/after bars of risk_assessment and the loss curve
    for src in images:
        assert src.startswith("data:image/png;base64,") and base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    assert not [a for _, attrs in page.tags for k, a in attrs.items() if k in ("src", "href") and "://" in a]

    rows = page.rows
    # the same text as report.md's row: value, parse failures beside a generated-label metric, change
    assert ["gen_mcc", "0.0000 (100.0% unparsed)", "0.5500 (25.0% unparsed)", "+0.550"] in rows
    assert "| gen_mcc | 0.0000 (100.0% unparsed) | 0.5500 (25.0% unparsed) | +0.550 |" in render_markdown(report)
    assert ["good", "7", "1", "0"] in rows and ["bad", "0.833", "0.714", "0.769", "7"] in rows
    assert ["age: 35-49 <script>alert(1)</script>", "good", "Doctor: hi", "good"] in rows  # side by side, escaped
    assert ["pretrain", "8,192", "20", "3.2 s"] in rows and ["finetune", "4,096", "5", "1.5 s"] in rows
    assert ["estimated training FLOPs", "3.1e+09"] in rows
    card = next(r for r in rows if r[:2] == ["risk_assessment", "risk_assessment_synthetic"])
    assert card[3].startswith("generated (Apache-2.0); ")  # the licence from data_cards/, not just the name
    assert ["mine", "NONE", "", "", "", ""] in rows
    assert "Reference points (do not depend on the model): bayes_mcc 0.7900" in page.text
    # sections other modules add to report.md come through with report.md's own text
    assert ["risk_assessment", "risk_assessment", "15", "1", "1", "0"] in rows
    assert "<code>m.gguf</code>" in page.text and "licence: MIT." in page.text
    assert '<li>risk_assessment row 3 / risk_assessment, 13-gram (shared: "a b"): x &lt; y</li>' in page.text
    assert "lm-evaluation-harness" not in page.text and "lm-evaluation-harness" not in render_markdown(report)


def test_open_report_rewrites_a_stale_page_and_opens_its_file_uri(tmp_path, monkeypatch):
    import webbrowser

    (tmp_path / "report.json").write_text(json.dumps(_report(tmp_path)))
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda uri: opened.append(uri) or True)
    page = open_report(tmp_path)
    assert opened == [page.resolve().as_uri()] and opened[0].startswith("file://")
    page.write_text("old")
    old = time.time() - 60
    os.utime(page, (old, old))
    open_report(tmp_path)
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_every_run_writes_report_html(corpus, tmp_path):
    """A pipeline run (tiny pretraining only) leaves report.html beside report.md."""
    result = run_inprocess(pretrain_recipe(corpus, tmp_path / "out", max_steps=4))
    page = Page((result.run_dir / "report.html").read_text(encoding="utf-8"))
    assert any(r[:1] == ["final validation loss (nats/token)"] for r in page.rows)
    assert [a["alt"] for t, a in page.tags if t == "img"] == ["loss curve"]


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Chromium (apt-get install -y chromium)")
def test_screenshot_script_renders_the_page(tmp_path):
    from PIL import Image

    from bench.screenshot_report import main

    (tmp_path / "report.json").write_text(json.dumps(_report(tmp_path)))
    assert main([str(tmp_path), "--out", str(tmp_path / "shot.png"), "--height", "900"]) == 0
    with Image.open(tmp_path / "shot.png") as shot:
        assert shot.size == (1280, 900)
        assert len(set(shot.convert("L").getdata())) > 10  # something was drawn, not a blank page
