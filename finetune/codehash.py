"""Hash of our own source files, so caches of derived data die with the code that made them.

A tokenized dataset or a pretrained base is reused only when the settings AND the code
that produced it are unchanged; a version constant that someone must remember to bump
is exactly the cache bug this avoids.
"""

from __future__ import annotations

import hashlib
from importlib import import_module
from pathlib import Path


def source_hash(*modules: str) -> str:
    """sha256 over the source files of the named modules (a package counts with all its files)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        mod = import_module(name)
        path = Path(mod.__file__)
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
