"""The command line: fast help, one-line errors with exit 2, listing commands."""
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.scenarios import NAMES

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / "cli.py")


def ft(*args, timeout=180):
    return subprocess.run([sys.executable, CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_help_does_not_import_torch():
    code = f"import runpy, sys; sys.argv = ['ft', '--help']\ntry:\n    runpy.run_path({CLI!r}, run_name='__main__')\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "TORCH False False" in out.stdout, out.stdout + out.stderr


def test_recipes_lists_every_shipped_recipe_with_its_kind():
    out = ft("recipes")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) == len(list((ROOT / "recipes").rglob("*.yaml")))
    assert any("LoRA" in l for l in lines) and any("full fine-tuning" in l for l in lines)


@pytest.mark.parametrize("body,override,expected", [
    ("name: x\nmodel: {path: m}\ntrain: {learnig_rate: 0.1}\n", None, "train.learnig_rate: unknown key; did you mean train.learning_rate?"),
    ("name: x\nmodel: {path: m}\ntrain: {batch_size: lots}\n", None, "train.batch_size"),
    ("name: x\nmodel: {path: m}\n", "train.epocs=2", "train.epocs: unknown key; did you mean train.epochs?"),
])
def test_bad_recipes_exit_2_with_dotted_path(tmp_path, body, override, expected):
    path = tmp_path / "r.yaml"
    path.write_text(body)
    out = ft("run", str(path), *([override] if override else []))
    assert out.returncode == 2
    assert expected in out.stderr and "Traceback" not in out.stderr
    if override is None:
        v = ft("validate", str(path))
        assert v.returncode == 2 and expected in v.stderr


def test_missing_recipe_file_is_one_line():
    out = ft("run", "does/not/exist.yaml")
    assert out.returncode == 2 and "cannot read the recipe" in out.stderr and "Traceback" not in out.stderr


def test_data_preview_every_scenario_and_cards():
    from finetune.commands import preview_command

    for name in NAMES:  # in-process: each CLI start costs seconds of imports
        text = preview_command(name, 1)
        assert f"=== {name}" in text and "--- prompt:" in text and "--- target:" in text
    out = ft("data", "preview", "risk_assessment", "--n", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("--- target:") == 2
    cards = ft("cards")
    assert cards.returncode == 0
    line = next(l for l in cards.stdout.splitlines() if l.startswith("financial_phrasebank"))
    assert "CC-BY-NC-SA-3.0" in line
    assert len(cards.stdout.splitlines()) >= 15
