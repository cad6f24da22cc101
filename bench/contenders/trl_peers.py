"""TRL's SFTTrainer with LoRA: its defaults, its two packing strategies, and completion-only loss (bench.real_speed).

Only what cannot run on a CPU is changed from TRL's defaults (bf16 off, gradient
checkpointing off), plus what makes the workload the same as everyone's: batch
size, one epoch, learning rate, max_length = our max_length (TRL's default 1024
would make its packed blocks 4x longer), no saving, no trackers. The dataset is
our tokenized examples (input_ids + labels), which TRL takes as already processed.
"""

from __future__ import annotations

import tempfile
from typing import Any

from bench.assets import Assets
from bench.config import BenchConfig
from bench.contenders import common
from bench.measure import StepClock

VARIANTS = {
    "default": {},
    "bfd": {"packing": True, "packing_strategy": "bfd"},  # best-fit decreasing; TRL turns padding-free on
    "wrapped": {"packing": True, "packing_strategy": "wrapped"},  # cuts examples at block edges
    # Completion-only loss the way TRL documents it: the dataset gives a completion_mask and TRL builds the labels.
    "completion": {"completion_only_loss": True},
    # ... with batches of similar lengths (the Trainer's group_by_length), the padding ft's batches avoid
    "completion_grouped": {"completion_only_loss": True, "train_sampling_strategy": "group_by_length"},
    # ... padding-free: each batch one flat sequence with restarting position_ids; transformers' masks keep the
    # examples apart on CPU too. TRL wants max_length None here (no packing enforces it; rows are already cut).
    "completion_padding_free": {"completion_only_loss": True, "padding_free": True, "max_length": None},
}


def sft(cfg: BenchConfig, assets: Assets, variant: str) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows, pad_id = common.examples(assets)
    tokenizer = AutoTokenizer.from_pretrained(str(assets.tokenizer))
    settings = {"max_length": cfg.max_length, **VARIANTS[variant]}
    if settings.get("completion_only_loss"):
        rows = [completion_row(r) for r in rows]
    with tempfile.TemporaryDirectory(prefix="ft-bench-trl-") as out:
        args = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=cfg.batch_size,
            num_train_epochs=1,
            learning_rate=cfg.lr,
            seed=cfg.seed,
            bf16=False,
            gradient_checkpointing=False,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            **settings,
        )
        trainer = SFTTrainer(
            model=common.hf_model(assets.llama),
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=common.lora_config(cfg),
        )
        clock = StepClock(common.base_model(trainer.model), pad_id)
        trainer.train()
    return clock.result(trainer.model, cfg.warmup_steps, variant=variant)


def completion_row(row: dict[str, list[int]]) -> dict[str, list[int]]:
    """Our tokenized example as TRL's tokenized prompt-completion row: input_ids and completion_mask, no labels."""
    return {"input_ids": row["input_ids"], "completion_mask": [int(x != -100) for x in row["labels"]]}
