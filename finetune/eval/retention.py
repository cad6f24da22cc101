"""eval.retention: what fine-tuning cost. General ability measured on the base and on the tuned model.

Two probes, both run on each model with the same rows:

- perplexity on general text (chunked into blocks, padding masked, every real token scored): the
  held-out split of this recipe's pretraining corpus when it pretrains (the documents the base never
  trained on, blocked as pretraining blocked them, so the base's number equals its pretraining
  validation loss), else ``eval.retention.text`` or the text shipped with ft;
- other scenarios' test metrics (``eval.retention.scenarios``), evaluated as the main evaluation does,
  with each scenario's own fresh prompt template for both models so the comparison is like for like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config.schema import DataSpec, Recipe, SourceSpec
from finetune.data.tokenized import TokenizedData

GENERAL = "general_text"

# The metric the 'what it cost' table shows for a scenario (first one present); other sets: FALLBACK.
HEADLINE = {
    "content_writing": ("rougeL",),
    "medical_records": ("rougeL",),
    "tutoring": ("exact_match",),
    "financial_analysis": ("accuracy", "gen_accuracy"),
    "risk_assessment": ("mcc", "gen_mcc"),
    "legal": ("accuracy", "gen_accuracy"),
    "diagnosis": ("accuracy", "gen_accuracy"),
    "customer_support": ("accuracy", "gen_accuracy", "policy_fact_accuracy", "rougeL"),
}
FALLBACK = ("mcc", "accuracy", "gen_accuracy", "exact_match", "numeric_em", "rougeL")


@dataclass(frozen=True)
class GeneralText:
    """Where the perplexity probe's text comes from, and how it is cut into blocks."""

    source: str  # said in the report: "pretraining corpus, held-out split", a file path, "shipped general text"
    documents: list[str]
    block: int
    tokens: int  # scored at most


def enabled(recipe: Recipe) -> bool:
    """auto: on when the recipe fine-tunes, so there is a base to compare the tuned model with."""
    setting = recipe.eval.retention.enabled if recipe.eval else False
    return bool(recipe.method) if setting == "auto" else bool(setting)


def headline(name: str, metrics: dict[str, Any]) -> str | None:
    """The metric that stands for a set in the 'what it cost' table."""
    for key in HEADLINE.get(name, ()) + FALLBACK:
        if isinstance(metrics.get(key), (int, float)):
            return key
    return next((k for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("ref_")), None)


def general_text(recipe: Recipe) -> GeneralText:
    """The probe's text: eval.retention.text, else the pretraining held-out split, else the shipped text.

    A file that data.replay also trains on keeps only its held-out share (HELD_OUT) for the probe,
    and the replay trains on the rest (data/replay's caller reads the same split).
    """
    from finetune.data.general_text import pretrain_documents, read_documents, shipped_documents

    spec = recipe.eval.retention
    block = recipe.pretrain.block_size if recipe.pretrain else (recipe.data.max_length if recipe.data else 256)
    if spec.text:
        docs = read_documents(spec.text, "eval.retention.text")
        held, source = held_out_of_replay(recipe, spec.text, docs), spec.text
        note = " (held-out share; replay trains on the rest)" if held is not docs else ""
        return GeneralText(source + note, held, block, spec.tokens)
    if recipe.pretrain:
        _, held = pretrain_documents(recipe.pretrain, recipe.seed)
        return GeneralText("pretraining corpus, held-out split", held, recipe.pretrain.block_size, spec.tokens)
    return GeneralText("general text shipped with ft (synthetic, CC0)", shipped_documents(), block, spec.tokens)


def held_out_of_replay(recipe: Recipe, path: str, docs: list[str]) -> list[str]:
    """The documents of ``path`` that training never sees: all of them unless data.replay reads the same file."""
    from finetune.data.general_text import HELD_OUT, split_held_out

    replay = recipe.data.replay if recipe.data else None
    if replay is None or not replay.text or Path(replay.text).resolve() != Path(path).resolve():
        return docs
    return split_held_out(docs, recipe.seed, HELD_OUT)[1]


def general_blocks(text: GeneralText, tokenizer: Any) -> TokenizedData:
    """The probe's token blocks for one tokenizer (base and tuned share it, so the same rows for both)."""
    from finetune.data.general_text import lm_blocks, token_stream

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return lm_blocks(token_stream(tokenizer, text.documents, limit=text.tokens), text.block, pad)


def perplexity(model: Any, data: TokenizedData, batch_size: int, device: Any) -> dict[str, float]:
    """Token-weighted mean loss over the blocks, its perplexity and the tokens scored (one process)."""
    import torch

    from finetune.train.batching import collate
    from finetune.train.loop import batch_loss

    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(data.examples), batch_size):
            batch = collate(data.examples[start : start + batch_size], data.pad_id)
            s, c = batch_loss(model, {k: v.to(device) for k, v in batch.items()}, None, {"use_cache": False})
            total, count = total + float(s), count + float(c)
    model.train(was_training)
    loss = total / max(count, 1.0)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": int(count)}


def scenario_sets(recipe: Recipe) -> list[Any]:
    """The off-target scenarios' test rows (eval.retention.samples each), as the main evaluation loads them."""
    from finetune.eval.run import eval_sets

    spec = recipe.eval.retention
    if not spec.scenarios:
        return []
    data = DataSpec(sources=[SourceSpec(scenario=name) for name in spec.scenarios])
    probe = recipe.eval.model_copy(update={"data": None, "samples": spec.samples, "decision": "argmax"})
    return eval_sets(data, probe, recipe.seed)


def measure(
    model: Any, tokenizer: Any, recipe: Recipe, text: GeneralText, sets: list[Any], device: Any
) -> dict[str, dict[str, Any]]:
    """Every probe on one model: {general_text: {loss, ppl, tokens}, <scenario>: its metrics}."""
    from finetune.eval.run import evaluate_model, templates_for

    out: dict[str, dict[str, Any]] = {GENERAL: perplexity(model, general_blocks(text, tokenizer), 8, device)}
    if sets:
        shape = recipe.data.shape if recipe.data else "instruction"
        got = evaluate_model(model, tokenizer, templates_for(tokenizer, sets, shape, None), sets, recipe.eval)
        out.update(got["metrics"])
    return out


def cost_rows(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """The 'what it cost' table: the task sets' headline gain beside each retention probe's change.

    Rows: {kind: task | general | off-target, name, metric, before, after, change, relative, kept}; relative is
    the change as a share of the before value, kept the share of the base's ability left (before / after for a
    perplexity, after / before for a metric where higher is better).
    """
    rows = []
    for name, after in ev.get("after", {}).items():
        key = headline(name, after)
        before = ev.get("before", {}).get(name, {})
        if key:
            rows.append(_row("task", name, key, before.get(key), after.get(key)))
    retention = ev.get("retention") or {}
    for name, after in (retention.get("after") or {}).items():
        before = (retention.get("before") or {}).get(name, {})
        key = "ppl" if name == GENERAL else headline(name, after)
        if key:
            rows.append(_row("general" if name == GENERAL else "off-target", name, key, before.get(key), after[key]))
    return rows


def _row(kind: str, name: str, metric: str, before: Any, after: Any) -> dict[str, Any]:
    both = isinstance(before, (int, float)) and isinstance(after, (int, float))
    change = after - before if both else None
    relative = change / before if both and before else None
    kept = None  # share of the base's ability the tuned model keeps: a perplexity kept when it does not rise
    if both and kind != "task" and before and after:
        kept = before / after if metric == "ppl" else after / before
    return {
        "kind": kind,
        "name": name,
        "metric": metric,
        "before": before,
        "after": after,
        "change": change,
        "relative": relative,
        "kept": kept,
    }
