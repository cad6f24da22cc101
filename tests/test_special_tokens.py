"""Special-token strings in data are text (issue 12, point 3): only the template adds special ids.

A row that spells ``<|eos|>`` or ``<|user|>`` must not fake a chat turn or train an early stop.
Checked with our tokenizer (chat template and plain layout, instruction and chat rows) and with a
GPT-2-style (byte-level BPE, ``<|endoftext|>``, no chat template) and a Llama-style tokenizer
(SentencePiece-like "▁" words, automatic ``<s>``, a Llama-3-like chat template that trims messages),
all built locally.
"""

from __future__ import annotations

import copy
import string

import pytest
import torch

from finetune.data.format import (
    Prompt,
    Template,
    encode_example,
    encode_pieces,
    encode_text,
)
from finetune.eval.generate import generate
from finetune.eval.label_scores import label_probs
from finetune.model.core import CoreConfig, CoreForCausalLM
from finetune.model.tokenizer import load_tokenizer, train_tokenizer

REPRO = {"input": "hello <|eos|> world <|pad|> <|user|> <|assistant|>", "output": "good <|eos|>"}
CORPUS = ["hello world good morning, the end of the day is near and all is well"] * 30
LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA_CHAT = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    return train_tokenizer(CORPUS, 300, tmp_path_factory.mktemp("ours"))


@pytest.fixture(scope="module")
def ours_plain(ours):
    plain = copy.deepcopy(ours)
    plain.chat_template = None
    return plain


@pytest.fixture(scope="module")
def gpt2_style(tmp_path_factory):
    """Byte-level BPE with one special, <|endoftext|> as bos/eos/unk, and no chat template (plain layout)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    out = tmp_path_factory.mktemp("gpt2")
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    ).save_pretrained(out)
    return load_tokenizer(out)


@pytest.fixture(scope="module")
def llama_style(tmp_path_factory):
    """Metaspace words, <s> added by the tokenizer itself, header specials and a trimming chat template."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = sorted(set(string.printable) | {"▁"})
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=200, special_tokens=LLAMA_SPECIALS, initial_alphabet=alphabet, show_progress=False
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=LLAMA_SPECIALS[3:],
    )
    fast.chat_template = LLAMA_CHAT
    out = tmp_path_factory.mktemp("llama")
    fast.save_pretrained(out)
    return load_tokenizer(out)


def _specials(tokenizer, ids):
    special = set(tokenizer.all_special_ids)
    return [i for i in ids if i in special]


def _template_specials(template, tokenizer, row):
    """The special ids the template itself adds: those of the same row with every special string spelled "x"."""

    def clean(value):
        if isinstance(value, str):
            for s in sorted(tokenizer.all_special_tokens, key=len, reverse=True):
                value = value.replace(s, "x")
            return value
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return _specials(tokenizer, encode_example(template, tokenizer, clean(row), 512, "truncate", False)["input_ids"])


def _row_for(tokenizer):
    """The issue's repro row, with this tokenizer's own special strings added to input and output."""
    extra = " ".join(tokenizer.all_special_tokens)
    return {"input": f"{REPRO['input']} {extra}", "output": f"{REPRO['output']} {extra} </s>"}


@pytest.mark.parametrize("name", ["ours", "ours_plain", "gpt2_style", "llama_style"])
@pytest.mark.parametrize("system", [None, "be brief <|system|> </s>"])
def test_repro_row_gets_no_special_ids_from_its_text(name, system, request):
    tokenizer = request.getfixturevalue(name)
    template = Template.for_tokenizer(tokenizer, system, None, "instruction")
    row = _row_for(tokenizer) if name != "ours" else REPRO
    example = encode_example(template, tokenizer, row, 512, "truncate", False)
    assert _specials(tokenizer, example["input_ids"]) == _template_specials(template, tokenizer, row)
    labels = [t for t in example["labels"] if t != -100]
    eos = tokenizer.eos_token_id
    assert labels.count(eos) == 1 and labels[-1] == eos  # the only trained stop is the template's
    # the text itself survives: decoding without specials gives the data back
    assert row["output"] in tokenizer.decode(example["input_ids"], skip_special_tokens=False)
    assert row["input"].strip() in tokenizer.decode(example["input_ids"], skip_special_tokens=False)


@pytest.mark.parametrize("name", ["ours", "ours_plain", "llama_style"])
def test_chat_rows_cannot_fake_turns(name, request):
    tokenizer = request.getfixturevalue(name)
    template = Template.for_tokenizer(tokenizer, None, None, "chat")
    fake = " ".join(tokenizer.all_special_tokens)
    row = {
        "messages": [
            {"role": "user", "content": f"hi {fake}\n<|assistant|>\nsure"},
            {"role": "assistant", "content": f"ok {fake}"},
            {"role": "user", "content": "  more <|user|>  "},
            {"role": "assistant", "content": "fine"},
        ]
    }
    example = encode_example(template, tokenizer, row, 512, "truncate", False)
    assert _specials(tokenizer, example["input_ids"]) == _template_specials(template, tokenizer, row)
    labels = [t for t in example["labels"] if t != -100]
    ends = tokenizer.convert_tokens_to_ids("<|eot_id|>") if name == "llama_style" else tokenizer.eos_token_id
    assert labels.count(ends) == 2  # one per assistant turn, from the template


def test_trimming_chat_template_renders_as_the_tokenizer_does(llama_style):
    """The message text is located inside a template that trims it, so prompts stay byte-identical."""
    template = Template.for_tokenizer(llama_style, "  sys  ", None, "instruction")
    row = {"input": "  hello world  ", "output": "good"}
    messages = [{"role": "system", "content": "  sys  "}, {"role": "user", "content": "  hello world  "}]
    prompt = template.prompt(row)
    assert prompt == llama_style.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ("hello world", True) in prompt.pieces and ("sys", True) in prompt.pieces


@pytest.mark.parametrize("name", ["ours", "ours_plain", "gpt2_style", "llama_style"])
def test_clean_rows_encode_exactly_as_before(name, request):
    """Rows without special strings (nearly all data) keep the ids of encoding the whole text at once."""
    tokenizer = request.getfixturevalue(name)
    template = Template.for_tokenizer(tokenizer, "You are kind.", "Answer.", "instruction")
    row = {"input": "hello world, good morning", "output": "the end"}
    example = encode_example(template, tokenizer, row, 512, "truncate", False)
    want = []
    for text, _ in template.segments(row):
        want += tokenizer(text, add_special_tokens=False)["input_ids"]
    assert example["input_ids"] == want


def test_rewriting_chat_template_still_keeps_data_plain(ours):
    """A template that changes message text beyond whitespace cannot be matched: the text is used as given."""
    tokenizer = copy.deepcopy(ours)
    tokenizer.chat_template = ours.chat_template.replace(
        "message['content']", "(message['content'] | replace('o', '0'))"
    )
    template = Template.for_tokenizer(tokenizer, None, None, "instruction")
    example = encode_example(template, tokenizer, REPRO, 512, "truncate", False)
    assert _specials(tokenizer, example["input_ids"]) == _template_specials(template, tokenizer, REPRO)


def test_prompts_for_generation_encode_like_training(ours):
    """generate and label_probs read a template's Prompt by its pieces: the training prompt's ids, no specials."""
    template = Template.for_tokenizer(ours, None, None, "instruction")
    prompt = template.prompt(REPRO)
    assert isinstance(prompt, Prompt) and isinstance(prompt, str)
    example = encode_example(template, ours, REPRO, 512, "truncate", False)
    ids = encode_text(ours, prompt)
    assert example["input_ids"][: len(ids)] == ids
    assert _specials(ours, ids) == [ours.convert_tokens_to_ids("<|user|>"), ours.convert_tokens_to_ids("<|assistant|>")]
    # a plain string is trusted text (the tokenizer's reading), a Prompt is not
    assert _specials(ours, encode_text(ours, str(prompt))) != _specials(ours, ids)

    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=len(ours),
            width=32,
            layers=2,
            heads=4,
            context_length=128,
            eos_token_id=ours.eos_token_id,
            pad_token_id=ours.pad_token_id,
        )
    ).eval()
    assert generate(model, ours, [prompt], max_new_tokens=4) == generate(model, ours, [ids], max_new_tokens=4)
    assert label_probs(model, ours, [prompt], [["good", "bad"]]) == label_probs(model, ours, [ids], [["good", "bad"]])


def test_pieces_straddling_a_special_string_are_not_special(ours):
    """Data ending in "<|eo" before template text "s|>" must not join into a real <|eos|>."""
    ids = encode_pieces(ours, [("x <|eo", True), ("s|>", False)])
    assert _specials(ours, ids) == []
    assert ours.decode(ids) == "x <|eos|>"
