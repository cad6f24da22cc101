"""`ft eval --harness`: lm-evaluation-harness runs a shipped scenario task on a tiny ft model, offline."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("lm_eval")

from finetune.errors import UserError
from finetune.eval import harness
from finetune.eval.harness import TASKS, TASKS_DIR, task_files, task_names

TEXTS = [
    f"age: {i}; income: high; debt: low; amount: {1000 * i}. Assess the credit application: good or bad."
    for i in range(200)
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished run folder around a tiny core model (width 32, 2 layers) with ft's own tokenizer."""
    import torch

    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import train_tokenizer

    run = tmp_path_factory.mktemp("harness") / "run"
    model_dir = run / "model"
    tok = train_tokenizer(TEXTS, 320, model_dir)
    torch.manual_seed(0)
    CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=32,
            layers=2,
            heads=4,
            context_length=512,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
    ).save_pretrained(model_dir)
    (run / "run.json").write_text(json.dumps({"status": "done", "exit_code": 0}))
    report = {"name": "tiny", "recipe_hash": "0", "seed": 0, "written": "now", "run_dir": str(run), "versions": {}}
    report["cost"] = {
        "tokens": 0,
        "train_flops": 0.0,
        "flops_formula": "",
        "wall_time_s": 0.0,
        "reference_gpu": "x",
        "reference_utilisation": 0.4,
        "reference_gpu_hours": 0.0,
    }
    (run / "report.json").write_text(json.dumps(report))
    return run


def test_shipped_task_files_are_the_scenarios_current_test_splits():
    """The jsonl/YAML in the package equal what the scenario generators give now (regenerate with --write)."""
    shipped = {
        p.name: p.read_text(encoding="utf-8") for p in TASKS_DIR.iterdir() if p.suffix in {".py", ".yaml", ".jsonl"}
    }
    assert shipped == task_files(), "stale harness tasks: run python -m finetune.eval.harness --write"
    risk = [json.loads(line) for line in (TASKS_DIR / "ft_risk_assessment.jsonl").read_text().splitlines()]
    assert len(risk) == 100 and all(d["choices"][d["gold"]] == d["output"] for d in risk)
    assert risk[0]["prompt"].endswith("### Response:\n") and risk[0]["input"] in risk[0]["prompt"]


def test_task_names_are_checked_before_anything_loads():
    assert task_names("ft") == [t.name for t in TASKS]
    assert task_names("ft_legal, ft_tutoring") == ["ft_legal", "ft_tutoring"]
    with pytest.raises(UserError, match="unknown task ft_nope; shipped: ft_risk_assessment"):
        task_names("ft_legal,ft_nope")


def test_ft_eval_harness_scores_a_shipped_task_and_lands_in_the_report(tiny_run, monkeypatch):
    """lm_eval's own log-likelihood accuracy on 6 risk rows, written to harness.json and shown in report.md/html."""
    from finetune.commands import harness_command
    from finetune.methods import load_for_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    harness_command(tiny_run, "ft_risk_assessment", samples=6, out=None, bootstrap_iters=0)  # no process pool
    saved = json.loads((tiny_run / "harness.json").read_text())
    task = saved["tasks"]["ft_risk_assessment"]
    assert task["documents"] == 6 and task["of"] == 100
    acc = task["metrics"]["acc"]["value"]

    # the same accuracy by hand: the label with the higher summed log-likelihood after the prompt
    import torch

    net, tok, templates = load_for_eval(tiny_run / "model")
    template = harness.prompt_template(tok, templates, "risk_assessment")  # ft eval's: the tokenizer's chat template
    docs = [json.loads(line) for line in (TASKS_DIR / "ft_risk_assessment.jsonl").read_text().splitlines()[:6]]
    right = 0
    for doc in docs:
        prompt = str(template.prompt(doc))
        assert prompt.startswith("<|system|>\nAssess the credit application") and doc["input"] in prompt
        scores = []
        for choice in doc["choices"]:
            context = tok(prompt, add_special_tokens=False)["input_ids"]
            whole = tok(prompt + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(net(torch.tensor([whole])).logits[0].float(), -1)
            scores.append(sum(logp[i - 1, whole[i]].item() for i in range(len(context), len(whole))))
        right += int(max(range(len(scores)), key=scores.__getitem__) == doc["gold"])
    assert math.isclose(acc, right / 6)

    md = (tiny_run / "report.md").read_text()
    assert "## lm-evaluation-harness" in md and "| ft_risk_assessment | acc | " in md
    page = (tiny_run / "report.html").read_text()
    assert "lm-evaluation-harness" in page and "ft_risk_assessment" in page
    assert json.loads((tiny_run / "report.json").read_text())["harness"] == saved


def test_harness_refuses_an_unfinished_run(tiny_run, tmp_path):
    from finetune.commands import harness_command

    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(tiny_run / "model")
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(UserError, match="status is running"):
        harness_command(run, "ft_risk_assessment", samples=2, out=None)


def test_harness_summary_keeps_metrics_and_stderr_per_filter():
    raw = {
        "results": {
            "ft_tutoring": {
                "alias": "ft_tutoring",
                "exact_match,strict-match": 0.25,
                "exact_match_stderr,strict-match": 0.1,
            },
            "ft_legal": {"acc,none": 0.5, "acc_stderr,none": "N/A", "mcc,none": 0.0, "mcc_stderr,none": "N/A"},
        },
        "n-samples": {"ft_tutoring": {"original": 100, "effective": 4}, "ft_legal": {"original": 200, "effective": 4}},
    }
    got = harness.summarise(raw, "m", 4)
    assert got["tasks"]["ft_tutoring"] == {
        "documents": 4,
        "of": 100,
        "metrics": {"exact_match (strict-match)": {"value": 0.25, "stderr": 0.1}},
    }
    assert got["tasks"]["ft_legal"]["metrics"]["mcc"] == {"value": 0.0, "stderr": None}
