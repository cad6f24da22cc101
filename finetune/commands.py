"""What the smaller CLI commands do (eval, generate, merge, data preview), kept out of cli.py so it stays thin."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetune.errors import UserError


def resolve_model_dir(path: Path) -> Path:
    """A run folder means its trained model; anything else is taken as a model or adapter folder."""
    path = Path(path)
    if (path / "run.json").exists() and (path / "model").is_dir():
        return path / "model"
    if not path.exists():
        raise UserError(f"{path} does not exist (expected a run, model or adapter folder)")
    return path


def _load(model_dir: Path) -> tuple[Any, Any, dict[str, Any] | None]:
    from finetune.methods import load_trained

    model, tokenizer = load_trained(model_dir)
    saved = model_dir / "ft_template.json"
    return model, tokenizer, json.loads(saved.read_text()) if saved.exists() else None


def generate_command(model: Path, prompt: str, max_new_tokens: int, source: str | None) -> str:
    from finetune.data.format import Template
    from finetune.eval.generate import generate

    model_dir = resolve_model_dir(model)
    net, tokenizer, saved = _load(model_dir)
    if saved:
        data = saved["sources"].get(source) if source else saved["default"]
        if data is None:
            raise UserError(f"no template for source {source!r}; saved: {', '.join(saved['sources'])}")
        template = Template.from_dict(data)
    else:
        template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    return generate(net, tokenizer, [template.prompt({"input": prompt})], max_new_tokens=max_new_tokens)[0]


def evaluate_command(model: Path, scenario: str | None, data: Path | None, task: str | None,
                     fields: list[str], samples: int, max_new_tokens: int,
                     numeric_tolerance: float = 0.0, numeric_fallback: str = "none",
                     out: Path | None = None) -> None:
    from finetune.config.schema import DataSpec, EvalSpec, SourceSpec
    from finetune.eval.run import eval_sets, evaluate_model, templates_for
    from finetune.report import print_metrics

    if bool(scenario) == bool(data):
        raise UserError("give exactly one of --scenario NAME or --data FILE")
    if data is not None and task is None:
        raise UserError("--data needs --task generation|classification|numeric")
    mapping = dict(_pair(f) for f in fields)
    try:
        if scenario:
            spec = EvalSpec(samples=samples, max_new_tokens=max_new_tokens)
            sets = eval_sets(DataSpec(sources=[SourceSpec(scenario=scenario)]), spec, seed=0)
        else:
            spec = EvalSpec(samples=samples, max_new_tokens=max_new_tokens, task=task, numeric_tolerance=numeric_tolerance,
                            numeric_fallback=numeric_fallback,
                            data=SourceSpec(path=str(data), fields=mapping))
            sets = eval_sets(None, spec, seed=0)
    except ValueError as exc:  # pydantic validation of the command's options
        raise UserError(str(exc).splitlines()[0] if "\n" not in str(exc) else str(exc).replace("\n", " ")) from None
    model_dir = resolve_model_dir(model)
    net, tokenizer, saved = _load(model_dir)
    result = evaluate_model(net, tokenizer, templates_for(tokenizer, sets, "instruction", saved), sets, spec)
    for name, metrics in result["metrics"].items():
        print_metrics(name, metrics)
    _keep_rows(sets, result, out)


def _keep_rows(sets: list[Any], result: dict[str, Any], out: Path | None) -> None:
    """Confusion matrices on the console; with ``out``, eval.json and predictions.jsonl written there."""
    from finetune.eval.predictions import FILE, class_tables, prediction_records, write_predictions
    from finetune.report import print_class_tables
    from finetune.rundir import write_json

    records = prediction_records(sets, result, "after")
    print_class_tables(class_tables(records))
    if out is None:
        print("predictions: not kept; add --out DIR to write every row's answer to DIR/predictions.jsonl")
        return
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for eval.json and predictions.jsonl")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval.json", {"after": result["metrics"], "examples_per_s": result["examples_per_s"]})
    print(f"predictions: {write_predictions(out / FILE, records)}")


def preview_command(what: str, n: int) -> str:
    """Formatted examples: the prompt the model sees and the target it learns."""
    from finetune import scenarios
    from finetune.config.load import load_recipe
    from finetune.config.schema import DataSpec, SourceSpec
    from finetune.data.format import Template
    from finetune.data.sources import load_sources

    if what in scenarios.NAMES:
        spec = DataSpec(sources=[SourceSpec(scenario=what, sizes={"train": n, "validation": n, "test": n})])
    elif Path(what).suffix in (".yaml", ".yml"):
        recipe = load_recipe(what)
        if recipe.data is None:
            raise UserError(f"recipe {what} has no data section")
        spec = recipe.data
    else:
        raise UserError(f"{what!r} is neither a scenario ({', '.join(scenarios.NAMES)}) nor a recipe file")
    out = []
    for source in load_sources(spec, seed=0):
        template = Template(shape=spec.shape, eos_token="<eos>", system=source.system, instruction=source.instruction)
        out.append(f"=== {source.name} (card: {source.card or 'none'})")
        for row in source.splits["train"][:n]:
            text = "".join(piece for piece, _ in template.segments(row))
            prompt = template.prompt(row)
            out += ["--- prompt:", prompt.rstrip(), "--- target:", text[len(prompt):].rstrip(), ""]
    return "\n".join(out)


def _pair(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise UserError(f"--field {item!r}: expected ours=theirs, e.g. input=dialogue")
    ours, _, theirs = item.partition("=")
    return ours.strip(), theirs.strip()
