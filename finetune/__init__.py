"""ft: turn a general language model into a domain model with one recipe.

    from finetune import Recipe, run
    result = run(Recipe.from_yaml("recipes/quickstart.yaml"))

Importing the package registers our core transformer with transformers' Auto
classes, so ``AutoModelForCausalLM.from_pretrained(run_dir)`` works after it.
"""
from __future__ import annotations

from finetune.config import Recipe, RecipeError, load_recipe, recipe_hash
from finetune.errors import UserError
from finetune.model import core as _core  # noqa: F401  (registers "ft_core" with the Auto classes)
from finetune.pipeline import RunResult, run

__version__ = "0.1.0"
__all__ = ["Recipe", "RecipeError", "RunResult", "UserError", "load_recipe", "recipe_hash", "run"]
