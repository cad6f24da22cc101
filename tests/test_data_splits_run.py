"""A user's file in a real run: its split is said on the console and in the report, and a test part is carved
out of it only when the test set does not come from eval.data (issue 12, points 18 and 19)."""

from __future__ import annotations

import json

from finetune import run
from finetune.config.load import recipe_from_dict


def _jsonl(path, n, offset=0):
    rows = [
        {"input": f"applicant {i} income {i * 37 % 1000}", "output": "approve" if i % 2 else "deny"}
        for i in range(offset, offset + n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _spec(tmp_path, name, before):
    """A tiny LoRA run on a 40-row user file, scored on a separate 6-row eval.data file."""
    from bench.gpu_check import build_base

    base = build_base(tmp_path / "base", width=32, layers=2, heads=4)
    return {
        "name": name,
        "output": str(tmp_path / "run"),
        "model": {"path": str(base)},
        "data": {"sources": [{"path": str(_jsonl(tmp_path / "mine.jsonl", 40))}], "max_length": 64},
        "method": {"kind": "lora", "r": 2},
        "train": {"max_steps": 1, "batch_size": 4, "threads": 1},
        "eval": {
            "before": before,
            "samples": 2,
            "max_new_tokens": 2,
            "task": "generation",
            "data": {"path": str(_jsonl(tmp_path / "held.jsonl", 6, offset=100)), "split": "test"},
        },
    }


def test_eval_data_leaves_the_whole_training_file_to_train_and_validation(tmp_path, capsys):
    """Also: the base-model evaluation that eval.before adds is announced as the extra time it is."""
    recipe = recipe_from_dict(_spec(tmp_path, "split-run", before=True))
    result = run(recipe)
    line = (
        "data mine.jsonl: 40 rows -> train 36 / validation 4 (split: all, validation_fraction 0.1; "
        "no test part: eval.data is the test set)"
    )
    printed = capsys.readouterr().out
    assert line in printed
    assert "evaluate: base model (eval.before: true, a second evaluation; set it false to skip)" in printed
    report = json.loads((result.run_dir / "report.json").read_text())
    splits = report["finetune"]["data_stats"]["splits"]
    assert splits == {"mine": {"rows": 40, "train": 36, "validation": 4, "test": 0, "note": line}}
    assert f"- {line}" in (result.run_dir / "report.md").read_text()


def test_dropping_eval_data_before_a_resume_is_refused(tmp_path):
    """With eval.data the file's test part was trained on; a resume that carves it again would test on trained rows."""
    import pytest

    from finetune.errors import UserError

    spec = _spec(tmp_path, "split-resume", before=False)
    run(recipe_from_dict(spec))
    del spec["eval"]["data"]
    spec["eval"]["task"] = None
    with pytest.raises(UserError, match="no_test_part"):
        run(recipe_from_dict(spec), resume=True)
