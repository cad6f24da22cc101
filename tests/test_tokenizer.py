"""Our byte-level BPE tokenizer: exact round trip of any Unicode text, specials and chat template."""

from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.model.tokenizer import BOS, EOS, PAD, load_tokenizer, train_tokenizer

TEXTS = [
    "The patient takes lisinopril 10 mg once daily.",
    "Revenue grew 12% to $4.5 million.",
    "Tom has 3 apples and buys 4 more.",
] * 30


def _tok(tmp_path_factory=None, _cache={}):  # noqa: B006 - the default dict is the cache, on purpose
    if "tok" not in _cache:
        import tempfile
        from pathlib import Path

        out = Path(tempfile.mkdtemp()) / "tok"
        train_tokenizer(TEXTS, 320, out)
        _cache["tok"] = load_tokenizer(out)
    return _cache["tok"]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_unicode_round_trips(text):
    tok = _tok()
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_specials_and_chat_template():
    tok = _tok()
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD)
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tokenize=False
    )
    assert rendered == "<|user|>\nhi\n<|assistant|>\nyo<|eos|>"
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")
    assert tok.convert_tokens_to_ids(EOS) in tok(rendered, add_special_tokens=False)["input_ids"]
