"""The recipe documents itself: every field has a description, `ft schema` prints the JSON Schema editors
check recipes against (recipe.schema.json at the repository root is that output), and
`ft validate --explain` prints every field of a recipe as resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from finetune.config.explain import explain_lines, recipe_json_schema, schema_text
from finetune.config.load import load_recipe, nested_model, recipe_from_dict
from finetune.config.schema import MethodSpec, Recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


def _models(model=Recipe, seen=None) -> list:
    """Every model class reachable from the recipe, through Optional, lists and unions."""
    seen = [] if seen is None else seen
    if model not in seen:
        seen.append(model)
        for field in model.model_fields.values():
            nested = nested_model(field.annotation)
            if nested is not None:
                _models(nested, seen)
    return seen


def _leaves(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("options", "sizes"):  # free-form mappings are one value
            out += _leaves(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out += _leaves(item, f"{prefix}{key}.{i}.")
        else:
            out.append(prefix + key)
    return out


def test_every_field_of_every_section_has_a_description():
    models = _models()
    assert len(models) >= 14  # the walk reaches the nested sections (core, corpus, sources, fields, ...)
    missing = [
        f"{m.__name__}.{name}"
        for m in models
        for name, f in m.model_fields.items()
        if not (f.description or "").strip()
    ]
    assert missing == []


def test_the_shipped_schema_file_is_current():
    """Regenerate with: ft schema > recipe.schema.json"""
    assert (ROOT / "recipe.schema.json").read_text(encoding="utf-8").strip() == schema_text()


def test_schema_is_strict_and_carries_the_descriptions():
    schema = recipe_json_schema()
    defs = schema["$defs"]
    assert all(d.get("additionalProperties") is False for d in defs.values() if d.get("type") == "object")
    pretrain_train = defs["PretrainTrainSpec"]["properties"]
    assert "threads" in pretrain_train and not {"precision", "log_with", "gradient_checkpointing"} & set(pretrain_train)
    assert defs["MethodSpec"]["properties"]["r"]["description"] == MethodSpec.model_fields["r"].description
    assert "scenario" in defs["DataSpec"]["properties"]  # the data: {scenario: x} shorthand


def test_every_shipped_recipe_passes_the_schema_and_run_level_keys_under_pretrain_fail():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(recipe_json_schema())
    for path in RECIPES:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
        assert errors == [], path
    shorthand = {"name": "x", "model": {"path": "m"}, "data": {"scenario": ["tutoring", "legal"]}, "method": {}}
    assert list(validator.iter_errors(shorthand)) == []
    bad = {"name": "x", "model": {"core": {}}, "pretrain": {"train": {"precision": "fp32"}}}
    assert list(validator.iter_errors(bad))


def test_ft_schema_prints_it():
    from cli import app

    out = CliRunner().invoke(app, ["schema"])
    assert out.exit_code == 0
    assert json.loads(out.stdout) == recipe_json_schema()


def test_explain_prints_every_field_once_with_value_default_and_description(tmp_path):
    recipe = recipe_from_dict(
        {
            "name": "x",
            "model": {"core": {"layers": 3}},
            "pretrain": {"train": {"max_steps": 9}},
            "data": {"scenario": "tutoring", "max_length": 128},
            "method": {"kind": "lora", "r": 4},
            "train": {"learning_rate": 1e-3, "log_with": ["tensorboard"]},
        }
    )
    lines = explain_lines(recipe)
    paths = [line.split()[0] for line in lines]
    assert sorted(paths) == sorted(_leaves(recipe.model_dump(mode="json")))
    by_path = dict(zip(paths, lines))
    assert by_path["train.learning_rate"].split()[1:4] == ["0.001", "(default", "0.0003)"]
    assert by_path["train.learning_rate"].endswith("peak learning rate")
    assert by_path["method.r"].split()[1:4] == ["4", "(default", "8)"]
    assert by_path["train.log_with"].split()[1:4] == ["[tensorboard]", "(default", "[])"]
    assert by_path["pretrain.train.max_steps"].split()[1] == "9"
    assert by_path["data.sources.0.scenario"].split()[1] == "tutoring"
    assert by_path["eval"].split()[1] == "null"  # a section not given is one line
    assert "(default" not in by_path["train.batch_size"]  # unchanged: no default shown
    for path, line in by_path.items():  # every line ends with what the field does
        assert line.endswith(_description(path)), line


def _description(dotted: str) -> str:
    model, parts = Recipe, [p for p in dotted.split(".") if not p.isdigit()]
    for part in parts[:-1]:
        model = nested_model(model.model_fields[part].annotation)
    return model.model_fields[parts[-1]].description


def test_validate_explain_on_a_shipped_recipe():
    from cli import app

    path = ROOT / "recipes" / "quickstart.yaml"
    out = CliRunner().invoke(app, ["validate", "--explain", str(path)])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == f"ok     {path}"
    assert lines[1:] == explain_lines(load_recipe(path))
