"""A recipe explained field by field (`ft validate --explain`) and its JSON Schema (`ft schema`).

Both read the field descriptions in config/schema.py, so a key is documented in one
place and editors, the CLI and the README agree. No torch here.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from finetune.config.load import nested_model
from finetune.config.schema import Recipe

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
VALUE_WIDTH = 24  # longer values push the rest of their line right instead of widening every line


def recipe_json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema as editors read it (yaml-language-server and the like)."""
    schema = Recipe.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "ft recipe"}


def schema_text() -> str:
    """The schema as `ft schema` prints it and recipe.schema.json holds it: stable, so the shipped copy can be compared."""
    return json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False)


def explain_lines(recipe: Recipe) -> list[str]:
    """One line per field: dotted path, resolved value, the default when it differs, the description."""
    rows = list(_rows(Recipe, recipe.model_dump(mode="json"), ""))
    width = max(len(path) for path, _, _ in rows)
    lines = []
    for path, value, note in rows:
        lines.append(f"{path:<{width}}  {value:<{VALUE_WIDTH}}  {note}".rstrip())
    return lines


def _rows(model: type[BaseModel], data: dict[str, Any], prefix: str) -> Iterator[tuple[str, str, str]]:
    """Walk the dumped recipe beside its model classes; sections given are opened, sections not given are one line."""
    for name, field in model.model_fields.items():
        path, value = prefix + name, data.get(name)
        nested = nested_model(field.annotation)
        if nested is not None and isinstance(value, dict):
            yield from _rows(nested, value, path + ".")
        elif nested is not None and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                yield from _rows(nested, item, f"{path}.{i}.")
        else:
            yield path, show(value), _note(field, value)


def _note(field: FieldInfo, value: Any) -> str:
    """The default, when the recipe changed it, then what the field does."""
    description = field.description or ""
    if field.is_required():
        return description
    default = _jsonable(field.get_default(call_default_factory=True))
    if default == value:
        return description
    return f"(default {show(default)}) {description}".rstrip()


def _jsonable(value: Any) -> Any:
    """A default as the dump would hold it (tuples become lists, models dicts), to compare with the dumped value."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def show(value: Any) -> str:
    """A value as one line of YAML flow style: what the user would write in the recipe."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()
