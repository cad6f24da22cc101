"""Plain transformers: the HF Trainer for full fine-tuning, and model.generate() called once per prompt."""

from __future__ import annotations

import tempfile
import time
from typing import Any

from bench.assets import Assets
from bench.config import BenchConfig
from bench.contenders import common
from bench.contenders.ours import generation_result
from bench.measure import StepClock, rss_mb


def trainer_full(cfg: BenchConfig, assets: Assets) -> dict[str, Any]:
    """Trainer with train_sampling_strategy="group_by_length" (transformers 5's name for group_by_length=True)."""
    from datasets import Dataset
    from transformers import (
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    rows, pad_id = common.examples(assets)
    tokenizer = AutoTokenizer.from_pretrained(str(assets.tokenizer))
    model = common.hf_model(assets.llama)
    with tempfile.TemporaryDirectory(prefix="ft-bench-hf-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=cfg.batch_size,
            num_train_epochs=1,
            learning_rate=common.learning_rate(cfg, full=True),
            seed=cfg.seed,
            train_sampling_strategy="group_by_length",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), data_collator=collator)
        clock = StepClock(model, pad_id)
        trainer.train()
    return clock.result(model, cfg.warmup_steps)


def generate_one_by_one(cfg: BenchConfig, assets: Assets) -> dict[str, Any]:
    """Greedy decoding one prompt at a time: what a simple evaluation loop does."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(assets.tokenizer))
    model = common.hf_model(assets.llama).eval()
    prompts = assets.load("prompts")

    def one(prompt: str, new_tokens: int) -> str:
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    one(prompts[0], 2)  # warm-up
    setup = rss_mb()
    start = time.perf_counter()
    outputs = [one(p, cfg.gen_new_tokens) for p in prompts]
    return generation_result(tokenizer, outputs, time.perf_counter() - start, setup, model)
