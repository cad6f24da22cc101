"""Recipe schema and loading (no torch here)."""

from finetune.config.load import RecipeError, load_recipe, recipe_from_dict, recipe_hash
from finetune.config.schema import Recipe

__all__ = ["Recipe", "RecipeError", "load_recipe", "recipe_from_dict", "recipe_hash"]
