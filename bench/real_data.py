"""What the real-data benches share: a seeded CSV split, TF-IDF baselines, and a timed `ft run` in a fresh process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
Rows = list[dict[str, str]]


def seeded_split(
    source: Path, work: Path, names: tuple[str, str], test_rows: int, columns: list[str]
) -> tuple[Rows, Rows]:
    """Python's ``random.Random(42).shuffle``; the last ``test_rows`` are the test file, the rest the training file.

    Written to ``work/data/`` under ``names`` so the recipe, run with ``cwd=work``, reads them as ``data/...``.
    """
    import random

    with source.open(newline="", encoding="utf-8") as f:
        shuffled = list(csv.DictReader(f))
    random.Random(42).shuffle(shuffled)
    train, test = shuffled[:-test_rows], shuffled[-test_rows:]
    (work / "data").mkdir(parents=True, exist_ok=True)
    for name, part in zip(names, (train, test)):
        with (work / "data" / name).open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows({c: r[c] for c in columns} for r in part)
    return train, test


def tfidf_baselines(
    train: Rows, test: Rows, label: str, scores: Callable[[list[str], list[str]], dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Majority class and TF-IDF (words and bigrams) + logistic regression (C=5) on the same split."""
    from collections import Counter

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    y_train, y_test = [r[label] for r in train], [r[label] for r in test]
    majority = Counter(y_train).most_common(1)[0][0]
    vec = TfidfVectorizer(ngram_range=(1, 2))
    clf = LogisticRegression(C=5, max_iter=3000).fit(vec.fit_transform([r["text"] for r in train]), y_train)
    predicted = [str(p) for p in clf.predict(vec.transform([r["text"] for r in test]))]
    return {"majority": scores(y_test, [majority] * len(y_test)), "tfidf_logreg": scores(y_test, predicted)}


def run_recipe(
    recipe: Path, work: Path, gguf: Path, threads: int | None
) -> tuple[dict[str, Any], float, tuple[float, float]]:
    """`ft run` of a shipped recipe in a fresh process (cwd: work, so data/ resolves there); wall seconds and load."""
    args = [sys.executable, str(REPO / "cli.py"), "run", str(recipe), f"model.path={gguf}", f"output={work / 'run'}"]
    if threads:
        args.append(f"train.threads={threads}")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=work, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ft run exited {done.returncode}")
    return json.loads((work / "run" / "report.json").read_text()), wall, (load_before, os.getloadavg()[0])


def gemm_ceiling(threads: int | None) -> dict[str, float]:
    """The machine's fp32 GEMM ceiling with the run's thread count, quoted beside every time."""
    import torch

    from bench.measure import gemm_gflops

    torch.set_num_threads(threads or torch.get_num_threads())
    return gemm_gflops()


def report_of(args: Any, recipe: Path) -> tuple[dict[str, Any], float, tuple[float, float]]:
    """The finished run's report.json with its wall seconds and load: ``--from-run`` summarises one, else run it."""
    if args.from_run:
        report = json.loads((args.from_run / "report.json").read_text())
        return report, args.wall_s or float("nan"), tuple(args.load or (os.getloadavg()[0],) * 2)
    return run_recipe(recipe, args.work, args.gguf.resolve(), args.threads)


def write_results(out: Path, stem: str, result: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """``<out>/<stem>.json`` and ``.md``, the markdown printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (out / f"{stem}.md").write_text(text)
    print(text)
