"""Packing: blocks keep examples apart, for our core model and for Hugging Face Llama."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from helpers_tiny import tiny_llama_model

from finetune.data.pack import (
    pack,
    pack_supported,
    packed_forward_kwargs,
    packed_inputs,
)
from finetune.data.tokenized import TokenizedData
from finetune.train.batching import collate

VOCAB = 97


def _data(lengths, seed=0, with_choices=False):
    rng = random.Random(seed)
    examples = []
    for n, length in enumerate(lengths):
        ids = [rng.randrange(1, VOCAB) for _ in range(length)]
        example = {"input_ids": ids, "labels": [-100] * (length // 2) + ids[length // 2 :]}
        if with_choices:
            example["choice_index"] = [-1] * length
            example["choice_index"][length // 2] = n % 2
            example["choice_index"][0] = 1  # a (degenerate) first-token decision must not survive packing
        examples.append(example)
    return TokenizedData(examples=examples, choice_sets=[[5, 6], [7, 8, 9]], pad_id=0)


def _segments(block):
    """Split a block back into its examples by restarting position_ids."""
    starts = [i for i, p in enumerate(block["position_ids"]) if p == 0] + [len(block["input_ids"])]
    return [(a, b) for a, b in zip(starts, starts[1:])]


def test_pack_keeps_every_token_within_blocks():
    data = _data([5, 17, 3, 9, 12, 1, 8, 16, 7, 4, 11], with_choices=True)
    packed = pack(data, block_size=20)
    assert packed.choice_sets == data.choice_sets and packed.pad_id == data.pad_id
    assert all(len(b["input_ids"]) <= 20 for b in packed.examples)
    assert len(packed.examples) < len(data.examples)
    assert sum(len(b["input_ids"]) for b in packed.examples) == sum(len(e["input_ids"]) for e in data.examples)
    pieces = []
    for block in packed.examples:
        assert len({len(v) for v in block.values()}) == 1
        for a, b in _segments(block):
            assert block["position_ids"][a:b] == list(range(b - a))
            assert block["labels"][a] == -100 and block["choice_index"][a] == -1
            pieces.append(
                (
                    tuple(block["input_ids"][a:b]),
                    tuple(block["labels"][a + 1 : b]),
                    tuple(block["choice_index"][a + 1 : b]),
                )
            )
    original = [(tuple(e["input_ids"]), tuple(e["labels"][1:]), tuple(e["choice_index"][1:])) for e in data.examples]
    assert sorted(pieces) == sorted(original)


def test_pack_cuts_long_examples_and_is_deterministic():
    data = _data([30, 4, 4])
    packed = pack(data, block_size=10)
    assert [len(b["input_ids"]) for b in packed.examples] == [10, 8]
    assert packed.examples[0]["input_ids"] == data.examples[0]["input_ids"][:10]
    assert pack(data, 10).examples == packed.examples
    with pytest.raises(ValueError):
        pack(data, 0)


def test_first_label_of_each_packed_example_is_ignored():
    data = TokenizedData(
        examples=[{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]}]
    )
    (block,) = pack(data, 8).examples
    assert block == {"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, -100, 5], "position_ids": [0, 1, 2, 0, 1]}


def test_pack_supported():
    def model(model_type):
        return SimpleNamespace(config=SimpleNamespace(model_type=model_type))

    assert pack_supported(model("ft_core"))[0] and pack_supported(model("llama"))[0]
    assert pack_supported(model("qwen2"))[0]
    ok, why = pack_supported(model("gpt2"))
    assert not ok and "gpt2" in why and "grouped by length" in why


def _alone_vs_packed(model, data, block_size, forward_kwargs, use_packed_inputs=True):
    """Largest |logit difference| between each example run alone and inside a packed, padded batch."""
    packed = pack(data, block_size)
    batch = collate(packed.examples, pad_id=0)
    assert "attention_mask" in batch  # blocks of different lengths: the batch is padded
    inputs = (
        packed_inputs(batch)
        if use_packed_inputs
        else {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    )
    worst = 0.0
    with torch.no_grad():
        logits = model(**inputs, **forward_kwargs).logits
        for row, block in enumerate(packed.examples):
            for a, b in _segments(block):
                alone = model(torch.tensor([block["input_ids"][a:b]])).logits[0]
                worst = max(worst, float((logits[row, a:b] - alone).abs().max()))
    return worst


LENGTHS = [9, 6, 5, 7, 3, 8, 4]


def test_llama_packed_examples_match_alone():
    """transformers 5.x derives the packed mask only without a cache and without attention_mask."""
    torch.manual_seed(0)
    model = tiny_llama_model(VOCAB).eval()
    assert pack_supported(model)[0]
    data = _data(LENGTHS)
    assert _alone_vs_packed(model, data, 16, packed_forward_kwargs(model)) < 1e-4
    # the traps: the default use_cache=True, or passing collate's attention_mask, lets examples attend across
    assert _alone_vs_packed(model, data, 16, {}) > 1e-2
    assert _alone_vs_packed(model, data, 16, packed_forward_kwargs(model), use_packed_inputs=False) > 1e-2


@pytest.mark.parametrize("positions", ["rope", "sinusoidal", "learned"])
def test_core_model_packed_examples_match_alone(positions):
    from finetune.model.core import CoreConfig, CoreForCausalLM

    torch.manual_seed(0)
    model = CoreForCausalLM(CoreConfig(vocab_size=VOCAB, width=32, layers=2, heads=4, positions=positions)).eval()
    assert pack_supported(model)[0]
    data = _data(LENGTHS)
    assert _alone_vs_packed(model, data, 16, packed_forward_kwargs(model)) < 1e-4
    assert _alone_vs_packed(model, data, 16, packed_forward_kwargs(model), use_packed_inputs=False) < 1e-4
