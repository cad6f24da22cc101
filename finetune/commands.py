"""What the smaller CLI commands do (eval, generate, merge, data preview), kept out of cli.py so it stays thin."""

from __future__ import annotations

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


def generate_command(model: Path, prompt: str, max_new_tokens: int, source: str | None) -> str:
    from finetune.data.format import Template
    from finetune.eval.generate import generate
    from finetune.methods import load_for_eval

    net, tokenizer, saved = load_for_eval(resolve_model_dir(model))
    template = Template.for_generation(tokenizer, saved, source)
    return generate(net, tokenizer, [template.prompt({"input": prompt})], max_new_tokens=max_new_tokens)[0]


def evaluate_command(
    model: Path,
    scenario: str | None,
    data: Path | None,
    task: str | None,
    fields: list[str],
    samples: int,
    max_new_tokens: int,
    numeric_tolerance: float = 0.0,
    numeric_fallback: str = "none",
    out: Path | None = None,
    fmt: str | None = None,
) -> None:
    from finetune.config.schema import DataSpec, EvalSpec, SourceSpec
    from finetune.eval.run import eval_sets, evaluate_model, templates_for
    from finetune.methods import load_for_eval
    from finetune.report import print_metrics

    check_eval_options(scenario, task, fmt)
    if bool(scenario) == bool(data):
        raise UserError("give exactly one of --scenario NAME or --data FILE")
    if fmt and not data:
        raise UserError("--format tells how to read --data FILE; give --data too")
    owner = format_scenario(fmt)
    if data is not None and task is None and owner is None:
        raise UserError(
            "--data needs --task generation|classification|numeric (or --format with a scenario's real "
            "format, scored by that scenario)"
        )
    mapping = dict(_pair(f) for f in fields)
    try:
        if scenario:
            spec = EvalSpec(samples=samples, max_new_tokens=max_new_tokens)
            sets = eval_sets(DataSpec(sources=[SourceSpec(scenario=scenario)]), spec, seed=0)
        else:
            spec = EvalSpec(
                samples=samples,
                max_new_tokens=max_new_tokens,
                task=task,
                numeric_tolerance=numeric_tolerance,
                numeric_fallback=numeric_fallback,
                data=SourceSpec(path=str(data), fields=mapping, format=fmt, scenario=owner, split="test"),
            )
            sets = eval_sets(None, spec, seed=0)
    except ValueError as exc:  # pydantic validation of the command's options
        raise UserError(str(exc).splitlines()[0] if "\n" not in str(exc) else str(exc).replace("\n", " ")) from None
    net, tokenizer, saved = load_for_eval(resolve_model_dir(model))
    result = evaluate_model(net, tokenizer, templates_for(tokenizer, sets, "instruction", saved), sets, spec)
    for name, metrics in result["metrics"].items():
        print_metrics(name, metrics)
    _keep_rows(sets, result, out)


def harness_command(
    model: Path, tasks: str, samples: int | None, out: Path | None, bootstrap_iters: int | None = None
) -> None:
    """`ft eval --harness`: lm_eval's scoring of ft's shipped scenario tasks; on a finished run, into its report."""
    from finetune.eval.harness import FILE, run_harness, task_names
    from finetune.report import print_metrics
    from finetune.rundir import lock_run_dir, read_run_info, release_run_dir, write_json

    names = task_names(tasks)
    model = Path(model)
    run_dir = model if (model / "run.json").is_file() else None
    if run_dir is not None:
        status = read_run_info(run_dir).get("status")
        if status != "done":
            raise UserError(f"{run_dir}: run status is {status}; harness results go into a finished run's report")
        lock_run_dir(run_dir)  # a `ft run --resume` must not rewrite the report under us
    try:
        from finetune.methods import load_for_eval

        folder = resolve_model_dir(model)
        net, tokenizer, saved = load_for_eval(folder)
        extra = {} if bootstrap_iters is None else {"bootstrap_iters": bootstrap_iters}
        result = run_harness(net, tokenizer, saved, names, limit=samples, model=str(folder), **extra)
        for task, scored in result["tasks"].items():
            print_metrics(
                f"{task} ({scored['documents']} of {scored['of']} documents)",
                {metric: m["value"] for metric, m in scored["metrics"].items()},
            )
        target = run_dir or out
        if target is None:
            print(f"harness results: not kept; give a run folder as --model, or --out DIR for DIR/{FILE}")
            return
        if target.exists() and not target.is_dir():
            raise UserError(f"--out {target}: is a file; give a folder for {FILE}")
        target.mkdir(parents=True, exist_ok=True)
        write_json(target / FILE, result)
        if run_dir is not None and (run_dir / "report.json").is_file():
            from finetune.report_html import refresh_reports

            refresh_reports(run_dir, result)
        print(f"harness results: {target / FILE}")
    finally:
        if run_dir is not None:
            release_run_dir(run_dir)


def _keep_rows(sets: list[Any], result: dict[str, Any], out: Path | None) -> None:
    """Confusion matrices on the console; with ``out``, eval.json and predictions.jsonl written there."""
    from finetune.eval.predictions import (
        FILE,
        class_tables,
        prediction_records,
        write_predictions,
    )
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


EVAL_TASKS = ("generation", "classification", "numeric")


def check_eval_options(scenario: str | None, task: str | None, fmt: str | None) -> None:
    """`ft eval`'s names, checked before anything loads, each wrong one a line that lists the right ones."""
    from finetune import scenarios

    if task is not None and task not in EVAL_TASKS:
        raise UserError(f"--task {task!r} is not a task; use one of {', '.join(EVAL_TASKS)}")
    if scenario is not None and scenario not in scenarios.NAMES:
        raise UserError(f"--scenario {scenario!r} is not a scenario; use one of {', '.join(scenarios.NAMES)}")
    if fmt is not None and format_scenario(fmt) is None and fmt.lower().lstrip(".") not in _file_formats():
        real = sorted(f for name in scenarios.NAMES for f in scenarios.get(name).formats)
        raise UserError(
            f"--format {fmt!r} is neither a file format ({', '.join(_file_formats())}) "
            f"nor a scenario's real format ({', '.join(real)})"
        )


def format_scenario(fmt: str | None) -> str | None:
    """The scenario that reads ``fmt`` when it is a real format (a plain file format has none; csv is a file)."""
    from finetune.config.schema import format_owner

    if not fmt or fmt.lower().lstrip(".") in _file_formats():
        return None
    return format_owner(fmt)


def _file_formats() -> tuple[str, ...]:
    from finetune.config.schema import FILE_FORMATS

    return FILE_FORMATS


def preview_command(what: str, n: int) -> str:
    """Formatted examples (the prompt the model sees, the target it learns) after each source's row counts and
    lengths, so a user sees what a run will train on before paying for it."""
    from finetune.data.format import Template
    from finetune.data.sources import load_sources

    spec, recipe = _preview_data(what)
    tokenizer, whose, note = _preview_tokenizer(recipe)
    seed = recipe.seed if recipe else 0
    carve_test = recipe is None or recipe.eval is None or recipe.eval.data is None
    out = [note] if note else []
    for source in load_sources(spec, seed=seed, carve_test=carve_test):
        template = Template(shape=spec.shape, eos_token="<eos>", system=source.system, instruction=source.instruction)
        out.append(f"=== {source.name} (card: {source.card or 'none'})")
        out += _split_and_length_lines(source, spec, tokenizer, whose)
        for row in source.splits["train"][:n]:
            text = "".join(piece for piece, _ in template.segments(row))
            prompt = template.prompt(row)
            out += ["--- prompt:", prompt.rstrip(), "--- target:", text[len(prompt) :].rstrip(), ""]
    return "\n".join(out)


def _preview_data(what: str) -> tuple[Any, Any]:
    """The data to preview and the recipe it came from (None for a scenario: its default sizes, as a recipe gets)."""
    from finetune import scenarios
    from finetune.config.load import load_recipe
    from finetune.config.schema import DataSpec, SourceSpec

    if what in scenarios.NAMES:
        return DataSpec(sources=[SourceSpec(scenario=what)]), None
    if Path(what).suffix in (".yaml", ".yml"):
        recipe = load_recipe(what)
        if recipe.data is None:
            raise UserError(f"recipe {what} has no data section")
        return recipe.data, recipe
    raise UserError(f"{what!r} is neither a scenario ({', '.join(scenarios.NAMES)}) nor a recipe file")


def _preview_tokenizer(recipe: Any) -> tuple[Any, str, str]:
    """(tokenizer, whose, note): the recipe's model tokenizer when it is on this machine (a .gguf file's converted
    folder when it was converted), else (None, "", a note saying why lengths are in whitespace words, or "")."""
    where = None
    if recipe is not None:
        where = recipe.model.tokenizer or recipe.model.path
        if where is None and recipe.pretrain is not None:
            where = recipe.pretrain.tokenizer.path
    note = ""
    if where is not None and _is_gguf_file(where):
        where, note = _converted_gguf(where)
    if where is None or not Path(where).is_dir():
        return None, "", note
    from finetune.model.tokenizer import load_tokenizer

    return load_tokenizer(where, recipe.model.trust_remote_code, recipe.model.revision), where, note


def _is_gguf_file(path: str) -> bool:
    from finetune.model.gguf_import import is_gguf

    return is_gguf(path) and Path(path).expanduser().is_file()


def _converted_gguf(path: str) -> tuple[str | None, str]:
    """The cached conversion of a .gguf file, found without converting (a preview must stay quick), or a note that
    ``ft import`` makes it. The file's sha256 is remembered by path and stat, so only a first preview reads it."""
    from finetune.fingerprint import file_sha256
    from finetune.model.gguf_import import cache_dir, source_info

    sha256 = file_sha256(Path(path).expanduser())
    folder = cache_dir(sha256)
    if (source_info(folder) or {}).get("sha256") == sha256 and (folder / "tokenizer_config.json").is_file():
        return str(folder), ""
    return None, f"note: {path} is not converted yet, so lengths are in words; `ft import {path}` converts it first"


def _split_and_length_lines(source: Any, spec: Any, tokenizer: Any, whose: str) -> list[str]:
    """Rows per split, and length percentiles of the formatted training rows, with what max_length cuts."""
    counts = " / ".join(f"{split} {len(rows)}" for split, rows in source.splits.items())
    lines = [source.split_note or f"rows: {counts}"]
    rows = source.splits["train"]
    if not rows:
        return lines
    if tokenizer is None:
        lengths = sorted(len(_formatted(source, spec, row).split()) for row in rows)
        lines.append(
            f"length of train rows in whitespace words (no local tokenizer for the model, so the tokens "
            f"data.max_length {spec.max_length} cuts cannot be counted): {_percentiles(lengths)}"
        )
        return lines
    from finetune.data.format import Template, encode_example

    template = Template.for_tokenizer(tokenizer, source.system, source.instruction, spec.shape)
    lengths = sorted(
        len(encode_example(template, tokenizer, row, 1 << 30, "truncate", spec.train_on_prompt)["input_ids"])
        for row in rows
    )
    over = sum(1 for n in lengths if n > spec.max_length)
    cut = "truncated" if spec.truncation == "truncate" else "dropped"
    lines.append(
        f"length of train rows in tokens of {whose}'s tokenizer: {_percentiles(lengths)}; "
        f"{over} of {len(lengths)} exceed data.max_length {spec.max_length} and are {cut}"
    )
    return lines


def _formatted(source: Any, spec: Any, row: dict[str, Any]) -> str:
    from finetune.data.format import Template

    template = Template(shape=spec.shape, eos_token="", system=source.system, instruction=source.instruction)
    return "".join(piece for piece, _ in template.segments(row))


def _percentiles(lengths: list[int]) -> str:
    """p50/p90/p99/max of sorted lengths (nearest rank: every number shown is a real row's length)."""

    def rank(q: int) -> int:
        return lengths[max(0, -(-len(lengths) * q // 100) - 1)]

    return f"p50 {rank(50)}, p90 {rank(90)}, p99 {rank(99)}, max {lengths[-1]}"


def _pair(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise UserError(f"--field {item!r}: expected ours=theirs, e.g. input=dialogue")
    ours, _, theirs = item.partition("=")
    return ours.strip(), theirs.strip()
