"""What one benchmark run builds and measures: a single JSON-able settings object for parent and children."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class BenchConfig:
    # the model: a tiny Llama (LoRA, full, generation) and our core decoder of the same shape (pretraining)
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 688
    vocab: int = 8000
    # the data: instruction examples rendered with our template, kept when 20..max_length tokens long
    train_rows_per_scenario: int = 400
    min_tokens: int = 20
    max_length: int = 250
    examples: int = 240  # the workload of a fine-tuning contender: one epoch over these
    pretrain_blocks: int = 96  # the workload of a pretraining contender: one epoch over these blocks
    block_size: int = 256
    batch_size: int = 8
    warmup_steps: int = 3  # excluded from the timed window (allocator, first-call dispatch)
    gen_prompts: int = 32
    gen_new_tokens: int = 32
    gen_batch_size: int = 16
    threads: int = 2
    seed: int = 0
    reps: int = 3
    lr: float = 3e-4
    # the adapter of every LoRA contender: rank, alpha, and "all-linear" or comma-separated module names
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BenchConfig":
        return cls(**json.loads(text))

    def assets_key(self) -> str:
        """Hash of the settings the built model and data depend on (timing settings excluded)."""
        keep = (
            "hidden",
            "layers",
            "heads",
            "intermediate",
            "vocab",
            "train_rows_per_scenario",
            "min_tokens",
            "max_length",
            "examples",
            "pretrain_blocks",
            "block_size",
            "gen_prompts",
            "seed",
        )
        data = {k: v for k, v in asdict(self).items() if k in keep}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    # one repetition, smaller workloads: a first look in a few minutes
    "quick": {"reps": 1, "examples": 160, "pretrain_blocks": 64, "gen_prompts": 16},
    # a tiny model and a handful of examples: exercises every code path in seconds (tests)
    "smoke": {
        "hidden": 32,
        "layers": 2,
        "heads": 2,
        "intermediate": 64,
        "vocab": 600,
        "train_rows_per_scenario": 24,
        "max_length": 120,
        "examples": 40,
        "pretrain_blocks": 24,
        "block_size": 32,
        "batch_size": 4,
        "warmup_steps": 1,
        "gen_prompts": 6,
        "gen_new_tokens": 4,
        "gen_batch_size": 4,
        "reps": 1,
        "threads": 1,
    },
}


def preset(name: str, **overrides: Any) -> BenchConfig:
    """The named preset with ``overrides`` applied (None values ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    cfg = replace(BenchConfig(), **PRESETS[name])
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class RunRecord:
    """What a child reports for one contender and one repetition."""

    contender: str
    rep: int
    tokens_per_s: float  # non-padding tokens per second in the timed window (generation: new tokens)
    tokens: int
    seconds: float
    steps: int
    peak_rss_mb: float
    setup_rss_mb: float  # RSS just before the timed work: imports, model and data
    matmul_params: int  # weights of every Linear, for 6*N*tokens/s
    extra: dict[str, Any] = field(default_factory=dict)
