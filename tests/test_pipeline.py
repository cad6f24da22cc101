"""End to end on a tiny model: pretrain -> LoRA fine-tune -> evaluate before/after -> report; fresh-process loading."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from finetune import run
from finetune.config.load import recipe_from_dict

CORPUS = "\n\n".join(
    f"Document {i}. The applicant earns {i % 7} thousand and repays debts on time. "
    f"Tom has {i % 9} apples and buys {i % 5} more, so he has {i % 9 + i % 5} apples."
    for i in range(300)
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    corpus = tmp / "corpus.txt"
    corpus.write_text(CORPUS)
    recipe = recipe_from_dict(
        {
            "name": "e2e",
            "seed": 0,
            "output": str(tmp / "run"),
            "model": {"core": {"layers": 2, "width": 32, "heads": 4, "context_length": 256}},
            "pretrain": {
                "corpus": {"kind": "file", "path": str(corpus)},
                "tokenizer": {"vocab_size": 320},
                "block_size": 32,
                "cache": False,
                "train": {"max_steps": 60, "batch_size": 8, "learning_rate": 5e-3, "log_every": 5},
            },
            "data": {
                "sources": [
                    {"scenario": "risk_assessment", "sizes": {"train": 64, "validation": 16, "test": 16}},
                    {"scenario": "tutoring", "sizes": {"train": 64, "validation": 16, "test": 8}},
                ],
                "max_length": 192,
            },
            "method": {"kind": "lora", "r": 4, "targets": "all-linear"},
            "train": {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "log_every": 2},
            "eval": {"samples": 8, "max_new_tokens": 4, "batch_size": 8},
        }
    )
    return run(recipe), tmp


def test_run_writes_report_and_improves_loss(finished_run):
    result, _ = finished_run
    report = json.loads((result.run_dir / "report.json").read_text())
    pre = report["pretrain"]
    assert pre["val_loss"] < pre["unigram_entropy"]  # context helps: below the unigram model
    ft = report["finetune"]
    assert ft["val_loss"] < ft["base_val_loss"]
    assert (
        set(report["eval"]["before"]) == {"risk_assessment", "tutoring"}
        and "mcc" in report["eval"]["after"]["risk_assessment"]
    )
    assert report["cost"]["tokens"] > 0 and report["cost"]["train_flops"] > 0
    assert (result.run_dir / "loss_curve.png").stat().st_size > 5000
    md = (result.run_dir / "report.md").read_text()
    assert "before" in md and "GPU-hours" in md and "risk_assessment_synthetic" in md
    assert (result.run_dir / "model" / "adapter_model.safetensors").exists()
    assert (result.run_dir / "model" / "ft_template.json").exists()
    assert result.metrics["finetune.val_loss"] == ft["val_loss"]


def test_pretrained_model_loads_in_fresh_process_and_cache_matches(finished_run):
    result, _ = finished_run
    model_dir = result.run_dir / "pretrain" / "model"
    code = f"""
import finetune.model, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained({str(model_dir)!r}); t = AutoTokenizer.from_pretrained({str(model_dir)!r})
ids = t("The applicant earns", return_tensors="pt")
a = m.generate(**ids, max_new_tokens=12, do_sample=False, use_cache=True)
b = m.generate(**ids, max_new_tokens=12, do_sample=False, use_cache=False)
assert torch.equal(a, b), (a, b)
print("OK", a.shape[1])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("OK")


def test_existing_run_folder_is_not_overwritten(finished_run):
    result, _ = finished_run
    recipe = json.loads((result.run_dir / "run.json").read_text())
    assert recipe["status"] == "done"
    cli = Path(__file__).resolve().parents[1] / "cli.py"
    out = subprocess.run(
        [sys.executable, str(cli), "run", str(result.run_dir / "recipe.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr[-1000:]
    assert "already holds a run" in out.stderr and "Traceback" not in out.stderr


def test_fine_tune_is_the_same_whether_the_base_was_pretrained_now_or_cached(tmp_path, monkeypatch):
    """Pretraining draws from the RNG; without a reseed the second run of a recipe (base from the
    cache) got another adapter init and data order than the first, and other numbers."""
    from safetensors.torch import load_file

    monkeypatch.setenv("FT_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)

    def once(out: str):
        return run(
            recipe_from_dict(
                {
                    "name": "cached",
                    "seed": 3,
                    "output": str(tmp_path / out),
                    "model": {"core": {"layers": 1, "width": 32, "heads": 4, "context_length": 128}},
                    "pretrain": {
                        "corpus": {"kind": "file", "path": str(corpus)},
                        "tokenizer": {"vocab_size": 300},
                        "block_size": 32,
                        "cache": True,
                        "train": {"max_steps": 10, "batch_size": 8},
                    },
                    "data": {
                        "sources": [
                            {"scenario": "risk_assessment", "sizes": {"train": 32, "validation": 8, "test": 8}}
                        ],
                        "max_length": 128,
                    },
                    "method": {"kind": "lora", "r": 4, "targets": "all-linear"},
                    "train": {"epochs": 1, "batch_size": 8},
                }
            )
        )

    cold, warm = once("cold"), once("warm")
    reports = [json.loads((r.run_dir / "report.json").read_text())["pretrain"] for r in (cold, warm)]
    assert [r.get("reused") for r in reports] == [False, True], reports
    a = load_file(str(cold.model_dir / "adapter_model.safetensors"))
    b = load_file(str(warm.model_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch_equal(a[k], b[k]), k


def torch_equal(x, y) -> bool:
    import torch

    return torch.equal(x, y)
