"""The tokenizer as GGUF metadata: llama.cpp's 'gpt2' (byte-level BPE) vocabulary, merges and special tokens.

A GGUF carries no tokenizer.json, so llama.cpp rebuilds the tokenizer from these keys; the one thing it
cannot read from them is how text is split before the merges apply. That is `tokenizer.ggml.pre`, a name
from llama.cpp's fixed list, so we name the split our tokenizer really uses and refuse one we cannot name
(llama.cpp would split differently and the model would see token ids it never trained on).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from finetune.errors import UserError

# llama.cpp's pre-tokenizer names for the byte-level splits we can recognise in a tokenizer.json
GPT2_SPLIT = "gpt-2"  # ByteLevel with GPT-2's regex
DIGITS_THEN_GPT2 = "refact"  # every digit alone (\p{N}), then GPT-2's regex: our tokenizer with split_digits
LLAMA3_SPLIT = "llama-bpe"
_LLAMA3_REGEX_START = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"


def add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int, where: str) -> None:
    """Tokens, token types, merges, bos/eos/pad ids, add-bos/eos flags and the chat template."""
    import gguf

    spec = _tokenizer_json(tokenizer, where)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec, where))
    tokens, types = token_table(tokenizer, vocab_size, where)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="ft-export-tok-") as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(Path(folder), load_merges=True, n_vocab=vocab_size)
    add_bos, add_eos = _adds_bos_eos(tokenizer)
    special.add_special_token.update({"bos": add_bos, "eos": add_eos})
    special.chat_template = getattr(tokenizer, "chat_template", None) or None
    special.add_to_gguf(writer, quiet=True)


def _tokenizer_json(tokenizer: Any, where: str) -> dict[str, Any]:
    """The fast tokenizer's own description, after refusing anything but byte-level BPE."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(f"{where}: the tokenizer is not a fast (tokenizer.json) tokenizer; GGUF export needs one")
    spec = json.loads(backend.to_str())
    model, decoder = spec.get("model") or {}, spec.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise UserError(
            f"{where}: GGUF export writes byte-level BPE tokenizers (llama.cpp 'gpt2'); this one is "
            f"{model.get('type')} with a {decoder.get('type')} decoder: convert it with llama.cpp's "
            "convert_hf_to_gguf.py from the --format safetensors export instead"
        )
    return spec


def pre_tokenizer_name(spec: dict[str, Any], where: str) -> str:
    """llama.cpp's name for the tokenizer's pre-split (see the module docstring)."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    byte_level = steps[-1] if steps else {}
    if byte_level.get("add_prefix_space"):
        raise UserError(f"{where}: the tokenizer adds a prefix space, which llama.cpp's byte-level BPE never does")
    if kinds == ["ByteLevel"] and byte_level.get("use_regex", True):
        return GPT2_SPLIT
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and byte_level.get("use_regex", True):
        return DIGITS_THEN_GPT2
    if kinds == ["Split", "ByteLevel"] and not byte_level.get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex", "")
        if regex.startswith(_LLAMA3_REGEX_START):
            return LLAMA3_SPLIT
    raise UserError(
        f"{where}: the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) is not one llama.cpp "
        "names (GPT-2, digits then GPT-2, Llama 3); export --format safetensors and use llama.cpp's converter"
    )


def token_table(tokenizer: Any, vocab_size: int, where: str) -> tuple[list[str], list[int]]:
    """Every token id's text and llama.cpp type; ids the model has beyond the tokenizer become unused pads."""
    import gguf

    count = len(tokenizer)
    if count > vocab_size:
        raise UserError(
            f"{where}: the tokenizer has {count} tokens but the model's embedding only {vocab_size}; "
            "the tokenizer does not belong to this model"
        )
    tokens = tokenizer.convert_ids_to_tokens(list(range(count)))
    special = set(tokenizer.all_special_ids)
    added = {i for i, token in tokenizer.added_tokens_decoder.items() if not token.special}
    types = [
        gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL
        for i in range(count)
    ]
    tokens += [f"[PAD{i}]" for i in range(count, vocab_size)]
    types += [gguf.TokenType.UNUSED] * (vocab_size - count)
    return tokens, [int(t) for t in types]


def _adds_bos_eos(tokenizer: Any) -> tuple[bool, bool]:
    """Whether plain encoding adds BOS / EOS, read from what the tokenizer does rather than from flags."""
    ids = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return bool(ids) and bos is not None and ids[0] == bos, bool(ids) and eos is not None and ids[-1] == eos
