"""TRL's SFTTrainer with LoRA: its defaults, and its two packing strategies.

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
}


def sft(cfg: BenchConfig, assets: Assets, variant: str) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows, pad_id = common.examples(assets)
    tokenizer = AutoTokenizer.from_pretrained(str(assets.tokenizer))
    with tempfile.TemporaryDirectory(prefix="ft-bench-trl-") as out:
        args = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=cfg.batch_size,
            num_train_epochs=1,
            learning_rate=cfg.lr,
            seed=cfg.seed,
            bf16=False,
            gradient_checkpointing=False,
            max_length=cfg.max_length,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            **VARIANTS[variant],
        )
        trainer = SFTTrainer(
            model=common.hf_model(assets.llama),
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=common.lora_config(),
        )
        clock = StepClock(common.base_model(trainer.model), pad_id)
        trainer.train()
    return clock.result(trainer.model, cfg.warmup_steps, variant=variant)
