"""Prompts longer than the model's context (issue 12, point 12) and evaluation progress (point 19).

Before: a transformers warning and an empty answer (RoPE extrapolating past its context) or a
traceback (a learned position table). Now the prompt is cut from the left to leave room for the
answer, counted, and said in one line; `ft generate` answers and `ft eval` counts cut rows.
"""

from __future__ import annotations

import logging

import pytest
import torch

from finetune.commands import generate_command
from finetune.data.format import Template
from finetune.errors import UserError
from finetune.eval.generate import generate
from finetune.eval.label_scores import label_probs
from finetune.model.core import CoreConfig, CoreForCausalLM
from finetune.model.tokenizer import load_tokenizer, train_tokenizer

TEXTS = [f"Sentence {i}: the market rose {i} points and the patient felt good, or bad." for i in range(200)]
CONTEXT = 32
LONG = " ".join(TEXTS[:6])  # well over 32 tokens


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """A tiny model with a learned 32-position table, saved with its tokenizer; specials never win the argmax."""
    out = tmp_path_factory.mktemp("short") / "model"
    tok = train_tokenizer(TEXTS, 320, out)
    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=32,
            layers=2,
            heads=4,
            context_length=CONTEXT,
            positions="learned",
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
    )
    with torch.no_grad():  # tied embeddings: a zero row scores 0, below the best ordinary token
        model.get_input_embeddings().weight[tok.all_special_ids] = 0
    model.save_pretrained(out)
    return model.eval(), load_tokenizer(out), out


def test_long_prompt_is_cut_from_the_left_counted_and_said(short, caplog):
    model, tok, _ = short
    ids = tok(LONG, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2 * CONTEXT
    stats: dict[str, int] = {}
    with caplog.at_level(logging.WARNING):
        out = generate(model, tok, [LONG, "the market"], max_new_tokens=8, stats=stats, progress=False)
    assert stats == {"truncated": 1}
    assert out[0] != ""
    # what the model answered is its answer to the prompt's last context - max_new_tokens tokens
    assert out[0] == generate(model, tok, [ids[-(CONTEXT - 8) :]], max_new_tokens=8, progress=False)[0]
    assert out[1] == generate(model, tok, ["the market"], max_new_tokens=8, progress=False)[0]
    lines = [r.getMessage() for r in caplog.records if "prompts are longer" in r.getMessage()]
    assert len(lines) == 1 and "1 of 2 prompts" in lines[0] and "32" in lines[0]


def test_label_scoring_cuts_long_prompts_too(short):
    model, tok, _ = short
    stats: dict[str, int] = {}
    probs = label_probs(
        model, tok, [LONG, "the patient felt"], [["good", "bad"], ["good", "bad"]], stats=stats, progress=False
    )
    assert stats == {"truncated": 1}
    assert all(abs(sum(p.values()) - 1) < 1e-6 for p in probs)
    # the long prompt is scored on its end, as a short prompt with the same end would be
    ids = tok(LONG, add_special_tokens=False)["input_ids"]
    longest_label = max(len(tok(c, add_special_tokens=False)["input_ids"]) for c in ("good", "bad"))
    again = label_probs(model, tok, [ids[-(CONTEXT - longest_label) :]], [["good", "bad"]], progress=False)
    assert probs[0] == pytest.approx(again[0])


def test_no_room_for_the_answer_is_a_user_error(short):
    model, tok, _ = short
    with pytest.raises(UserError, match="max_new_tokens 32"):
        generate(model, tok, ["the market"], max_new_tokens=CONTEXT, progress=False)


def test_ft_generate_answers_a_long_prompt(short, caplog):
    _, _, model_dir = short
    with caplog.at_level(logging.WARNING):
        answer = generate_command(model_dir, LONG, 6, None)
    assert answer != ""
    assert any("1 of 1 prompts" in r.getMessage() for r in caplog.records)


def test_progress_bar_shows_rows_per_second(short, capsys):
    """Generation and label scoring show a tqdm bar (rows/s, ETA) when asked, as training does."""
    model, tok, _ = short
    template = Template.for_tokenizer(tok, None, None, "instruction")
    prompts = [template.prompt({"input": t}) for t in TEXTS[:3]]
    generate(model, tok, prompts, max_new_tokens=2, progress=True)
    label_probs(model, tok, prompts, [["good", "bad"]] * 3, progress=True)
    err = capsys.readouterr().err
    assert "generate:   0%|          | 0/3 [00:00<?, ?row/s]" in err
    assert "score labels:   0%|          | 0/3 [00:00<?, ?row/s]" in err
    generate(model, tok, prompts, max_new_tokens=2, progress=False)
    assert capsys.readouterr().err == ""


def test_evaluation_counts_rows_whose_prompt_was_cut(short):
    """`ft eval` and the eval stage read the count from evaluate_model (results["truncated_prompts"][set])."""
    from finetune.config.schema import EvalSpec
    from finetune.eval.generic import evaluator
    from finetune.eval.run import EvalSet, evaluate_model
    from finetune.stages.evaluate import EvalResult

    model, tok, _ = short
    rows = [
        {"input": LONG, "output": "good"},
        {"input": "the market", "output": "rose"},
        {"input": LONG + " again", "output": "bad"},
    ]
    sets = [EvalSet(name="mine", rows=rows, system=None, instruction=None, evaluate=evaluator("generation"))]
    templates = {"mine": Template.for_tokenizer(tok, None, None, "instruction")}
    spec = EvalSpec(max_new_tokens=8, batch_size=2)
    results = evaluate_model(model, tok, templates, sets, spec)
    assert results["truncated_prompts"] == {"mine": 2}
    assert EvalResult(truncated_prompts={"after": {"mine": 2}}).report_dict()["truncated_prompts"] == {
        "after": {"mine": 2}
    }
