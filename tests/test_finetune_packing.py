"""Packing changes batching, not the objective: same loss on the same model, close loss after training."""

import pytest
import torch

from finetune.config.schema import DataSpec, TrainSpec
from finetune.data.format import Template
from finetune.data.pack import pack
from finetune.data.tokenize import tokenize_rows
from finetune.model.core import CoreConfig, CoreForCausalLM
from finetune.model.tokenizer import train_tokenizer
from finetune.scenarios import get
from finetune.train.accel import make_accelerator
from finetune.train.loop import evaluate_loss, train


def _setup(tmp_path):
    rows = get("tutoring").generate(seed=0, sizes={"train": 96, "validation": 24, "test": 8})
    tok = train_tokenizer([r["input"] + " " + r["output"] for r in rows["train"]], 320, tmp_path / "tok")
    template = Template.for_tokenizer(tok, get("tutoring").system, None, "instruction")
    spec = DataSpec(sources=[{"scenario": "tutoring"}], max_length=160)
    train_data, _ = tokenize_rows(rows["train"], template, tok, spec, None)
    val_data, _ = tokenize_rows(rows["validation"], template, tok, spec, None)
    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=32,
            layers=2,
            heads=4,
            context_length=256,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )
    return model, train_data, val_data


@pytest.mark.parametrize("average", ["token", "example"])
def test_same_model_same_loss_packed_or_not(tmp_path, average):
    model, train_data, _ = _setup(tmp_path)
    from finetune.config.schema import DistributedSpec
    from finetune.data.tokenized import weigh_examples

    if average == "example":  # per-example weights are attached before packing and travel with the tokens
        train_data = weigh_examples(train_data)
    acc = make_accelerator(TrainSpec(), DistributedSpec())
    plain = evaluate_loss(model, train_data, 8, acc)
    packed = evaluate_loss(model, pack(train_data, 256), 4, acc)
    assert abs(plain - packed) < 1e-5


def test_packed_and_unpacked_training_reach_the_same_loss(tmp_path):
    from finetune.config.schema import DistributedSpec

    results = {}
    for packing in (False, True):
        model, train_data, val_data = _setup(tmp_path / str(packing))
        data = pack(train_data, 256) if packing else train_data
        acc = make_accelerator(TrainSpec(), DistributedSpec())
        spec = TrainSpec(max_steps=30, batch_size=8 if not packing else 3, learning_rate=3e-3, log_every=10)
        res = train(
            model,
            data,
            val_data,
            spec,
            tmp_path / f"run{packing}",
            acc,
            seed=0,
            fingerprint={},
            resume=False,
            group_by_length=not packing,
        )
        results[packing] = res
    a, b = results[False].val_loss, results[True].val_loss
    assert abs(a - b) / a < 0.1, (a, b)
