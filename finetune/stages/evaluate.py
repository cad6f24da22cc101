"""Evaluation stage: the base model before, the trained model after, on the same rows with the same template."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.config.schema import Recipe
from finetune.eval.retention import enabled as retention_enabled
from finetune.stages.result import StageResult

RESULT_FILE = "eval.json"
PREDICTIONS_FILE = "predictions.jsonl"


@dataclass
class EvalResult(StageResult):
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    examples_per_s: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # before/after -> set -> the decision rule
    warnings: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # before/after -> set -> class warnings
    truncated_prompts: dict[str, dict[str, int]] = field(default_factory=dict)  # before/after -> set -> rows cut to fit
    retention: dict[str, Any] = field(default_factory=dict)  # source, before/after -> probe -> metrics (eval.retention)

    def summary(self) -> dict[str, Any]:
        """Every metric as "set.metric.before|after"."""
        out = {}
        for when, by_set in (("before", self.before), ("after", self.after)):
            for source, metrics in by_set.items():
                out.update({f"{source}.{k}.{when}": v for k, v in metrics.items()})
        for when in ("before", "after"):
            for probe, metrics in (self.retention.get(when) or {}).items():
                out.update({f"retention.{probe}.{k}.{when}": v for k, v in metrics.items()})
        return out

    def report_dict(self) -> dict[str, Any]:
        """Every field: also eval.json, from which the other processes rebuild this result."""
        return asdict(self)


def evaluate_run(recipe: Recipe, run_dir: Path, base: str | None, final: Path | None, accelerator: Any) -> EvalResult:
    """Runs on the main process (generation is cheap next to training); the others read its result."""
    if accelerator.is_main_process:
        result = _evaluate(recipe, base, final, accelerator.device, accelerator.print, run_dir / PREDICTIONS_FILE)
        (run_dir / RESULT_FILE).write_text(json.dumps(result.report_dict(), indent=1))
    accelerator.wait_for_everyone()
    return EvalResult(**json.loads((run_dir / RESULT_FILE).read_text()))


def _evaluate(
    recipe: Recipe, base: str | None, final: Path | None, device: Any, say: Any, predictions: Path | None = None
) -> EvalResult:
    from finetune.eval.predictions import prediction_records, write_predictions
    from finetune.eval.run import eval_sets, evaluate_model, samples, templates_for
    from finetune.methods import load_for_eval
    from finetune.model.hf import load_model
    from finetune.model.tokenizer import load_tokenizer

    spec = recipe.eval
    shape = recipe.data.shape if recipe.data else "instruction"
    sets = eval_sets(recipe.data, spec, recipe.seed)
    if shape == "preference":  # pairs render as their prompts do (instruction or chat), scored on the chosen side
        from finetune.data.preference import template_shape

        shape = template_shape(sets[0].rows)
    tuned = recipe.method is not None and final is not None
    before = after = None
    probe = _Retention(recipe, say) if tuned and retention_enabled(recipe) else None
    if spec.before and tuned or not tuned:
        model = load_model(base, trust_remote_code=recipe.model.trust_remote_code, revision=recipe.model.revision).to(
            device
        )
        tokenizer = load_tokenizer(
            recipe.model.tokenizer or base, recipe.model.trust_remote_code, recipe.model.revision
        )
        say(
            "evaluate: base model (eval.before: true, a second evaluation; set it false to skip)"
            if tuned
            else "evaluate: model"
        )
        before = evaluate_model(model, tokenizer, templates_for(tokenizer, sets, shape, None), sets, spec)
        if probe:
            probe.measure("before", model, tokenizer, device)
        del model
    if probe and "before" not in probe.results:  # eval.before: false still measures what the base could do
        probe.measure_base(base, device)
    if tuned and spec.after:
        model, tokenizer, saved = load_for_eval(final, trust_remote_code=recipe.model.trust_remote_code)
        model.to(device)
        say("evaluate: fine-tuned model")
        after = evaluate_model(model, tokenizer, templates_for(tokenizer, sets, shape, saved), sets, spec)
        if probe:
            probe.measure("after", model, tokenizer, device)
    if not tuned:  # nothing was trained: the one evaluation is the model's result
        before, after = None, before
    if predictions is not None:  # every row's answer, beside eval.json
        write_predictions(
            predictions, prediction_records(sets, before, "before") + prediction_records(sets, after, "after")
        )
    return EvalResult(
        before=before["metrics"] if before else {},
        after=after["metrics"] if after else {},
        samples=samples(sets, before, after),
        examples_per_s=(after or before or {}).get("examples_per_s", {}),
        truncated_prompts={w: r.get("truncated_prompts", {}) for w, r in (("before", before), ("after", after)) if r},
        retention=probe.report() if probe else {},
        **_rules_and_warnings(before, after, say),
    )


def _rules_and_warnings(before: dict[str, Any] | None, after: dict[str, Any] | None, say: Any) -> dict[str, Any]:
    """Each model's decision rule and single-class warnings, said on the console and kept for the report."""
    from finetune.eval.decision import describe

    out: dict[str, Any] = {"decisions": {}, "warnings": {}}
    for when, result in (("before", before), ("after", after)):
        if result is None:
            continue
        out["decisions"][when], out["warnings"][when] = result["decisions"], result["warnings"]
        for name, rule in result["decisions"].items():
            if rule.get("rule") == "tuned":
                say(f"{name} ({when}): {describe(rule)}")
        for name, lines in result["warnings"].items():
            for line in lines:
                say(f"{name} ({when}): {line}")
    return out


class _Retention:
    """eval.retention for one run: the probe text and off-target sets loaded once, measured on each model."""

    def __init__(self, recipe: Recipe, say: Any) -> None:
        from finetune.eval.retention import general_text, scenario_sets

        self.recipe, self.say = recipe, say
        self.text = general_text(recipe)
        self.sets = scenario_sets(recipe)
        self.results: dict[str, dict[str, Any]] = {}

    def measure(self, when: str, model: Any, tokenizer: Any, device: Any) -> None:
        from finetune.eval.retention import GENERAL, measure

        self.results[when] = measure(model, tokenizer, self.recipe, self.text, self.sets, device)
        general = self.results[when][GENERAL]
        self.say(
            f"retention ({when}): perplexity {general['ppl']:.3f} on {general['tokens']:,} tokens of {self.text.source}"
            + "".join(f"; {s.name} probed" for s in self.sets)
        )

    def measure_base(self, base: str, device: Any) -> None:
        from finetune.model.hf import load_model
        from finetune.model.tokenizer import load_tokenizer

        model_spec = self.recipe.model
        model = load_model(base, trust_remote_code=model_spec.trust_remote_code, revision=model_spec.revision)
        tokenizer = load_tokenizer(model_spec.tokenizer or base, model_spec.trust_remote_code, model_spec.revision)
        self.measure("before", model.to(device), tokenizer, device)

    def report(self) -> dict[str, Any]:
        """eval.json's retention section: where the text came from and each model's probes."""
        return {"text": self.text.source, "scenarios": [s.name for s in self.sets], **self.results}
