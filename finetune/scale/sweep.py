"""Run the sweep's pretrainings through the ordinary pretraining stage, and keep score in ``sweep.json``.

Each run is a cached pretraining (finetune/stages/pretrain.py): the cache key covers its settings,
corpus, tokenizer bytes and code, so a finished run is found again and costs nothing, and a run that
was stopped resumes from its own latest checkpoint. A killed sweep therefore continues where it
stopped when the same command is given again; ``sweep.json`` (written atomically after every change)
says which runs are done, reused, stopped or left out by the time budget.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from finetune.config.schema import Recipe
from finetune.scale.grid import ScaleRun

SWEEP_FILE = "sweep.json"
TOKENIZER_DIR = "tokenizer"


@dataclass
class Sweep:
    """Where the sweep writes, what it knows so far, and the clock its budget runs on."""

    folder: Path
    recipe: Recipe
    budget_s: float | None
    say: Callable[[str], None] = print
    started: float = field(default_factory=time.perf_counter)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> its entry in sweep.json
    measured: list[tuple[float, float]] = field(default_factory=list)  # (cost, seconds) of runs trained here

    @property
    def path(self) -> Path:
        return self.folder / SWEEP_FILE

    def save(self, status: str) -> None:
        from finetune.rundir import write_json

        write_json(
            self.path,
            {
                "recipe": self.recipe.name,
                "status": status,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "budget_minutes": None if self.budget_s is None else self.budget_s / 60,
                "runs": list(self.records.values()),
            },
        )


def shared_tokenizer(recipe: Recipe, folder: Path) -> str:
    """The one tokenizer every run uses: the recipe's own, or one trained once on the training documents.

    It is trained on the same documents a pretraining would train its own on (the corpus, shuffled
    by seed, less the validation share), then renamed into place, so a kill never leaves half of it.
    """
    spec = recipe.pretrain
    if spec.tokenizer.path:
        return spec.tokenizer.path
    out = folder / TOKENIZER_DIR
    if (out / "tokenizer.json").is_file():
        return str(out)
    import shutil

    from finetune.data.corpus import label_words, load_corpus
    from finetune.model.tokenizer import train_tokenizer

    docs = load_corpus(spec.corpus, recipe.seed)
    random.Random(recipe.seed).shuffle(docs)
    train_docs = docs[max(1, int(len(docs) * spec.validation_fraction)) :]
    tmp = folder / (TOKENIZER_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    train_tokenizer(
        train_docs + label_words(spec.corpus.scenarios),
        spec.tokenizer.vocab_size,
        tmp,
        split_digits=spec.tokenizer.split_digits,
    )
    tmp.rename(out)
    return str(out)


def register(sweep: Sweep, runs: list[ScaleRun]) -> None:
    """Every run of the sweep in sweep.json from the start, pending until it runs."""
    for run in runs:
        sweep.records.setdefault(run.id, {**run.describe(), "status": "pending"})


def run_all(sweep: Sweep, runs: list[ScaleRun], accelerator: Any, stop: Any) -> bool:
    """Train (or find in the cache) each run in order; False when the budget left some out.

    A stop request (SIGTERM, Ctrl-C) ends the run in progress at a checkpoint, records it as stopped
    and goes up as StopRequested.
    """
    from finetune.errors import StopRequested

    register(sweep, runs)
    complete = True
    for run in runs:
        if sweep.records[run.id]["status"] == "done":
            continue
        if not complete or _over_budget(sweep, run):
            complete = False
            sweep.records[run.id]["status"] = "left out (budget)"
            continue
        try:
            _one(sweep, run, accelerator, stop)
        except StopRequested:
            sweep.records[run.id]["status"] = "stopped"
            sweep.save("stopped")
            raise
    sweep.save("done" if complete else "budget")
    return complete


def _one(sweep: Sweep, run: ScaleRun, accelerator: Any, stop: Any) -> None:
    """One pretraining through the stage; its result goes into sweep.json."""
    from finetune.stages.pretrain import cache_key, pretrain

    record = sweep.records[run.id]
    record.update(status="running", cache_key=cache_key(run.recipe))
    sweep.save("running")
    stop.check()
    stop.phase = f"scale run {run.id}"
    began = time.perf_counter()
    result = pretrain(run.recipe, sweep.folder, accelerator, resume=True)
    seconds = time.perf_counter() - began
    if not result.reused:
        sweep.measured.append((run.cost(_vocab(sweep.recipe)), seconds))
    record.update(
        status="done",
        reused=result.reused,
        val_loss=result.val_loss,
        train_wall_s=result.wall_time,
        seconds=round(seconds, 2),
        model_dir=str(result.model_dir),
    )
    sweep.save("running")
    loss = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
    how = "reused from the cache" if result.reused else f"trained in {seconds:.0f}s"
    sweep.say(f"scale: {run.id} ({run.parameters:,} params, {run.tokens:,} tokens) val loss {loss}, {how}")


def _over_budget(sweep: Sweep, run: ScaleRun) -> bool:
    """Whether this run, at the speed measured on the runs trained so far, would end past the budget."""
    if sweep.budget_s is None or not sweep.measured:
        return False
    cost = sum(c for c, _ in sweep.measured)
    seconds = sum(s for _, s in sweep.measured)
    expected = run.cost(_vocab(sweep.recipe)) * seconds / cost
    return time.perf_counter() - sweep.started + expected > sweep.budget_s


def _vocab(recipe: Recipe) -> int:
    return recipe.pretrain.tokenizer.vocab_size
