"""Formatting with loss masks, label-restricted loss, and the tokenization cache."""

from __future__ import annotations

import copy
import json
import logging

import pytest

from finetune.config.schema import DataSpec
from finetune.data import format as fmt
from finetune.data import tokenize as tok_mod
from finetune.data.format import ChoiceRegistry, Template, encode_example, encode_examples
from finetune.data.tokenize import tokenize_rows
from finetune.model.tokenizer import train_tokenizer

CORPUS = [
    "The quarterly revenue rose sharply while costs fell.",
    "Question: what is the margin? Answer: the margin is twelve percent.",
    "positive negative neutral yes no maybe hello world",
    "Doctor: how are you feeling today? Patient: a bit tired.",
] * 20 + ["positive", "negative", "neutral"] * 60


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(CORPUS, 500, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def plain_tokenizer(tokenizer):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    return plain


def _labelled(example):
    return [t for t, lab in zip(example["input_ids"], example["labels"]) if lab != -100]


def _encode(template, tokenizer, row, max_length=256, truncation="truncate", train_on_prompt=False, **kw):
    return encode_example(template, tokenizer, row, max_length, truncation, train_on_prompt, **kw)


ROW = {"input": "The quarterly revenue rose sharply.", "output": "positive"}


def test_instruction_with_chat_template_masks_prompt(tokenizer):
    template = Template.for_tokenizer(tokenizer, "You are an analyst.", "Classify the news.", "instruction")
    prompt = template.prompt(ROW)
    messages = [
        {"role": "system", "content": "You are an analyst."},
        {"role": "user", "content": "Classify the news.\n\n" + ROW["input"]},
    ]
    assert prompt == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    example = _encode(template, tokenizer, ROW)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert example["labels"][:n_prompt] == [-100] * n_prompt
    assert example["labels"][n_prompt:] == example["input_ids"][n_prompt:]
    assert tokenizer.decode(_labelled(example)) == "positive" + tokenizer.eos_token
    assert tokenizer.decode(example["input_ids"]) == prompt + "positive" + tokenizer.eos_token


def test_plain_template_without_chat_template(plain_tokenizer):
    template = Template.for_tokenizer(plain_tokenizer, None, "Classify the news.", "instruction")
    assert template.chat_template is None
    prompt = template.prompt(ROW)
    assert prompt == f"### Instruction:\nClassify the news.\n\n### Input:\n{ROW['input']}\n\n### Response:\n"
    example = _encode(template, plain_tokenizer, ROW)
    assert plain_tokenizer.decode(_labelled(example)) == "positive" + plain_tokenizer.eos_token


def test_train_on_prompt_labels_everything(tokenizer):
    template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    example = _encode(template, tokenizer, ROW, train_on_prompt=True)
    assert example["labels"] == example["input_ids"]


def test_truncate_cuts_prompt_from_left_then_response_end(tokenizer):
    template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    full = _encode(template, tokenizer, ROW)
    response = _labelled(full)
    stats: dict[str, int] = {}
    short = _encode(template, tokenizer, ROW, max_length=len(response) + 3, stats=stats)
    assert short["input_ids"] == full["input_ids"][-(len(response) + 3) :]
    longest = len(full["input_ids"])
    assert _labelled(short) == response and stats == {"truncated": 1, "longest": longest}
    tiny = _encode(template, tokenizer, ROW, max_length=1, stats=stats)
    assert tiny["input_ids"] == response[:1] and stats["truncated"] == 2
    assert _encode(template, tokenizer, ROW, max_length=len(full["input_ids"]), stats=stats) == full
    assert _encode(template, tokenizer, ROW, max_length=8, truncation="drop", stats=stats) is None
    assert stats == {"truncated": 2, "dropped": 1, "longest": longest}


def test_truncation_warning_only_when_it_is_the_rule():
    from finetune.data.tokenize import truncation_warning

    stats = {"examples": 400, "dropped": 0, "truncated": 400, "longest": 742}
    line = truncation_warning("medical_records", stats, 256)
    assert line == (
        "warning: data medical_records: 400 of 400 examples are longer than data.max_length 256 "
        "(longest 742 tokens); the model will not see them whole"
    )
    assert truncation_warning("x", {**stats, "truncated": 40}, 256) is None  # 1 in 10: no warning
    assert "41 of 400" in truncation_warning("x", {**stats, "truncated": 41}, 256)
    assert "5 of 10" in truncation_warning("x", {"examples": 5, "dropped": 5, "truncated": 0, "longest": 9}, 8)
    assert truncation_warning("x", {"examples": 0, "dropped": 0, "truncated": 0}, 8) is None


CHAT = {
    "messages": [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "yes hello"},
        {"role": "user", "content": "what is the margin?"},
        {"role": "assistant", "content": "the margin is twelve percent"},
        {"role": "user", "content": "a trailing question nobody answers"},
    ]
}


@pytest.mark.parametrize("chat_template", [True, False])
def test_chat_shape_trains_assistant_turns_only(tokenizer, plain_tokenizer, chat_template):
    tk = tokenizer if chat_template else plain_tokenizer
    template = Template.for_tokenizer(tk, "Be brief.", None, "chat")
    example = _encode(template, tk, CHAT)
    spans, current = [], []
    for t, lab in zip(example["input_ids"], example["labels"]):
        if lab != -100:
            current.append(t)
        elif current:
            spans.append(current)
            current = []
    spans += [current] if current else []
    assert [tk.decode(s) for s in spans] == [
        "yes hello" + tk.eos_token + ("" if chat_template else "\n\n"),
        "the margin is twelve percent" + tk.eos_token + ("" if chat_template else "\n\n"),
    ]
    text = tk.decode(example["input_ids"])
    assert "Be brief." in text and "nobody answers" not in text
    if chat_template:
        turns = [{"role": "system", "content": "Be brief."}] + CHAT["messages"][:4]
        assert text == tk.apply_chat_template(turns, tokenize=False)
        assert template.prompt(CHAT) == tk.apply_chat_template(turns[:4], tokenize=False, add_generation_prompt=True)


def test_text_shape_trains_all(tokenizer):
    template = Template.for_tokenizer(tokenizer, "ignored", None, "text")
    example = _encode(template, tokenizer, {"text": "hello world"})
    assert tokenizer.decode(_labelled(example)) == "hello world" + tokenizer.eos_token
    assert template.prompt({"text": "x"}) == ""


def test_template_json_round_trip(tokenizer):
    template = Template.for_tokenizer(tokenizer, "sys", "do it", "chat")
    again = Template.from_dict(json.loads(json.dumps(template.to_dict())))
    assert again == template and again.prompt(CHAT) == template.prompt(CHAT)
    with pytest.raises(ValueError, match="unknown keys"):
        Template.from_dict({**template.to_dict(), "colour": 1})


def test_system_folded_when_template_refuses_it(tokenizer):
    strict = copy.deepcopy(tokenizer)
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    template = Template.for_tokenizer(strict, "Be brief.", None, "instruction")
    assert template.system_in_user
    assert template.prompt({"input": "hi", "output": "x"}) == "user: Be brief.\n\nhi\nassistant: "


CLS = {"input": "News: revenue rose", "output": "negative", "choices": ["positive", "negative", "neutral"]}


def test_label_loss_marks_first_response_token(tokenizer):
    template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    registry = ChoiceRegistry()
    example = _encode(template, tokenizer, CLS, choices=registry)
    firsts = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in CLS["choices"]]
    assert registry.sets == [firsts]
    marked = [i for i, c in enumerate(example["choice_index"]) if c != -1]
    assert len(marked) == 1 and example["choice_index"][marked[0]] == 0
    # the whole response (label + eos) keeps its plain loss; the decision token is marked for the restricted term
    assert [i for i, lab in enumerate(example["labels"]) if lab != -100][0] == marked[0]
    assert example["labels"][-1] == tokenizer.eos_token_id
    assert example["input_ids"][marked[0]] == firsts[1]
    n_prompt = len(tokenizer(template.prompt(CLS), add_special_tokens=False)["input_ids"])
    assert marked == [n_prompt]
    other = _encode(template, tokenizer, {**CLS, "choices": ["neutral", "positive", "negative"]}, choices=registry)
    assert max(other["choice_index"]) == 1 and len(registry.sets) == 2


def test_label_loss_fallback_when_first_tokens_collide(tokenizer):
    template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    row = {"input": "x", "output": "yes hello", "choices": ["yes hello", "yes world"]}
    stats: dict[str, int] = {}
    example = _encode(template, tokenizer, row, choices=ChoiceRegistry(), stats=stats)
    assert "choice_index" not in example and stats == {"label_loss_fallbacks": 1, "longest": len(example["input_ids"])}
    assert tokenizer.decode(_labelled(example)) == "yes hello" + tokenizer.eos_token


def _spec(**kw):
    return DataSpec(sources=[{"scenario": "financial_analysis"}], max_length=kw.pop("max_length", 64), **kw)


ROWS = [
    CLS,
    ROW,
    {"input": "long " * 80, "output": "neutral"},
    {"input": "x", "output": "yes hello", "choices": ["yes hello", "yes world"]},
]


@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_rows_encoded_together_equal_rows_encoded_one_by_one(tokenizer, chunk):
    """Batching the tokenizer calls over rows changes no id, label, label-set index or count, whatever the chunk."""
    rows = ROWS + [{"input": f"a <|user|> b {tokenizer.eos_token} c", "output": f"ok {tokenizer.eos_token}"}] + ROWS[:2]
    template = Template.for_tokenizer(tokenizer, "sys", None, "instruction")
    one_stats: dict = {}
    together_stats: dict = {}
    one_registry, together_registry = ChoiceRegistry(), ChoiceRegistry()
    one = [_encode(template, tokenizer, r, 64, choices=one_registry, stats=one_stats) for r in rows]
    together = encode_examples(
        template, tokenizer, rows, 64, "truncate", False, choices=together_registry, stats=together_stats, chunk=chunk
    )
    assert together == one and together_stats == one_stats and together_registry.sets == one_registry.sets
    assert one_stats["truncated"] == 1 and any("choice_index" in e for e in one)


def test_tokenize_rows_stats_and_mixed_choice_keys(tokenizer, tmp_path):
    template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    data, stats = tokenize_rows(ROWS, template, tokenizer, _spec(), None)
    longest = len(tokenizer(("long " * 80).strip())["input_ids"])  # the long row, before it is cut to 64
    assert stats.pop("longest") > max(64, longest)
    assert stats == {
        "examples": 4,
        "truncated": 1,
        "dropped": 0,
        "label_loss_fallbacks": 1,
        "tokens": sum(len(e["input_ids"]) for e in data.examples),
        "cached": False,
    }
    assert all(len(e["choice_index"]) == len(e["input_ids"]) for e in data.examples)
    assert [max(e["choice_index"]) for e in data.examples] == [0, -1, -1, -1]
    assert data.pad_id == tokenizer.pad_token_id and len(data.choice_sets) == 1
    data, stats = tokenize_rows(ROWS, template, tokenizer, _spec(truncation="drop", label_loss=False), None)
    assert stats["examples"] == 3 and stats["dropped"] == 1 and stats["label_loss_fallbacks"] == 0
    assert not any("choice_index" in e for e in data.examples) and data.choice_sets == []


def test_tokenization_cache_hit(tokenizer, tmp_path, monkeypatch, caplog):
    template = Template.for_tokenizer(tokenizer, "sys", None, "instruction")
    first, stats1 = tokenize_rows(ROWS, template, tokenizer, _spec(), tmp_path)
    assert stats1["cached"] is False

    def boom(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(tok_mod, "encode_examples", boom)
    with caplog.at_level(logging.INFO, logger="finetune.data.tokenize"):
        second, stats2 = tokenize_rows(ROWS, template, tokenizer, _spec(), tmp_path)
    assert stats2 == {**stats1, "cached": True}
    assert second.examples == first.examples and second.choice_sets == first.choice_sets
    assert [r.getMessage() for r in caplog.records if "reused cache" in r.getMessage()] == [
        f"tokenized data: reused cache {tok_mod.fingerprint(ROWS, template, tokenizer, _spec())}"
    ]
    for changed in (_spec(max_length=65), _spec(train_on_prompt=True)):
        with pytest.raises(AssertionError, match="tokenized again"):
            tokenize_rows(ROWS, template, tokenizer, changed, tmp_path)
    with pytest.raises(AssertionError, match="tokenized again"):
        tokenize_rows(ROWS[:3], template, tokenizer, _spec(), tmp_path)
    with pytest.raises(AssertionError, match="tokenized again"):
        tokenize_rows(
            ROWS, Template.for_tokenizer(tokenizer, "other", None, "instruction"), tokenizer, _spec(), tmp_path
        )


def test_fingerprint_follows_vocabulary(tokenizer, tmp_path):
    other = train_tokenizer(CORPUS[:4], 300, tmp_path / "other")
    template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    assert tok_mod.fingerprint(ROWS, template, tokenizer, _spec()) != tok_mod.fingerprint(
        ROWS, template, other, _spec()
    )
    assert fmt.Template.for_tokenizer(other, None, None, "instruction") == template  # same template text
