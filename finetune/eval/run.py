"""Evaluate a model on scenario test splits or a user's file: generate, score labels, compute metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from finetune.config.schema import DataSpec, EvalSpec
from finetune.errors import UserError

Row = dict[str, Any]
N_SAMPLES = 5


@dataclass
class EvalSet:
    name: str
    rows: list[Row]
    system: str | None
    instruction: str | None
    evaluate: Callable[..., dict[str, float]]
    validation: list[Row] = field(default_factory=list)  # labelled rows a tuned decision is chosen on
    parse: Callable[[str, Row], Any] | None = None  # how an answer is read (label, number), for predictions.jsonl


def eval_sets(data: DataSpec | None, spec: EvalSpec, seed: int) -> list[EvalSet]:
    """What to evaluate: eval.data (all its rows) or each data source's test split."""
    from finetune import scenarios
    from finetune.data.sources import load_sources
    from finetune.eval.generic import evaluator, parser, with_choices
    from finetune.eval.predictions import answer_parser

    if spec.data is not None:
        loaded = load_sources(DataSpec(sources=[spec.data]), seed)
    else:
        loaded = load_sources(data, seed)
    from finetune.data.overlap import dropped_ids, evaluated_rows, without

    dropped = dropped_ids(data, spec, seed, loaded)  # eval.overlap: drop, test rows training data holds
    out = []
    for src, drop in zip(loaded, dropped):
        rows = without(evaluated_rows(src, whole=spec.data is not None), drop)[: spec.samples]
        if not rows:
            raise UserError(f"evaluation data {src.name} has no rows")
        if src.scenario and not (spec.data and spec.task):
            fn = scenarios.get(src.scenario).evaluate
            parse = answer_parser(src.scenario)
        else:
            task = spec.task or "generation"
            fn = evaluator(task, spec.numeric_tolerance, spec.numeric_fallback)
            parse = parser(task, spec.numeric_fallback)
            if task == "classification":
                rows = with_choices(rows)
        validation = _validation_rows(src, rows, data, spec, seed) if spec.decision == "tuned" else []
        out.append(EvalSet(src.name, rows, src.system, src.instruction, fn, validation, parse=parse))
    return out


def _validation_rows(src: Any, rows: list[Row], data: DataSpec | None, spec: EvalSpec, seed: int) -> list[Row]:
    """Where a tuned decision is chosen: the source's validation split, or with eval.data the recipe sources' ones.

    Only rows labelled within the eval set's label set take part, given that set as their choices.
    """
    from collections import Counter

    from finetune.data.sources import load_sources

    sets = Counter(tuple(r["choices"]) for r in rows if r.get("choices"))
    if not sets:
        return []
    labels = list(sets.most_common(1)[0][0])
    if spec.data is None:
        pool = src.splits["validation"]
    else:
        # carved as the fine-tune stage carves it when eval.data is the test set: the validation rows it held out
        pool = [
            r
            for s in (load_sources(data, seed, carve_test=False) if data is not None else [])
            for r in s.splits["validation"]
        ]
    return [
        {**r, "output": str(r.get("output", "")).strip(), "choices": labels}
        for r in pool
        if str(r.get("output", "")).strip() in labels and set(r.get("choices") or labels) == set(labels)
    ]


def evaluate_model(
    model: Any, tokenizer: Any, templates: dict[str, Any], sets: list[EvalSet], spec: EvalSpec
) -> dict[str, Any]:
    """Metrics, predictions and speed per eval set for one model."""
    from finetune.eval.generate import generate
    from finetune.eval.label_scores import first_token_ids, label_probs, renormalised

    results: dict[str, Any] = {"metrics": {}, "predictions": {}, "examples_per_s": {}, "decisions": {}, "warnings": {}}
    for s in sets:
        template = templates[s.name]
        prompts = [template.prompt(r) for r in s.rows]
        started = time.perf_counter()
        cut: dict[str, int] = {}  # rows whose prompt was cut from the left to fit the context
        preds = [""] * len(prompts)
        firsts = first_token_ids(tokenizer, [r.get("choices") if spec.label_scores else None for r in s.rows])
        first_scores: list[list[float] | None] = [None] * len(prompts)
        for rows, limit in _generation_groups(tokenizer, s.rows, spec.max_new_tokens):
            wanted = [firsts[i] for i in rows] if any(firsts[i] for i in rows) else None
            got_first: list[list[float] | None] = [None] * len(rows)
            answers = generate(
                model,
                tokenizer,
                [prompts[i] for i in rows],
                max_new_tokens=limit,
                batch_size=spec.batch_size,
                do_sample=spec.do_sample,
                temperature=spec.temperature,
                top_p=spec.top_p,
                stats=cut,
                score_ids=wanted,
                first_scores=got_first,
            )
            for i, answer, first in zip(rows, answers, got_first):
                preds[i] = answer
                first_scores[i] = first
        results.setdefault("truncated_prompts", {})[s.name] = cut.get("truncated", 0)
        results["examples_per_s"][s.name] = len(prompts) / max(time.perf_counter() - started, 1e-9)
        probs = None
        scored = [i for i, r in enumerate(s.rows) if r.get("choices")] if spec.label_scores else []
        if scored:
            probs = [{} for _ in s.rows]
            for i in scored:  # decided by their first token in generation's own first step
                if first_scores[i] is not None:
                    probs[i] = renormalised(s.rows[i]["choices"], first_scores[i])
            rest = [i for i in scored if first_scores[i] is None]  # whole labels, cut prompts, sampled answers
            got = label_probs(
                model,
                tokenizer,
                [prompts[i] for i in rest],
                [s.rows[i]["choices"] for i in rest],
                batch_size=spec.batch_size * 2,
            )
            for i, p in zip(rest, got):
                probs[i] = p
        raw = probs  # the model's own label scores, before any decision rule
        if probs is not None:  # only constrained label scores have a decision rule
            rule: dict[str, Any] = {"rule": "argmax"}
            if spec.decision == "tuned":
                probs, rule = _tuned(model, tokenizer, template, s, probs, spec)
            results["decisions"][s.name] = rule
        results["warnings"][s.name] = _class_warnings(s.rows, probs)
        results.setdefault("label_probs", {})[s.name] = (raw, probs)  # scores and decided scores, for predictions.jsonl
        results["metrics"][s.name] = s.evaluate(preds, s.rows, probs)
        results["predictions"][s.name] = preds
    return results


# Tokens a classification answer may take beyond its longest label: room for an "Answer:"-like field name and
# for the word to go on (parse_label needs the label to end a word), so the parsed label is what a long answer gives.
LABEL_ANSWER_SLACK = 8


def _generation_groups(tokenizer: Any, rows: list[Row], max_new_tokens: int) -> list[tuple[list[int], int]]:
    """Row indices and their answer budget: rows with labels get their longest label + slack, the rest max_new_tokens.

    The ``gen_`` metrics of a classification row read only the label its answer starts with; an untrained base
    would otherwise write all max_new_tokens tokens for every such row, most of an evaluation's time.
    """
    from finetune.data.format import encode_plain

    labelled = [i for i, r in enumerate(rows) if r.get("choices")]
    free = [i for i, r in enumerate(rows) if not r.get("choices")]
    groups = [(free, max_new_tokens)] if free else []
    if labelled:
        labels = {c for i in labelled for c in rows[i]["choices"]}
        longest = max(len(encode_plain(tokenizer, c)) for c in labels)
        groups.append((labelled, min(max_new_tokens, longest + LABEL_ANSWER_SLACK)))
    return groups


def _tuned(
    model: Any, tokenizer: Any, template: Any, s: EvalSet, probs: list[dict[str, float]], spec: EvalSpec
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Offsets chosen on the validation rows' label scores, applied to the test rows' scores before scoring."""
    from finetune.eval.decision import apply_offsets, tune_offsets
    from finetune.eval.label_scores import label_probs

    if not s.validation:
        return probs, {"rule": "tuned", "tuned": None, "rows": 0, "why": "no labelled validation rows were found"}
    val = label_probs(
        model,
        tokenizer,
        [template.prompt(r) for r in s.validation],
        [r["choices"] for r in s.validation],
        batch_size=spec.batch_size * 2,
    )
    offsets, measured = tune_offsets(val, [r["output"] for r in s.validation])
    return apply_offsets(probs, offsets), {"rule": "tuned", "offsets": offsets, **measured}


def _class_warnings(rows: list[Row], probs: list[dict[str, float]] | None) -> list[str]:
    """The single-class / dominant-class check on the constrained predictions (as decided)."""
    from finetune.eval.decision import class_warning, decide

    if probs is None:
        return []
    scored = [(decide(p, {}), r["output"]) for p, r in zip(probs, rows) if p]
    warning = class_warning([p for p, _ in scored], [t for _, t in scored])
    return [warning] if warning else []


def templates_for(tokenizer: Any, sets: list[EvalSet], shape: str, saved: dict[str, Any] | None) -> dict[str, Any]:
    """The saved training templates when the model has them, else fresh ones for its tokenizer."""
    from finetune.data.format import Template

    out = {}
    for s in sets:
        if saved:
            data = saved["sources"].get(s.name) or saved["default"]  # as methods.saved_templates checked it
            out[s.name] = Template.from_dict(data)
        else:
            out[s.name] = Template.for_tokenizer(tokenizer, s.system, s.instruction, shape)
    return out


def samples(sets: list[EvalSet], before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list[dict]]:
    out = {}
    for s in sets:
        items = []
        for i, row in enumerate(s.rows[:N_SAMPLES]):
            item = {"input": row.get("input", ""), "reference": row.get("output", "")}
            if before:
                item["before"] = before["predictions"][s.name][i]
            if after:
                item["after"] = after["predictions"][s.name][i]
            items.append(item)
        out[s.name] = items
    return out
