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
    assert any("LoRA" in x for x in lines) and any("full fine-tuning" in x for x in lines)


@pytest.mark.parametrize(
    "body,override,expected",
    [
        (
            "name: x\nmodel: {path: m}\ntrain: {learnig_rate: 0.1}\n",
            None,
            "train.learnig_rate: unknown key; did you mean train.learning_rate?",
        ),
        ("name: x\nmodel: {path: m}\ntrain: {batch_size: lots}\n", None, "train.batch_size"),
        ("name: x\nmodel: {path: m}\n", "train.epocs=2", "train.epocs: unknown key; did you mean train.epochs?"),
    ],
)
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
    line = next(x for x in cards.stdout.splitlines() if x.startswith("financial_phrasebank"))
    assert "CC-BY-NC-SA-3.0" in line
    assert len(cards.stdout.splitlines()) >= 15


# ---------------------------------------------------------------- issue 12: ft eval's names, --format, duplicates


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--data", "x.jsonl", "--task", "bogus"],
            "error: --task 'bogus' is not a task; use one of generation, classification, numeric",
        ),
        (["--scenario", "bogus"], "error: --scenario 'bogus' is not a scenario; use one of content_writing"),
        (
            ["--data", "x.jsonl", "--format", "zzz"],
            "error: --format 'zzz' is neither a file format (jsonl, json, csv, parquet) nor a scenario's real format (",
        ),
    ],
)
def test_eval_names_are_checked_first_in_one_line(tmp_path, args, expected):
    from typer.testing import CliRunner

    import cli

    out = CliRunner().invoke(cli.app, ["eval", "--model", str(tmp_path / "none"), *args])
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), out.output


def test_eval_reads_a_real_format_with_format_and_scores_it_like_its_scenario(tmp_path, capsys):
    """A GSM8K file saved as .txt: before --format, `ft eval --data` could not tell how to read it."""
    import json

    from bench.gpu_check import build_base
    from finetune.commands import evaluate_command

    base = build_base(tmp_path / "base", width=32, layers=2, heads=4)
    path = tmp_path / "gsm8k_test.txt"
    path.write_text(
        "".join(
            json.dumps(
                {"question": f"Tom has {i} apples and buys 2. How many?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}
            )
            + "\n"
            for i in range(3)
        )
    )
    evaluate_command(base, None, path, None, [], samples=3, max_new_tokens=2, fmt="gsm8k")
    printed = capsys.readouterr().out
    assert "gsm8k_test" in printed and "exact_match" in printed  # tutoring's scorer, no --task needed


def test_validate_refuses_a_recipe_with_a_key_twice(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nmodel: {path: m}\ntrain: {learning_rate: 1.0e-4}\ntrain: {learning_rate: 5.0}\n")
    out = ft("validate", str(path))
    assert out.returncode == 2 and "line 4: key 'train' appears twice (first on line 3)" in out.stderr


def test_data_preview_counts_splits_and_token_lengths_with_the_recipes_tokenizer(tmp_path):
    import json

    from bench.gpu_check import build_base
    from finetune.commands import _percentiles, preview_command

    assert _percentiles([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == "p50 5, p90 9, p99 10, max 10"
    base = build_base(tmp_path / "base", width=32, layers=2, heads=4)
    rows = [{"input": "applicant income " * (1 + i % 10), "output": "approve"} for i in range(40)]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: p\nmodel: {{path: {base}}}\ndata: {{sources: [{{path: {data}}}], max_length: 24}}\n"
        "method: {kind: lora}\n"
    )
    text = preview_command(str(recipe), 1)
    assert "data mine.jsonl: 40 rows -> train 32 / validation 4 / test 4 (split: all" in text
    line = next(x for x in text.splitlines() if x.startswith("length of train rows in tokens of"))
    over = int(line.split("; ")[-1].split(" of ")[0])
    assert 0 < over < 32 and line.endswith("of 32 exceed data.max_length 24 and are truncated"), line
    words = preview_command("risk_assessment", 1)
    assert (
        "rows: train 800 / validation 100 / test 100" in words and "length of train rows in whitespace words" in words
    )
