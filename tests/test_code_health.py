"""The code stays linted, formatted and layered: ruff (line length 120) and the import-linter contract.

These run in seconds and are part of the suite, so `python -m pytest` (CI's command) keeps them true.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_ruff_lint_passes():
    out = _run(sys.executable, "-m", "ruff", "check", ".")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_ruff_format_is_applied():
    out = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_imports_run_one_way():
    beside = Path(sys.executable).parent / "lint-imports"
    lint = str(beside) if beside.exists() else shutil.which("lint-imports") or "lint-imports"
    out = _run(lint)
    assert out.returncode == 0 and "1 kept, 0 broken" in out.stdout, out.stdout[-3000:] + out.stderr[-1000:]
