"""`ft`: the command line. Thin: it parses and calls the public API.

Heavy libraries (torch, transformers) are imported inside commands, so
`ft --help` answers at once. User errors print one line and exit 2;
`ft --debug ...` shows the traceback instead.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ft: domain fine-tuning with one recipe.")
data_app = typer.Typer(no_args_is_help=True, help="Look at data: scenarios, recipes' sources.")
app.add_typer(data_app, name="data")

RECIPES = Path(__file__).resolve().parent / "recipes"
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors")) -> None:
    _state["debug"] = debug


def _guard(fn: Callable[[], None]) -> None:
    """Run a command; user errors become one line and exit 2, a stop request its own code."""
    from finetune.errors import EXIT_NON_FINITE, EXIT_STOPPED, EXIT_USER_ERROR, StopRequested, UserError

    try:
        fn()
    except (UserError, FileNotFoundError) as exc:
        if _state["debug"]:
            raise
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(EXIT_USER_ERROR)
    except StopRequested as exc:
        typer.secho(f"stopped: {exc}. Continue with: ft run RECIPE --resume", err=True, fg="yellow")
        raise typer.Exit(EXIT_STOPPED)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        raise typer.Exit(130)
    except Exception as exc:  # noqa: BLE001 - anything else may be a bug; still no traceback without --debug
        from finetune.train.loop import NonFiniteError

        if isinstance(exc, NonFiniteError) and not _state["debug"]:
            typer.secho(f"error: {exc}", err=True, fg="red")
            raise typer.Exit(EXIT_NON_FINITE)
        raise


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[List[str]] = typer.Argument(None, help="dotted key=value overrides, e.g. train.learning_rate=1e-4"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest complete checkpoint"),
    processes: int = typer.Option(1, "--processes", min=1, help="start N processes through accelerate's launcher"),
) -> None:
    """Run a recipe: pretrain?, fine-tune?, evaluate before/after, report."""

    def go() -> None:
        from finetune.config.load import load_recipe

        parsed = load_recipe(recipe, overrides or [])  # validate before spawning anything
        if processes > 1:
            from finetune.launch import launch

            raise typer.Exit(launch(recipe, overrides or [], processes, resume, parsed))
        from finetune.pipeline import run as run_recipe
        from finetune.report import print_summary

        result = run_recipe(parsed, resume=resume or None)
        print_summary(result)

    _guard(go)


@app.command()
def validate(recipes: List[Path] = typer.Argument(..., help="recipe files")) -> None:
    """Check recipes without running them; every problem is listed with its dotted path."""

    def go() -> None:
        from finetune.config.load import RecipeError, load_recipe

        bad = 0
        for path in recipes:
            try:
                load_recipe(path)
                typer.echo(f"ok     {path}")
            except RecipeError as exc:
                bad += 1
                typer.secho(f"error  {exc}", err=True, fg="red")
        if bad:
            raise typer.Exit(2)

    _guard(go)


@app.command("recipes")
def list_recipes() -> None:
    """The shipped recipes, one line each."""
    for path in sorted(RECIPES.rglob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        about = next((l.lstrip("# ").strip() for l in lines[1:4] if l.startswith("#")), "")
        typer.echo(f"{str(path.relative_to(RECIPES.parent)):42s} {about}")


if __name__ == "__main__":
    app()
