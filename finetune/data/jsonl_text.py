"""One string field of every row of a JSONL file: what a pretraining corpus, replay text and retention text read.

One reader so the corpus and the general-text sources agree on what a row is and name the same file and row
when one is broken.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune.errors import UserError


def read_jsonl_texts(path: Path, field: str, key: str | None = None) -> list[str]:
    """The ``field`` string of each non-blank line, blank texts kept (callers decide); ``key`` prefixes errors."""
    where = f"{key}: {path}" if key else f"{path}"
    texts = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}, row {i}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise UserError(
                    f"{where}, row {i}: no string field {field!r}; each row needs {{{json.dumps(field)}: ...}}"
                )
            texts.append(row[field])
    return texts
