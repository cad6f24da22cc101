"""`ft generate` and `ft serve` choose a model's prompt template in one place (Template.for_generation), so a
question renders to the same tokens in both: the chat template when the tokenizer has one, the saved training
template (per --source) when ft trained the model."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_tiny import WORDS, tiny_llama_model

from finetune.commands import generate_command
from finetune.data.format import TEMPLATE_FILE, Template, encode_text
from finetune.errors import UserError
from finetune.eval import generate as gen
from finetune.model.tokenizer import load_tokenizer, train_tokenizer
from finetune.serve.engine import load_engine

QUESTION = "the risk of a loan"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random tiny Llama whose tokenizer carries ft's chat template (no ft_template.json: not trained by ft)."""
    out = tmp_path_factory.mktemp("chat-model")
    tok = train_tokenizer([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))], 300, out)
    assert tok.chat_template
    torch.manual_seed(0)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    tiny_llama_model(len(tok), **ids).save_pretrained(out)
    return out


def _generate_ids(model_dir, monkeypatch, source=None) -> list[int]:
    """The prompt ids `ft generate` decodes from (generation itself stubbed out)."""
    seen = []
    monkeypatch.setattr(gen, "generate", lambda model, tok, prompts, **kw: seen.extend(prompts) or [""])
    generate_command(model_dir, QUESTION, 4, source)
    return encode_text(load_tokenizer(model_dir), seen[0])


def _serve_ids(model_dir, source=None) -> list[int]:
    return load_engine(model_dir, "m", source).chat_ids([{"role": "user", "content": QUESTION}])


def test_a_chat_tokenizer_renders_the_same_prompt_in_serve_and_generate(model_dir, monkeypatch):
    ids = _generate_ids(model_dir, monkeypatch)
    assert ids == _serve_ids(model_dir)
    text = load_tokenizer(model_dir).decode(ids)
    assert "<|user|>" in text and "### Response:" not in text  # the chat template, not the plain layout


def test_a_saved_source_template_is_chosen_alike_and_an_unknown_source_fails_alike(model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "trained"
    folder.mkdir()
    for f in model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    tok = load_tokenizer(folder)
    plain = Template(eos_token=tok.eos_token, system="You assess loans.", instruction="Answer good or bad.")
    chat = Template.for_tokenizer(tok, None, None, "instruction")
    saved = {"default": chat.to_dict(), "sources": {"risk": plain.to_dict()}}
    (folder / TEMPLATE_FILE).write_text(json.dumps(saved), encoding="utf-8")

    ids = _generate_ids(folder, monkeypatch, "risk")
    assert ids == _serve_ids(folder, "risk") != _serve_ids(folder)
    assert "### Instruction:" in tok.decode(ids)
    messages = []
    for call in (lambda: _generate_ids(folder, monkeypatch, "nope"), lambda: _serve_ids(folder, "nope")):
        with pytest.raises(UserError) as err:
            call()
        messages.append(str(err.value))
    assert messages[0] == messages[1] == "--source 'nope' has no saved template; saved: risk"
