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


def test_importing_the_package_is_light_and_finetune_model_registers_the_core():
    code = (
        "import sys, finetune\nfrom finetune import Recipe, run\n"
        "print('LIGHT', 'torch' in sys.modules)\n"
        "import finetune.model\nfrom transformers import AutoConfig\n"
        "print('REGISTERED', AutoConfig.for_model('ft_core').model_type)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LIGHT False" in out.stdout and "REGISTERED ft_core" in out.stdout, out.stdout + out.stderr
