"""`ft validate`, `ft cards`, `ft recipes` and `ft schema` answer without importing torch or transformers.

Those libraries take seconds to import (tens of seconds on a loaded machine); a command that only
reads YAML must not pay for them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / "cli.py")


def _imports_after(*args: str) -> str:
    code = (
        f"import runpy, sys; sys.argv = ['ft', *{list(args)!r}]\n"
        f"try:\n    runpy.run_path({CLI!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    return out.stdout + out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "recipes/quickstart.yaml"),
        ("cards",),
        ("recipes",),
        ("schema",),
        ("validate", "--explain", "recipes/quickstart.yaml"),
    ],
)
def test_light_commands_do_not_import_torch(args):
    out = _imports_after(*args)
    assert "TORCH False False" in out, out[-2000:]


def test_validate_of_a_bad_recipe_exits_2_without_torch(tmp_path):
    """The error path too: ft validate's exit 2 once went through the CLI's bug handler, which imported the
    training loop (torch, transformers: 10 s here) only to ask whether the exit was a non-finite loss."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {path: m}\ntrain: {learnig_rate: 0.1}\n")
    out = _imports_after("validate", str(bad))
    assert "did you mean train.learning_rate?" in out and "TORCH False False" in out, out[-2000:]


def test_importing_the_package_is_light_and_finetune_model_registers_the_core():
    code = (
        "import sys, finetune\nfrom finetune import Recipe, run\n"
        "print('LIGHT', 'torch' in sys.modules)\n"
        "import finetune.model\nfrom transformers import AutoConfig\n"
        "print('REGISTERED', AutoConfig.for_model('ft_core').model_type)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LIGHT False" in out.stdout and "REGISTERED ft_core" in out.stdout, out.stdout + out.stderr
