"""`ft export`: GGUF files that transformers reads back with the source's logits (our core, a tiny Llama,
a tiny Gemma 3, a LoRA or DoRA adapter merged on the way), q8_0 within a measured bound, the tokenizer in the metadata,
refused core settings, a standalone safetensors folder, and the output guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_tiny import tiny_gemma3_model, tiny_llama_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune.config.schema import MethodSpec
from finetune.errors import UserError
from finetune.export import export_model, gguf_writer
from finetune.methods import load_trained, prepare, save_trained
from finetune.model import hf
from finetune.model.core import CoreConfig, CoreForCausalLM
from finetune.model.tokenizer import train_tokenizer

PROMPTS = [f"the clerk files report {i * 7} on day {i % 31}, then a nurse checks it." for i in range(8)]
F32_TOL, F16_TOL = 1e-4, 2e-2
Q8_TOL = 0.05  # measured: 4e-3 (core, Llama), 1.4e-2 (Gemma 3) on logits up to 0.8 (8-bit weights, a scale per 32)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [f"{p} {w}" for p in PROMPTS for w in ("ledger", "invoice", "chart", "notes")] * 5
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))


def _ids(tokenizer) -> dict[str, int]:
    return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def _perturb_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Norm weights away from 1 (their init), so a mis-mapped or mis-offset norm shows in the logits."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.2 * torch.randn_like(param))
    return model.eval()


def build(kind: str, tokenizer, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    vocab = len(tokenizer)
    if kind == "core":
        config = dict(vocab_size=vocab, width=32, layers=2, heads=4, context_length=64, **_ids(tokenizer))
        return _perturb_norms(CoreForCausalLM(CoreConfig(**{**config, **overrides})))
    if kind == "llama":
        return _perturb_norms(tiny_llama_model(vocab, tie_word_embeddings=False, rope_theta=5000.0, **_ids(tokenizer)))
    # Gemma 3 as llama.cpp runs it: scale 1/sqrt(head_dim), the scale transformers assumes reading a GGUF (256)
    config = dict(num_attention_heads=2, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256)
    return _perturb_norms(tiny_gemma3_model(vocab, **{**config, **_ids(tokenizer), **overrides}))


@pytest.fixture(scope="module")
def sources(tokenizer, tmp_path_factory):
    """name -> (folder to export, the in-memory model whose logits the export must reproduce)."""
    root = tmp_path_factory.mktemp("sources")
    out = {}
    for kind in ("core", "llama", "gemma3"):
        model = build(kind, tokenizer)
        out[kind] = (hf.save_model(model, tokenizer, root / kind), model)
    for method in ("lora", "dora"):
        adapter = prepare(hf.load_model(str(out["core"][0])), MethodSpec(kind=method, r=4))
        torch.manual_seed(2)
        with torch.no_grad():  # a trained-looking adapter: B is zero at init, which would make the merge a no-op
            for name, param in adapter.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.3)
        folder = save_trained(adapter.eval(), tokenizer, root / method, {"ft_template.json": "{}"})
        out[method] = (folder, adapter.eval())
    return out


def logits(model, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the real (unpadded) positions of the 8 prompts, and how many positions that is."""
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return out[batch["attention_mask"].bool()], batch["attention_mask"].sum()


def load_gguf(path):
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()


@pytest.mark.parametrize(
    "kind, dtype, tol",
    [
        ("core", "f32", F32_TOL),
        ("core", "f16", F16_TOL),
        ("llama", "f32", F32_TOL),
        ("llama", "f16", F16_TOL),
        ("lora", "f32", F32_TOL),
        ("lora", "f16", F16_TOL),
        ("dora", "f32", F32_TOL),
        ("gemma3", "f32", F32_TOL),
    ],
)
def test_gguf_round_trip_gives_the_source_logits(kind, dtype, tol, sources, tokenizer, tmp_path):
    folder, model = sources[kind]
    path = export_model(folder, "gguf", tmp_path / f"{kind}.gguf", dtype)
    loaded = load_gguf(path)
    want, count = logits(model, tokenizer)
    got, _ = logits(loaded, tokenizer)
    assert count > 8 * 10  # 8 prompts of 10+ tokens: rotary positions and the sliding window matter
    assert float((got - want).abs().max()) <= tol
    expected = "gemma3_text" if kind == "gemma3" else "llama"
    assert loaded.config.model_type == expected


def test_q8_0_loads_smaller_and_close(sources, tokenizer, tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader

    folder, model = sources["llama"]
    f16 = export_model(folder, "gguf", tmp_path / "f16.gguf", "f16")
    q8 = export_model(folder, "gguf", tmp_path / "q8.gguf", "q8_0")
    types = {t.name: t.tensor_type for t in GGUFReader(q8).tensors}
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32  # 1-D tensors stay f32, as in llama.cpp
    assert q8.stat().st_size < f16.stat().st_size
    want, _ = logits(model, tokenizer)
    got, _ = logits(load_gguf(q8), tokenizer)
    assert 0 < float((got - want).abs().max()) <= Q8_TOL


def test_q8_0_keeps_rows_it_cannot_block_in_f16():
    from gguf import GGMLQuantizationType

    rows_of_88 = np.ones((4, 88), dtype=np.float32)  # the core's SwiGLU width at width 32: 88 is not a multiple of 32
    data, raw = gguf_writer.encode(rows_of_88, "q8_0")
    assert raw is None and data.dtype == np.float16
    data, raw = gguf_writer.encode(np.ones((4, 64), dtype=np.float32), "q8_0")
    assert raw == GGMLQuantizationType.Q8_0


def test_tokenizer_travels_in_the_metadata(sources, tokenizer, tmp_path):
    from gguf import GGUFReader

    path = export_model(sources["core"][0], "gguf", tmp_path / "core.gguf", "f32")
    fields = GGUFReader(path).fields

    def text(key):
        return fields[key].contents()

    assert text("tokenizer.ggml.model") == "gpt2"
    assert text("tokenizer.ggml.pre") == "refact"  # digits one by one, then GPT-2's split: what our tokenizer does
    assert text("tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert text("tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert text("tokenizer.ggml.padding_token_id") == tokenizer.pad_token_id
    assert text("tokenizer.chat_template") == tokenizer.chat_template
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert len(text("tokenizer.ggml.merges")) == len(merges)
    assert text("general.name") == "core"
    read = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    chat = [{"role": "user", "content": "the clerk files report 12"}]
    assert read.apply_chat_template(chat, tokenize=False) == tokenizer.apply_chat_template(chat, tokenize=False)
    for text_in in [*PROMPTS, "<|user|>\nhi<|eos|>"]:
        assert read(text_in)["input_ids"] == tokenizer(text_in)["input_ids"]


@pytest.mark.parametrize(
    "setting, value",
    [("positions", "sinusoidal"), ("positions", "learned"), ("ffn", "gelu"), ("norm", "layernorm")],
)
def test_core_settings_without_a_llama_slot_are_refused(setting, value, tokenizer, tmp_path):
    folder = hf.save_model(build("core", tokenizer, **{setting: value}), tokenizer, tmp_path / "model")
    for fmt, out in (("gguf", tmp_path / "m.gguf"), ("safetensors", tmp_path / "m")):
        with pytest.raises(UserError, match=f"model.core.{setting}={value!r} cannot be exported"):
            export_model(folder, fmt, out)
        assert not out.exists()


def test_gemma3_settings_llama_cpp_cannot_run_are_refused(tokenizer, tmp_path):
    model = build("gemma3", tokenizer, final_logit_softcapping=30.0, query_pre_attn_scalar=16)
    folder = hf.save_model(model, tokenizer, tmp_path / "model")
    with pytest.raises(UserError, match="query_pre_attn_scalar 16 != head_dim 256; final_logit_softcapping 30.0"):
        export_model(folder, "gguf", tmp_path / "m.gguf")


def test_safetensors_folder_is_a_standalone_llama(sources, tokenizer, tmp_path):
    folder, adapter = sources["lora"]
    out = export_model(folder, "safetensors", tmp_path / "merged")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and not (out / "adapter_config.json").exists()
    assert (out / "tokenizer.json").is_file() and (out / "ft_template.json").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    want, _ = logits(adapter, tokenizer)
    got, _ = logits(loaded, tokenizer)
    assert float((got - want).abs().max()) <= 1e-5
    half = export_model(folder, "safetensors", tmp_path / "half", "f16")
    assert next(load_trained(half)[0].parameters()).dtype == torch.float16


def test_outputs_are_guarded_and_atomic(sources, tmp_path, monkeypatch):
    folder = sources["llama"][0]
    target = tmp_path / "m.gguf"
    target.write_bytes(b"keep me")
    with pytest.raises(UserError, match="already exists; choose a new file name, or pass --force"):
        export_model(folder, "gguf", target)
    with pytest.raises(UserError, match="is a folder"):
        export_model(folder, "gguf", tmp_path)
    with pytest.raises(UserError, match="inside the model folder"):
        export_model(folder, "gguf", folder / "m.gguf")
    with pytest.raises(UserError, match="--format 'onnx' is not an export format"):
        export_model(folder, "onnx", target)
    with pytest.raises(UserError, match="--dtype 'q8_0' does not apply to --format safetensors"):
        export_model(folder, "safetensors", tmp_path / "x", "q8_0")

    def disk_full(array, dtype):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf_writer, "encode", disk_full)
    with pytest.raises(OSError):
        export_model(folder, "gguf", target, force=True)
    assert target.read_bytes() == b"keep me"  # the old file stands; no temporary file is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_cli_exports_a_run_and_refuses_with_exit_2(sources, tokenizer, tmp_path):
    from typer.testing import CliRunner

    import cli

    run = tmp_path / "run"
    hf.save_model(build("core", tokenizer), tokenizer, run / "model")
    (run / "run.json").write_text("{}")
    result = CliRunner().invoke(cli.app, ["export", str(run), "--format", "gguf", "--out", str(tmp_path / "r.gguf")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.gguf").is_file()
    result = CliRunner().invoke(
        cli.app, ["export", str(run), "--format", "gguf", "--dtype", "q4", "--out", str(tmp_path / "s.gguf")]
    )
    assert result.exit_code == 2 and "--dtype 'q4' does not apply to --format gguf" in result.output


def test_pre_tokenizer_is_named_for_llama_cpp_or_refused():
    from finetune.export.gguf_vocab import pre_tokenizer_name

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    digits = {"type": "Digits", "individual_digits": True}
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}, "m") == "gpt-2"
    sequence = {"type": "Sequence", "pretokenizers": [digits, byte_level]}
    assert pre_tokenizer_name({"pre_tokenizer": sequence}, "m") == "refact"
    with pytest.raises(UserError, match="m: the tokenizer's pre-tokenizer \\(Whitespace\\) is not one llama.cpp names"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Whitespace"}}, "m")
    with pytest.raises(UserError, match="adds a prefix space"):
        pre_tokenizer_name({"pre_tokenizer": {**byte_level, "add_prefix_space": True}}, "m")
