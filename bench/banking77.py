"""python -m bench.banking77 PATH/banking77_train.csv --gguf PATH/gemma-3-270m-q4_k_m.gguf [--out DIR] [--work DIR]

BANKING77 (PolyAI, CC BY 4.0) on a real pretrained model: Gemma 3 270M (GGUF) LoRA-tuned to pick one of 77
banking intents. The file (columns text,category; 10,003 rows) is shuffled with seed 42 (Python's
``random.Random(42).shuffle``); the last 20% (2,001 rows) are the test file, the rest the training file. Beside
ft's run: the majority intent and TF-IDF (words and bigrams) + logistic regression (C=5) on the same split; the
field's line is about 0.93 accuracy for sentence-encoder classifiers on the official 3,080-row test set. Then
``ft run recipes/real/gemma3_banking77_lora.yaml`` in a fresh process, timed, with the machine's fp32 GEMM
ceiling and load average recorded. Writes ``<out>/banking77-<date>.md``/``.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.real_data import gemm_ceiling, report_of, seeded_split, tfidf_baselines, write_results

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "real" / "gemma3_banking77_lora.yaml"
TEST_FRACTION = 0.2
FIELD_LINE = 0.93


def _scores(y_test: list[str], pred: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": accuracy_score(y_test, pred), "f1_macro": f1_score(y_test, pred, average="macro")}


def split_file(source: Path, work: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    import csv

    with source.open(newline="", encoding="utf-8") as f:
        rows = sum(1 for _ in csv.DictReader(f))  # a quoted message may span lines
    return seeded_split(
        source, work, ("banking77_train.csv", "banking77_test.csv"), round(rows * TEST_FRACTION), ["text", "category"]
    )


def generated_scores(run_dir: Path, model: str) -> dict[str, float]:
    """Accuracy and macro-F1 of the intent each generated answer starts with, from predictions.jsonl; an answer
    that starts with no intent is wrong (the recipe scores generated answers: label_scores is false)."""
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["model"] == model]
    out = _scores([r["reference"] for r in rows], [r["parsed"] or "(no intent)" for r in rows])
    return {**out, "parse_failure": sum(bool(r["parse_failure"]) for r in rows) / len(rows), "rows": len(rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="banking77_train.csv (columns text,category)")
    p.add_argument("--gguf", type=Path, required=True, help="gemma-3-270m-q4_k_m.gguf")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "banking77")
    p.add_argument("--threads", type=int, help="torch threads for the run (default: torch's choice)")
    p.add_argument("--from-run", type=Path, help="summarise this finished run folder instead of running")
    p.add_argument("--wall-s", type=float, help="the wall seconds that run took (--from-run)")
    p.add_argument("--load", type=float, nargs=2, help="load average before and after that run (--from-run)")
    args = p.parse_args(argv)
    ceiling = gemm_ceiling(args.threads)
    train, test = split_file(args.file, args.work)
    ref = tfidf_baselines(train, test, "category", _scores)
    report, wall, load = report_of(args, RECIPE)
    run_dir = args.from_run or args.work / "run"
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "gemm_gflops": ceiling,
        "load_average": load,
        "wall_s": wall,
        "finetune_wall_s": report["finetune"]["wall_time"],
        "train_rows": len(train),
        "test_rows": len(test),
        "baselines": ref,
        "before": generated_scores(run_dir, "before"),
        "after": generated_scores(run_dir, "after"),
        "report_eval": report["eval"],
        "cost": report.get("cost", {}),
    }
    write_results(args.out, f"banking77-{result['date']}", result, markdown)
    return 0


def markdown(r: dict[str, Any]) -> str:
    rows = [
        ("majority intent", r["baselines"]["majority"]),
        ("TF-IDF + logistic regression", r["baselines"]["tfidf_logreg"]),
        ("Gemma 3 270M zero-shot (generated answer)", r["before"]),
        ("Gemma 3 270M + LoRA, half an epoch (ft)", r["after"]),
    ]
    lines = [
        f"# BANKING77 intents, Gemma 3 270M LoRA, {r['date']}",
        "",
        f"Split: seed-42 shuffle of the 10,003-row train.csv, {r['train_rows']} train / {r['test_rows']} test. "
        f"`ft run recipes/real/gemma3_banking77_lora.yaml`: {r['wall_s'] / 60:.1f} min wall "
        f"({r['finetune_wall_s'] / 60:.1f} min fine-tuning) on 2 CPU cores, fp32 GEMM ceiling "
        f"{max(r['gemm_gflops'].values()):.0f} GFLOP/s, load average {r['load_average'][0]:.2f} -> "
        f"{r['load_average'][1]:.2f}. The field's line: about {FIELD_LINE} accuracy for sentence-encoder classifiers "
        "(on the official 3,080-row test set).",
        "",
        "| model | accuracy | macro-F1 | no intent parsed |",
        "|---|---:|---:|---:|",
    ]
    for name, s in rows:
        failed = f"{s['parse_failure']:.3f}" if "parse_failure" in s else "-"
        lines.append(f"| {name} | {s['accuracy']:.3f} | {s['f1_macro']:.3f} | {failed} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
