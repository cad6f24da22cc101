"""Turn the recipe's data sources into checked rows, split three ways.

Every source ends up in our row schema (``input``/``output``, ``messages`` or
``text``, plus whatever else it carries), so formatting and evaluation never see
user column names. Rows are checked here, at the edge: a bad row is an error
naming the file and the row, or (``on_bad_row: skip``) it is dropped and
counted; nothing vanishes silently.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import os
import random
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from finetune.config.schema import DataSpec, SourceSpec
from finetune.errors import UserError

Row = dict[str, Any]
SPLITS = ("train", "validation", "test")
OUR_FIELDS = ("input", "output", "messages", "text", "label", "group", "prompt", "chosen", "rejected")
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
ROLES = ("system", "user", "assistant")


@dataclass
class LoadedSource:
    name: str
    scenario: str | None
    splits: dict[str, list[Row]]
    system: str | None
    instruction: str | None
    card: str | None
    skipped: int = 0
    weight: int = 1
    split_counts: dict[str, int] = field(default_factory=dict)  # a file's usable rows and where they went
    split_note: str = ""  # the one line that says so ("" for generated data)


def load_sources(
    spec: DataSpec, seed: int, *, carve_test: bool = True, say: Callable[[str], None] | None = None
) -> list[LoadedSource]:
    """All sources of the recipe, in order; generated data uses ``seed``, files are split by it.

    ``carve_test=False`` when the test rows come from elsewhere (eval.data): a file then gives
    no rows to a test part nobody reads. ``say`` hears one line per file on how it was split,
    so a file is never silently trained on only part of its rows.
    """
    loaded = [_load_source(spec, i, source, seed, carve_test) for i, source in enumerate(spec.sources)]
    for src in loaded:
        if say is not None and src.split_note:
            say(src.split_note)
    return loaded


def require_training_rows(sources: list[LoadedSource]) -> None:
    """Fine-tuning needs rows to train on; sources declared split: validation/test give none."""
    if not any(src.splits.get("train") for src in sources):
        names = ", ".join(src.name for src in sources)
        raise UserError(f"data sources ({names}) give no training rows; set split: all or train on a training file")


def _load_source(spec: DataSpec, index: int, source: SourceSpec, seed: int, carve_test: bool = True) -> LoadedSource:
    scenario = None
    if source.scenario:
        from finetune import scenarios

        scenario = scenarios.get(source.scenario)
    if scenario is not None and not source.path:
        splits = _generate(scenario, index, source, seed, spec.shape == "preference")
        checked, skipped = {}, 0
        for split in SPLITS:
            checked[split], n = check_rows(splits.get(split, []), spec, f"scenario {scenario.name}, {split}")
            skipped += n
        name, card = scenario.name, source.card or scenario.card
        counts, note = {}, ""
    else:
        check_local_file(Path(source.path), source.format)
        if scenario is not None and source.format in scenario.formats:
            rows = scenario.read_file(source.path, source.format)
            card = source.card or scenario.formats[source.format]
            where = [n + 1 for n in range(len(rows))]
        else:
            rows, where = _read_table(source, spec.shape)
            card = source.card
        if not rows:
            raise UserError(
                f"{source.path}: no data rows (an empty file, or a header only); add rows or drop the source"
            )
        rows, skipped = check_rows(rows, spec, _label(source.path), where)
        split = _file_split(source)
        checked = assign_splits(rows, split, spec.validation_fraction, seed, _label(source.path), carve_test)
        name = _stem(source.path)
        counts = {"rows": len(rows), **{k: len(v) for k, v in checked.items()}}
        note = split_line(source.path, split, counts, spec.validation_fraction, carve_test)
    return LoadedSource(
        name=name,
        scenario=scenario.name if scenario is not None else None,
        splits=checked,
        system=source.system if source.system is not None or scenario is None else scenario.system,  # "": none
        instruction=source.instruction,
        card=card,
        skipped=skipped,
        weight=source.weight,
        split_counts=counts,
        split_note=note,
    )


def _generate(scenario: Any, index: int, source: SourceSpec, seed: int, pairs: bool = False) -> dict[str, list[Row]]:
    """Bad options are the user's to fix; bind first so a TypeError inside the generator stays a bug.

    ``pairs``: the scenario's preference pairs (data.shape: preference) instead of its rows.
    """
    where = f"data.sources[{index}].options"
    make = scenario.generate
    if pairs:
        make = scenario.preference_pairs
        if make is None:
            raise UserError(f"data.sources[{index}]: scenario {scenario.name} has no preference pairs; use a file")
    try:
        inspect.signature(make).bind(seed=seed, sizes=source.sizes, **source.options)
    except TypeError as exc:
        raise UserError(f"{where}: {exc} (scenario {scenario.name})") from None
    try:
        return make(seed=seed, sizes=source.sizes, **source.options)
    except UserError:
        raise
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


# ---------------------------------------------------------------- files


def _label(path: str | None) -> str:
    return Path(path).name if path else "?"


def _stem(path: str | None) -> str:
    return Path(path.rstrip("/")).stem if path else "data"


def _datasets_cache() -> str:
    """datasets' default cache folder, read from the environment now (not at import) so tests can redirect it."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "datasets")


def check_local_file(path: Path, fmt: str | None = None) -> None:
    """Refuse what no reader should open: a folder, a pipe (reading it blocks), an empty file, a CSV whose
    header names a column twice (the CSV reader renames or drops one of them without a word)."""
    if not os.path.lexists(path):
        return  # a hub dataset id, or a missing file the reader names
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror}); check the path and its permissions") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path} is a folder; point path at a data file inside it (jsonl, json, csv or parquet)")
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is a {_file_kind(mode)}, not a regular file; save the data to a file and use that")
    size = path.stat().st_size
    head = _head(path)
    if not head.strip() and size <= len(head):
        raise UserError(
            f"{path} is empty ({'0 bytes' if not size else 'blank lines only'}); add rows or drop the source"
        )
    if path.suffix.lower() == ".csv" or (fmt or "").lower().lstrip(".") == "csv":
        _check_csv_header(path, head, complete=size <= len(head))


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _head(path: Path, limit: int = 1 << 20) -> bytes:
    """The file's first MiB: enough for a header and to tell an empty file, without reading a big one."""
    with path.open("rb") as fh:
        return fh.read(limit)


def _check_csv_header(path: Path, head: bytes, complete: bool) -> None:
    """The header is the first non-blank record (as pandas reads it): each name once, and rows after it."""
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # the read cut a character in two, or the file is latin-1
        text = head[: exc.start].decode("utf-8-sig") if exc.start >= len(head) - 3 else head.decode("latin-1")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next((record for record in reader if record), [])
    line = reader.line_num
    first: dict[str, int] = {}
    for column, name in enumerate(header, start=1):
        if name in first and name.strip():  # unnamed columns get distinct names from the reader
            raise UserError(
                f"{path.name}, line {line}: column {name!r} appears twice (columns "
                f"{first[name]} and {column}); rename one so every column has its own name"
            )
        first[name] = column
    if complete and not any(record for record in reader):
        raise UserError(
            f"{path.name}: a header (line {line}) and no rows; add rows below the header or drop the source"
        )


def _builder(source: SourceSpec, path: Path) -> str:
    fmt = (source.format or "").lower().lstrip(".")
    if fmt:
        if f".{fmt}" not in FILE_BUILDERS:
            raise UserError(
                f"{path.name}: format {source.format!r} is not a file format (jsonl, json, csv, parquet)"
                + (f" nor a real format of scenario {source.scenario}" if source.scenario else "")
            )
        return FILE_BUILDERS[f".{fmt}"]
    if path.suffix.lower() not in FILE_BUILDERS:
        raise UserError(f"{path}: cannot tell the format from {path.suffix!r}; set format: jsonl, json, csv or parquet")
    return FILE_BUILDERS[path.suffix.lower()]


def _read_table(source: SourceSpec, shape: str) -> tuple[list[Row], list[int]]:
    """Rows of a local file or hub dataset, mapped to our field names, and each row's number in the file."""
    from datasets import load_dataset

    path = Path(source.path)
    if path.exists():
        builder = _builder(source, path)
        try:
            ds = load_dataset(builder, data_files=str(path), split="train", cache_dir=_datasets_cache())
        except Exception as exc:  # datasets wraps parser errors; say which file and, for JSONL, which line
            raise _unreadable(path, exc) from None
        numbers = _jsonl_line_numbers(path) if path.suffix.lower() == ".jsonl" else None
    elif path.suffix.lower() in FILE_BUILDERS or _looks_local(source.path):
        raise UserError(f"{path}: no such file; check data.sources path (relative paths start at the working folder)")
    else:
        try:
            ds = load_dataset(source.path, source.subset, split=source.split or "train", revision=source.revision)
        except Exception as exc:  # offline, unknown id, bad split: one line the user can act on
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(
                f"cannot load dataset {source.path!r} (split {source.split or 'train'!r}): {first}"
            ) from None
        numbers = None
    columns = list(ds.column_names)
    rows = map_fields(ds.to_list(), columns, source, path.name)
    if shape == "instruction" and rows and not any("input" in row for row in rows):
        hint = f", or set format: to one of scenario {source.scenario}'s formats" if source.scenario else ""
        raise UserError(
            f"{path.name}: no 'input' column; map one with fields.input (columns: {', '.join(columns)}){hint}"
        )
    if numbers is None or len(numbers) != len(rows):
        numbers = list(range(1, len(rows) + 1))
    return rows, numbers


def _looks_local(path: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything deeper, absolute or dotted is a path on this machine."""
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path


def _jsonl_line_numbers(path: Path) -> list[int]:
    """Line number of each record: JSONL readers skip blank lines, error messages must not."""
    with path.open("rb") as fh:
        return [n for n, line in enumerate(fh, start=1) if line.strip()]


def _unreadable(path: Path, exc: Exception) -> UserError:
    if path.suffix.lower() == ".jsonl":
        with path.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    return UserError(f"{path.name}, row {n}: not valid JSON ({err.msg}); one JSON object per line")
                if not isinstance(obj, dict):
                    return UserError(f"{path.name}, row {n}: expected a JSON object, got {type(obj).__name__}")
    cause = exc.__cause__ or exc.__context__ or exc
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return UserError(f"{path.name}: cannot read it ({first}); give every column one type in every row")


def map_fields(records: list[Row], columns: list[str], source: SourceSpec, label: str) -> list[Row]:
    """Rename the user's columns to ours and keep the rest; an explicitly mapped column must exist."""
    fields = source.fields.model_dump()
    mapping: dict[str, str] = {}
    for ours in OUR_FIELDS:
        theirs = fields.get(ours)
        if theirs is not None and theirs not in columns:
            raise UserError(
                f"{label}: fields.{ours} names column {theirs!r}, which is not there; columns: {', '.join(columns)}"
            )
        if theirs is None and ours in columns:
            theirs = ours
        if theirs is not None:
            mapping[ours] = theirs
    renamed = set(mapping.values())
    label_choices = _label_choices(records, mapping) if "label" in mapping and "output" not in mapping else None
    rows = []
    for record in records:
        row = {k: v for k, v in record.items() if k not in renamed}
        for ours, theirs in mapping.items():
            row[ours] = _text_value(record[theirs]) if ours in ("input", "output", "text", "label") else record[theirs]
        if "messages" in row and isinstance(row["messages"], str):
            row["messages"] = _maybe_json(row["messages"])
        if label_choices is not None and row.get("label") is not None:
            row["output"], row["choices"] = row["label"], label_choices
        rows.append(row)
    return rows


def _label_choices(records: list[Row], mapping: dict[str, str]) -> list[str]:
    """A label column makes classification rows: the target is the label, the choices all labels seen."""
    return sorted({_text_value(r[mapping["label"]]) for r in records if r[mapping["label"]] is not None})


def _text_value(value: Any) -> Any:
    """CSV/JSON readers turn "42" into 42; text fields stay text (NaN from empty CSV cells is None)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _file_split(source: SourceSpec) -> str:
    """A local file's declared split (default all); a hub dataset's rows are carved like all."""
    return source.split if source.is_file and source.split is not None else "all"


def assign_splits(
    rows: list[Row], split: str, fraction: float, seed: int, label: str, carve_test: bool = True
) -> dict[str, list[Row]]:
    """A file's rows by its declared split: all of them in one split, or carved (see :func:`carve_splits`)."""
    if split == "all":
        return carve_splits(rows, fraction, seed, label, carve_test)
    return {name: (list(rows) if name == split else []) for name in SPLITS}


def carve_splits(
    rows: list[Row], fraction: float, seed: int, label: str, carve_test: bool = True
) -> dict[str, list[Row]]:
    """One file, three splits: validation and test each take ``fraction`` of the rows, chosen by seed.

    Without a test part (``carve_test=False``) validation is still the same rows, so a
    tuned decision or a validation loss does not change with where the test rows come from.
    """
    n = len(rows)
    held = max(1, int(n * fraction))
    parts = 2 if carve_test else 1
    if n - parts * held < 1:
        wanted = "train, validation and test" if carve_test else "train and validation"
        raise UserError(f"{label}: {n} usable rows are too few to split into {wanted}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    validation = sorted(order[:held])
    test = sorted(order[held : 2 * held]) if carve_test else []
    train = sorted(order[parts * held :])
    return {
        "train": [rows[i] for i in train],
        "validation": [rows[i] for i in validation],
        "test": [rows[i] for i in test],
    }


def split_line(path: str, split: str, counts: dict[str, int], fraction: float, carve_test: bool) -> str:
    """The console/report line for one file: how many rows, where they went, why, and how to change it."""
    parts = " / ".join(
        f"{name} {counts[name]}"
        for name in SPLITS
        if counts.get(name) or (split == "all" and (name != "test" or carve_test))
    )
    if split != "all":
        why = f"split: {split}, every row"
    elif carve_test:
        why = f"split: all, carved by seed with validation_fraction {fraction}; split: train trains on every row"
    else:
        why = f"split: all, validation_fraction {fraction}; no test part: eval.data is the test set"
    return f"data {_label(path)}: {counts['rows']} rows -> {parts} ({why})"


# ---------------------------------------------------------------- row checks


def check_rows(rows: list[Row], spec: DataSpec, label: str, numbers: list[int] | None = None) -> tuple[list[Row], int]:
    """Rows that fit ``spec.shape`` and the number skipped; a misfit is an error unless on_bad_row is skip."""
    kept, skipped = [], 0
    for i, row in enumerate(rows):
        row = _as_shape(row, spec.shape)
        problem = row_problem(row, spec.shape)
        if problem is None:
            kept.append(row)
            continue
        if spec.on_bad_row != "skip":
            n = numbers[i] if numbers else i + 1
            raise UserError(f"{label}, row {n}: {problem} (fix the row or set data.on_bad_row: skip)")
        skipped += 1
    return kept, skipped


def _as_shape(row: Row, shape: str) -> Row:
    """Instruction rows (e.g. generated ones) used as chat become one user turn and one assistant turn."""
    if shape == "instruction" and row.get("input") is None and "output" in row:
        return {**row, "input": ""}
    if shape == "preference":
        from finetune.data.preference import as_sft_row, row_problem

        return row if row_problem(row) else as_sft_row(row)  # evaluation reads the chosen side as the reference
    if shape == "chat" and "messages" not in row and isinstance(row.get("output"), str):
        turns = [{"role": "user", "content": row.get("input") or ""}, {"role": "assistant", "content": row["output"]}]
        return {**row, "messages": turns}
    return row


def row_problem(row: Row, shape: str) -> str | None:
    """What is wrong with ``row`` for ``shape``, or None."""
    if shape == "text":
        text = row.get("text")
        return None if isinstance(text, str) and text.strip() else "needs a non-empty string 'text'"
    if shape == "chat":
        return _messages_problem(row.get("messages"))
    if shape == "preference":
        from finetune.data.preference import row_problem as pair_problem

        return pair_problem(row)
    output = row.get("output")
    if not isinstance(output, str) or not output.strip():
        return "needs a non-empty string 'output'"
    if not isinstance(row.get("input"), str):
        return f"'input' must be a string, got {type(row.get('input')).__name__}"
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            return "'choices' must be a non-empty list of strings"
        if output not in choices:
            return f"output {output[:40]!r} is not one of its choices {choices}"
    return None


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "needs 'messages', a list of {role, content} turns"
    for k, turn in enumerate(messages):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            return f"messages[{k}] must be an object with a string 'content'"
        if turn.get("role") not in ROLES:
            return f"messages[{k}] has role {turn.get('role')!r}; use one of {', '.join(ROLES)}"
    if not any(turn["role"] == "assistant" for turn in messages):
        return "messages need at least one assistant turn"
    return None
