"""Generation stops at every end-of-answer id the model declares, not only the tokenizer's eos.

An instruction Gemma ends its turn with ``<end_of_turn>`` (id 106), listed beside ``<eos>`` in its
generation_config; a tiny Llama whose generation_config lists a second eos id stands in for it.
"""

from __future__ import annotations

import pytest
import torch
from helpers_gguf import WORDS, tiny_llama

from finetune.eval.generate import generate, generate_batch, stop_ids
from finetune.model.tokenizer import train_tokenizer

PROMPT = "the risk of a loan depends on"
NEW = 6


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    tok = train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))
    model = tiny_llama(len(tok), seed=0).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def _new_tokens(model, tok) -> list[int]:
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    return generate_batch(model, tok, [ids], NEW, do_sample=False)[0].tolist()


def test_a_second_eos_in_generation_config_stops_generation(model_and_tokenizer):
    model, tok = model_and_tokenizer
    free = _new_tokens(model, tok)
    assert len(free) == NEW and tok.eos_token_id not in free  # without the second id it runs to the limit
    turn_end = free[0]  # the model's first greedy token plays <end_of_turn>
    model.generation_config.eos_token_id = [tok.eos_token_id, turn_end]
    try:
        assert _new_tokens(model, tok) == [turn_end]
        text = generate(model, tok, [PROMPT], max_new_tokens=NEW, progress=False)[0]
        assert text == tok.decode([turn_end], skip_special_tokens=True).strip()
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id


def test_stop_ids_is_the_ordered_union_without_repeats(model_and_tokenizer):
    model, tok = model_and_tokenizer
    model.generation_config.eos_token_id = [tok.eos_token_id, 106, 106]
    try:
        assert stop_ids(model, tok) == [tok.eos_token_id, 106]
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id

    class Bare(torch.nn.Module):  # no generation_config, a tokenizer without eos
        pass

    class NoEos:
        eos_token_id = None

    assert stop_ids(Bare(), NoEos()) is None
    assert stop_ids(Bare(), tok) == [tok.eos_token_id]


def test_ft_serve_stops_at_the_second_eos_too(model_and_tokenizer):
    """The server's row tracker ends a row at every id stop_ids gives (it knew only the tokenizer's eos)."""
    from dataclasses import dataclass, field

    from finetune.serve.batcher import Done, Job
    from finetune.serve.engine import Engine
    from finetune.serve.rows import RowSpec

    @dataclass(eq=False)
    class Captured(Job):
        got: list = field(default_factory=list)

        def send(self, event):
            self.got.append(event)

    model, tok = model_and_tokenizer
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    engine = Engine(model, tok, None, "tiny", None)
    free = Captured(ids, RowSpec(max_tokens=NEW))
    engine.run([free])
    (done,) = [e for e in free.got if isinstance(e, Done)]
    assert (done.finish_reason, done.completion_tokens) == ("length", NEW)
    turn_end = _new_tokens(model, tok)[0]
    model.generation_config.eos_token_id = [tok.eos_token_id, turn_end]
    try:
        stopped = Captured(ids, RowSpec(max_tokens=NEW))
        engine.run([stopped])
        (done,) = [e for e in stopped.got if isinstance(e, Done)]
        assert (done.finish_reason, done.completion_tokens) == ("stop", 0)
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id
