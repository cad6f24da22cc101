"""Constrained label scoring: one forward pass per prompt when the labels' first tokens differ, the output head
only where a label is scored, and the same probabilities as scoring every (prompt, label) sequence in full."""

from __future__ import annotations

import pytest
import torch
from helpers_tiny import (
    LABEL_PROMPTS,
    LABEL_TEXTS,
    label_tokenizer,
    tiny_core_model,
    tiny_gemma3_model,
    tiny_llama_model,
)

from finetune.data.format import encode_plain
from finetune.eval.label_scores import label_probs
from finetune.model.loss import output_head

PROMPTS = LABEL_PROMPTS


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return label_tokenizer(tmp_path_factory.mktemp("tok"))


_core = tiny_core_model


def _llama(vocab: int) -> torch.nn.Module:
    return tiny_llama_model(vocab)


def _gemma3(vocab: int) -> torch.nn.Module:
    """Soft-capped final logits (applied after the head), so the scored head must cap as the full one does."""
    return tiny_gemma3_model(vocab, final_logit_softcapping=2.0, attn_implementation="eager")


def _reference(model, tok, prompt: str, labels: list[str]) -> dict[str, float]:
    """Each (prompt, label) sequence alone, full logits: the first token decides when first tokens differ."""
    ids = encode_plain(tok, prompt)
    label_ids = {c: encode_plain(tok, c) for c in labels}
    by_first = len({tuple(v[:1]) for v in label_ids.values()}) == len(labels)
    scores = []
    with torch.no_grad():
        for c in labels:
            want = label_ids[c][:1] if by_first else label_ids[c]
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids + want])).logits[0].float(), -1)
            scores.append(sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(want)))
    return dict(zip(labels, torch.softmax(torch.tensor(scores), 0).tolist()))


def _choices(tok) -> list[list[str]]:
    """Rows whose labels differ in the first token, and one whose labels share it (scored on all tokens)."""
    shared = ["the market", "the patient"]
    assert encode_plain(tok, shared[0])[0] == encode_plain(tok, shared[1])[0]
    return [["good", "bad"], ["rose", "fell", "flat"], shared, ["points", "Sentence", "or", "good"]]


@pytest.mark.parametrize("build", [_core, _llama, _gemma3], ids=["core", "llama", "gemma3"])
def test_probabilities_equal_scoring_each_label_in_full(tok, build):
    torch.manual_seed(0)
    model = build(len(tok)).eval()
    choices = _choices(tok)
    got = label_probs(model, tok, PROMPTS, choices, batch_size=3, progress=False)
    for prompt, cs, probs in zip(PROMPTS, choices, got):
        want = _reference(model, tok, prompt, cs)
        assert list(probs) == cs
        for c in cs:
            assert probs[c] == pytest.approx(want[c], abs=1e-5)


def test_one_pass_per_prompt_and_the_head_sees_one_row_each(tok):
    """77 labels (BANKING77's intents) cost one forward per prompt, and the head a [prompts, vocab] product."""
    torch.manual_seed(0)
    model = _core(len(tok)).eval()
    words = sorted({w for t in LABEL_TEXTS for w in t.replace(":", " ").replace(",", " ").split()})
    labels = [w for w in words if len(encode_plain(tok, w)) >= 1]
    firsts: dict[int, str] = {}
    for w in labels:
        firsts.setdefault(encode_plain(tok, w)[0], w)
    labels = list(firsts.values())
    assert len(labels) >= 20
    calls: list[int] = []
    head_rows: list[int] = []
    model.register_forward_pre_hook(lambda _m, args, kwargs: calls.append(1), with_kwargs=True)
    output_head(model).register_forward_hook(lambda _m, args, out: head_rows.append(out.shape[-2]))
    probs = label_probs(model, tok, PROMPTS, [labels] * len(PROMPTS), batch_size=32, progress=False)
    assert len(calls) == 1  # four prompts, one batch: not 4 x len(labels) sequences
    assert head_rows == [len(PROMPTS)]  # one scored position per prompt
    for p in probs:
        assert abs(sum(p.values()) - 1) < 1e-6
    assert probs[0] == pytest.approx(_reference(model, tok, PROMPTS[0], labels), abs=1e-5)


def test_labelled_rows_generate_only_room_for_their_label(tok, monkeypatch):
    """gen_ metrics read the label an answer starts with: labelled rows get the longest label + slack, not 64 tokens;
    free-text rows in the same set keep max_new_tokens, and every answer lands on its own row."""
    from finetune.config.schema import EvalSpec
    from finetune.eval import generate as gen
    from finetune.eval.run import LABEL_ANSWER_SLACK, EvalSet, evaluate_model

    calls: list[tuple[list[str], int]] = []

    def fake_generate(model, tokenizer, prompts, max_new_tokens, **kw):
        calls.append((list(prompts), max_new_tokens))
        return [f"answer to {p}" for p in prompts]

    monkeypatch.setattr(gen, "generate", fake_generate)
    monkeypatch.setattr(
        "finetune.eval.label_scores.label_probs", lambda m, t, p, c, **kw: [{x: 1 / len(x) for x in cs} for cs in c]
    )
    rows = [
        {"input": "q0", "output": "bad", "choices": ["good", "bad"]},
        {"input": "q1", "output": "12"},
        {"input": "q2", "output": "good", "choices": ["good", "bad"]},
    ]

    class Template:
        def prompt(self, row):
            return row["input"]

    seen: dict[str, list[str]] = {}
    s = EvalSet("mixed", rows, None, None, lambda preds, rows, probs: seen.setdefault("preds", preds) and {})
    evaluate_model(None, tok, {"mixed": Template()}, [s], EvalSpec(max_new_tokens=64))
    longest = max(len(encode_plain(tok, c)) for c in ("good", "bad"))
    assert sorted(calls) == sorted([(["q1"], 64), (["q0", "q2"], longest + LABEL_ANSWER_SLACK)])
    assert seen["preds"] == ["answer to q0", "answer to q1", "answer to q2"]


@pytest.mark.parametrize("build", [_core, _gemma3], ids=["core", "gemma3"])
def test_generation_applies_the_head_to_the_last_position_only(tok, build):
    """Prefill of a [batch, length] prompt asks logits for its last position only (transformers' logits_to_keep)."""
    from finetune.eval.generate import generate_batch

    torch.manual_seed(0)
    model = build(len(tok)).eval()
    rows: list[tuple[int, ...]] = []
    output_head(model).register_forward_hook(lambda _m, args, out: rows.append(tuple(out.shape[:-1])))
    prompts = [encode_plain(tok, p) for p in PROMPTS[:3]]
    generate_batch(model, tok, prompts, max_new_tokens=3, do_sample=False)
    assert rows and all(shape[-1] == 1 for shape in rows), rows  # never [batch, prompt length, vocab]
