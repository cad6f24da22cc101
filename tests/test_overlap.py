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
    assert "more than 1% (and at least 20) of a source's training rows is prompt template" in section


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


TEMPLATE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def templated(rng: random.Random, n: int, first: str | None = None) -> list[dict[str, str]]:
    """Alpaca-style rows: the same 16-word template, then 20 words of their own (the first one ``first`` if given)."""
    return [{"input": f"{TEMPLATE} {first or sentence(rng, 1)} {sentence(rng, 19)}", "output": "x"} for _ in range(n)]


def test_a_shared_prompt_template_is_not_overlap_but_a_copied_row_still_is(monkeypatch):
    rng = random.Random(3)
    train, test = templated(rng, 300), templated(rng, 40)
    train += templated(rng, 3, first="zebra")  # 3 rows (< 20) start like test row 7: only template + 1 word shared
    test[7]["input"] = f"{TEMPLATE} zebra {sentence(rng, 19)}"
    train.append(dict(test[5]))  # a true copy
    own = train[0]["input"].split()[16:29]  # 13 of a training row's own words, after the template
    test[9]["input"] = f"{TEMPLATE} {' '.join(own)} {sentence(rng, 4)}"
    result = overlap.check([("train", train)], [("test", test)])
    assert result["tests"][0]["ids"] == [5, 9]
    assert result["pairs"][0]["template_ngrams"] == 4  # the template's 16 words hold four 13-grams
    assert result["template"] == {"fraction": 0.01, "min_rows": 20}
    assert "below is an instruction" not in " ".join(e.get("shared", "") for e in result["pairs"][0]["examples"])

    monkeypatch.setattr(overlap, "TEMPLATE_MIN_ROWS", 10_000)  # no filter: the template makes every row overlap
    assert overlap.check([("train", train)], [("test", test)])["tests"][0]["overlapping"] == 40


def test_a_13_gram_in_fewer_than_20_training_rows_still_makes_an_overlap():
    rng = random.Random(4)
    result = overlap.check([("train", templated(rng, 19))], [("test", templated(rng, 2))])
    assert result["tests"][0]["ids"] == [0, 1] and result["pairs"][0]["template_ngrams"] == 0


@pytest.mark.parametrize(("holding", "flagged"), [(25, True), (26, False)])
def test_template_means_more_than_one_percent_of_a_large_sources_rows(holding, flagged):
    rng = random.Random(5)
    phrase = sentence(rng, 13)
    train = [{"text": sentence(rng, 20)} for _ in range(2500)]
    for row in train[:holding]:
        row["text"] = f"{phrase} {row['text']}"
    result = overlap.check([("train", train)], [("test", [{"text": f"{sentence(rng, 5)} {phrase}"}])])
    assert result["tests"][0]["overlapping"] == flagged and result["pairs"][0]["template_ngrams"] == (not flagged)
