"""The recipe's ``scale:`` section expanded into ordinary pretraining recipes, one per (model, token budget).

Every run is the recipe's own pretraining with two things changed: the core's depth and width, and
``pretrain.train.max_steps``, so that its learning-rate schedule (a pure function of the run's own total
steps, finetune/train/schedule.py) decays to its floor exactly at its token budget. A cosine cut short
would make a short run look worse than the same model trained for that budget, and bias the fit.
All runs share one tokenizer (the sweep trains it once), so their losses are in the same units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune.config.schema import CoreSpec, Recipe

GRID = "grid"
PREDICT = "predict"


@dataclass(frozen=True)
class ScaleRun:
    """One pretraining of the sweep: its shape, its budget and the recipe that makes it."""

    id: str
    role: str  # GRID runs are fitted; the PREDICT run is held out and compared with the law's prediction
    core: CoreSpec
    steps: int
    tokens: int  # D: tokens actually trained, steps x tokens per step
    parameters: int  # N: non-embedding parameters
    recipe: Recipe

    @property
    def flops(self) -> float:
        """Training compute by the usual 6ND count (Kaplan et al. 2020; Hoffmann et al. 2022)."""
        return 6.0 * self.parameters * self.tokens

    def cost(self, vocab: int) -> float:
        """Relative time of the run: 6ND plus the output head, which a tiny model's time is largely spent in."""
        return 6.0 * (self.parameters + vocab * self.core.width) * self.tokens

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "layers": self.core.layers,
            "width": self.core.width,
            "steps": self.steps,
            "tokens": self.tokens,
            "parameters": self.parameters,
            "flops": self.flops,
        }


def tokens_per_step(recipe: Recipe) -> int:
    """Tokens one optimizer step of the recipe's pretraining trains on (one process)."""
    loop = recipe.pretrain.train
    return loop.batch_size * loop.grad_accum * recipe.pretrain.block_size


def steps_for(tokens: int, recipe: Recipe) -> int:
    """Whole optimizer steps nearest to ``tokens`` (at least one)."""
    return max(1, round(tokens / tokens_per_step(recipe)))


def grid_cores(recipe: Recipe) -> list[CoreSpec]:
    """The grid's model shapes: every depth x width over model.core, or the listed cores."""
    spec = recipe.scale
    if spec.cores is not None:
        return list(spec.cores)
    return [shaped(recipe.model.core, depth, width) for depth in spec.depths for width in spec.widths]


def shaped(core: CoreSpec, depth: int, width: int) -> CoreSpec:
    return CoreSpec.model_validate({**core.model_dump(), "layers": depth, "width": width})


def run_id(core: CoreSpec, tokens: int) -> str:
    return f"L{core.layers}-W{core.width}-T{_short(tokens)}"


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def run_recipe(recipe: Recipe, core: CoreSpec, steps: int, tokenizer: str | None, name: str) -> Recipe:
    """The recipe's pretraining with this core and step count, cached, sharing the sweep's tokenizer."""
    data = recipe.model_dump(mode="json")
    data.update(name=f"{recipe.name}-{name}", scale=None, data=None, method=None, eval=None)
    data["model"] = {**data["model"], "core": core.model_dump(mode="json")}
    pre = data["pretrain"]
    pre["cache"] = True  # finished runs are found again by their settings; a killed one resumes in its folder
    pre["train"] = {**pre["train"], "max_steps": steps}
    if tokenizer is not None:
        pre["tokenizer"] = {**pre["tokenizer"], "path": tokenizer}
    return Recipe.model_validate(data)


def non_embedding_parameters(core: CoreSpec) -> int:
    """N of the scaling law: every parameter but the token/position embeddings and the output head.

    Counted on the real module built on the meta device (no memory), so it follows the code.
    """
    import torch

    from finetune.model.core import CoreConfig, CoreForCausalLM

    config = CoreConfig(
        vocab_size=256,
        width=core.width,
        layers=core.layers,
        heads=core.heads,
        context_length=core.context_length,
        positions=core.positions,
        ffn=core.ffn,
        ffn_mult=core.ffn_mult,
        norm=core.norm,
        tie_embeddings=core.tie_embeddings,
    )
    with torch.device("meta"):
        model = CoreForCausalLM(config)
    skip = ("embed_tokens", "embed_positions", "lm_head")
    return sum(p.numel() for name, p in model.named_parameters() if not any(s in name for s in skip))


def expand(recipe: Recipe, tokenizer: str | None) -> list[ScaleRun]:
    """Every grid run, cheapest first (a budget that runs out keeps the most points), then the predict run."""
    vocab = recipe.pretrain.tokenizer.vocab_size
    runs = [
        make_run(recipe, core, tokens, GRID, tokenizer) for core in grid_cores(recipe) for tokens in recipe.scale.tokens
    ]
    runs = sorted(_unique(runs), key=lambda r: r.cost(vocab))
    point = recipe.scale.predict
    if point is not None:
        runs.append(
            make_run(recipe, shaped(recipe.model.core, point.depth, point.width), point.tokens, PREDICT, tokenizer)
        )
    return runs


def make_run(recipe: Recipe, core: CoreSpec, tokens: int, role: str, tokenizer: str | None) -> ScaleRun:
    steps = steps_for(tokens, recipe)
    name = run_id(core, tokens)
    trained = steps * tokens_per_step(recipe)
    return ScaleRun(
        name,
        role,
        core,
        steps,
        trained,
        non_embedding_parameters(core),
        run_recipe(recipe, core, steps, tokenizer, name),
    )


def _unique(runs: list[ScaleRun]) -> list[ScaleRun]:
    """A shape listed twice (or two budgets rounding to one step count) is one run."""
    seen: dict[tuple[str, int], ScaleRun] = {}
    for run in runs:
        seen.setdefault((run.core.model_dump_json(), run.steps), run)
    return list(seen.values())
