"""A tiny GGUF file written in-test: a 2-layer Llama with a small byte-level BPE vocabulary.

Real GGUF files are hundreds of megabytes; tests need one that writes in milliseconds and whose
source model is at hand to compare against. ``write_tiny_llama_gguf`` builds a random
``LlamaForCausalLM`` (GQA: 4 query heads, 2 key/value heads), writes it the way llama.cpp's
``convert_hf_to_gguf.py`` does (its tensor names, its q/k row permutation, its metadata keys),
and returns the file together with the source model and tokenizer. ``read_gguf_tensors`` reads
a file back as ``{gguf name: float32 array}`` so an exporter can be checked against a writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from helpers_tiny import tiny_llama_model

WORDS = "the risk of a loan depends on income duration purpose savings and history of the applicant".split()
BOS, EOS = "<s>", "</s>"
# A chat template in the Jinja form transformers applies: makes the file an "instruction model".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] + ': ' + message['content'] }}{% if message['role'] == 'assistant' %}{{ eos_token }}"
    "{% else %}{{ '\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


@dataclass
class TinyGguf:
    path: Path
    model: Any  # the LlamaForCausalLM the file was written from (fp32, eval mode)
    tokens: list[str]
    merges: list[str]
    bos_id: int
    eos_id: int


def tiny_vocab(vocab_size: int = 320) -> tuple[list[str], list[str]]:
    """(tokens in id order, merges) of a byte-level BPE trained on a few words, with <s> and </s> first."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    tok.train_from_iterator(text, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def tiny_llama(vocab_size: int, seed: int = 0, tie: bool = False) -> Any:
    """A random 2-layer Llama, width 64 (head_dim 16, rows a multiple of 32 so Q8_0 blocks fit)."""
    import torch

    torch.manual_seed(seed)
    wide = dict(hidden_size=64, intermediate_size=128, max_position_embeddings=128, tie_word_embeddings=tie)
    model = tiny_llama_model(vocab_size, **wide, rms_norm_eps=1e-5, rope_theta=1e4, bos_token_id=0, eos_token_id=1)
    model.eval()
    with torch.no_grad():  # norms away from exactly 1, so a dropped norm would show in the logits
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    return model


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (its rope pairs neighbours; HF's pairs halves)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_tensors(model: Any) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's names and layout, float32."""
    cfg = model.config
    out: dict[str, np.ndarray] = {}
    for name, tensor in model.state_dict().items():
        w = tensor.detach().float().numpy()
        if name == "model.embed_tokens.weight":
            out["token_embd.weight"] = w
        elif name == "model.norm.weight":
            out["output_norm.weight"] = w
        elif name == "lm_head.weight":
            if not cfg.tie_word_embeddings:
                out["output.weight"] = w
        else:
            _, _, layer, rest = name.split(".", 3)
            key = _LAYER_NAMES[rest.removesuffix(".weight")]
            if key == "attn_q":
                w = _permute(w, cfg.num_attention_heads)
            elif key == "attn_k":
                w = _permute(w, cfg.num_key_value_heads)
            out[f"blk.{layer}.{key}.weight"] = w
    return out


def write_tiny_llama_gguf(
    path: Path,
    *,
    name: str = "tiny-llama",
    license: str | None = "apache-2.0",
    chat_template: str | None = None,
    quant: str = "F32",
    tie: bool = False,
    seed: int = 0,
) -> TinyGguf:
    """Write a tiny Llama as GGUF; ``quant`` "Q8_0" stores the 2-D weights as Q8_0 blocks (norms stay F32)."""
    import gguf

    tokens, merges = tiny_vocab()
    model = tiny_llama(len(tokens), seed=seed, tie=tie)
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    if license:
        writer.add_license(license)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "Q8_0" else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in (BOS, EOS) else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(BOS))
    writer.add_eos_token_id(tokens.index(EOS))
    writer.add_add_bos_token(True)
    if chat_template:
        writer.add_chat_template(chat_template)
    for tensor_name, w in gguf_tensors(model).items():
        if quant == "Q8_0" and w.ndim == 2:
            q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(tensor_name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(tensor_name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return TinyGguf(Path(path), model, tokens, merges, tokens.index(BOS), tokens.index(EOS))


def read_gguf_tensors(path: Path) -> dict[str, np.ndarray]:
    """``{gguf name: float32 array in ggml's shape order reversed (torch order)}``, dequantized."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = np.asarray(values, dtype=np.float32).reshape(tuple(reversed([int(d) for d in t.shape])))
    return out


def dequantized_model(tiny: TinyGguf) -> Any:
    """The source model with the weights the file really holds (Q8_0 rounding included): the reference for logits."""
    import copy

    import torch

    stored = read_gguf_tensors(tiny.path)
    model = copy.deepcopy(tiny.model)
    cfg = model.config
    back = {v: k for k, v in _LAYER_NAMES.items()}
    with torch.no_grad():
        for gname, w in stored.items():
            if gname == "token_embd.weight":
                target = "model.embed_tokens.weight"
            elif gname == "output_norm.weight":
                target = "model.norm.weight"
            elif gname == "output.weight":
                target = "lm_head.weight"
            else:
                _, layer, key, _ = gname.split(".")
                target = f"model.layers.{layer}.{back[key]}.weight"
                heads = {"attn_q": cfg.num_attention_heads, "attn_k": cfg.num_key_value_heads}.get(key)
                if heads:  # undo the permutation: applying it to the reshaped-back order is its inverse
                    w = w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
            model.get_parameter(target).copy_(torch.from_numpy(np.array(w, dtype=np.float32)))
    return model
