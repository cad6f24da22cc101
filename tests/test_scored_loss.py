"""Logits only where the loss looks: the gathered-head loss equals the full-logits loss, value and gradients.

Each model is built locally (no download): our core, a tiny Llama and a tiny Gemma3 (whose final logit
soft-capping runs after the head). The batches mask their prompts, carry label decisions with their allowed
sets, per-example weights, and a packed form (position_ids, no attention mask).
"""

from __future__ import annotations

import pytest
import torch
from helpers_tiny import tiny_gemma3_model, tiny_llama_model

from finetune.model import loss as loss_mod
from finetune.model.loss import causal_lm_loss, scored_loss

VOCAB = 96
TOL = 1e-5


def _core() -> torch.nn.Module:
    from finetune.model.core import CoreConfig, CoreForCausalLM

    return CoreForCausalLM(CoreConfig(vocab_size=VOCAB, width=32, layers=2, heads=4, context_length=64))


def _llama() -> torch.nn.Module:
    return tiny_llama_model(VOCAB, tie_word_embeddings=False)


def _gemma3() -> torch.nn.Module:
    return tiny_gemma3_model(VOCAB, final_logit_softcapping=2.0, attn_implementation="eager")


MODELS = {"core": _core, "llama": _llama, "gemma3": _gemma3}


def _batch(packed: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Three prompt+answer rows (right-padded) or the same rows packed into one; two end in a label decision."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for prompt, answer, decision in ((9, 2, True), (6, 5, False), (11, 2, True)):
        ids = torch.randint(4, VOCAB, (prompt + answer,), generator=g)
        if decision:
            ids[prompt] = 7  # the label's first token: 7 among {7, 8}
        labels = torch.cat([torch.full((prompt,), -100), ids[prompt:]])
        choice = torch.full((prompt + answer,), -1)
        if decision:
            choice[prompt] = 0
        weight = torch.full((prompt + answer,), 1.0 / (answer + int(decision)))
        rows.append((ids, labels, choice, weight))
    if packed:
        cat = [torch.cat([r[i] for r in rows])[None] for i in range(4)]
        positions = torch.cat([torch.arange(len(r[0])) for r in rows])[None]
        return {"input_ids": cat[0], "position_ids": positions}, {
            "labels": cat[1],
            "choice_index": cat[2],
            "loss_weight": cat[3],
        }
    width = max(len(r[0]) for r in rows)

    def pad(i: int, value: float) -> torch.Tensor:
        return torch.stack([torch.cat([r[i], torch.full((width - len(r[i]),), value, dtype=r[i].dtype)]) for r in rows])

    mask = torch.stack([torch.cat([torch.ones(len(r[0])), torch.zeros(width - len(r[0]))]) for r in rows]).long()
    return (
        {"input_ids": pad(0, 0), "attention_mask": mask},
        {"labels": pad(1, -100), "choice_index": pad(2, -1), "loss_weight": pad(3, 0.0)},
    )


CHOICES = torch.tensor([[7, 8]])


def _loss_and_grads(model, inputs, extra, weighted, fn, forward_kwargs):
    model.zero_grad(set_to_none=True)
    weights = extra["loss_weight"] if weighted else None
    if fn == "full":
        logits = model(**inputs, **forward_kwargs).logits
        total, count = causal_lm_loss(logits, extra["labels"], extra["choice_index"], CHOICES, weights)
    else:
        total, count = scored_loss(
            model, inputs, extra["labels"], extra["choice_index"], CHOICES, weights, forward_kwargs
        )
    loss = total / count
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return float(loss), float(count), grads


def _assert_same(model, inputs, extra, weighted, forward_kwargs=None):
    kw = forward_kwargs or {}
    want = _loss_and_grads(model, inputs, extra, weighted, "full", kw)
    got = _loss_and_grads(model, inputs, extra, weighted, "scored", kw)
    assert abs(want[0] - got[0]) <= TOL and want[1] == got[1]
    assert want[2].keys() == got[2].keys() and len(want[2]) > 0
    worst = max(float((want[2][n] - got[2][n]).abs().max()) for n in want[2])
    assert worst <= TOL, worst


def _head_rows(model, inputs, extra) -> list[int]:
    """Rows of hidden states the output head computed logits for, per call."""
    seen: list[int] = []
    head = loss_mod.output_head(model)
    handle = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[:-1].numel()))
    try:
        scored_loss(model, inputs, extra["labels"], extra["choice_index"], CHOICES, extra["loss_weight"])
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_full_finetune_loss_and_grads_equal_full_logits(name, packed, weighted):
    torch.manual_seed(0)
    model = MODELS[name]().train()
    inputs, extra = _batch(packed)
    _assert_same(model, inputs, extra, weighted, {"use_cache": False} if packed else None)


@pytest.mark.parametrize("name", list(MODELS))
def test_lora_with_lora_on_the_head_equal_full_logits(name):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        MODELS[name](),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "lm_head"], init_lora_weights=False),
    ).train()
    inputs, extra = _batch(False)
    _assert_same(model, inputs, extra, True)
    assert any("lm_head" in n and "lora" in n for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list(MODELS))
def test_head_computes_only_scored_positions(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    inputs, extra = _batch(False)
    scored = int((extra["labels"][:, 1:] != -100).sum())
    assert _head_rows(model, inputs, extra) == [scored]
    assert scored < extra["labels"].numel() / 2  # the point: most positions never reach the head


def test_chunked_cross_entropy_equals_one_piece(monkeypatch):
    """Chunks of 3 positions, each softmax recomputed in backward: same loss and gradients."""
    monkeypatch.setattr(loss_mod, "CE_CHUNK_ELEMENTS", 3 * VOCAB)
    torch.manual_seed(0)
    model = _gemma3().train()
    inputs, extra = _batch(False)
    _assert_same(model, inputs, extra, True)
    with torch.no_grad():
        total, count = scored_loss(model, inputs, extra["labels"], extra["choice_index"], CHOICES)
        ref = causal_lm_loss(model(**inputs).logits, extra["labels"], extra["choice_index"], CHOICES)
    assert abs(float(total) - float(ref[0])) <= TOL and float(count) == float(ref[1])


def test_mostly_scored_batches_keep_the_full_path():
    """Pretraining: the numbers stay bit-for-bit those of the full-logits loss (the golden trace rests on it)."""
    torch.manual_seed(0)
    model = _core()
    ids = torch.randint(0, VOCAB, (2, 12))
    seen: list[int] = []
    handle = model.lm_head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[:-1].numel()))
    total, count = scored_loss(model, {"input_ids": ids}, ids)
    handle.remove()
    assert seen == [24]
    ref, _ = causal_lm_loss(model(input_ids=ids).logits, ids)
    assert float(total) == float(ref) and int(count) == 22


def test_evaluate_loss_uses_the_gathered_head():
    """The loop's evaluation goes through scored_loss: the head sees only scored rows, the loss is unchanged."""
    from finetune.config.schema import DistributedSpec, TrainSpec
    from finetune.data.tokenized import TokenizedData
    from finetune.train.accel import make_accelerator
    from finetune.train.loop import evaluate_loss

    torch.manual_seed(0)
    model = _core()
    inputs, extra = _batch(False)
    examples = []
    for i in range(3):
        n = int(inputs["attention_mask"][i].sum())
        examples.append(
            {
                "input_ids": inputs["input_ids"][i, :n].tolist(),
                "labels": extra["labels"][i, :n].tolist(),
                "choice_index": extra["choice_index"][i, :n].tolist(),
            }
        )
    data = TokenizedData(examples=examples, choice_sets=[[7, 8]], pad_id=0)
    seen: list[int] = []
    handle = model.lm_head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[:-1].numel()))
    got = evaluate_loss(model, data, 3, make_accelerator(TrainSpec(), DistributedSpec()))
    handle.remove()
    with torch.no_grad():
        total, count = causal_lm_loss(model(**inputs).logits, extra["labels"], extra["choice_index"], CHOICES)
    assert abs(got - float(total / count)) <= TOL
    assert seen == [int((extra["labels"][:, 1:] != -100).sum())]
