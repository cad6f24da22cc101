"""A Hugging Face Llama or Gemma 3 (already merged, already standalone) written as one GGUF file.

Names come from gguf's own tensor map, hyper-parameters go through the writer's typed `add_*` calls,
quantisation through gguf's quants module: the conventions llama.cpp's converter follows, so what
llama.cpp, Ollama and transformers read back is what the model computes. Two layout details differ
from Hugging Face and are applied here: llama.cpp's Llama expects q/k rows interleaved per rotary pair
(transformers undoes this on load), and Gemma's norms are stored as 1 + weight.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from finetune.errors import UserError

DTYPES = ("f32", "f16", "q8_0")
Q8_BLOCK = 32  # Q8_0 quantises rows in blocks of 32 values; shorter rows stay f16 (llama.cpp does the same)


@dataclass
class GgufModel:
    """What goes into the file: the llama.cpp architecture, its typed hyper-parameter calls and named tensors."""

    arch: str
    hparams: dict[str, Any]  # GGUFWriter method name -> value, e.g. {"add_block_count": 2}
    tensors: dict[str, Any]  # GGUF tensor name -> float32 numpy array


def describe(model: Any, where: str) -> GgufModel:
    """The GGUF description of a supported architecture; anything else is refused with the supported list."""
    model_type = model.config.model_type
    builder = _ARCHITECTURES.get(model_type)
    if builder is None:
        raise UserError(
            f"{where}: GGUF export supports {', '.join(sorted(_ARCHITECTURES))} and our core; this model is "
            f"{model_type!r}: export --format safetensors and convert with llama.cpp's convert_hf_to_gguf.py"
        )
    return builder(model, where)


def _llama(model: Any, where: str) -> GgufModel:
    config = model.config
    _refuse(where, "llama", _llama_unsupported(config))
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    hparams = {
        **_common_hparams(config),
        "add_rope_dimension_count": head_dim,
        "add_rope_freq_base": float(config.rope_parameters["rope_theta"]),
    }
    if head_dim * heads != config.hidden_size:
        hparams.update(add_key_length=head_dim, add_value_length=head_dim)

    def adjust(name: str, array: Any) -> Any:
        if name.endswith("attn_q.weight"):
            return _interleave_rope_rows(array, heads)
        if name.endswith("attn_k.weight"):
            return _interleave_rope_rows(array, kv_heads)
        return array

    return GgufModel("llama", hparams, _tensors(model, "LLAMA", adjust, where))


def _llama_unsupported(config: Any) -> list[str]:
    rope = config.rope_parameters or {}
    problems = []
    if rope.get("rope_type", "default") != "default":
        problems.append(f"rope scaling {rope.get('rope_type')!r}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        problems.append("bias terms in attention or MLP")
    if config.hidden_act != "silu":
        problems.append(f"hidden_act {config.hidden_act!r} (llama.cpp's Llama uses silu)")
    return problems


def _gemma3(model: Any, where: str) -> GgufModel:
    config = model.config
    _refuse(where, "gemma3", _gemma3_unsupported(config))
    hparams = {
        **_common_hparams(config),
        "add_key_length": config.head_dim,
        "add_value_length": config.head_dim,
        "add_rope_freq_base": float(config.rope_parameters["full_attention"]["rope_theta"]),
        "add_sliding_window": config.sliding_window,
    }

    def adjust(name: str, array: Any) -> Any:
        return array + 1.0 if name.endswith("norm.weight") else array  # Gemma scales by (1 + w); GGUF stores it

    return GgufModel("gemma3", hparams, _tensors(model, "GEMMA3", adjust, where))


# what llama.cpp's gemma3 graph hard-codes (and transformers assumes when it reads a gemma3 GGUF)
_GEMMA3_FIXED = {"sliding_attention_theta": 10000.0, "pattern": 6}


def _gemma3_unsupported(config: Any) -> list[str]:
    problems = []
    if config.query_pre_attn_scalar != config.head_dim:
        problems.append(f"query_pre_attn_scalar {config.query_pre_attn_scalar} != head_dim {config.head_dim}")
    for cap in ("final_logit_softcapping", "attn_logit_softcapping"):
        if getattr(config, cap, None) is not None:
            problems.append(f"{cap} {getattr(config, cap)}")
    rope = config.rope_parameters or {}
    if any(part.get("rope_type", "default") != "default" for part in rope.values()):
        problems.append("rope scaling")
    if rope.get("sliding_attention", {}).get("rope_theta") != _GEMMA3_FIXED["sliding_attention_theta"]:
        problems.append("a sliding-window rope base other than 10000")
    pattern = _GEMMA3_FIXED["pattern"]
    expected = [
        "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(len(config.layer_types))
    ]
    if list(config.layer_types) != expected:
        problems.append("a sliding/full layer pattern other than every 6th layer full")
    if getattr(config, "use_bidirectional_attention", False):
        problems.append("bidirectional attention")
    return problems


def _refuse(where: str, arch: str, problems: list[str]) -> None:
    if problems:
        raise UserError(
            f"{where}: cannot export to GGUF {arch}: {'; '.join(problems)} (llama.cpp's {arch} has no such setting); "
            "export --format safetensors instead"
        )


def _common_hparams(config: Any) -> dict[str, Any]:
    return {
        "add_context_length": config.max_position_embeddings,
        "add_embedding_length": config.hidden_size,
        "add_block_count": config.num_hidden_layers,
        "add_feed_forward_length": config.intermediate_size,
        "add_head_count": config.num_attention_heads,
        "add_head_count_kv": config.num_key_value_heads,
        "add_layer_norm_rms_eps": float(config.rms_norm_eps),
        "add_vocab_size": config.vocab_size,
    }


def _interleave_rope_rows(weight: Any, heads: int) -> Any:
    """Hugging Face's half-split rotary rows -> llama.cpp's pairwise rows (llama.cpp convert's `permute`)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _tensors(model: Any, arch: str, adjust: Callable[[str, Any], Any], where: str) -> dict[str, Any]:
    """Every parameter under its GGUF name as float32 numpy (a tied head is left out: llama.cpp re-ties it)."""
    import gguf
    import torch

    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch), model.config.num_hidden_layers)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    out = {}
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        stem, _, suffix = hf_name.rpartition(".")
        gguf_name = name_map.get_name(stem)
        if gguf_name is None:
            raise UserError(f"{where}: tensor {hf_name} has no GGUF {arch.lower()} name; this model cannot be exported")
        name = f"{gguf_name}.{suffix}"
        out[name] = adjust(name, tensor.detach().to(torch.float32).cpu().numpy())
    return out


def write_gguf(described: GgufModel, tokenizer: Any, dtype: str, out: Path, name: str, where: str) -> Path:
    """The file at ``out``, written beside it under a temporary name and renamed once complete.

    ``name`` becomes general.name; ``where`` (the source folder) is what error messages point at."""
    import gguf

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not a GGUF type; use one of {', '.join(DTYPES)}")
    tmp = out.parent / f".{out.name}.exporting-{os.getpid()}"
    writer = gguf.GGUFWriter(tmp, described.arch)
    try:
        writer.add_name(name)
        for method, value in described.hparams.items():
            getattr(writer, method)(value)
        writer.add_file_type(gguf.LlamaFileType[_FILE_TYPES[dtype]])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        from finetune.export.gguf_vocab import add_tokenizer

        add_tokenizer(writer, tokenizer, described.hparams["add_vocab_size"], where)
        for tensor_name, array in described.tensors.items():
            data, raw_dtype = encode(array, dtype)
            writer.add_tensor(tensor_name, data, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        _fsync(tmp)
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return out


def encode(array: Any, dtype: str) -> tuple[Any, Any]:
    """(data, raw GGML type or None): 1-D tensors stay f32, as llama.cpp keeps norms; rows Q8_0 cannot block go f16."""
    import gguf
    import numpy as np

    if dtype == "f32" or array.ndim == 1:
        return array.astype(np.float32), None
    if dtype == "q8_0" and array.shape[-1] % Q8_BLOCK == 0:
        return gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return array.astype(np.float16), None


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


_ARCHITECTURES: dict[str, Callable[[Any, str], GgufModel]] = {"llama": _llama, "gemma3_text": _gemma3}
_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}  # names in gguf.LlamaFileType
