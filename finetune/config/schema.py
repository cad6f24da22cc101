"""The recipe as one strict pydantic tree.

Every model forbids unknown keys, so a misspelled key is an error instead of a
silent no-op. Each field is documented once, here; `ft validate` and the README
show these descriptions. This module must not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ScenarioName = Literal[
    "content_writing",
    "medical_records",
    "tutoring",
    "financial_analysis",
    "risk_assessment",
    "legal",
    "diagnosis",
    "customer_support",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- model
class CoreSpec(Strict):
    """Our own transformer, built from scratch (see finetune/model/core.py)."""

    layers: int = Field(2, ge=1, le=128, description="number of transformer blocks")
    width: int = Field(64, ge=8, le=16384, description="model (embedding) width")
    heads: int = Field(4, ge=1, le=256, description="attention heads; must divide width")
    context_length: int = Field(256, ge=8, le=131072, description="longest sequence the model sees")
    positions: Literal["sinusoidal", "rope", "learned"] = Field("rope", description="position encoding")
    ffn: Literal["relu", "gelu", "swiglu"] = Field("swiglu", description="feed-forward activation")
    ffn_mult: float = Field(4.0, gt=0, le=16, description="feed-forward hidden size / width")
    norm: Literal["layernorm", "rmsnorm"] = Field("rmsnorm", description="pre-norm type")
    tie_embeddings: bool = Field(True, description="share input embedding and output projection")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout probability while training (0: none)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "CoreSpec":
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        return self


class ModelSpec(Strict):
    path: Optional[str] = Field(None, description="local directory (or hub id) of a Hugging Face causal LM")
    revision: Optional[str] = Field(None, description="hub revision when path is a hub id")
    core: Optional[CoreSpec] = Field(None, description="build our core transformer (needs a pretrain section)")
    tokenizer: Optional[str] = Field(None, description="tokenizer directory; default: the model's own")
    trust_remote_code: bool = Field(False, description="allow code from the model folder to run; off by default")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSpec":
        if self.path and self.core:
            raise ValueError("give either model.path or model.core, not both")
        if not self.path and not self.core:
            raise ValueError("give model.path (an existing model) or model.core (our transformer to pretrain)")
        return self


# ---------------------------------------------------------------- training
class LoopSpec(Strict):
    """What one training loop needs; pretraining and fine-tuning each have one (pretrain.train, train)."""

    epochs: float = Field(1.0, gt=0, description="passes over the training data (ignored when max_steps is set)")
    max_steps: Optional[int] = Field(None, ge=1, description="optimizer steps; overrides epochs")
    learning_rate: float = Field(3e-4, gt=0, lt=10, description="peak learning rate")
    batch_size: int = Field(8, ge=1, description="sequences per device per micro-step")
    grad_accum: int = Field(1, ge=1, description="micro-steps per optimizer step")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="AdamW (default) or SGD with momentum")
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay (AdamW); L2 penalty (SGD)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate shape after warmup")
    warmup: float = Field(0.05, ge=0, description="warmup: fraction of steps if < 1, else a step count")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr / peak lr for cosine and linear")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, description="gradient clipping; null disables")
    eval_every: int = Field(0, ge=0, description="validation every N steps (0: only at the end)")
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end)")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept; the latest complete one is never deleted")
    log_every: int = Field(10, ge=1, description="metrics.jsonl / progress update every N steps")
    max_bad_steps: int = Field(5, ge=1, description="non-finite steps in a row before the run stops")


class TrainSpec(LoopSpec):
    """The top-level train section: fine-tuning, plus the settings of the run's one accelerator."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on capable GPUs, fp32 on CPU; one per run, pretraining included"
    )
    gradient_checkpointing: bool = Field(
        False, description="fine-tuning: recompute activations in the backward pass to save memory (slower)"
    )
    log_with: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="offline experiment trackers for the whole run, pretraining included"
    )
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")


class PretrainTrainSpec(LoopSpec):
    """pretrain.train: the loop settings only; precision, trackers and checkpointing are the run's (top-level train)."""

    threads: Optional[int] = Field(
        None, ge=1, description="torch CPU threads while pretraining (default: train.threads, else torch's choice)"
    )


# Keys pretrain.train accepted (and ignored) until it got its own type, with the only values a dump held for them
# unless a user set them: hashes and fingerprints of recipes written before still count them (config/load.py).
RETIRED_PRETRAIN_TRAIN: dict[str, Any] = {"precision": "auto", "gradient_checkpointing": False, "log_with": []}


# ---------------------------------------------------------------- pretraining
class CorpusSpec(Strict):
    kind: Literal["generated", "file", "hf"] = Field("generated", description="generated needs no download")
    path: Optional[str] = Field(None, description="text/JSONL file (kind: file) or dataset id (kind: hf)")
    text_field: str = Field("text", description="JSONL / dataset column holding the text")
    split: str = Field("train", description="dataset split to read (kind: hf)")
    revision: Optional[str] = Field(None, description="dataset revision: a branch, tag or commit (kind: hf)")
    subset: Optional[str] = Field(None, description="dataset configuration name (kind: hf)")
    documents: int = Field(4000, ge=10, description="generated documents (kind: generated)")
    scenarios: Optional[list[ScenarioName]] = Field(
        None,
        description="scenarios whose inputs the generated corpus holds and whose label words the tokenizer "
        "learns as whole tokens (any kind); default: every scenario. Pin the list to keep a base "
        "the same when ft gains scenarios",
    )

    @model_validator(mode="after")
    def _path_needed(self) -> "CorpusSpec":
        if self.kind != "generated" and not self.path:
            raise ValueError(f"corpus kind {self.kind!r} needs a path")
        return self


class TokenizerSpec(Strict):
    vocab_size: int = Field(2048, ge=300, le=262144, description="BPE vocabulary size (byte-level, >= 256 + specials)")
    path: Optional[str] = Field(None, description="reuse this tokenizer directory instead of training one")
    split_digits: bool = Field(True, description="one token per digit, so unseen numbers read like seen ones")


class PretrainSpec(Strict):
    corpus: CorpusSpec = Field(default_factory=CorpusSpec, description="the text the base model is pretrained on")
    tokenizer: TokenizerSpec = Field(
        default_factory=TokenizerSpec, description="byte-level BPE tokenizer trained on the corpus, or one to reuse"
    )
    block_size: int = Field(128, ge=8, description="tokens per training block")
    validation_fraction: float = Field(
        0.05, gt=0, lt=0.5, description="share of corpus documents held out for the validation loss"
    )
    train: PretrainTrainSpec = Field(
        default_factory=PretrainTrainSpec,
        description="the pretraining loop; precision and trackers are the run's (top-level train section)",
    )
    cache: bool = Field(True, description="reuse a pretrained model with identical settings from the cache folder")


# ---------------------------------------------------------------- fine-tuning data
class Fields(Strict):
    """Maps the user's column names to ours."""

    input: Optional[str] = Field(None, description="your column holding the prompt text")
    output: Optional[str] = Field(None, description="your column holding the answer the model learns to write")
    messages: Optional[str] = Field(
        None, description="your column holding a chat: a list of {role, content} (shape: chat)"
    )
    text: Optional[str] = Field(None, description="your column holding plain text, trained on in full (shape: text)")
    label: Optional[str] = Field(
        None, description="your column holding a class label; its values are the allowed labels (classification)"
    )
    group: Optional[str] = Field(
        None, description="your column holding a group attribute, for fairness gaps in evaluation"
    )
    prompt: Optional[str] = Field(
        None, description="your column holding a preference row's prompt: text or chat messages (shape: preference)"
    )
    chosen: Optional[str] = Field(
        None, description="your column holding the preferred completion of the prompt (shape: preference)"
    )
    rejected: Optional[str] = Field(
        None, description="your column holding the dispreferred completion of the prompt (shape: preference)"
    )


class SourceSpec(Strict):
    scenario: Optional[ScenarioName] = Field(
        None, description="generate this scenario's data (or read `path` in its format)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="scenario generator options")
    sizes: Optional[dict[Literal["train", "validation", "test"], int]] = Field(
        None,
        description="rows the scenario generates per split, e.g. {train: 1000, test: 200}; default: the scenario's own",
    )
    path: Optional[str] = Field(None, description="local jsonl/csv/parquet file or a Hugging Face dataset id")
    format: Optional[str] = Field(
        None,
        description="how to read path: a file format (jsonl, json, csv, parquet; default: from the suffix) or one "
        "of the source's scenario's real formats (e.g. mts_dialog with scenario: medical_records)",
    )
    split: Optional[str] = Field(
        None,
        description="a local file: which split its rows are. all (default): carved by seed into train, "
        "validation and test (validation_fraction each; no test part when eval.data is given); "
        "train: every row trains; validation: every row is held out for the validation loss; "
        "test: every row is held out for evaluation. A hub dataset id: the hub split to load "
        "(default train), then carved like all",
    )
    revision: Optional[str] = Field(
        None, description="hub dataset revision: a branch, tag or commit (path is a hub id)"
    )
    subset: Optional[str] = Field(None, description="hub dataset configuration name (path is a hub id)")
    fields: Fields = Field(
        default_factory=Fields,
        description="which of your columns hold our fields, e.g. "
        "{input: text, output: label}; default: columns named like ours",
    )
    system: Optional[str] = Field(
        None, description='system text put before every prompt (default: the scenario\'s; "": none)'
    )
    instruction: Optional[str] = Field(None, description="instruction text put before every input")
    card: Optional[str] = Field(None, description="data card name for this source")
    weight: int = Field(1, ge=1, description="repeat this source's training rows N times")
    proportion: Optional[float] = Field(
        None,
        gt=0,
        le=1,
        description="this source's share of each epoch's training draws (of examples, or of tokens with "
        "data.mix_by: tokens), drawn by seed without replacement until the source is used up, then again; "
        "every training source then needs one and they sum to 1; instead of weight",
    )

    @model_validator(mode="after")
    def _scenario_or_path(self) -> "SourceSpec":
        if not self.scenario and not self.path:
            raise ValueError("a data source needs a scenario or a path")
        return self

    @model_validator(mode="after")
    def _proportion_or_weight(self) -> "SourceSpec":
        if self.proportion is not None and self.weight != 1:
            raise ValueError(
                "proportion and weight are both set; use one (proportion: a share of each epoch; weight: repeats)"
            )
        return self

    @property
    def trains(self) -> bool:
        """Whether the source gives training rows (a local file declared validation or test gives none)."""
        return not (self.is_file and self.split in ("validation", "test"))

    @model_validator(mode="after")
    def _split_and_format_fit(self) -> "SourceSpec":
        if not self.path:
            if self.split is not None or self.format is not None:
                raise ValueError("split and format apply to a file (path); a scenario generates all three splits")
            return self
        if self.format is not None:
            _check_format(self.format, self.scenario)
        if self.split is not None and self.is_file and self.split not in FILE_SPLITS:
            raise ValueError(
                f"split {self.split!r} is not one of {', '.join(FILE_SPLITS)} (for a local file: all "
                "is carved into train/validation/test, the others take every row)"
            )
        return self

    @property
    def is_file(self) -> bool:
        """A local file (as opposed to a hub dataset id): it has a format, a known suffix, or a scenario reads it."""
        return bool(self.path) and (
            self.format is not None
            or self.scenario is not None
            or Path(self.path).suffix.lower().lstrip(".") in FILE_FORMATS
        )


FILE_FORMATS = ("jsonl", "json", "csv", "parquet")
FILE_SPLITS = ("all", "train", "validation", "test")


def scenario_formats(name: str) -> tuple[str, ...]:
    """A scenario's real format names; scenario modules are plain Python (no torch), cheap to import."""
    from finetune import scenarios

    return tuple(scenarios.get(name).formats) if name in scenarios.NAMES else ()


def format_owner(fmt: str) -> str | None:
    """The scenario whose reader knows the real format ``fmt`` (e.g. gsm8k -> tutoring), if any."""
    from finetune.scenarios import NAMES

    return next((name for name in NAMES if fmt in scenario_formats(name)), None)


def _check_format(fmt: str, scenario: str | None) -> None:
    """format: a file format, or a real format of this source's scenario (the scenario's reader is needed)."""
    if scenario is not None and fmt in scenario_formats(scenario):
        return
    if fmt.lower().lstrip(".") in FILE_FORMATS:
        return
    owner = format_owner(fmt)
    if owner is not None and scenario is None:
        raise ValueError(f"format {fmt!r} is read by scenario {owner}; add scenario: {owner} to this source")
    known = ", ".join(FILE_FORMATS + (scenario_formats(scenario) if scenario else ()))
    raise ValueError(
        f"format {fmt!r} is not one of {known}"
        + ("" if scenario else " (a scenario's real format needs scenario: NAME)")
    )


def _scenario_shorthand_schema(schema: dict[str, Any]) -> None:
    """Editors checking a recipe against `ft schema` accept `data: {scenario: x}` too (see _scenario_shorthand)."""
    names = {"enum": list(get_args(ScenarioName)), "type": "string"}
    schema["properties"]["scenario"] = {
        "anyOf": [names, {"type": "array", "items": names}],
        "description": "short for sources: [{scenario: NAME}]; a name or a list of names, put before any sources",
    }


class ReplaySpec(Strict):
    """General text trained beside the task with a plain language-model loss, so the model keeps what it knew."""

    text: Optional[str] = Field(
        None, description="plain-text file (paragraphs split by blank lines) or JSONL with a text field to replay"
    )
    corpus: Optional[Literal["pretrain"]] = Field(
        None, description="pretrain: replay the training split of this recipe's pretraining corpus (needs pretrain)"
    )
    fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="share of the training sequences that are replayed general text, blocks of data.max_length "
        "tokens with every token scored (0: no replay)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "ReplaySpec":
        if (self.text is None) == (self.corpus is None):
            raise ValueError("data.replay needs exactly one of text: FILE or corpus: pretrain")
        return self


class DataSpec(Strict):
    model_config = ConfigDict(json_schema_extra=_scenario_shorthand_schema)

    sources: list[SourceSpec] = Field(default_factory=list, description="scenario generators and/or files, mixed")
    shape: Literal["instruction", "chat", "text", "preference"] = Field(
        "instruction",
        description="instruction: input -> output, the output trained; chat: messages, the assistant "
        "turns trained; text: plain text, all of it trained; preference: prompt, chosen, rejected "
        "(method.objective dpo or orpo), only the completions scored",
    )
    max_length: int = Field(256, ge=8, description="longest training example in tokens, prompt and answer together")
    truncation: Literal["truncate", "drop"] = Field(
        "truncate",
        description="an example over max_length: truncate cuts the prompt from the left first, then the "
        "answer's end; drop leaves it out",
    )
    packing: bool = Field(False, description="concatenate examples into blocks (no cross-example attention)")
    train_on_prompt: bool = Field(False, description="also compute the loss on prompt tokens")
    label_loss: bool = Field(
        True, description="classification rows: add a term scoring the label among the allowed labels only"
    )
    loss_average: Literal["token", "example"] = Field(
        "token",
        description="token: every scored token weighs the same, so long answers outweigh short labels in a mixture; "
        "example: every example weighs the same, its scored tokens share that weight",
    )
    scrub_pii: bool = Field(False, description="replace personal identifiers with typed placeholders before tokenizing")
    on_bad_row: Literal["error", "skip"] = Field(
        "error",
        description="a row missing the fields its shape needs: error names the file and row; skip drops and counts it",
    )
    require_card: bool = Field(False, description="refuse data without a data card")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5, description="for files without a validation split")
    class_balance: Literal["none", "weighted", "oversample"] = Field(
        "none",
        description="classification rows in training: weighted scales each example's loss by n / (classes x "
        "its class's count); oversample repeats rarer classes' examples up to the largest class "
        "(seeded); none trains at the data's own prior",
    )
    mix_by: Literal["examples", "tokens"] = Field(
        "examples",
        description="with sources[].proportion: examples makes each proportion a share of the examples drawn per "
        "epoch; tokens a share of their tokens (a source of long rows then gives fewer rows)",
    )
    examples_per_epoch: Optional[int] = Field(
        None,
        ge=1,
        description="with sources[].proportion: training examples drawn per epoch (train.epochs counts these); "
        "default the sum of the training sources' sizes",
    )
    replay: Optional[ReplaySpec] = Field(
        None, description="mix general text into training against forgetting, e.g. {corpus: pretrain, fraction: 0.05}"
    )

    @model_validator(mode="before")
    @classmethod
    def _scenario_shorthand(cls, value: Any) -> Any:
        """`data: {scenario: x}` is short for `data: {sources: [{scenario: x}]}`."""
        if isinstance(value, dict) and "scenario" in value:
            value = dict(value)
            name = value.pop("scenario")
            names = name if isinstance(name, list) else [name]
            value.setdefault("sources", [])
            value["sources"] = [{"scenario": n} for n in names] + list(value["sources"])
        return value

    @model_validator(mode="after")
    def _proportions_fit(self) -> "DataSpec":
        """Proportions are all or nothing over the training sources and sum to 1, so no share is left implicit."""
        given = [i for i, s in enumerate(self.sources) if s.proportion is not None]
        if not given:
            if self.mix_by != "examples" or self.examples_per_epoch is not None:
                raise ValueError("mix_by and examples_per_epoch need sources[].proportion on the training sources")
            return self
        for i, s in enumerate(self.sources):
            if s.trains and s.proportion is None:
                raise ValueError(f"sources[{i}].proportion is missing; give every training source one, or none")
            if not s.trains and s.proportion is not None:
                raise ValueError(f"sources[{i}].proportion: a split: {s.split} file gives no training rows; drop it")
        if self.packing or self.class_balance == "oversample":
            what = "packing: true" if self.packing else "class_balance: oversample"
            raise ValueError(f"sources[].proportion cannot be combined with {what} yet; drop one of them")
        total = sum(self.sources[i].proportion for i in given)
        if abs(total - 1) > 1e-6:
            parts = " + ".join(f"sources[{i}] {self.sources[i].proportion:g}" for i in given)
            raise ValueError(f"sources[].proportion values sum to {total:g} ({parts}), not 1; make them add up to 1")
        return self


# ---------------------------------------------------------------- method
class FreezeSpec(Strict):
    train_top_blocks: Optional[int] = Field(
        None,
        ge=0,
        description="train only the top k blocks (full), or put the adapter only in them (lora, dora: backward "
        "then stops at the lowest adapted block, so a step costs less)",
    )
    embeddings: bool = Field(False, description="freeze the token embeddings (kind: full)")


class MethodSpec(Strict):
    kind: Literal["full", "lora", "dora"] = Field(
        "lora", description="full: train every weight; lora / dora: train a low-rank adapter beside frozen weights"
    )
    r: int = Field(8, ge=1, le=1024, description="adapter rank (lora, dora)")
    alpha: float = Field(
        16, gt=0, description="adapter scale numerator: the update is scaled by alpha / r (lora, dora)"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input while training (lora, dora)")
    targets: Union[list[str], Literal["default", "all-linear"]] = Field(
        "default", description="module names for the adapter; default: attention projections of known architectures"
    )
    freeze: FreezeSpec = Field(
        default_factory=FreezeSpec, description="parts kept frozen (train_top_blocks: every kind; embeddings: full)"
    )
    objective: Literal["sft", "dpo", "orpo"] = Field(
        "sft",
        description="sft: next-token loss on the answers; dpo / orpo: preference tuning on data.shape: preference "
        "rows (dpo against a reference: the base with the adapter disabled, or a frozen copy for kind full)",
    )
    beta: float = Field(
        0.1, gt=0, description="objective dpo: strength of the pull towards the reference (DPO's beta, IPO's tau)"
    )
    loss_type: Literal["sigmoid", "ipo"] = Field(
        "sigmoid", description="objective dpo: sigmoid (DPO) or ipo (squared loss on per-token log-ratio margins)"
    )
    orpo_lambda: float = Field(0.1, gt=0, description="objective orpo: weight of the odds-ratio term beside the NLL")
    rpo_alpha: float = Field(
        0.0,
        ge=0,
        description="objective dpo: weight of the chosen answer's NLL per token added to each pair's loss (RPO, TRL's "
        "rpo_alpha): keeps DPO from lowering the chosen answers' likelihood along with the rejected ones'; 0: off",
    )
    precompute_reference: bool = Field(
        False,
        description="objective dpo: compute the reference log-probs once before training, so training holds "
        "one model (kind full keeps no frozen copy)",
    )
    pair_passes: Literal[1, 2] = Field(
        2,
        description="objective dpo / orpo: 2 scores the chosen and the rejected rows in two passes whose activations "
        "are recomputed in backward, one side at a time (activation peak of SFT on the same rows, one extra forward); "
        "1: one pass over both (faster, twice the activations); the gradients are the same",
    )

    @model_validator(mode="after")
    def _freeze_is_full_only(self) -> "MethodSpec":
        if self.kind != "full" and self.freeze.embeddings:
            raise ValueError(f"method.freeze.embeddings applies to kind: full, not {self.kind} (its base is frozen)")
        if self.kind != "full" and self.freeze.train_top_blocks == 0:
            raise ValueError(f"method.freeze.train_top_blocks: 0 leaves a {self.kind} adapter nowhere; use at least 1")
        if self.rpo_alpha and self.objective != "dpo":
            raise ValueError(f"method.rpo_alpha applies to objective: dpo, not {self.objective}")
        return self


# ---------------------------------------------------------------- evaluation
class RetentionSpec(Strict):
    """What fine-tuning cost: general ability measured on the base and on the tuned model."""

    enabled: Union[bool, Literal["auto"]] = Field(
        "auto", description="auto: on when the recipe fine-tunes (a base model exists to compare with)"
    )
    text: Optional[str] = Field(
        None,
        description="general text for the perplexity probe (plain text or JSONL with a text field); default: the "
        "held-out split of the pretraining corpus when this recipe pretrains, else the text shipped with ft",
    )
    scenarios: list[ScenarioName] = Field(
        default_factory=list, description="other scenarios whose test metrics are measured as off-target probes"
    )
    samples: int = Field(50, ge=1, description="test examples per off-target scenario")
    tokens: int = Field(65536, ge=64, description="general-text tokens scored at most (the perplexity probe)")


class EvalSpec(Strict):
    before: bool = Field(True, description="evaluate the base model first")
    after: bool = Field(True, description="evaluate the fine-tuned model")
    samples: int = Field(100, ge=1, description="test examples per source")
    max_new_tokens: int = Field(64, ge=1, description="longest generated answer in tokens")
    batch_size: int = Field(16, ge=1, description="prompts generated or scored together")
    do_sample: bool = Field(False, description="sample answers instead of greedy decoding")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (do_sample: true)")
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="nucleus sampling: keep the smallest token set with this probability (do_sample: true)",
    )
    task: Optional[Literal["generation", "classification", "numeric"]] = Field(
        None, description="for user data without a scenario"
    )
    data: Optional[SourceSpec] = Field(None, description="evaluate on this file instead of the sources' test splits")
    numeric_tolerance: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="task numeric: also score answers within this relative tolerance (key numeric_em_tol...)",
    )
    numeric_fallback: Literal["none", "last"] = Field(
        "none",
        description="task numeric: 'last' also scores the last number when the strict rule finds none (key numeric_em_last)",
    )
    label_scores: bool = Field(
        True,
        description="score each labelled row's labels (the constrained choice). false: the generated answer only; "
        "for many labels that share first tokens on a large model, where scoring costs one sequence per row and label",
    )
    decision: Literal["argmax", "tuned"] = Field(
        "argmax",
        description="constrained labels: argmax of the label scores, or per-class log-score offsets tuned on "
        "the validation split to maximise MCC (two labels) or macro-F1 (more), kept only if they beat argmax out of "
        "fold on that split (5-fold check); the report states the rule",
    )
    overlap: Literal["report", "drop"] = Field(
        "report",
        description="test rows sharing a 13-gram (after lower-casing, dropping punctuation and collapsing spaces) or "
        "their whole text with a training row: report counts them in overlap.json and the report; drop also leaves "
        "them out of the evaluation",
    )
    retention: RetentionSpec = Field(
        default_factory=RetentionSpec,
        description="general-text perplexity and off-target scenarios before and after: what fine-tuning cost",
    )

    @model_validator(mode="after")
    def _tuned_needs_scores(self) -> "EvalSpec":
        if self.decision == "tuned" and not self.label_scores:
            raise ValueError("decision: tuned offsets the label scores; it needs label_scores: true")
        return self


class DistributedSpec(Strict):
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto",
        description="several processes: auto and ddp replicate the model; fsdp and deepspeed shard it (GPUs only)",
    )
    fsdp_sharding: Literal["full_shard", "shard_grad_op", "no_shard", "hybrid_shard"] = Field(
        "full_shard", description="strategy fsdp: what is sharded across processes"
    )
    fsdp_wrap: Literal["transformer_block", "size"] = Field(
        "transformer_block",
        description="strategy fsdp: shard unit, one transformer block or a parameter-count threshold",
    )
    zero_stage: Literal[0, 1, 2, 3] = Field(
        2, description="strategy deepspeed: ZeRO stage (1 optimizer state, 2 + gradients, 3 + weights sharded)"
    )
    cpu_offload: bool = Field(False, description="keep parameters (fsdp) or optimizer state (deepspeed) in CPU memory")
    config_file: Optional[str] = Field(None, description="an accelerate config file instead of the options above")


# ---------------------------------------------------------------- scaling laws (ft scale)
class ScalePoint(Strict):
    """One model shape and token budget: the larger run a fitted law predicts before it is made."""

    depth: int = Field(..., ge=1, le=128, description="transformer blocks of the predicted run (model.core.layers)")
    width: int = Field(..., ge=8, le=16384, description="model width of the predicted run (model.core.width)")
    tokens: int = Field(..., ge=1, description="training tokens of the predicted run")


class ScaleSpec(Strict):
    """ft scale: a grid of pretraining runs (model sizes x token budgets) and the scaling laws fitted to them."""

    depths: Optional[list[int]] = Field(
        None, description="model.core.layers of the grid's models (with widths: every depth x width pair)"
    )
    widths: Optional[list[int]] = Field(
        None, description="model.core.width of the grid's models, each divisible by model.core.heads"
    )
    cores: Optional[list[CoreSpec]] = Field(
        None, description="the grid's models as whole core specs, instead of depths x widths"
    )
    tokens: list[int] = Field(
        ...,
        min_length=2,
        description="training tokens per run, each rounded to whole optimizer steps (pretrain.train.batch_size x "
        "pretrain.block_size); every model is trained at every budget, its lr schedule ending at that budget",
    )
    predict: Optional[ScalePoint] = Field(
        None, description="a larger run: the fitted law predicts its loss, then it is trained and measured beside it"
    )
    budget_minutes: Optional[float] = Field(
        None, gt=0, description="wall-clock limit: no run starts that would end past it (ft scale --budget overrides)"
    )
    bootstrap: int = Field(200, ge=0, le=10000, description="bootstrap resamples of the runs for confidence intervals")

    @model_validator(mode="after")
    def _one_grid(self) -> "ScaleSpec":
        if self.cores is not None and (self.depths is not None or self.widths is not None):
            raise ValueError("give scale.cores or scale.depths with scale.widths, not both")
        if self.cores is None and (not self.depths or not self.widths):
            raise ValueError("scale needs depths and widths (a grid), or cores (a list of core specs)")
        return self


# ---------------------------------------------------------------- the recipe
class Recipe(Strict):
    name: str = Field(..., min_length=1, description="run name")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds data order, initialisation and generators")
    output: Optional[str] = Field(None, description="run folder; default runs/<name>")
    resume: Literal["never", "auto"] = Field("never", description="auto: continue from the latest complete checkpoint")
    overwrite: bool = Field(False, description="allow replacing a finished run in the output folder")
    model: ModelSpec = Field(
        ..., description="the model to start from: an existing one (path) or our transformer (core)"
    )
    pretrain: Optional[PretrainSpec] = Field(
        None, description="pretrain model.core from scratch first (needs model.core)"
    )
    data: Optional[DataSpec] = Field(None, description="fine-tuning data (needs method)")
    method: Optional[MethodSpec] = Field(None, description="how to fine-tune: full, lora or dora (needs data)")
    train: TrainSpec = Field(
        default_factory=TrainSpec, description="fine-tuning, and the run's precision, trackers and threads"
    )
    eval: Optional[EvalSpec] = Field(None, description="evaluate before and after fine-tuning on the test splits")
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec, description="how several processes share the work (ft run --processes N)"
    )
    scale: Optional[ScaleSpec] = Field(
        None,
        description="ft scale: pretraining runs over model sizes and token budgets, and scaling laws fitted to them",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value.startswith("."):
            raise ValueError("name must not contain path separators or start with a dot")
        return value

    @model_validator(mode="after")
    def _scale_fits(self) -> "Recipe":
        if self.scale is None:
            return self
        if not (self.pretrain and self.model.core):
            raise ValueError("scale needs model.core and a pretrain section (the settings every run shares)")
        heads = self.model.core.heads
        widths = list(self.scale.widths or []) + ([self.scale.predict.width] if self.scale.predict else [])
        odd = [w for w in widths if w % heads]
        if odd:
            raise ValueError(f"scale width(s) {odd} not divisible by model.core.heads {heads}")
        return self

    @model_validator(mode="after")
    def _stages_fit(self) -> "Recipe":
        if self.model.core and not self.pretrain:
            raise ValueError("model.core needs a pretrain section (or point model.path at a trained model)")
        if self.pretrain and not self.model.core:
            raise ValueError("pretrain needs model.core (the architecture to pretrain)")
        if (self.data is None) != (self.method is None):
            raise ValueError("fine-tuning needs both data and method")
        if self.data is not None and not self.data.sources:
            raise ValueError("data needs at least one source (data.scenario or data.sources)")
        if self.eval and self.eval.data is None and self.data is None:
            raise ValueError("eval needs data: data.sources with scenarios or eval.data")
        if self.data is not None and self.data.replay and self.data.replay.corpus and not self.pretrain:
            raise ValueError("data.replay.corpus: pretrain needs a pretrain section; give data.replay.text: FILE")
        context = self.pretrained_context
        if context and self.data is not None and self.data.max_length > context:
            raise ValueError(
                f"data.max_length {self.data.max_length} exceeds the context of the model this "
                f"recipe pretrains ({context}); raise model.core.context_length or lower data.max_length"
            )
        return self

    @model_validator(mode="after")
    def _objective_fits_data(self) -> "Recipe":
        if self.method is None or self.data is None:
            return self
        preference = self.data.shape == "preference"
        if preference != (self.method.objective != "sft"):
            raise ValueError(
                "data.shape: preference goes with method.objective dpo or orpo, and they with it "
                f"(now shape {self.data.shape}, objective {self.method.objective})"
            )
        if preference and self.data.packing:
            raise ValueError("data.packing does not apply to preference pairs; set data.packing: false")
        return self

    @property
    def pretrained_context(self) -> int | None:
        """Positions of the model this recipe pretrains: the core's context, stretched to fit a block."""
        if self.pretrain and self.model.core:
            return max(self.model.core.context_length, self.pretrain.block_size)
        return None

    @property
    def output_dir(self) -> Path:
        return Path(self.output or f"runs/{self.name}")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> "Recipe":
        """Read and validate a recipe file (all errors at once, as a RecipeError)."""
        from finetune.config.load import load_recipe

        return load_recipe(path, overrides)
