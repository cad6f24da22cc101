"""ft: turn a general language model into a domain model with one recipe.

    from finetune import Recipe, run
    result = run(Recipe.from_yaml("recipes/quickstart.yaml"))

Importing the package is light (no torch, no transformers), so ``ft validate`` and
``ft cards`` answer at once. ``import finetune.model`` registers our core transformer
with transformers' Auto classes, so ``AutoModelForCausalLM.from_pretrained(run_dir)``
works after it; ft's own loaders do that themselves.
"""

from __future__ import annotations

from finetune.config import Recipe, RecipeError, load_recipe, recipe_hash
from finetune.errors import UserError
from finetune.pipeline import RunResult, run

__version__ = "0.1.0"
__all__ = ["Recipe", "RecipeError", "RunResult", "UserError", "load_recipe", "recipe_hash", "run"]
