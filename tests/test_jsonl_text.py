"""The one JSONL text reader behind the pretraining corpus and the general-text sources (replay, retention)."""

from __future__ import annotations

import pytest

from finetune.config.schema import CorpusSpec
from finetune.data.corpus import load_corpus
from finetune.data.general_text import read_documents
from finetune.errors import UserError


def test_corpus_and_general_text_read_the_same_rows_and_only_general_text_drops_blank_ones(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"body": "first"}\n\n{"body": "  "}\n{"body": "second"}\n', encoding="utf-8")
    spec = CorpusSpec(kind="file", path=str(path), text_field="body")
    assert load_corpus(spec, seed=0) == ["first", "  ", "second"]
    path.write_text(path.read_text().replace("body", "text"), encoding="utf-8")
    assert read_documents(path, "data.replay.text") == ["first", "second"]


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", r"c\.jsonl, row 2: not valid JSON"), ('{"text": 3}', r"c\.jsonl, row 2: no string field 'body'")],
)
def test_a_broken_corpus_row_names_the_file_and_row(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text('{"body": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=message) as err:
        load_corpus(CorpusSpec(kind="file", path=str(path), text_field="body"), seed=0)
    assert "\n" not in str(err.value) and not str(err.value).startswith("None")
