"""Train/test overlap: test rows that a training source already holds, before a model ever sees them.

The rule is the decontamination check of GPT-3 and lm-evaluation-harness: text is normalised
(lower-case, punctuation and whitespace collapsed to single spaces), and a test row overlaps a
training source when it shares a 13-gram of words with any of its rows, or when its whole
normalised text equals one of theirs (which also catches rows shorter than 13 words). Each training
source's 13-grams are hashed into one sorted array and each test row is looked up in it, so the
check is linear in the data (about a second per 100k rows), never a loop over pairs of rows.

A 13-gram that many training rows share is the prompt template, not leakage ("below is an instruction
that describes a task" opens every Alpaca row, and every test row too): one held by more than
TEMPLATE_FRACTION of a source's rows, and by at least TEMPLATE_MIN_ROWS of them, is template. A test
row's words inside a template 13-gram are not matched at all, so neither the template nor the 13-grams
that run from its end into the row's own first words (held by every training row that starts with the
same word) make a row overlap: the row is checked as if the template were cut out. A real copy still
overlaps, by 13 words of its own or its whole text.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from finetune.config.schema import DataSpec, Recipe

Row = dict[str, Any]
NGRAM = 13
EXAMPLES = 3
TEMPLATE_FRACTION = 0.01  # a 13-gram in more than this share of a source's training rows is template ...
TEMPLATE_MIN_ROWS = 20  # ... when at least this many rows hold it (so small sources keep every 13-gram)
RESULT_FILE = "overlap.json"
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces: punctuation, underscores and runs of whitespace all become one."""
    return " ".join(words(text))


def words(text: str) -> list[str]:
    """The normalised text's words. ASCII text (nearly all) goes through a byte table, three times faster than the
    regular expression that handles the rest; both split at the same characters."""
    if text.isascii():
        return text.encode().translate(_ASCII).decode().split()
    return _NOT_WORD.sub(" ", text.lower()).split()


_ASCII = bytes(ord(chr(c).lower()) if chr(c).isalnum() else 32 for c in range(128)) + bytes([32] * 128)
# one odd 64-bit multiplier per n-gram position: an n-gram's hash is the wrapped sum of its words' hashes times these
_MULTIPLIERS = np.random.default_rng(NGRAM).integers(1, 2**63, NGRAM, dtype=np.uint64) | np.uint64(1)


def row_text(row: Row) -> str:
    """Everything a row says: prompt and answer, the turns of a chat, or its plain text."""
    parts = [row.get(key) for key in ("input", "output", "text")]
    messages = row.get("messages")
    if isinstance(messages, list):
        parts += [turn.get("content") for turn in messages if isinstance(turn, dict)]
    return " ".join(p for p in parts if isinstance(p, str))


def ngram_hashes(split_texts: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every 13-gram of every text's words, hashed: (hashes, the text each came from, its first word's position).

    One pass over all words at once: each word is hashed once, then each window's hash is a weighted sum of its
    words' hashes, computed for all windows together; windows that run across two texts are dropped.
    """
    every: list[str] = []
    for split in split_texts:
        every += split
    lengths = np.fromiter(map(len, split_texts), dtype=np.int64, count=len(split_texts))
    n = len(every) - NGRAM + 1
    if n <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty.view(np.uint64), empty, empty
    ids = np.fromiter(map(hash, every), dtype=np.int64, count=len(every)).view(np.uint64)
    hashes = np.zeros(n, dtype=np.uint64)
    for k in range(NGRAM):
        hashes += ids[k : k + n] * _MULTIPLIERS[k]
    owner = np.repeat(np.arange(len(split_texts), dtype=np.int64), lengths)[:n]
    position = np.arange(n, dtype=np.int64) - (np.cumsum(lengths) - lengths)[owner]
    inside = position + NGRAM <= lengths[owner]
    return hashes[inside], owner[inside], position[inside]


def member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``sorted_set`` (sorted, unique): a binary search each."""
    if not len(sorted_set) or not len(values):
        return np.zeros(len(values), dtype=bool)
    return sorted_set[np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)] == values


def frequent(unique: np.ndarray, counts: np.ndarray, hashes: np.ndarray, owner: np.ndarray, rows: int) -> np.ndarray:
    """The template 13-grams among ``unique`` (sorted, occurring ``counts`` times in ``hashes``): held by more than
    TEMPLATE_FRACTION of ``rows`` rows and by at least TEMPLATE_MIN_ROWS, a row repeating one counting once.

    Only 13-grams that occur that often at all are candidates; their rows are then counted exactly, as distinct
    (candidate, row) pairs, so the one big sort stays a plain sort of hashes.
    """
    candidates = unique[(counts >= TEMPLATE_MIN_ROWS) & (counts > TEMPLATE_FRACTION * rows)]
    if not len(candidates):
        return candidates
    at = member(hashes, candidates)
    pairs = np.unique(np.searchsorted(candidates, hashes[at]) * np.int64(rows) + owner[at])
    holding = np.bincount(pairs // rows, minlength=len(candidates))
    return candidates[(holding >= TEMPLATE_MIN_ROWS) & (holding > TEMPLATE_FRACTION * rows)]


@dataclass
class TrainIndex:
    """One training source's hashed 13-grams (sorted, unique, template ones left out) and whole-text hashes
    (-> the first row holding it)."""

    name: str
    texts: list[str]  # normalised rows, to quote an example
    ngrams: np.ndarray
    whole: dict[int, int]
    template: np.ndarray  # sorted hashes of the 13-grams left out as template (see the module docstring)

    @classmethod
    def build(cls, name: str, rows: list[Row]) -> TrainIndex:
        split = [words(row_text(r)) for r in rows]
        texts = [" ".join(w) for w in split]
        whole: dict[int, int] = {}
        for i, text in enumerate(texts):
            if text:
                whole.setdefault(hash(text), i)
        hashes, owner, _ = ngram_hashes(split)
        ordered = np.sort(hashes)
        first = np.ones(len(ordered), dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        starts = np.flatnonzero(first)
        unique = ordered[starts]
        template = frequent(unique, np.diff(np.append(starts, len(ordered))), hashes, owner, len(rows))
        return cls(name, texts, unique[~member(unique, template)], whole, template)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Which of ``hashes`` this source holds: a binary search in the sorted array, no pairwise loop.

        The queries are sorted first: in order, each search starts near the last one (five times faster on 3M).
        """
        found = np.zeros(len(hashes), dtype=bool)
        if not len(self.ngrams) or not len(hashes):
            return found
        order = np.argsort(hashes)
        queries = hashes[order]
        at = np.minimum(np.searchsorted(self.ngrams, queries), len(self.ngrams) - 1)
        found[order] = self.ngrams[at] == queries
        return found

    def holding(self, gram: str) -> int | None:
        """The first training row containing ``gram`` as whole words (only for the few examples quoted)."""
        needle = f" {gram} "
        return next((i for i, t in enumerate(self.texts) if needle in f" {t} "), None)


@dataclass
class TestRows:
    """One evaluation set's rows, normalised, with every 13-gram hash, the row it came from and where it starts."""

    name: str
    texts: list[str]
    ngrams: np.ndarray
    owner: np.ndarray
    position: np.ndarray
    word_at: np.ndarray  # each 13-gram's first word, counted over all rows' words in turn

    @classmethod
    def build(cls, name: str, rows: list[Row]) -> TestRows:
        split = [words(row_text(r)) for r in rows]
        ngrams, owner, position = ngram_hashes(split)
        starts = np.cumsum([0] + [len(w) for w in split])[:-1].astype(np.int64)
        return cls(name, [" ".join(w) for w in split], ngrams, owner, position, starts[owner] + position)

    def in_template(self, template: np.ndarray) -> np.ndarray:
        """Which 13-grams hold a word that a ``template`` 13-gram of the same row covers (the template itself and
        the 13-grams running into or out of it). Linear: a count of covering 13-grams per word, then a running sum.
        """
        if not len(template) or not len(self.ngrams):
            return np.zeros(len(self.ngrams), dtype=bool)
        starts = self.word_at[member(self.ngrams, template)]
        size = int(self.word_at[-1]) + 2 * NGRAM
        cover = np.cumsum(np.bincount(starts, minlength=size) - np.bincount(starts + NGRAM, minlength=size)) > 0
        covered_before = np.concatenate(([0], np.cumsum(cover)))
        return covered_before[self.word_at + NGRAM] > covered_before[self.word_at]


def compare(train: TrainIndex, test: TestRows) -> dict[str, Any]:
    """Counts and up to three quoted examples for one (training source, test set) pair, and the overlapping rows."""
    hit = train.contains(test.ngrams) & ~test.in_template(train.template)
    owner, position = test.owner[hit], test.position[hit]
    first = np.concatenate(([True], owner[1:] != owner[:-1])) if len(owner) else np.zeros(0, dtype=bool)
    first_gram = dict(zip(owner[first].tolist(), position[first].tolist()))
    exact = {i for i, t in enumerate(test.texts) if t and hash(t) in train.whole}
    both = sorted(set(first_gram) | exact)
    return {
        "train": train.name,
        "test": test.name,
        "test_rows": len(test.texts),
        "ngram_rows": len(first_gram),
        "exact_rows": len(exact),
        "template_ngrams": len(train.template),
        "rows": len(both),
        "ids": both,
        "examples": [_example(train, test, i, first_gram.get(i), i in exact) for i in both[:EXAMPLES]],
    }


def _example(train: TrainIndex, test: TestRows, row: int, gram_at: int | None, exact: bool) -> dict[str, Any]:
    text = test.texts[row]
    if exact:
        return {
            "test_row": row,
            "kind": "exact",
            "test": _clip(text),
            "train": _clip(train.texts[train.whole[hash(text)]]),
        }
    gram = " ".join(text.split()[gram_at : gram_at + NGRAM])
    at = train.holding(gram)
    return {
        "test_row": row,
        "kind": f"{NGRAM}-gram",
        "shared": gram,
        "test": _clip(text),
        "train": _clip(train.texts[at]) if at is not None else "",
    }


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def check(train: Iterable[tuple[str, list[Row]]], tests: Iterable[tuple[str, list[Row]]]) -> dict[str, Any]:
    """Every test set against every training source: per-pair counts and examples, and per test set the row
    numbers (positions in its rows) that overlap any training source."""
    started = time.perf_counter()
    indexes = [TrainIndex.build(name, rows) for name, rows in train if rows]
    pairs, sets = [], []
    for name, rows in tests:  # an empty set keeps its place: eval_sets matches the results to its sets by position
        test = TestRows.build(name, rows)
        found = [compare(index, test) for index in indexes]
        pairs += [{k: v for k, v in f.items() if k != "ids"} for f in found]
        ids = sorted({i for f in found for i in f["ids"]})
        sets.append({"test": name, "test_rows": len(rows), "overlapping": len(ids), "ids": ids})
    template = {"fraction": TEMPLATE_FRACTION, "min_rows": TEMPLATE_MIN_ROWS}  # the rule; counts are per pair
    seconds = round(time.perf_counter() - started, 3)
    return {"ngram": NGRAM, "template": template, "pairs": pairs, "tests": sets, "seconds": seconds}


def without(rows: list[Row], ids: Iterable[int]) -> list[Row]:
    """``rows`` less the positions ``ids`` (eval.overlap: drop)."""
    drop = set(ids)
    return [r for i, r in enumerate(rows) if i not in drop]


# ---------------------------------------------------------------- what a recipe trains and tests on


def evaluated_rows(source: Any, whole: bool) -> list[Row]:
    """The rows a source is evaluated on, in the evaluation's order: every split of eval.data, else the test split."""
    return (
        [r for split in ("train", "validation", "test") for r in source.splits[split]]
        if whole
        else source.splits["test"]
    )


def evaluation_sets(recipe: Recipe, sources: list[Any]) -> list[tuple[str, list[Row]]]:
    """The evaluation sets the recipe's test rows come from (as finetune/eval/run.py::eval_sets builds them)."""
    from finetune.data.sources import load_sources

    if recipe.eval is not None and recipe.eval.data is not None:
        evaluated = load_sources(DataSpec(sources=[recipe.eval.data]), recipe.seed)
        return [(s.name, evaluated_rows(s, whole=True)) for s in evaluated]
    return [(s.name, evaluated_rows(s, whole=False)) for s in sources]


def check_recipe(recipe: Recipe, sources: list[Any]) -> dict[str, Any]:
    """The check on a run's loaded sources (before PII scrubbing, which could hide a copy), with the action taken."""
    result = check([(s.name, s.splits["train"]) for s in sources], evaluation_sets(recipe, sources))
    result["action"] = recipe.eval.overlap if recipe.eval is not None else "report"
    return result


def dropped_ids(data: DataSpec | None, spec: Any, seed: int, evaluated: list[Any]) -> list[list[int]]:
    """Per evaluated source, the positions (in :func:`evaluated_rows`) eval.overlap: drop leaves out: the check the
    fine-tune stage ran, on the same rows. Nothing with eval.overlap: report, or without training data."""
    from finetune.data.sources import load_sources

    whole = spec.data is not None
    if spec.overlap != "drop" or data is None:
        return [[] for _ in evaluated]
    train = load_sources(data, seed, carve_test=not whole)
    tests = [(s.name, evaluated_rows(s, whole)) for s in evaluated]
    return [t["ids"] for t in check([(s.name, s.splits["train"]) for s in train], tests)["tests"]]


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One console line per test set with overlaps, naming the worst training source and the action."""
    lines = []
    for t in result["tests"]:
        if not t["overlapping"]:
            continue
        worst = max((p for p in result["pairs"] if p["test"] == t["test"]), key=lambda p: p["rows"])
        action = "left out of the evaluation (eval.overlap: drop)" if result["action"] == "drop" else "kept"
        lines.append(
            f"warning: overlap: {t['overlapping']} of {t['test_rows']} test rows of {t['test']} share a "
            f"{NGRAM}-gram or their whole text with training data (most with {worst['train']}: {worst['rows']}); "
            f"{action}; see {RESULT_FILE}"
        )
    return lines


def write(result: dict[str, Any], run_dir: Path) -> Path:
    from finetune.rundir import write_json

    path = run_dir / RESULT_FILE
    write_json(path, result)
    return path
