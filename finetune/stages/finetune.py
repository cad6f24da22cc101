"""Fine-tuning stage: sources -> scrub PII -> format -> tokenize (cached) -> weigh -> pack -> method -> train -> save.

The template used for training is saved beside the model as ``ft_template.json``
(one per data source), so generation and evaluation render prompts exactly as
training did.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.config.load import section_hash
from finetune.config.schema import Recipe
from finetune.data.tokenized import TokenizedData
from finetune.errors import UserError
from finetune.stages import preference as pref
from finetune.stages.result import StageResult, TrainingCost


@dataclass
class FinetuneResult(StageResult):
    model_dir: Path
    method: str
    trainable_params: int
    total_params: int
    base_val_loss: float | None
    val_loss: float | None
    tokens: int
    steps: int
    wall_time: float
    padding_fraction: float
    packing: bool
    skipped_rows: int
    scrub_counts: dict[str, int] = field(default_factory=dict)
    cards: dict[str, str | None] = field(default_factory=dict)
    data_stats: dict[str, Any] = field(default_factory=dict)
    objective: str = "sft"
    preference: dict[str, float] = field(default_factory=dict)  # the last validation pass's pair numbers (dpo, orpo)
    replay: dict[str, Any] = field(default_factory=dict)  # data.replay: rows, fraction, tokens, source

    def summary(self) -> dict[str, Any]:
        skip = ("model_dir", "data_stats", "cards", "scrub_counts", "replay")
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def report_dict(self) -> dict[str, Any]:
        """Every field: also what run.json records, from which a resumed run rebuilds this result."""
        return {**asdict(self), "model_dir": str(self.model_dir)}

    def training_cost(self) -> TrainingCost:
        return TrainingCost(self.tokens, self.wall_time, self.total_params, self.trainable_params)


def finetune(recipe: Recipe, run_dir: Path, base: str, accelerator: Any, resume: bool) -> FinetuneResult:
    from finetune import methods
    from finetune.data.format import TEMPLATE_FILE, Template
    from finetune.data.sources import load_sources, require_training_rows
    from finetune.data.tokenize import truncation_warning
    from finetune.model.hf import load_config, load_model
    from finetune.model.tokenizer import load_tokenizer
    from finetune.train.loop import evaluate_loss, train

    spec = recipe.data
    say = accelerator.print
    check_context(
        load_config(base, trust_remote_code=recipe.model.trust_remote_code, revision=recipe.model.revision),
        spec.max_length,
    )
    tokenizer = load_tokenizer(recipe.model.tokenizer or base, recipe.model.trust_remote_code, recipe.model.revision)
    carve_test = recipe.eval is None or recipe.eval.data is None
    sources = load_sources(spec, recipe.seed, carve_test=carve_test, say=say)
    require_training_rows(sources)
    overlap = check_overlap(recipe, sources, run_dir, accelerator.is_main_process, say)
    cards = check_cards(sources, spec.require_card, say)
    scrub_counts = scrub_sources(sources, run_dir, accelerator.is_main_process) if spec.scrub_pii else {}
    templates = {
        s.name: Template.for_tokenizer(tokenizer, s.system, s.instruction, pref.template_shape(spec.shape, s))
        for s in sources
    }
    cache = _token_cache()
    split = pref.tokenize_pairs_split if spec.shape == "preference" else tokenize_split
    bounds: list[int] = []  # where each source's training examples end, for data.sources[].proportion
    extra = {} if spec.shape == "preference" else {"bounds": bounds}
    train_data, train_stats = split(sources, "train", templates, tokenizer, spec, cache, **extra)
    val_data, val_stats = split(sources, "validation", templates, tokenizer, spec, cache)
    if spec.loss_average == "example":
        from finetune.data.tokenized import weigh_examples

        train_data, val_data = weigh_examples(train_data), weigh_examples(val_data)
    if spec.class_balance != "none":  # training split only: the validation loss stays at the data's own prior
        train_data = _balance(train_data, spec.class_balance, recipe.seed, _label_names(sources, tokenizer), say)
    replayed: dict[str, Any] = {}
    if spec.replay and spec.replay.fraction > 0:  # after weighing and balancing: replay rows get weights of their own
        train_data, replayed = _replay(recipe, tokenizer, train_data, say)
    for name, stats in train_stats.items():
        say(
            f"data {name}: {stats['examples']} training examples, {stats['truncated']} truncated, "
            f"{stats['dropped']} dropped" + (" (tokenization reused from cache)" if stats["cached"] else "")
        )
        warning = truncation_warning(name, stats, spec.max_length)
        if warning:
            say(warning)

    model = load_model(base, trust_remote_code=recipe.model.trust_remote_code, revision=recipe.model.revision)
    packing, forward_kwargs = _packing(recipe, model, say)
    if packing:
        from finetune.data.pack import pack

        train_data = pack(train_data, spec.max_length)
    ref = pref.frozen_copy(recipe, model) if spec.shape == "preference" else None
    model = methods.prepare(model, recipe.method)
    if recipe.train.gradient_checkpointing:
        methods.enable_checkpointing(model)
    trainable, total = methods.count_trainable(model)
    say(f"method {recipe.method.kind}: {methods.describe(model)}")
    model.to(accelerator.device)
    objective = None
    if spec.shape == "preference":
        objective, (train_data, val_data) = pref.make_objective(
            recipe, model, ref, [train_data, val_data], accelerator, say
        )
    base_val = (
        evaluate_loss(model, val_data, recipe.train.batch_size, accelerator, objective) if len(val_data) else None
    )
    with accelerator.main_process_first():  # one process reads a new base's weights; the others hit its cache
        content = content_fingerprint(recipe, base)
    fingerprint = {
        "stage": "finetune",
        "model": base,
        "revision": recipe.model.revision,
        "method": section_hash(recipe.method),
        "data": section_hash(spec),
        "seed": recipe.seed,
        "processes": accelerator.num_processes,
        "content": content,
    }
    if not carve_test:  # eval.data is the test set, so files keep their test part for training: other rows
        fingerprint["no_test_part"] = True
    mixture = _mixture(spec, sources, bounds, train_data, say)
    result = train(
        model,
        train_data,
        val_data if len(val_data) else None,
        recipe.train,
        run_dir,
        accelerator,
        seed=recipe.seed,
        fingerprint=fingerprint,
        resume=resume,
        group_by_length=not packing,
        forward_kwargs=forward_kwargs,
        desc="fine-tune",
        mixture=mixture,
        objective=objective,
        probe=_general_probe(recipe, tokenizer, accelerator),
    )
    out = run_dir / "model"
    if accelerator.is_main_process:
        saved = {
            "default": next(iter(templates.values())).to_dict(),
            "sources": {name: t.to_dict() for name, t in templates.items()},
        }
        methods.save_trained(
            accelerator.unwrap_model(model), tokenizer, out, extra_files={TEMPLATE_FILE: json.dumps(saved, indent=1)}
        )
    accelerator.wait_for_everyone()
    say(
        f"fine-tune: held-out loss {_fmt(base_val)} -> {_fmt(result.val_loss)}; "
        f"padding {100 * result.padding_fraction:.1f}% of batch tokens"
    )
    return FinetuneResult(
        model_dir=out,
        method=recipe.method.kind,
        trainable_params=trainable,
        total_params=total,
        base_val_loss=base_val,
        val_loss=result.val_loss,
        tokens=result.tokens,
        steps=result.steps,
        wall_time=result.wall_time,
        padding_fraction=result.padding_fraction,
        packing=packing,
        skipped_rows=sum(s.skipped for s in sources),
        scrub_counts=scrub_counts,
        cards=cards,
        data_stats={
            "train": train_stats,
            "validation": val_stats,
            "splits": {s.name: {**s.split_counts, "note": s.split_note} for s in sources if s.split_note},
            "overlap": _overlap_summary(overlap),
            **({"mixture": mixture.to_dict()} if mixture else {}),
        },
        objective=recipe.method.objective,
        preference=dict(objective.val_stats) if objective is not None else {},
        replay=replayed,
    )


def content_fingerprint(recipe: Recipe, base: str) -> dict[str, str]:
    """sha256 of every local file the run learns from: data files, the base's weights/config/tokenizer, a separate
    tokenizer. Settings cannot tell a CSV rewritten in place or a base overwritten with other weights; this can.
    Generated sources and hub ids have no local bytes and are identified by their settings (and revision)."""
    from finetune.fingerprint import model_digests, source_digests

    content: dict[str, str] = {}
    for source in recipe.data.sources:
        content.update(source_digests(source.path, "data file"))
    if recipe.data.replay and recipe.data.replay.text:
        content.update(source_digests(recipe.data.replay.text, "replay file"))
    content.update(model_digests(base, "base model file"))
    if recipe.model.tokenizer:
        content.update(model_digests(recipe.model.tokenizer, "tokenizer file"))
    return content


def _replay(recipe: Recipe, tokenizer: Any, train_data: TokenizedData, say: Any) -> tuple[TokenizedData, dict]:
    """data.replay: general-text rows appended to the training examples (see data/replay.py)."""
    from finetune.data.general_text import token_stream
    from finetune.data.replay import describe, mix_replay, replay_documents

    spec = recipe.data
    if spec.shape == "preference":
        raise UserError("data.replay applies to instruction, chat and text data, not shape: preference; remove it")
    docs, source = replay_documents(recipe)
    mixed, stats = mix_replay(
        train_data,
        token_stream(tokenizer, docs),
        spec.replay.fraction,
        spec.max_length,
        recipe.seed,
        per_example=spec.loss_average == "example",
    )
    say(describe(stats, source))
    return mixed, {**stats, "source": source}


def _general_probe(recipe: Recipe, tokenizer: Any, accelerator: Any) -> Any:
    """With train.eval_every and eval.retention on: general-text perplexity logged beside each validation loss."""
    from finetune.eval.retention import enabled, general_blocks, general_text
    from finetune.train.loop import evaluate_loss

    if not recipe.train.eval_every or not enabled(recipe):
        return None
    blocks = general_blocks(general_text(recipe), tokenizer)
    if not len(blocks):
        return None

    def probe(model: Any) -> dict[str, float]:
        loss = evaluate_loss(model, blocks, recipe.train.batch_size, accelerator)
        return {"general_loss": loss, "general_ppl": math.exp(min(loss, 50.0))}

    return probe


def check_cards(sources: list[Any], require: bool, say: Any) -> dict[str, str | None]:
    """Which data card each source came with; a missing card is a warning, or an error when required."""
    from finetune.data.cards import find_card

    cards = {}
    for s in sources:
        card = find_card(s.card) if s.card else None
        cards[s.name] = card.name if card else None
        if card is None:
            msg = f"data source {s.name} has no data card" + (f" (named {s.card!r}, not found)" if s.card else "")
            if require:
                raise UserError(msg + "; add one under data_cards/ or set data.require_card: false")
            say(f"warning: {msg}")
    return cards


def scrub_sources(sources: list[Any], run_dir: Path, is_main: bool) -> dict[str, int]:
    """Replace identifiers in what is trained on (train and validation splits); counts go to the run folder."""
    from finetune.data.scrub import scrub_rows

    total: Counter = Counter()
    for s in sources:
        for split in ("train", "validation"):
            fields = ("input", "output", "text")
            s.splits[split], counts = scrub_rows(s.splits[split], fields=fields)
            total.update(counts)
    if is_main:
        (run_dir / "pii_scrub.json").write_text(json.dumps(dict(total), indent=1, sort_keys=True))
    return dict(total)


def tokenize_split(
    sources, split, templates, tokenizer, spec, cache, bounds: list[int] | None = None
) -> tuple[TokenizedData, dict[str, Any]]:
    """Tokenize one split of every source and merge them (label sets renumbered into one registry).

    ``bounds`` (if given) receives where each source's examples end in the merged list.
    """
    from finetune.data.tokenize import tokenize_rows

    merged = TokenizedData(examples=[], choice_sets=[], pad_id=tokenizer.pad_token_id)
    stats = {}
    for s in sources:
        rows = s.splits.get(split, [])
        data, stats[s.name] = tokenize_rows(rows, templates[s.name], tokenizer, spec, cache)
        repeat = s.weight if split == "train" else 1
        merged.examples.extend(_renumber(data, merged.choice_sets) * repeat)
        if bounds is not None:
            bounds.append(len(merged.examples))
    if any("choice_index" in e for e in merged.examples):
        for e in merged.examples:
            e.setdefault("choice_index", [-1] * len(e["input_ids"]))
    return merged, stats


def check_overlap(recipe: Recipe, sources: list[Any], run_dir: Path, is_main: bool, say: Any) -> dict[str, Any]:
    """Test rows that training rows already hold (13-grams, whole text): overlap.json, a warning per test set."""
    from finetune.data import overlap

    result = overlap.check_recipe(recipe, sources)
    if is_main:
        overlap.write(result, run_dir)
    for line in overlap.summary_lines(result):
        say(line)
    return result


def _overlap_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the report shows: overlap.json less the row numbers (they stay in the file)."""
    return {**result, "tests": [{k: v for k, v in t.items() if k != "ids"} for t in result["tests"]]}


def _mixture(spec: Any, sources: list[Any], bounds: list[int], train_data: TokenizedData, say: Any) -> Any:
    """data.sources[].proportion: each epoch's draw per source (finetune/data/mixing.py); None without proportions."""
    if not any(s.proportion is not None for s in spec.sources):
        return None
    from finetune.data.mixing import plan_mixture

    if not bounds or bounds[-1] != len(train_data):  # rows added or merged after tokenizing belong to no source
        raise UserError(
            "data.sources[].proportion cannot be combined with data.packing, class_balance: oversample, data.replay "
            "or shape: preference yet; remove the proportions (weight repeats a source) or those settings"
        )
    starts = [0, *bounds[:-1]]
    trains = [i for i, s in enumerate(spec.sources) if s.trains]
    mixture = plan_mixture(
        names=[sources[i].name for i in trains],
        groups=[list(range(starts[i], bounds[i])) for i in trains],
        proportions=[spec.sources[i].proportion for i in trains],
        lengths=[len(e["input_ids"]) for e in train_data.examples],
        by=spec.mix_by,
        per_epoch=spec.examples_per_epoch,
    )
    say(mixture.describe())
    return mixture


def _renumber(data: TokenizedData, sets: list[list[int]]) -> list[dict[str, list[int]]]:
    if not data.choice_sets:
        return data.examples
    mapping = {}
    for i, s in enumerate(data.choice_sets):
        if s not in sets:
            sets.append(s)
        mapping[i] = sets.index(s)
    return [
        {**e, "choice_index": [mapping.get(c, -1) if c >= 0 else -1 for c in e["choice_index"]]}
        if "choice_index" in e
        else e
        for e in data.examples
    ]


def _label_names(sources: list[Any], tokenizer: Any) -> dict[int, str]:
    """First token id -> label, so the balance line names classes as the data does, not by a token piece."""
    names: dict[int, str] = {}
    for choices in {tuple(r["choices"]) for s in sources for r in s.splits["train"] if r.get("choices")}:
        for c in choices:
            ids = tokenizer(c, add_special_tokens=False)["input_ids"]
            if ids:
                names.setdefault(ids[0], c)
    return names


def _balance(data: TokenizedData, mode: str, seed: int, names: dict[int, str], say: Any) -> TokenizedData:
    """data.class_balance on the training split, with a line saying what each class had and now weighs."""
    from finetune.data.tokenized import balance_classes, class_counts

    before = class_counts(data)
    out = balance_classes(data, mode, seed)
    if not before:
        say(f"warning: data.class_balance {mode}: no training example has a label decision; nothing balanced")
        return out
    after = class_counts(out)
    parts = [
        f"{names.get(key[1], key[1])} {before[key]}" + (f"->{after[key]}" if after[key] != before[key] else "")
        for key in sorted(before)
    ]
    say(
        f"class balance {mode}: training examples per class "
        + ", ".join(parts)
        + (" (each class now weighs the same in the loss)" if mode == "weighted" else "")
    )
    return out


def check_context(config: Any, max_length: int) -> None:
    """Sequences longer than the model's positions fail (learned tables) or extrapolate silently (RoPE)."""
    name = next(
        (n for n in ("max_position_embeddings", "n_positions") if isinstance(getattr(config, n, None), int)), None
    )
    if name and max_length > getattr(config, name):
        raise UserError(
            f"data.max_length {max_length} exceeds the model's context length {getattr(config, name)} "
            f"(config.{name}); lower data.max_length or use a base with a longer context "
            "(model.core.context_length for our own)"
        )


def _packing(recipe: Recipe, model: Any, say: Any) -> tuple[bool, dict[str, Any]]:
    if not recipe.data.packing:
        return False, {}
    from finetune.data.pack import pack_supported, packed_forward_kwargs

    ok, why = pack_supported(model)
    if not ok:
        say(f"packing off: {why}; batches are grouped by length instead")
        return False, {}
    return True, packed_forward_kwargs(model)


def _token_cache() -> Path:
    from finetune.paths import cache_root

    return cache_root() / "tokenized"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
