"""`ft`: the command line. Thin: it parses and calls the public API.

Heavy libraries (torch, transformers) are imported inside commands, so
`ft --help` answers at once. User errors print one line and exit 2;
`ft --debug ...` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, List, NoReturn, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ft: domain fine-tuning with one recipe.")
data_app = typer.Typer(no_args_is_help=True, help="Look at data: scenarios, recipes' sources.")
app.add_typer(data_app, name="data")

_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors")) -> None:
    _state["debug"] = debug


def _main_rank() -> bool:
    """Under torchrun every rank runs this CLI; only rank 0 speaks to the user."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _leave(code: int) -> NoReturn:
    """Exit with ``code``; a process of a launched world skips interpreter teardown.

    There, C++ threads of torch/gloo can still be alive while static destructors run, and
    the process aborts ("terminate called without an active exception", exit 134) instead
    of exiting 2 (seen in CI). Everything this process wrote is closed by now; flush the rest.
    """
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import logging

        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    raise typer.Exit(code)


def _guard(fn: Callable[[], None]) -> None:
    """Run a command; user errors become one line and exit 2, a stop request its own code."""
    from finetune.errors import (
        EXIT_NON_FINITE,
        EXIT_STOPPED,
        EXIT_USER_ERROR,
        StopRequested,
        UserError,
    )

    try:
        fn()
    except (UserError, FileNotFoundError) as exc:
        if _state["debug"]:
            raise
        if _main_rank():
            typer.secho(f"error: {exc}", err=True, fg="red")
        _leave(EXIT_USER_ERROR)
    except StopRequested as exc:
        if _main_rank():
            typer.secho(f"stopped: {exc}. Continue with: ft run RECIPE --resume", err=True, fg="yellow")
        _leave(EXIT_STOPPED)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        raise typer.Exit(130) from None
    except typer.Exit:  # a command's own exit code (ft validate's 2): nothing to look up
        raise
    except Exception as exc:  # noqa: BLE001 - anything else may be a bug; still no traceback without --debug
        loop = sys.modules.get("finetune.train.loop")  # only a run that trained can raise NonFiniteError
        if loop is not None and isinstance(exc, loop.NonFiniteError) and not _state["debug"]:
            typer.secho(f"error: {exc}", err=True, fg="red")
            _leave(EXIT_NON_FINITE)
        raise


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="dotted key=value overrides, e.g. train.learning_rate=1e-4"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest complete checkpoint"),
    processes: int = typer.Option(1, "--processes", min=1, help="start N processes through accelerate's launcher"),
) -> None:
    """Run a recipe: pretrain?, fine-tune?, evaluate before/after, report."""

    def go() -> None:
        from finetune.config.load import load_recipe

        parsed = load_recipe(recipe, overrides or [])  # validate before spawning anything
        if processes > 1 or parsed.distributed.config_file:
            from finetune.launch import launch

            raise typer.Exit(launch(recipe, overrides or [], processes, resume, parsed))
        from finetune.pipeline import run as run_recipe
        from finetune.report import print_summary

        result = run_recipe(parsed, resume=resume or None)
        if _main_rank():
            print_summary(result)

    _guard(go)


@app.command()
def validate(
    recipes: List[Path] = typer.Argument(..., help="recipe files"),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="also print every field as resolved: dotted path, value, the default when it differs, what it does",
    ),
) -> None:
    """Check recipes without running them; every problem is listed with its dotted path."""

    def go() -> None:
        from finetune.config.explain import explain_lines
        from finetune.config.load import RecipeError, load_recipe

        bad = 0
        for path in recipes:
            try:
                parsed = load_recipe(path)
                typer.echo(f"ok     {path}")
                if explain:
                    typer.echo("\n".join(explain_lines(parsed)))
            except RecipeError as exc:
                bad += 1
                typer.secho(f"error  {exc}", err=True, fg="red")
        if bad:
            raise typer.Exit(2)

    _guard(go)


@app.command()
def scale(
    recipe: Path = typer.Argument(..., help="recipe YAML with a scale: section"),
    overrides: Optional[List[str]] = typer.Argument(None, help="dotted key=value overrides"),
    budget: Optional[float] = typer.Option(None, "--budget", min=0.01, help="minutes; no run starts past them"),
) -> None:
    """Scaling laws: pretrain a grid of sizes x token budgets (cached, resumable), fit, predict a larger run."""

    def go() -> None:
        from finetune.config.load import load_recipe
        from finetune.errors import EXIT_STOPPED, StopRequested
        from finetune.scale.main import scale as run_scale
        from finetune.scale.report import console_lines

        try:
            summary = run_scale(load_recipe(recipe, overrides or []), budget)
        except StopRequested as exc:
            typer.secho(
                f"stopped: {exc}. Continue with: ft scale {recipe} (finished runs are reused)", err=True, fg="yellow"
            )
            raise typer.Exit(EXIT_STOPPED) from None
        typer.echo("\n".join(console_lines(summary)))

    _guard(go)


@app.command()
def schema() -> None:
    """Print the recipe's JSON Schema, for editors: ft schema > recipe.schema.json."""

    def go() -> None:
        from finetune.config.explain import schema_text

        typer.echo(schema_text())

    _guard(go)


@app.command("recipes")
def list_recipes() -> None:
    """The shipped recipes, one line each."""
    from finetune.paths import shipped_dir

    recipes = shipped_dir("recipes")
    for path in sorted(recipes.rglob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        about = next((c.lstrip("# ").strip() for c in lines[1:4] if c.startswith("#")), "")
        typer.echo(f"{str(path.relative_to(recipes.parent)):42s} {about}")


@app.command("eval")
def eval_cmd(
    model: Path = typer.Option(..., "--model", help="model folder, adapter folder or run folder"),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="evaluate on this scenario's test split"),
    data: Optional[Path] = typer.Option(None, "--data", help="a jsonl/csv/parquet file of your own"),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        help="how to read --data: jsonl|json|csv|parquet, or a scenario's "
        "real format (german_credit, gsm8k, mts_dialog, ...: rows and scoring of that scenario)",
    ),
    task: Optional[str] = typer.Option(None, "--task", help="generation | classification | numeric (with --data)"),
    field: Optional[List[str]] = typer.Option(None, "--field", help="column mapping, e.g. --field input=dialogue"),
    samples: int = typer.Option(100, "--samples", min=1),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    numeric_tolerance: float = typer.Option(
        0.0, "--numeric-tolerance", min=0.0, help="task numeric: also score answers within this relative tolerance"
    ),
    numeric_fallback: str = typer.Option(
        "none", "--numeric-fallback", help="task numeric: 'last' also scores the last number when '####' is missing"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="folder for eval.json and predictions.jsonl (every row's answer)"
    ),
    harness: Optional[str] = typer.Option(
        None,
        "--harness",
        help="lm-evaluation-harness on ft's shipped scenario tasks (comma-separated, 'ft' for all; --samples "
        "documents each); a finished run folder as --model gets harness.json and the table in its report",
    ),
) -> None:
    """Evaluate a model on a scenario or on your own file, and print the metrics."""

    def go() -> None:
        from finetune.commands import evaluate_command, harness_command
        from finetune.errors import UserError

        if harness is not None:
            if scenario or data:
                raise UserError("--harness runs its own shipped tasks; drop --scenario/--data")
            harness_command(model, harness, samples, out)
            return
        evaluate_command(
            model,
            scenario,
            data,
            task,
            field or [],
            samples,
            max_new_tokens,
            numeric_tolerance=numeric_tolerance,
            numeric_fallback=numeric_fallback,
            out=out,
            fmt=fmt,
        )

    _guard(go)


@app.command()
def generate(
    model: Path = typer.Argument(..., help="model folder, adapter folder or run folder"),
    prompt: str = typer.Argument(..., help="the input text; rendered with the template saved at training"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    source: Optional[str] = typer.Option(None, "--source", help="which training source's template to use"),
) -> None:
    """Print a completion, rendered with the prompt template the model was trained with."""

    def go() -> None:
        from finetune.commands import generate_command

        typer.echo(generate_command(model, prompt, max_new_tokens, source))

    _guard(go)


@app.command()
def serve(
    model: Path = typer.Argument(..., help="model folder, adapter folder or run folder"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="port to listen on (0: any free port)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; 0.0.0.0 opens it to the network"),
    name: Optional[str] = typer.Option(None, "--name", help="the model id clients send (default: the folder's name)"),
    source: Optional[str] = typer.Option(None, "--source", help="which training source's template renders chats"),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="most requests decoded together"),
    window_ms: float = typer.Option(10.0, "--window-ms", min=0, help="how long a batch waits for more requests"),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads for decoding (0: torch's default)"),
) -> None:
    """Serve a model with an OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models)."""

    def go() -> None:
        from finetune.commands import resolve_model_dir
        from finetune.serve import serve as serve_model

        folder = resolve_model_dir(model)
        serve_model(
            folder,
            name=name or model.resolve().name,
            host=host,
            port=port,
            source=source,
            max_batch=max_batch,
            window_ms=window_ms,
            threads=threads,
        )

    _guard(go)


@app.command()
def merge(
    run_dir: Path = typer.Argument(..., help="run folder (or adapter folder)"),
    out: Path = typer.Option(..., "--out", help="a new (or empty) folder for the merged model"),
    force: bool = typer.Option(
        False,
        "--force",
        help="replace an --out folder that already holds files (never a run, an adapter, or the adapter's base)",
    ),
) -> None:
    """Merge a LoRA/DoRA adapter into its base and save a plain model (safetensors)."""

    def go() -> None:
        from finetune.commands import resolve_model_dir
        from finetune.methods import merge as merge_adapter

        typer.echo(f"merged model written to {merge_adapter(resolve_model_dir(run_dir), out, force=force)}")

    _guard(go)


@app.command("import")
def import_cmd(
    gguf_file: Path = typer.Argument(..., help="a .gguf model file (llama.cpp's format)"),
    out: Optional[Path] = typer.Option(None, "--out", help="a new (or empty) folder; default: ft's cache"),
) -> None:
    """Convert a GGUF file into a Hugging Face model folder (safetensors, tokenizer, config) once."""

    def go() -> None:
        from finetune.model.gguf_import import import_gguf

        typer.echo(f"model folder: {import_gguf(gguf_file, out=out, say=typer.echo)}")

    _guard(go)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a finished run folder"),
    open_page: bool = typer.Option(False, "--open", help="also open report.html in the default browser"),
) -> None:
    """Print a run's report as tables (--open: and show report.html)."""

    def go() -> None:
        from finetune.report import print_report

        print_report(run_dir)
        if open_page:
            from finetune.report_html import open_report

            open_report(run_dir)

    _guard(go)


@app.command()
def export(
    model: Path = typer.Argument(..., help="run folder, model folder or adapter folder (an adapter is merged first)"),
    fmt: str = typer.Option(..., "--format", help="gguf (llama.cpp, Ollama) | safetensors (standalone HF folder)"),
    out: Path = typer.Option(..., "--out", help="gguf: the file to write; safetensors: a new (or empty) folder"),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", help="gguf: f32 | f16 (default) | q8_0; safetensors: f32 | f16 | bf16 (default: as saved)"
    ),
    force: bool = typer.Option(False, "--force", help="replace an existing --out (never a run or the source)"),
) -> None:
    """Export a trained model to GGUF or to a standalone safetensors folder (LoRA/DoRA merged, core as Llama)."""

    def go() -> None:
        from finetune.commands import resolve_model_dir
        from finetune.export import export_model

        typer.echo(f"exported to {export_model(resolve_model_dir(model), fmt, out, dtype, force=force)}")

    _guard(go)


@app.command()
def cards() -> None:
    """The data cards, one line each, with licence."""

    def go() -> None:
        from finetune.data.cards import list_cards

        for card in list_cards():
            typer.echo(f"{card.name:28s} {card.licence:22s} {card.title}")

    _guard(go)


@data_app.command("preview")
def data_preview(
    what: str = typer.Argument(..., help="a scenario name or a recipe file"),
    n: int = typer.Option(3, "--n", min=1, help="examples per source"),
) -> None:
    """Print a few formatted training examples (prompt and target) of a scenario or a recipe's data."""

    def go() -> None:
        from finetune.commands import preview_command

        typer.echo(preview_command(what, n))

    _guard(go)


if __name__ == "__main__":
    app()
