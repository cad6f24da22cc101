"""Data sources: files and scenarios become checked rows in our schema, split three ways."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from finetune.config.schema import DataSpec
from finetune.data.sources import carve_splits, load_sources
from finetune.errors import UserError


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)


def _jsonl(path, rows, blank_after=None):
    lines = []
    for n, row in enumerate(rows):
        lines.append(row if isinstance(row, str) else json.dumps(row))
        if blank_after == n:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(n):
    return [{"input": f"question {i}", "output": f"answer {i}", "topic": f"t{i % 3}"} for i in range(n)]


def _spec(path, **kw):
    source = {"path": str(path), **kw.pop("source", {})}
    return DataSpec(sources=[source], **kw)


def test_jsonl_loads_splits_and_keeps_extra_fields(tmp_path):
    path = _jsonl(tmp_path / "qa.jsonl", _rows(40))
    (src,) = load_sources(_spec(path, validation_fraction=0.1), seed=3)
    assert src.name == "qa" and src.scenario is None and src.card is None and src.skipped == 0
    sizes = {k: len(v) for k, v in src.splits.items()}
    assert sizes == {"train": 32, "validation": 4, "test": 4}
    inputs = [r["input"] for split in src.splits.values() for r in split]
    assert sorted(inputs) == sorted(r["input"] for r in _rows(40))
    assert all(r["topic"].startswith("t") for r in src.splits["train"])
    (again,) = load_sources(_spec(path, validation_fraction=0.1), seed=3)
    assert again.splits == src.splits
    (other,) = load_sources(_spec(path, validation_fraction=0.1), seed=4)
    assert other.splits["test"] != src.splits["test"]


def test_carve_splits_disjoint_and_too_few_rows():
    rows = [{"i": i} for i in range(10)]
    splits = carve_splits(rows, 0.2, seed=0, label="x")
    ids = [r["i"] for s in splits.values() for r in s]
    assert sorted(ids) == list(range(10)) and len(splits["validation"]) == len(splits["test"]) == 2
    with pytest.raises(UserError, match="too few"):
        carve_splits(rows[:2], 0.2, seed=0, label="tiny.jsonl")


def test_bad_jsonl_row_names_file_and_line(tmp_path):
    rows = _rows(6)
    rows[3] = {"input": "q", "output": ""}
    path = _jsonl(tmp_path / "bad.jsonl", rows, blank_after=0)  # a blank line shifts the line numbers
    with pytest.raises(UserError, match=r"bad\.jsonl, row 5: needs a non-empty string 'output'"):
        load_sources(_spec(path), seed=0)


def test_skip_mode_drops_and_counts(tmp_path):
    rows = _rows(12)
    rows[2] = {"input": "q", "output": None}
    rows[7] = {"input": "q", "output": "   "}
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    (src,) = load_sources(_spec(path, on_bad_row="skip"), seed=0)
    assert src.skipped == 2
    assert sum(len(v) for v in src.splits.values()) == 10


def test_invalid_json_line_is_named(tmp_path):
    path = _jsonl(tmp_path / "broken.jsonl", [*_rows(3), '{"input": "q", "output": '])
    with pytest.raises(UserError, match=r"broken\.jsonl, row 4: not valid JSON"):
        load_sources(_spec(path), seed=0)


def test_csv_fields_mapping(tmp_path):
    path = tmp_path / "notes.csv"
    pd.DataFrame(
        {
            "dialogue": [f"Doctor: hello {i}" for i in range(10)],
            "section_text": [f"Summary {i}" for i in range(10)],
            "code": list(range(10)),
        }
    ).to_csv(path, index=False)
    spec = _spec(path, source={"fields": {"input": "dialogue", "output": "section_text"}})
    (src,) = load_sources(spec, seed=0)
    rows = [r for s in src.splits.values() for r in s]
    assert len(rows) == 10
    assert {r["input"] for r in rows} == {f"Doctor: hello {i}" for i in range(10)}
    assert all(r["output"] == "Summary " + r["input"].rsplit(" ", 1)[1] for r in rows)
    assert all("dialogue" not in r and "section_text" not in r and "code" in r for r in rows)


def test_csv_missing_mapped_column_lists_columns(tmp_path):
    path = tmp_path / "notes.csv"
    pd.DataFrame({"dialogue": ["a", "b", "c"], "summary": ["x", "y", "z"]}).to_csv(path, index=False)
    spec = _spec(path, source={"fields": {"input": "dialogue", "output": "section_text"}})
    with pytest.raises(UserError, match=r"notes\.csv: fields\.output names column 'section_text'.*dialogue, summary"):
        load_sources(spec, seed=0)


def test_bad_csv_row_names_file_and_row(tmp_path):
    path = tmp_path / "rows.csv"
    outputs = [f"a{i}" for i in range(8)]
    outputs[4] = None  # an empty cell
    pd.DataFrame({"input": [f"q{i}" for i in range(8)], "output": outputs}).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"rows\.csv, row 5: needs a non-empty string 'output'"):
        load_sources(_spec(path), seed=0)


def test_csv_numbers_stay_text(tmp_path):
    path = tmp_path / "nums.csv"
    pd.DataFrame({"input": [f"{i} + {i}" for i in range(6)], "output": [2 * i for i in range(6)]}).to_csv(
        path, index=False
    )
    (src,) = load_sources(_spec(path), seed=0)
    rows = [r for s in src.splits.values() for r in s]
    assert {r["output"] for r in rows} == {str(2 * i) for i in range(6)}


def test_parquet_loads(tmp_path):
    path = tmp_path / "data.parquet"
    pd.DataFrame(_rows(20)).to_parquet(path)
    (src,) = load_sources(_spec(path, source={"card": "my_card"}), seed=1)
    assert src.name == "data" and src.card == "my_card"
    assert sorted(r["output"] for s in src.splits.values() for r in s) == sorted(r["output"] for r in _rows(20))


def test_label_column_makes_classification_rows(tmp_path):
    path = tmp_path / "sent.csv"
    labels = ["good", "bad", "meh"] * 3
    pd.DataFrame({"text": [f"line {i}" for i in range(9)], "sentiment": labels}).to_csv(path, index=False)
    spec = _spec(path, source={"fields": {"input": "text", "label": "sentiment"}})
    rows = [r for s in load_sources(spec, seed=0)[0].splits.values() for r in s]
    assert all(r["choices"] == ["bad", "good", "meh"] and r["output"] == r["label"] for r in rows)


def test_chat_rows_checked(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [good] * 5 + [{"messages": [{"role": "user", "content": "only a question"}]}]
    path = _jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(UserError, match=r"chat\.jsonl, row 6: messages need at least one assistant turn"):
        load_sources(_spec(path, shape="chat"), seed=0)
    rows[5] = {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]}
    _jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(UserError, match=r"row 6: messages\[0\] has role 'robot'"):
        load_sources(_spec(path, shape="chat"), seed=0)


def test_text_shape_needs_text(tmp_path):
    path = _jsonl(tmp_path / "docs.jsonl", [{"text": "a document"}] * 4 + [{"text": ""}])
    with pytest.raises(UserError, match=r"docs\.jsonl, row 5: needs a non-empty string 'text'"):
        load_sources(_spec(path, shape="text"), seed=0)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_sources(_spec(tmp_path / "nope.jsonl"), seed=0)
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(UserError, match="cannot tell the format"):
        load_sources(_spec(path), seed=0)


def test_instruction_file_without_input_column(tmp_path):
    path = _jsonl(tmp_path / "qa.jsonl", [{"question": "q", "output": "a"}] * 5)
    with pytest.raises(UserError, match=r"no 'input' column; map one with fields\.input \(columns: question, output"):
        load_sources(_spec(path), seed=0)


def test_generated_scenario_source():
    spec = DataSpec(
        sources=[
            {
                "scenario": "financial_analysis",
                "sizes": {"train": 6, "validation": 2, "test": 2},
                "options": {"subtask": "sentiment"},
                "weight": 2,
            }
        ]
    )
    (src,) = load_sources(spec, seed=0)
    assert src.name == src.scenario == "financial_analysis"
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 6, "validation": 2, "test": 2}
    assert src.card and src.system and src.weight == 2
    assert all(r["output"] in r["choices"] for r in src.splits["train"])


@pytest.mark.parametrize(("system", "expected"), [(None, "scenario"), ("Short.", "Short."), ("", "")])
def test_a_source_system_text_replaces_the_scenarios_and_empty_means_none(system, expected):
    from finetune.data.format import Template
    from finetune.scenarios import get

    source = {"scenario": "risk_assessment", "sizes": {"train": 2, "validation": 1, "test": 1}}
    (src,) = load_sources(DataSpec(sources=[{**source, **({} if system is None else {"system": system})}]), seed=0)
    want = get("risk_assessment").system if expected == "scenario" else expected
    assert src.system == want
    text = str(Template(shape="instruction", eos_token="<eos>", system=src.system).prompt(src.splits["train"][0]))
    assert text.startswith(want + "\n\n### Input:") if want else text.startswith("### Input:")


def test_generated_scenario_bad_options():
    spec = DataSpec(sources=[{"scenario": "financial_analysis", "options": {"colour": "red"}}])
    with pytest.raises(UserError, match=r"data\.sources\[0\]\.options"):
        load_sources(spec, seed=0)
    spec = DataSpec(sources=[{"scenario": "financial_analysis", "options": {"subtask": "poetry"}}])
    with pytest.raises(UserError, match=r"data\.sources\[0\]\.options.*subtask"):
        load_sources(spec, seed=0)


def test_generated_rows_as_chat():
    spec = DataSpec(
        shape="chat", sources=[{"scenario": "financial_analysis", "sizes": {"train": 3, "validation": 1, "test": 1}}]
    )
    row = load_sources(spec, seed=0)[0].splits["train"][0]
    assert row["messages"] == [
        {"role": "user", "content": row["input"]},
        {"role": "assistant", "content": row["output"]},
    ]


# ---------------------------------------------------------------- issue 12: odd files, duplicate columns, splits


def _csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_a_column_named_twice_is_refused_naming_column_and_line(tmp_path):
    path = _csv(tmp_path / "two.csv", "\ninput,output,input\nq1,a1,other1\nq2,a2,other2\nq3,a3,other3\n")
    with pytest.raises(UserError, match=r"two\.csv, line 2: column 'input' appears twice \(columns 1 and 3\)"):
        load_sources(_spec(path), seed=0)
    fine = _csv(tmp_path / "fine.csv", "input,output,,\n" + "".join(f"q{i},a{i},x,y\n" for i in range(6)))
    (src,) = load_sources(_spec(fine), seed=0)  # unnamed columns are not duplicates
    assert src.split_counts["rows"] == 6


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: _csv(p / "empty.csv", ""), r"empty\.csv is empty \(0 bytes\)"),
        (lambda p: _csv(p / "blank.jsonl", "\n\n  \n"), r"blank\.jsonl is empty \(blank lines only\)"),
        (lambda p: _csv(p / "header.csv", "input,output\n\n"), r"header\.csv: a header \(line 1\) and no rows"),
    ],
)
def test_empty_and_header_only_files_say_so_in_one_line(tmp_path, make, expected):
    with pytest.raises(UserError, match=expected) as exc:
        load_sources(_spec(make(tmp_path)), seed=0)
    assert "\n" not in str(exc.value) and "corresponds to no data" not in str(exc.value)


def test_folder_and_fifo_are_refused_before_opening(tmp_path):
    import os

    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(UserError, match=r"data\.csv is a folder; point path at a data file inside it"):
        load_sources(_spec(folder), seed=0)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)  # opening it to read would block this test forever
    with pytest.raises(UserError, match=r"pipe\.jsonl is a named pipe \(FIFO\), not a regular file"):
        load_sources(_spec(fifo), seed=0)
    with pytest.raises(UserError, match="no such file"):  # a local-looking path is not tried as a hub id
        load_sources(_spec(tmp_path / "sub" / "train"), seed=0)


def test_file_split_is_announced_and_counted(tmp_path):
    path = _jsonl(tmp_path / "qa.jsonl", _rows(50))
    heard = []
    (src,) = load_sources(_spec(path), seed=0, say=heard.append)
    assert src.split_counts == {"rows": 50, "train": 40, "validation": 5, "test": 5}
    assert heard == [src.split_note] and heard[0].startswith(
        "data qa.jsonl: 50 rows -> train 40 / validation 5 / test 5 (split: all"
    )


def test_no_test_part_when_the_test_set_comes_from_eval_data(tmp_path):
    path = _jsonl(tmp_path / "qa.jsonl", _rows(50))
    (carved,) = load_sources(_spec(path), seed=0)
    (whole,) = load_sources(_spec(path), seed=0, carve_test=False)
    assert {k: len(v) for k, v in whole.splits.items()} == {"train": 45, "validation": 5, "test": 0}
    assert whole.splits["validation"] == carved.splits["validation"]  # same held-out rows either way
    assert "no test part: eval.data is the test set" in whole.split_note


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_a_file_declared_one_split_gives_it_every_row(tmp_path, split):
    path = _jsonl(tmp_path / "qa.jsonl", _rows(12))
    (src,) = load_sources(_spec(path, source={"split": split}), seed=0)
    assert {k: len(v) for k, v in src.splits.items()} == {k: (12 if k == split else 0) for k in src.splits}
    assert src.split_note == f"data qa.jsonl: 12 rows -> {split} 12 (split: {split}, every row)"


def test_sources_with_no_training_rows_are_refused(tmp_path):
    from finetune.data.sources import require_training_rows

    path = _jsonl(tmp_path / "qa.jsonl", _rows(12))
    with pytest.raises(UserError, match=r"data sources \(qa\) give no training rows"):
        require_training_rows(load_sources(_spec(path, source={"split": "test"}), seed=0))
