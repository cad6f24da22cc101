"""The fine-tuning stage's preference part: pairs tokenized per split, and the objective with its reference.

The reference DPO measures against is the model before training. How it is held decides memory:
- LoRA / DoRA: the policy itself with its adapter disabled (nothing extra in memory);
- ``method.precompute_reference: true``: the reference log-probs of every pair, computed once before
  training and carried with the pairs, so training holds one model (any kind);
- full fine-tuning otherwise: a frozen copy of the base.
The base is loaded from its folder before a resumed run loads its checkpoint, so precomputed numbers are the
base's on a resume too.
"""

from __future__ import annotations

from typing import Any

from finetune.config.schema import DataSpec, Recipe
from finetune.data.tokenized import TokenizedData


def template_shape(shape: str, source: Any) -> str:
    """The template a source renders with: its pairs' shape (instruction or chat) for preference data."""
    if shape != "preference":
        return shape
    from finetune.data.preference import template_shape as pair_shape

    return pair_shape(source.splits.get("train") or source.splits.get("validation") or [])


def tokenize_pairs_split(
    sources: list[Any], split: str, templates: dict[str, Any], tokenizer: Any, spec: DataSpec, cache: Any = None
) -> tuple[TokenizedData, dict[str, Any]]:
    """One split of every source as token pairs (a source's weight repeats its training pairs); ``cache`` unused:
    pairs are tokenized afresh (a second's work for thousands of pairs)."""
    from finetune.data.preference import tokenize_pairs
    from finetune.data.tokenize import _pad_id

    merged = TokenizedData(examples=[], pad_id=_pad_id(tokenizer))
    stats = {}
    for s in sources:
        rows = s.splits.get(split, [])
        data, stats[s.name] = tokenize_pairs(rows, templates[s.name], tokenizer, spec.max_length, spec.truncation, 0)
        merged.examples.extend(data.examples * (s.weight if split == "train" else 1))
    return merged, stats


def frozen_copy(recipe: Recipe, model: Any) -> Any:
    """The base kept aside as the DPO reference: only for full fine-tuning without precomputed references."""
    method = recipe.method
    if method.objective != "dpo" or method.kind != "full" or method.precompute_reference:
        return None
    import copy

    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref.eval()


def make_objective(
    recipe: Recipe, model: Any, ref: Any, data: list[TokenizedData], accelerator: Any, say: Any
) -> tuple[Any, list[TokenizedData]]:
    """The objective the loop trains with, and the data (with reference log-probs when they are precomputed)."""
    from finetune.train.preference import PreferenceObjective, precompute_reference

    method = recipe.method
    if ref is not None:
        ref.to(accelerator.device)
    objective = PreferenceObjective.from_spec(method, ref)
    if method.objective == "dpo" and method.precompute_reference:
        bs = recipe.train.batch_size
        data = [
            TokenizedData(precompute_reference(model, d.examples, d.pad_id, bs, accelerator.device), pad_id=d.pad_id)
            for d in data
        ]
    say(f"objective {method.objective}: {describe(recipe)}")
    return objective, data


def describe(recipe: Recipe) -> str:
    """One line on the objective and where its reference comes from."""
    m = recipe.method
    passes = "chosen and rejected in two recomputed passes" if m.pair_passes == 2 else "chosen and rejected in one pass"
    if m.objective == "orpo":
        return f"odds-ratio term, lambda {m.orpo_lambda}; no reference model; {passes}"
    if m.precompute_reference:
        where = "reference log-probs precomputed before training (one model in memory)"
    elif m.kind == "full":
        where = "reference: a frozen copy of the base"
    else:
        where = "reference: the base with the adapter disabled (no second copy)"
    rpo = f" + {m.rpo_alpha} x chosen NLL (RPO)" if m.rpo_alpha else ""
    return f"{m.loss_type} loss, beta {m.beta}{rpo}; {where}; {passes}"
