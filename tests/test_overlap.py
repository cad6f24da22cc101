"""Train/test overlap (issue #16, point 3): 13-grams after normalisation and exact duplicates, counted per
(training source, test set) pair; eval.overlap: drop leaves exactly the overlapping test rows out."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from finetune.config.load import recipe_from_dict
from finetune.config.schema import DataSpec
from finetune.data import overlap
from finetune.data.sources import load_sources
from finetune.report import _overlap_section

VOCAB = [f"w{i}" for i in range(3000)]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["input", "output"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def plant(test: list[dict[str, str]], rng: random.Random) -> list[dict[str, str]]:
    """Training rows that hold 7 of the test rows in 7 ways; one more row shares only 12 words (not an overlap)."""
    a, b, c, d, e, f, g, miss = (test[i] for i in (3, 8, 15, 21, 30, 34, 41, 45))
    shout = lambda text: text.upper().replace(" ", " ,  ")  # noqa: E731 - case, punctuation and spacing differ
    return [
        dict(a),  # a plain copy
        {"input": shout(b["input"]), "output": b["output"] + "!"},  # the same after normalisation
        {"input": f"{sentence(rng, 5)} {c['input']} {sentence(rng, 5)}", "output": "x"},  # inside a longer row
        {"input": " ".join(d["input"].split()[4:17]), "output": "y"},  # exactly 13 of its words
        {"input": sentence(rng, 6), "output": f"{e['output']} {e['input']}"},  # in another field, other order
        {"input": f["input"], "output": f["output"]},  # a short row (< 13 words): exact duplicate only
        {"input": g["input"] + " " + g["output"], "output": "z"},  # its input and output run together
        {"input": " ".join(miss["input"].split()[2:14]), "output": "q"},  # 12 words: below the 13-gram rule
    ]


@pytest.fixture()
def files(tmp_path):
    rng = random.Random(7)
    test = [{"input": sentence(rng, 20), "output": sentence(rng, 3)} for _ in range(50)]
    test[34] = {"input": sentence(rng, 6), "output": "yes"}  # shorter than 13 words with its output
    train = [{"input": sentence(rng, 20), "output": sentence(rng, 3)} for _ in range(300)]
    train += plant(test, rng)
    planted = {test[i]["input"] for i in (3, 8, 15, 21, 30, 34, 41)}
    return write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "test.csv", test), planted


def recipe(train: Path, test: Path, action: str):
    return recipe_from_dict(
        {
            "name": "overlap",
            "model": {"path": "unused"},
            "data": {"sources": [{"path": str(train), "split": "train"}]},
            "method": {"kind": "lora"},
            "eval": {"data": {"path": str(test)}, "task": "generation", "samples": 1000, "overlap": action},
        }
    )


def test_normalise_collapses_case_punctuation_and_spaces():
    assert overlap.normalise("  The  CAT, sat;\ton_the--mat! ") == "the cat sat on the mat"
    assert overlap.normalise("Ça   VA? très_bien") == "ça va très bien"  # the non-ASCII path splits alike


def test_seven_planted_rows_are_found_and_quoted(files):
    train, test, planted = files
    r = recipe(train, test, "report")
    result = overlap.check_recipe(r, load_sources(r.data, r.seed, carve_test=False))
    (pair,) = result["pairs"]
    assert (pair["train"], pair["test"], pair["test_rows"], pair["rows"]) == ("train", "test", 50, 7)
    assert pair["exact_rows"] == 3 and pair["ngram_rows"] == 6  # two rows are both; the short row is exact only
    assert len(pair["examples"]) == 3 and all(e["train"] for e in pair["examples"])
    evaluated = overlap.evaluated_rows(load_sources(DataSpec(sources=[r.eval.data]), r.seed)[0], whole=True)
    found = {evaluated[i]["input"] for i in result["tests"][0]["ids"]}
    assert found == planted
    section = "\n".join(_overlap_section(result))
    assert "## Train/test overlap" in section and "| train | test | 50 | 7 | 6 | 3 |" in section
    assert "kept and scored" in section


def test_drop_leaves_out_exactly_the_planted_rows(files):
    from finetune.eval.run import eval_sets

    train, test, planted = files
    kept = {row["input"] for s in eval_sets(*_eval_args(recipe(train, test, "drop"))) for row in s.rows}
    everything = {row["input"] for s in eval_sets(*_eval_args(recipe(train, test, "report"))) for row in s.rows}
    assert len(everything) == 50 and everything - kept == planted


def _eval_args(r):
    return r.data, r.eval, r.seed


def test_the_run_writes_overlap_json_and_the_report_says_drop(files, tmp_path):
    from finetune.stages.finetune import _overlap_summary, check_overlap

    train, test, _ = files
    r = recipe(train, test, "drop")
    lines: list[str] = []
    result = check_overlap(r, load_sources(r.data, r.seed, carve_test=False), tmp_path, True, lines.append)
    saved = (tmp_path / overlap.RESULT_FILE).read_text()
    assert '"overlapping": 7' in saved and len(result["tests"][0]["ids"]) == 7
    assert len(lines) == 1 and "7 of 50 test rows of test" in lines[0] and "left out" in lines[0]
    shown = _overlap_summary(result)
    assert "ids" not in shown["tests"][0] and "left out of the evaluation" in "\n".join(_overlap_section(shown))


def test_no_quadratic_work_many_rows_against_many_sources():
    """Hashing, not pairs: 20k training rows in two sources and 5k test rows, one planted copy per source."""
    rng = random.Random(1)
    test = [{"text": sentence(rng, 30)} for _ in range(5000)]
    one = [{"text": sentence(rng, 30)} for _ in range(10000)] + [{"text": "prefix " + test[10]["text"]}]
    two = [{"text": sentence(rng, 30)} for _ in range(10000)] + [{"text": test[99]["text"].upper()}]
    result = overlap.check([("one", one), ("two", two)], [("test", test)])
    assert [p["rows"] for p in result["pairs"]] == [1, 1]
    assert result["tests"][0]["ids"] == [10, 99]
