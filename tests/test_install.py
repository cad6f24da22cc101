"""A regular (non-editable) `pip install .` still finds the shipped recipes and data cards.

The package folder cannot hold files from outside it, so recipes/ and data_cards/ are
installed as data files; an install that lost them would list no cards and no recipes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_regular_install_ships_recipes_and_cards(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", "runs", "build", "*.egg-info", "__pycache__", "work", ".pytest_cache"),
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    shutil.rmtree(src)  # nothing may come from the source tree any more
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def ft(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(env_dir / "bin" / "ft"), *args], capture_output=True, text=True, timeout=120, cwd=elsewhere
        )

    where = subprocess.run(
        [str(py), "-c", "import finetune, cli; print(finetune.__file__); print(cli.__file__)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert str(env_dir) in where.stdout, where.stdout + where.stderr
    cards = ft("cards")
    assert cards.returncode == 0 and "risk_assessment_synthetic" in cards.stdout, cards.stdout + cards.stderr
    listed = ft("recipes")
    assert listed.returncode == 0 and "recipes/quickstart.yaml" in listed.stdout, listed.stdout + listed.stderr
    quickstart = next(Path(p) for p in (env_dir / "share" / "ft" / "recipes").glob("quickstart.yaml"))
    ok = ft("validate", str(quickstart))
    assert ok.returncode == 0, ok.stdout + ok.stderr
