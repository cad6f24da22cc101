"""One result interface for the stages and one loader for trained models (issue 13, point 5).

Before: report.py probed each stage with hasattr/getattr (a pretraining counted by its ``parameters``, a
fine-tuning by its ``total_params``, only stages named pretrain/finetune in the cost), and three places read
``ft_template.json`` each their own way (a broken file was a JSONDecodeError traceback, not exit 2).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from finetune.config.load import recipe_from_dict
from finetune.data.format import TEMPLATE_FILE, Template
from finetune.errors import UserError
from finetune.report import build_report, cost
from finetune.stages.evaluate import EvalResult
from finetune.stages.finetune import FinetuneResult
from finetune.stages.pretrain import PretrainResult
from finetune.stages.result import StageResult, TrainingCost

PACKAGE = Path(__file__).resolve().parent.parent / "finetune"


def _pretrain(reused: bool) -> PretrainResult:
    return PretrainResult(Path("/cache/pretrained/abc/model"), 2.5, 4.0, 1000, 10, 3.0, reused, 5000)


def _finetune() -> FinetuneResult:
    return FinetuneResult(
        Path("runs/x/model"),
        "lora",
        100,
        5100,
        3.0,
        2.0,
        400,
        5,
        1.5,
        0.1,
        False,
        0,
        scrub_counts={"email": 1},
        cards={"risk": "risk_card"},
    )


def _recipe(tmp_path: Path):
    return recipe_from_dict(
        {
            "name": "r",
            "output": str(tmp_path / "run"),
            "model": {"path": str(tmp_path)},
            "data": {"sources": [{"scenario": "risk_assessment"}]},
            "method": {"kind": "lora"},
            "eval": {"samples": 2},
        }
    )


class Distill(StageResult):
    """A stage the report has never heard of: it still enters the cost through the interface."""

    def summary(self) -> dict:
        return {"kl": 0.5}

    def report_dict(self) -> dict:
        return {"kl": 0.5, "teacher": "big"}

    def training_cost(self) -> TrainingCost:
        return TrainingCost(tokens=50, wall_time=2.0, parameters=10, trainable=10)


def test_report_sections_are_each_stages_report_dict(tmp_path):
    ev = EvalResult(after={"risk": {"mcc": 0.5}}, before={"risk": {"mcc": 0.1}})
    stages = {"pretrain": _pretrain(False), "finetune": _finetune(), "eval": ev}
    report = build_report(_recipe(tmp_path), tmp_path, stages)
    assert report["pretrain"] == _pretrain(False).summary()  # no model_dir: it may point into the shared cache
    assert "model_dir" not in report["pretrain"] and report["finetune"]["model_dir"] == "runs/x/model"
    assert report["finetune"]["scrub_counts"] == {"email": 1} and report["eval"]["after"] == {"risk": {"mcc": 0.5}}
    assert ev.summary() == {"risk.mcc.before": 0.1, "risk.mcc.after": 0.5}


def test_cost_comes_from_training_cost_of_every_stage():
    spent = cost({"pretrain": _pretrain(False), "finetune": _finetune(), "eval": EvalResult(), "distill": Distill()})
    assert spent["tokens"] == 1000 + 400 + 50 and spent["wall_time_s"] == round(3.0 + 1.5 + 2.0, 1)
    assert spent["train_flops"] == 6 * 5000 * 1000 + (4 * 5100 + 6 * 100) * 400 + 6 * 10 * 50
    assert spent["flops_formula"] == (
        "pretrain: 6 x 5,000 params x 1,000 tokens; "
        "finetune: (4 x 5,100 + 6 x 100 trainable) params x 400 tokens; "
        "distill: 6 x 10 params x 50 tokens"
    )


def test_reused_base_and_evaluation_cost_nothing():
    assert _pretrain(True).training_cost() is None and EvalResult().training_cost() is None
    spent = cost({"pretrain": _pretrain(True), "eval": EvalResult()})
    assert spent["tokens"] == 0 and spent["train_flops"] == 0 and spent["flops_formula"] == ""


def test_a_stage_without_report_dict_cannot_be_made():
    class Half(StageResult):
        def summary(self) -> dict:
            return {}

    with pytest.raises(TypeError, match="report_dict"):
        Half()


def test_report_does_not_probe_stage_results():
    tree = ast.parse((PACKAGE / "report.py").read_text(encoding="utf-8"))
    probes = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("hasattr", "getattr")
    ]
    assert probes == [], f"report.py probes results at lines {probes}; add to StageResult instead"


def test_template_file_name_is_spelled_once_in_code():
    """Docstrings may name the file; code uses data.format.TEMPLATE_FILE."""
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and "ft_template.json" in node.value
            ):
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert len(spelled) == 1 and spelled[0].startswith("data/format.py:"), spelled


# ---------------------------------------------------------------- the loader


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny full model folder as fine-tuning saves it: weights, tokenizer and TEMPLATE_FILE."""
    from finetune.methods import save_trained
    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("trained") / "model"
    tok = train_tokenizer([f"Applicant {i} earns {i} and is good or bad." for i in range(200)], 320, out)
    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=32,
            layers=2,
            heads=4,
            context_length=256,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
    )
    mine = Template.for_tokenizer(tok, None, "SAVED INSTRUCTION", "instruction").to_dict()
    saved = {"default": mine, "sources": {"risk_assessment": mine}}
    save_trained(model, tok, out, {TEMPLATE_FILE: json.dumps(saved)})
    return out


def test_load_for_eval_returns_model_tokenizer_and_saved_templates(trained):
    from finetune.methods import load_for_eval

    model, tokenizer, saved = load_for_eval(trained)
    assert model.config.width == 32 and tokenizer.eos_token is not None
    assert Template.from_dict(saved["sources"]["risk_assessment"]).instruction == "SAVED INSTRUCTION"


def test_a_folder_without_templates_and_a_default_only_file(trained, tmp_path):
    import shutil

    from finetune.methods import load_for_eval, saved_templates

    bare = tmp_path / "bare"
    shutil.copytree(trained, bare)
    (bare / TEMPLATE_FILE).unlink()
    assert load_for_eval(bare)[2] is None
    (bare / TEMPLATE_FILE).write_text(json.dumps({"default": {"shape": "instruction"}}))
    assert saved_templates(bare) == {"default": {"shape": "instruction"}, "sources": {}}


def test_generate_renders_with_the_saved_template(trained, monkeypatch):
    import finetune.eval.generate as gen
    from finetune.commands import generate_command

    seen = []
    monkeypatch.setattr(gen, "generate", lambda model, tok, prompts, **kw: seen.extend(prompts) or ["ok"])
    assert generate_command(trained, "an applicant", 2, None) == "ok"
    assert "SAVED INSTRUCTION" in seen[0] and "an applicant" in seen[0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"sources": {}}', "needs a 'default' template"),
    ],
)
def test_broken_template_file_is_one_user_error_in_every_reader(trained, tmp_path, content, message):
    """ft generate, ft eval and the evaluation stage read the folder through one loader, so one message."""
    import shutil

    from finetune.commands import evaluate_command, generate_command
    from finetune.stages.evaluate import _evaluate

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / TEMPLATE_FILE).write_text(content)
    expected = f"{broken / TEMPLATE_FILE} {message}"
    with pytest.raises(UserError, match=expected.replace("'", ".")) as err:
        generate_command(broken, "x", 2, None)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=expected.replace("'", ".")):
        evaluate_command(broken, "risk_assessment", None, None, [], samples=2, max_new_tokens=2)
    recipe = recipe_from_dict(
        {
            "name": "b",
            "output": str(tmp_path / "run"),
            "model": {"path": str(trained)},
            "data": {"sources": [{"scenario": "risk_assessment", "sizes": {"train": 4, "validation": 2, "test": 2}}]},
            "method": {"kind": "lora", "r": 2},
            "eval": {"samples": 2, "before": False},
        }
    )
    with pytest.raises(UserError, match=expected.replace("'", ".")):
        _evaluate(recipe, str(trained), broken, "cpu", lambda *a: None)


def test_eval_stage_uses_saved_templates(trained, tmp_path, monkeypatch):
    """The after-model's prompts come from its TEMPLATE_FILE, not from fresh templates for its tokenizer."""
    import finetune.eval.run as run_mod
    from finetune.stages.evaluate import _evaluate

    seen = {}

    def fake_evaluate(model, tokenizer, templates, sets, spec):
        seen.update(templates)
        return {
            "metrics": {s.name: {} for s in sets},
            "predictions": {s.name: [""] * len(s.rows) for s in sets},
            "examples_per_s": {},
            "decisions": {},
            "warnings": {},
        }

    monkeypatch.setattr(run_mod, "evaluate_model", fake_evaluate)
    recipe = recipe_from_dict(
        {
            "name": "s",
            "output": str(tmp_path / "run"),
            "model": {"path": str(trained)},
            "data": {"sources": [{"scenario": "risk_assessment", "sizes": {"train": 4, "validation": 2, "test": 2}}]},
            "method": {"kind": "lora", "r": 2},
            "eval": {"samples": 2, "before": False},
        }
    )
    result = _evaluate(recipe, str(trained), trained, "cpu", lambda *a: None)
    assert seen["risk_assessment"].instruction == "SAVED INSTRUCTION"
    assert isinstance(result, EvalResult) and result.before == {}


def test_both_evaluations_off_is_no_evaluation(trained, tmp_path):
    """eval.before and eval.after false on a tuned run: the stage has no model's speed to report and must not
    fail for it (it did: a None indexed). pipeline.run leaves the stage out then (tests/test_distributed.py's
    reliability runs train with both off)."""
    from finetune.stages.evaluate import _evaluate

    recipe = recipe_from_dict(
        {
            "name": "off",
            "output": str(tmp_path / "run"),
            "model": {"path": str(trained)},
            "data": {"sources": [{"scenario": "risk_assessment", "sizes": {"train": 4, "validation": 2, "test": 2}}]},
            "method": {"kind": "full"},
            "eval": {"samples": 2, "before": False, "after": False, "retention": {"enabled": False}},
        }
    )
    result = _evaluate(recipe, str(trained), trained, "cpu", lambda *a: None)
    assert result.before == {} and result.after == {} and result.examples_per_s == {}
