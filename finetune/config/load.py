"""YAML (safe_load) + dotted key=value overrides -> Recipe, with every error at once.

Errors name the dotted path and, for unknown keys, the closest known key, so a
typo never silently does nothing.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from finetune.config.schema import RETIRED_PRETRAIN_TRAIN, Recipe
from finetune.errors import UserError


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice: YAML keeps the last silently, we refuse it."""

    def __init__(self, key: str, line: int, first_line: int):
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(f"line {line}: key {key!r} appears twice (first on line {first_line}); keep one of them")


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses duplicate keys: with two ``train:`` sections the last one won unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        _refuse_duplicates(self, node)
        return super().construct_mapping(node, deep=deep)


def _refuse_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """Check the keys written in this mapping; keys merged in by ``<<`` may be overridden, as YAML intends."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key; SafeLoader reports it itself
            continue
        if first is not None:
            raise DuplicateKeyError(str(key), line, first)
        seen[key] = line


def strict_safe_load(text: str) -> Any:
    """``yaml.safe_load`` semantics (no object construction), but a duplicate key is an error."""
    return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass


class RecipeError(UserError):
    """A recipe that cannot be used; ``errors`` holds one line per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(
            f"{source}: " + "; ".join(errors)
            if len(errors) == 1
            else f"{source}: {len(errors)} problems\n" + "\n".join(f"  {e}" for e in errors)
        )


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read a recipe file, apply ``key=value`` overrides, validate the whole tree."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(str(path), [f"cannot read the recipe: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(str(path), [f"not UTF-8 text (byte {exc.start}); save the recipe as UTF-8"]) from None
    try:
        data = strict_safe_load(text)
    except DuplicateKeyError as exc:
        raise RecipeError(str(path), [str(exc)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise RecipeError(str(path), [f"not valid YAML ({where}): {getattr(exc, 'problem', exc)}"]) from None
    except RecursionError:
        raise RecipeError(str(path), ["nested too deeply to be a recipe"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(str(path), [f"a recipe is a mapping of keys, got {type(data).__name__}"])
    return recipe_from_dict(data, overrides, source=str(path))


def recipe_from_dict(data: dict[str, Any], overrides: Iterable[str] = (), source: str = "recipe") -> Recipe:
    try:
        data = json.loads(json.dumps(data, default=str))  # deep copy; YAML dates etc. become strings
    except (ValueError, RecursionError):  # a YAML alias that contains itself, or absurd nesting
        raise RecipeError(source, ["a value refers to itself or is nested too deeply (check YAML aliases)"]) from None
    errors: list[str] = []
    for item in overrides:
        try:
            apply_override(data, item)
        except ValueError as exc:
            errors.append(str(exc))
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        errors.extend(format_validation_error(exc, data))
        recipe = None
    if errors:
        raise RecipeError(source, errors)
    return recipe


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in the nested dict; the value is parsed as YAML (1e-4 stays a string; pydantic coerces)."""
    if "=" not in item:
        raise ValueError(f"override {item!r}: expected key=value, e.g. train.learning_rate=1e-4")
    key, _, raw = item.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ValueError(f"override {item!r}: empty key part")
    try:
        value = strict_safe_load(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ValueError(f"override {key}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, (dict, list)):
            raise ValueError(f"override {key}: {'.'.join(parts[:i])} holds a plain value, not keys")
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(f"override {key}: {'.'.join(parts[: i + 1])} is not an index of a list of {len(node)}")
            node = node[int(part)]
            continue
        if not isinstance(node.get(part), (dict, list)):
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if not isinstance(node, (dict, list)):
        raise ValueError(f"override {key}: {'.'.join(parts[:-1])} holds a plain value, not keys")
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ValueError(f"override {key}: {last} is not an index of a list of {len(node)}")
        node[int(last)] = value
    else:
        node[last] = value


def format_validation_error(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # pydantic puts union member names and validator tags in loc; keep only real keys
        loc = [p for p in loc if not p.startswith(("function-", "literal[", "list[", "tuple["))]
        dotted = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(loc)
            lines.append(f"{dotted}: unknown key" + (f"; did you mean {hint}?" if hint else ""))
        elif err["type"] == "missing":
            lines.append(f"{dotted}: required key missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if err["type"].startswith("value_error") else f" (got {err.get('input')!r})"
            lines.append(f"{dotted}: {msg}{shown}")
    return lines


# Keys users guess from other tools, which no spelling distance leads to: guess -> our dotted path.
GUESSED_KEYS: dict[str, str] = {
    **dict.fromkeys(
        (
            "test",
            "test_data",
            "test_file",
            "test_set",
            "eval_data",
            "eval_file",
            "eval_set",
            "evaluation_data",
            "eval_dataset",
            "test_dataset",
        ),
        "eval.data",
    ),
    **dict.fromkeys(("lr", "learningrate", "learning-rate", "lr_rate"), "train.learning_rate"),
    **dict.fromkeys(("num_epochs", "num_train_epochs", "n_epochs"), "train.epochs"),
    **dict.fromkeys(("steps", "num_steps", "train_steps", "total_steps"), "train.max_steps"),
    **dict.fromkeys(("bs", "batch", "per_device_train_batch_size", "train_batch_size"), "train.batch_size"),
    **dict.fromkeys(("gradient_accumulation_steps", "accumulation", "grad_accumulation"), "train.grad_accum"),
    **dict.fromkeys(("dataset", "datasets", "train_data", "train_file", "files", "file"), "data.sources"),
    **dict.fromkeys(
        ("max_seq_length", "max_seq_len", "seq_len", "seq_length", "max_len", "cutoff_len"), "data.max_length"
    ),
    **dict.fromkeys(("base_model", "model_name", "model_name_or_path", "model_id"), "model.path"),
    **dict.fromkeys(("lora", "peft", "adapter", "finetuning_type"), "method"),
    **dict.fromkeys(("lora_r", "rank"), "method.r"),
    **dict.fromkeys(("lora_alpha",), "method.alpha"),
    **dict.fromkeys(("output_dir", "out", "out_dir", "run_dir"), "output"),
    **dict.fromkeys(("metric", "metrics", "eval_task", "task_type"), "eval.task"),
}


# Keys that exist, but elsewhere: dotted path written -> where it goes, and why.
MOVED_KEYS: dict[str, str] = {
    "pretrain.train.precision": "train.precision (one precision per run, pretraining included)",
    "pretrain.train.log_with": "train.log_with (the trackers follow the whole run, pretraining included)",
    "pretrain.train.gradient_checkpointing": "train.gradient_checkpointing (it applies to fine-tuning; "
    "pretraining does not checkpoint activations)",
}


def did_you_mean(loc: list[str]) -> str | None:
    """A key that lives elsewhere, a known guess from other tools, else the closest known key at the same place."""
    if ".".join(loc) in MOVED_KEYS:
        return MOVED_KEYS[".".join(loc)]
    if loc[-1].lower() in GUESSED_KEYS:
        return GUESSED_KEYS[loc[-1].lower()]
    model = _model_at(Recipe, loc[:-1])
    if model is not None:
        match = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
        if match:
            return ".".join(loc[:-1] + match)
    moved = difflib.get_close_matches(".".join(loc), list(MOVED_KEYS), n=1, cutoff=0.9)  # a typo of a moved key
    return MOVED_KEYS[moved[0]] if moved else None


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    for part in path:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        nested = nested_model(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The section type inside a field's annotation (through Optional, list, Union), if the field is a section."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = nested_model(arg)
        if found is not None:
            return found
    return None


# Fields added after runs were written: while at their defaults they are left out of recipe and section hashes
# and of the recipe a resume compares, so a run written before keeps its hash and resumes. A new field goes here
# (tests/test_config.py::test_a_recipe_written_before_keeps_its_hash fails until it does).
ADDED_FIELDS: dict[str, frozenset[str]] = {
    "DataSpec": frozenset({"examples_per_epoch", "mix_by", "replay"}),
    "EvalSpec": frozenset({"label_scores", "overlap", "retention"}),
    "Fields": frozenset({"chosen", "prompt", "rejected"}),
    "MethodSpec": frozenset(
        {"beta", "loss_type", "objective", "orpo_lambda", "pair_passes", "precompute_reference", "rpo_alpha"}
    ),
    "Recipe": frozenset({"scale"}),
    "SourceSpec": frozenset({"proportion"}),
}


def stable_dump(model: BaseModel) -> dict[str, Any]:
    """``model_dump(mode="json")`` without the ADDED_FIELDS that are at their defaults (see above)."""
    return _without_new_defaults(model, model.model_dump(mode="json"))


def _without_new_defaults(value: Any, dumped: Any) -> Any:
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        added = ADDED_FIELDS.get(type(value).__name__, frozenset())
        out = {}
        for name, field in type(value).model_fields.items():
            if name not in dumped:
                continue
            current = getattr(value, name)
            if name in added and current == field.get_default(call_default_factory=True):
                continue
            out[name] = _without_new_defaults(current, dumped[name])
        return out
    if isinstance(value, (list, tuple)) and isinstance(dumped, list) and len(value) == len(dumped):
        return [_without_new_defaults(v, d) for v, d in zip(value, dumped)]
    return dumped


def recipe_hash(recipe: Recipe) -> str:
    """Stable hash of the resolved recipe (key order and YAML formatting do not matter).

    The retired pretrain.train keys count at their old values, and fields added since at their defaults do not
    count, so a recipe keeps the hash it had before.
    """
    data = stable_dump(recipe)
    if data.get("pretrain") is not None:
        data["pretrain"] = with_retired_keys(data["pretrain"])
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_retired_keys(pretrain: dict[str, Any]) -> dict[str, Any]:
    """A dumped pretrain section as dumps held it before pretrain.train lost its ignored keys (for hashes)."""
    return {**pretrain, "train": {**pretrain.get("train", {}), **copy.deepcopy(RETIRED_PRETRAIN_TRAIN)}}


def without_retired_keys(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe dict read from an older run folder, without the pretrain.train keys that never did anything."""
    pretrain = recipe.get("pretrain")
    if not isinstance(pretrain, dict) or not isinstance(pretrain.get("train"), dict):
        return recipe
    train = {k: v for k, v in pretrain["train"].items() if k not in RETIRED_PRETRAIN_TRAIN}
    return {**recipe, "pretrain": {**pretrain, "train": train}}


def section_hash(section: BaseModel | dict | None, *extra: Any) -> str:
    """Hash of part of a recipe (used to key caches such as a pretrained base model)."""
    payload = stable_dump(section) if isinstance(section, BaseModel) else section
    canonical = json.dumps([payload, *extra], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dump_recipe(recipe: Recipe, path: Path) -> None:
    path.write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
