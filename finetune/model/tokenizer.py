"""Train or load a byte-level BPE tokenizer, saved as a Hugging Face fast tokenizer.

Byte-level BPE means any Unicode text round-trips exactly: nothing is ever
mapped to an unknown token. The chat template ships inside the tokenizer, so
fine-tuning, generation and evaluation render prompts the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from finetune.errors import UserError

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)

# Jinja, as transformers' apply_chat_template expects. Every turn ends with EOS so the
# model learns to stop after its answer.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ '<|eos|>' }}{% else %}{{ '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path, split_digits: bool = True):
    """Train byte-level BPE on ``texts`` and save it to ``out_dir`` as a fast tokenizer.

    ``split_digits`` keeps every digit its own token (as LLaMA's tokenizer does): a number
    then reads the same way whether or not it was frequent in the training text, so a
    model can compare and combine numbers it never saw as a whole (held-out loan amounts,
    arithmetic results) instead of memorising one merged token per number.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def load_tokenizer(path: str | Path, trust_remote_code: bool = False, revision: str | None = None):
    """Load a tokenizer folder (or hub id); make sure it can pad, since batching needs it."""
    from transformers import AutoTokenizer

    from finetune.model.gguf_import import resolve_model_path

    path = resolve_model_path(str(path))  # a .gguf file: the tokenizer of its converted folder
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    if tok.pad_token is None:
        raise UserError(f"tokenizer at {path} has neither a pad, eos nor unk token; add one")
    return tok
