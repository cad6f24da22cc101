"""Plumbing every scenario module shares: split filling, reading users' files, label parsing.

It lives here, not in one scenario, so that a scenario module holds only its own
domain logic and scenarios depend on this module rather than on each other.
Errors about a user's file name the file and the 1-based line where the bad row
starts (:func:`data_error`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from finetune.scenarios.base import SPLITS, Row, ScenarioDataError, Splits

UNPARSED = "<unparsed>"  # stands for an answer naming no label: always wrong, never a class of its own
FREE_TEXT = "<free text>"  # a parser's answer for rows scored as text (hints): neither a value nor a failure


# ---------------------------------------------------------------- generation


def fill_splits(
    name: str, sizes: dict[str, int] | None, defaults: dict[str, int], make: Callable[[str], Row]
) -> Splits:
    """Draw rows split by split, dropping any input already used so splits never share one.

    ``make(split)`` returns a row without ``id``; it must draw held-out values only for "test".
    The test split is drawn first, so for one seed it is the same rows whatever the train and
    validation sizes (a larger test size only appends): runs that train on different amounts
    are scored on the same questions.
    """
    wanted = dict(defaults)
    for key, n in (sizes or {}).items():
        if key not in SPLITS:
            raise ValueError(f"sizes: unknown split {key!r}; use {', '.join(SPLITS)}")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"sizes[{key!r}] must be a non-negative int, got {n!r}")
        wanted[key] = n
    seen: set[str] = set()
    splits: Splits = {}
    for split in ("test", "validation", "train"):
        rows: list[Row] = []
        tries = 0
        while len(rows) < wanted[split]:
            tries += 1
            if tries > 200 * wanted[split] + 1000:
                raise ValueError(f"{name}: cannot draw {wanted[split]} distinct {split} rows; ask for fewer")
            row = make(split)
            if row["input"] in seen:
                continue
            seen.add(row["input"])
            rows.append({"id": f"{name}-{split}-{len(rows):05d}", **row})
        splits[split] = rows
    return {split: splits[split] for split in SPLITS}


# ---------------------------------------------------------------- reading users' files


def data_error(path: Path, row: int | None, what: str) -> ScenarioDataError:
    """One-line error naming the file and the 1-based row (line) so users can jump to it."""
    where = f"{path}: row {row}" if row is not None else str(path)
    return ScenarioDataError(f"{where}: {what}")


def read_text(path: Path) -> str:
    """UTF-8 if it decodes, else latin-1 (Financial PhraseBank ships latin-1 files)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise data_error(path, None, f"cannot read file ({exc.strerror})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) per non-blank line."""
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        if line.strip():
            yield n, line


def iter_jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line, each checked for the ``required`` keys."""
    for n, line in iter_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise data_error(path, n, f"not valid JSON ({exc.msg}); write one object per line") from exc
        if not isinstance(obj, dict):
            raise data_error(path, n, "expected a JSON object per line")
        missing = [k for k in required if k not in obj]
        if missing:
            raise data_error(path, n, f"missing key(s) {', '.join(missing)}; each line needs {', '.join(required)}")
        yield n, obj


def iter_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line the record starts on, record) after checking the header (line 1) has ``required``.

    The text is parsed as a file opened with ``newline=""``, so line breaks inside quoted
    fields survive (dialogue turns), as ``\\n`` whatever the file's line ending, and a record
    spanning several lines is named by its first. Blank lines are skipped.
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    columns = next(reader, [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise data_error(path, 1, f"header lacks column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}")
    start = reader.line_num + 1
    for fields in reader:  # [] for a blank line; counting it keeps ``start`` on the record's own line
        if fields:
            if len(fields) != len(columns):
                raise data_error(path, start, f"has a different number of fields than the header ({len(columns)})")
            yield start, {c: v.replace("\r\n", "\n") for c, v in zip(columns, fields)}
        start = reader.line_num + 1


def read_with(
    scenario: str,
    path: Path,
    fmt: str | None,
    readers: dict[str, Callable[[Path], list[Row]]],
    detect: Callable[[Path], str] | None = None,
) -> list[Row]:
    """Rows from ``readers[fmt]``; ``fmt`` defaults to ``detect(path)``, or without ``detect`` to the first format.

    An unknown format is a ValueError naming the known ones; a file with no rows is a data error.
    """
    path = Path(path)
    fmt = fmt or (detect(path) if detect else next(iter(readers)))
    if fmt not in readers:
        known = f"one of {', '.join(readers)}" if len(readers) > 1 else repr(next(iter(readers)))
        raise ValueError(f"{scenario}: unknown format {fmt!r}; use {known}")
    rows = readers[fmt](path)
    if not rows:
        raise data_error(path, None, "holds no rows")
    return rows


# ---------------------------------------------------------------- evaluation


def check_lengths(predictions: list[str], rows: list[Row], label_probs: list | None) -> None:
    if len(predictions) != len(rows):
        raise ValueError(f"evaluate: {len(predictions)} predictions for {len(rows)} rows; pass one per row")
    if label_probs is not None and len(label_probs) != len(rows):
        raise ValueError(f"evaluate: {len(label_probs)} label_probs for {len(rows)} rows; pass one per row")


# What may stand before the label: quotes, brackets, markdown emphasis, list marks, and a
# field name a model writes in front of its answer ("Answer: good", "The label is good").
# Anything else first ("Doctor: Good morning", "not good") means the answer names no label:
# reading a label out of the middle of free text scored untrained models at majority accuracy.
_LEAD = re.compile(r"""(?:[\s"'`*_#>(\[{.,;:!?]|-(?=\s))*""")  # a dash only as a list mark: "-1" is a label
_FIELD = re.compile(
    r"(?:the\s+)?(?:answer|label|class|category|sentiment|prediction|decision)\s*(?::|=|-|\bis\b)\s*", re.IGNORECASE
)


def parse_label(text: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The choice the answer starts with (whole words, case-insensitive, after quotes/markup and an
    "Answer:"-like field name); None when it starts with anything else.

    Longer choices are tried first so a multi-word label ("very good") wins over its first word.
    """
    rest = _LEAD.sub("", text, count=1)
    field = _FIELD.match(rest)
    if field:
        rest = _LEAD.sub("", rest[field.end() :], count=1)
    for choice in sorted(choices, key=len, reverse=True):
        words = [re.escape(w) for w in choice.split()]
        if words and re.match(r"\s+".join(words) + r"(?!\w)", rest, re.IGNORECASE):
            return choice
    return None


def gen_labels(predictions: list[str], choices: list[str] | tuple[str, ...]) -> tuple[list[str], float]:
    """Labels parsed from generated text (UNPARSED when none) and the share that failed."""
    parsed = [parse_label(p, choices) for p in predictions]
    failures = sum(p is None for p in parsed)
    return [p if p is not None else UNPARSED for p in parsed], failures / max(len(parsed), 1)


def argmax_labels(label_probs: list[dict[str, float]], choices: list[str] | tuple[str, ...]) -> list[str]:
    """Constrained prediction: the most probable choice per row (ties -> first choice)."""
    out = []
    for i, probs in enumerate(label_probs):
        scored = [(probs[c], -k, c) for k, c in enumerate(choices) if probs and c in probs]
        if not scored:
            raise ValueError(f"label_probs[{i}] has no probability for any of {list(choices)}")
        out.append(max(scored)[2])
    return out
