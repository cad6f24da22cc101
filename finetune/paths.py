"""Where ft finds what it ships beside the code (recipes, data cards).

In a checkout (or an editable install) they are the repository's own folders next to
``finetune/``; a regular ``pip install .`` copies them to ``<prefix>/share/ft/`` (the
``data-files`` of pyproject.toml), since the package folder cannot hold files from
outside it. Light: no torch, no third-party imports.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

SHIPPED = ("recipes", "data_cards")


def shipped_dir(kind: str) -> Path:
    """The folder holding the shipped ``kind`` ("recipes" or "data_cards"), checkout first."""
    if kind not in SHIPPED:
        raise ValueError(f"unknown shipped folder {kind!r}; one of {', '.join(SHIPPED)}")
    checkout = Path(__file__).resolve().parent.parent / kind
    if checkout.is_dir():
        return checkout
    for prefix in (sysconfig.get_path("data"), sys.prefix, sys.base_prefix):
        installed = Path(prefix) / "share" / "ft" / kind
        if installed.is_dir():
            return installed
    return checkout  # absent: callers name this path in their error


def cache_root() -> Path:
    """ft's cache folder (pretrained bases, tokenized data, file digests): $FT_CACHE or ~/.cache/ft."""
    return Path(os.environ.get("FT_CACHE", Path.home() / ".cache" / "ft"))
