"""Labels that differ in their first token are decided by generation's own first step: evaluation gets the same
label probabilities as the separate scoring pass, without running each prompt a second time."""

from __future__ import annotations

import pytest
import torch
from helpers_tiny import LABEL_PROMPTS, label_tokenizer, tiny_core_model, tiny_gemma3_model

from finetune.eval.generate import generate
from finetune.eval.label_scores import first_token_ids, label_probs, renormalised

PROMPTS = LABEL_PROMPTS
CHOICES = [["good", "bad"], ["rose", "fell", "flat"], ["the market", "the patient"], ["points", "or", "good"]]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return label_tokenizer(tmp_path_factory.mktemp("tok"))


_core = tiny_core_model


@pytest.mark.parametrize("build", [_core, lambda v: tiny_gemma3_model(v, final_logit_softcapping=2.0)])
def test_generation_first_step_gives_the_label_scoring_pass_probabilities(tok, build):
    torch.manual_seed(0)
    model = build(len(tok)).eval()
    firsts = first_token_ids(tok, CHOICES)
    assert firsts[2] is None and all(firsts[i] for i in (0, 1, 3))  # "the market"/"the patient" share "the"
    got: list = [None] * len(PROMPTS)
    generate(model, tok, PROMPTS, max_new_tokens=3, batch_size=2, score_ids=firsts, first_scores=got, progress=False)
    assert got[2] is None  # whole labels: left to the scoring pass
    reference = label_probs(model, tok, PROMPTS, CHOICES, progress=False)
    for i in (0, 1, 3):
        mine = renormalised(CHOICES[i], got[i])
        for c in CHOICES[i]:
            assert mine[c] == pytest.approx(reference[i][c], abs=1e-5)


def test_evaluation_scores_first_token_labels_without_a_second_pass(tok, monkeypatch):
    """evaluate_model: rows decided by their first token never reach label_probs; their probabilities still equal
    the scoring pass's (checked above), and the row whose labels share a first token is still scored whole."""
    from finetune.config.schema import EvalSpec
    from finetune.eval import label_scores
    from finetune.eval.run import EvalSet, evaluate_model

    torch.manual_seed(0)
    model = _core(len(tok)).eval()
    rows = [{"id": i, "input": p, "output": c[0], "choices": c} for i, (p, c) in enumerate(zip(PROMPTS, CHOICES))]
    asked: list[list[str]] = []
    real = label_scores.label_probs

    def spy(model, tok, prompts, choices, **kw):
        asked.extend(prompts)
        return real(model, tok, prompts, choices, **kw)

    monkeypatch.setattr(label_scores, "label_probs", spy)

    class Template:
        def prompt(self, row):
            return row["input"]

    sets = [EvalSet("risk", rows, None, None, lambda preds, rows, probs: {"n": len(probs)}, [])]
    got = evaluate_model(model, tok, {"risk": Template()}, sets, EvalSpec(max_new_tokens=4, batch_size=2))
    assert asked == [PROMPTS[2]]
    raw, _ = got["label_probs"]["risk"]
    reference = real(model, tok, PROMPTS, CHOICES, progress=False)
    for i in range(4):
        assert raw[i] == pytest.approx(reference[i], abs=1e-5)
