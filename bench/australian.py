"""python -m bench.australian PATH/australian.dat [--out DIR] [--work DIR] [--only NAME,...] [--epochs N]

The majority trap, measured on real credit data (UCI Statlog Australian Credit Approval).
Runs recipes/finetune/australian_credit_lora.yaml on a seed-0 80/20 split of the file
(the 80% is the training file, carved by the recipe into train and validation; the 20% is
eval.data), and on an imbalanced version of the same file (approved rows thinned to 25%,
seed-fixed, then split the same way). Each training (class_balance none / weighted /
oversample) is evaluated twice: argmax and the decision tuned on the validation split.
Beside them: logistic regression (scikit-learn, standardised features) on the same split.
Writes ``<out>/australian-<date>.md`` and ``.json``. Each training is a CPU run of a few
minutes; they run one after the other.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "finetune" / "australian_credit_lora.yaml"
SEED = 0
TEST_SHARE = 0.2
THIN_APPROVED = 0.25  # imbalanced version: this share of the approved (label 1) rows is kept
DATASETS = ("plain", "imbalanced")
VARIANTS: dict[str, tuple[str, ...]] = {"plain": ("none", "weighted"), "imbalanced": ("none", "weighted", "oversample")}


# ---------------------------------------------------------------- data


def read_lines(path: Path) -> list[str]:
    """The file's rows, checked by the scenario's reader first (a wrong file fails here, naming the row)."""
    from finetune.scenarios import risk_assessment

    risk_assessment.read(path, "australian_credit")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def thin(lines: list[str], keep: float, seed: int) -> list[str]:
    """Keep a seeded ``keep`` share of the approved rows (label 1, the last field), every rejected row, in file order."""
    approved = [i for i, line in enumerate(lines) if line.split()[-1] == "1"]
    kept = set(random.Random(f"{seed}:thin").sample(approved, round(keep * len(approved))))
    return [line for i, line in enumerate(lines) if line.split()[-1] != "1" or i in kept]


def split(lines: list[str], test_share: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded 80/20: (train, test), each in file order."""
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    n_test = round(test_share * len(lines))
    test = set(order[:n_test])
    return [x for i, x in enumerate(lines) if i not in test], [x for i, x in enumerate(lines) if i in test]


def write_dataset(lines: list[str], folder: Path) -> dict[str, Any]:
    train, test = split(lines, TEST_SHARE, SEED)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        (folder / f"{name}.dat").write_text("\n".join(rows) + "\n", encoding="utf-8")
    share = lambda rows: sum(r.split()[-1] == "1" for r in rows) / len(rows)  # noqa: E731
    return {
        "rows": len(lines),
        "train": len(train),
        "test": len(test),
        "approved_share_train": share(train),
        "approved_share_test": share(test),
    }


def logistic_regression(folder: Path) -> dict[str, float]:
    """The classical baseline on the same split: standardised features, default L2 logistic regression."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import matthews_corrcoef
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def load(name: str) -> tuple[Any, Any]:
        data = np.loadtxt(folder / f"{name}.dat")
        return data[:, :14], data[:, 14]

    (x, y), (xt, yt) = load("train"), load("test")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    predicted = model.predict(xt)
    return {"mcc": float(matthews_corrcoef(yt, predicted)), "accuracy": float((predicted == yt).mean())}


# ---------------------------------------------------------------- runs


def recipe_for(folder: Path, out: Path, balance: str, epochs: float | None, threads: int | None) -> dict[str, Any]:
    """The shipped recipe, pointed at this split: the 80% trains (and gives the validation rows), the 20% is eval.data."""
    import yaml

    data = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    data["name"] = f"australian-{folder.name}-{balance}"
    data["output"] = str(out)
    data["overwrite"] = True
    data["resume"] = "never"
    source = dict(data["data"]["sources"][0], path=str(folder / "train.dat"))
    data["data"]["sources"] = [source]
    data["data"]["class_balance"] = balance
    data["eval"] = {
        **data["eval"],
        "before": False,
        "decision": "tuned",
        "samples": 10_000,
        "data": {"scenario": "risk_assessment", "path": str(folder / "test.dat"), "format": "australian_credit"},
    }
    if epochs is not None:
        data["train"]["epochs"] = epochs
    if threads is not None:  # the top-level train section sets the process's threads, pretraining included
        data["train"]["threads"] = threads
    return data


def train_and_score(recipe: dict[str, Any]) -> dict[str, Any]:
    """One training, evaluated with the tuned decision (the run itself) and with argmax (the same model again)."""
    from finetune.config import recipe_from_dict
    from finetune.pipeline import run
    from finetune.stages.evaluate import _evaluate

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = run(recipe_from_dict(recipe))
    wall = time.perf_counter() - started
    run_dir = Path(result.run_dir)
    tuned = json.loads((run_dir / "eval.json").read_text())
    # the same model again under argmax; the retention probe was measured by the run (and needs the base it is not given)
    plain = recipe_from_dict(
        {**recipe, "eval": {**recipe["eval"], "decision": "argmax", "retention": {"enabled": False}}}
    )
    argmax = _evaluate(plain, None, run_dir / "model", "cpu", print)
    report = json.loads((run_dir / "report.json").read_text())
    out = {
        "wall_s": round(wall, 1),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
        "steps": report.get("finetune", {}).get("steps"),
        "run_dir": str(run_dir),
    }
    for name, ev in (
        ("argmax", {"after": argmax.after, "decisions": argmax.decisions, "warnings": argmax.warnings}),
        ("tuned", tuned),
    ):
        source, metrics = next(iter(ev["after"].items()))
        out[name] = {
            "mcc": metrics.get("mcc"),
            "accuracy": metrics.get("accuracy"),
            "f1_bad": metrics.get("f1"),
            "ref_majority_accuracy": metrics.get("ref_majority_accuracy"),
            "ref_best_shortcut_mcc": metrics.get("ref_best_shortcut_mcc"),
            "rule": ev["decisions"]["after"].get(source),
            "warnings": ev["warnings"]["after"].get(source, []),
        }
    return out


# ---------------------------------------------------------------- results


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    epochs = f" (train.epochs {meta['epochs_override']:g})" if meta.get("epochs_override") else ""
    lines = [
        f"# Australian credit: majority trap, {meta['date']}{epochs}",
        "",
        f"File: {meta['file']} ({meta['rows']} rows). Recipe `{meta['recipe']}` at commit `{meta['commit']}`; "
        f"seed {SEED}, {int(100 * (1 - TEST_SHARE))}/{int(100 * TEST_SHARE)} split: the 80% is the training "
        "file (carved by the recipe into train and validation), the 20% is eval.data. Imbalanced: approved rows "
        f"thinned to {int(100 * THIN_APPROVED)}% (seeded) before the split. Machine: {meta['machine']}.",
        "",
        "| data | class_balance | decision | MCC | accuracy | F1 (bad) | warning | rule | train+eval s | load avg |",
        "|---|---|---|---:|---:|---:|---|---|---:|---|",
    ]
    for name, ds in results["datasets"].items():
        for balance, r in ds["runs"].items():
            for decision in ("argmax", "tuned"):
                m = r[decision]
                rule = m["rule"] or {}
                rule_text = (
                    "argmax"
                    if rule.get("rule") != "tuned"
                    else f"bad {rule.get('offsets', {}).get('bad', 0):+.2f} on {rule.get('rows')} val rows "
                    f"(val {rule.get('metric')} {_f(rule.get('argmax'))} -> {_f(rule.get('tuned'))}"
                    + _out_of_fold_text(rule)
                    + ")"
                )
                lines.append(
                    f"| {name} | {balance} | {decision} | {_f(m['mcc'])} | {_f(m['accuracy'])} | {_f(m['f1_bad'])} "
                    f"| {'yes' if m['warnings'] else 'no'} | {rule_text} | {r['wall_s']} "
                    f"| {r['load_avg_before']} -> {r['load_avg_after']} |"
                )
    lines += ["", "Baselines on the same test rows:", ""]
    for name, ds in results["datasets"].items():
        any_run = next(iter(ds["runs"].values()), None)
        refs = any_run["tuned"] if any_run else {}
        lines.append(
            f"- {name}: {ds['sizes']['train']} train-file rows / {ds['sizes']['test']} test rows, approved "
            f"{100 * ds['sizes']['approved_share_test']:.0f}% of test; logistic regression MCC "
            f"{_f(ds['logistic_regression']['mcc'])} (accuracy {_f(ds['logistic_regression']['accuracy'])}); "
            f"majority accuracy {_f(refs.get('ref_majority_accuracy'))}; best single-attribute shortcut MCC "
            f"{_f(refs.get('ref_best_shortcut_mcc'))}"
        )
    warnings = [
        (n, b, d, w)
        for n, ds in results["datasets"].items()
        for b, r in ds["runs"].items()
        for d in ("argmax", "tuned")
        for w in r[d]["warnings"]
    ]
    if warnings:
        lines += ["", "Warnings the runs gave:", ""] + [f"- {n} / {b} / {d}: {w}" for n, b, d, w in warnings]
    return "\n".join(lines) + "\n"


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # a copy without .git: the caller may say which commit it is
        return os.environ.get("BENCH_COMMIT", "unknown")


def _out_of_fold_text(rule: dict[str, Any]) -> str:
    """The tuned rule's out-of-fold check, as the table shows it."""
    cv = rule.get("out_of_fold")
    if not cv:
        return ""
    if rule.get("kept_argmax"):
        return f"; in sample {_f(rule['kept_argmax']['in_sample'])}, out of fold {_f(cv['tuned'])}: argmax kept"
    return f"; out of fold {_f(cv['argmax'])} -> {_f(cv['tuned'])}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.australian", description=__doc__.split("\n\n")[1])
    p.add_argument("file", type=Path, help="australian.dat (UCI Statlog Australian Credit Approval)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results folder")
    p.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "australian", help="splits and run folders")
    p.add_argument("--only", help="comma-separated runs as DATA:BALANCE (e.g. plain:none,imbalanced:weighted)")
    p.add_argument("--epochs", type=float, help="override the recipe's train.epochs")
    p.add_argument(
        "--tag", help="suffix of the results files (australian-<date>-<tag>.md), e.g. for an --epochs variant"
    )
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice; 1 is faster on a busy machine)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.file.is_file():
        p.error(f"{args.file}: no such file; download australian.dat from the UCI repository")
    wanted = {tuple(x.split(":", 1)) for x in args.only.split(",")} if args.only else None
    lines = read_lines(args.file)
    date = time.strftime("%Y-%m-%d")
    stem = f"australian-{date}" + (f"-{args.tag}" if args.tag else "")
    results: dict[str, Any] = {
        "meta": {
            "date": date,
            "file": args.file.name,
            "rows": len(lines),
            "recipe": str(RECIPE.relative_to(REPO)),
            "commit": _commit(),
            "machine": f"{os.cpu_count()} CPUs, torch threads {args.threads or 'default'}",
            "epochs_override": args.epochs,
        },
        "datasets": {},
    }
    for name in DATASETS:
        folder = args.work / name
        sizes = write_dataset(thin(lines, THIN_APPROVED, SEED) if name == "imbalanced" else lines, folder)
        ds = results["datasets"][name] = {
            "sizes": sizes,
            "logistic_regression": logistic_regression(folder),
            "runs": {},
        }
        for balance in VARIANTS[name]:
            if wanted is not None and (name, balance) not in wanted:
                continue
            print(f"== {name} / class_balance {balance}", flush=True)
            ds["runs"][balance] = train_and_score(
                recipe_for(folder, args.work / "runs" / f"{name}-{balance}", balance, args.epochs, args.threads)
            )
            _write(results, args.out, stem)  # after every run: a stopped benchmark keeps what it measured
    _write(results, args.out, stem)
    print(render(results))
    return 0


def _write(results: dict[str, Any], out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / f"{stem}.md").write_text(render(results), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
