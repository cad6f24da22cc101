"""Fine-tuning methods on tiny models: LoRA on Llama/Qwen2/GPT-2 loaded from disk, adapters that
load with plain peft elsewhere, merging, DoRA and partial full fine-tuning on the core model."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers_tiny import tiny_llama_model
from safetensors.torch import save_file
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from finetune.config.schema import FreezeSpec, MethodSpec
from finetune.errors import UserError
from finetune.methods import (
    count_trainable,
    describe,
    load_trained,
    merge,
    prepare,
    save_trained,
)
from finetune.methods.lora import resolve_targets
from finetune.model import hf
from finetune.model.core import CoreConfig, CoreForCausalLM
from finetune.model.tokenizer import train_tokenizer

WIDTH = 32
SUBJECTS = ("the clerk", "a nurse", "our tutor", "the analyst", "my cat")
VERBS = ("files", "checks", "explains", "reviews", "ignores")
OBJECTS = ("the report", "a ledger", "every chart", "the notes", "two invoices")


def sentences(n: int) -> list[str]:
    return [f"{SUBJECTS[i % 5]} {VERBS[(i // 5) % 5]} {OBJECTS[(i // 25) % 5]} on day {i % 31}." for i in range(n)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(sentences(300), 320, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def batch(tokenizer):
    encoded = tokenizer(sentences(4), padding=True, return_tensors="pt")
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def build(kind: str, vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    ids = dict(vocab_size=vocab, bos_token_id=1, eos_token_id=2)
    if kind == "llama":
        return tiny_llama_model(hidden_size=WIDTH, **ids)
    if kind == "qwen2":
        return Qwen2ForCausalLM(
            Qwen2Config(
                hidden_size=WIDTH,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                **ids,
            )
        )
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_embd=WIDTH, n_layer=2, n_head=4, n_positions=64, **ids))
    return CoreForCausalLM(CoreConfig(width=WIDTH, layers=2, heads=4, context_length=64, **ids))


def saved_base(kind: str, tokenizer, folder) -> str:
    hf.save_model(build(kind, len(tokenizer)), tokenizer, folder)
    return str(folder)


def train(model, batch, steps: int = 5, lr: float = 1e-2) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def logits(model, batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture(scope="module")
def llama_adapter(tokenizer, batch, tmp_path_factory):
    """(base folder, adapter folder, in-process logits after training) for a LoRA on tiny Llama."""
    root = tmp_path_factory.mktemp("llama")
    base = saved_base("llama", tokenizer, root / "base")
    model = prepare(hf.load_model(base), MethodSpec(kind="lora", r=4))
    train(model, batch)
    adapter = save_trained(model, tokenizer, root / "adapter", {"ft_template.json": '{"shape": "instruction"}'})
    return base, adapter, logits(model, batch)


# 1. LoRA with default targets on three architectures loaded from disk --------------------------


@pytest.mark.parametrize(
    "kind, targets",
    [
        ("llama", {"q_proj", "k_proj", "v_proj", "o_proj"}),
        ("qwen2", {"q_proj", "k_proj", "v_proj", "o_proj"}),
        ("gpt2", {"c_attn", "c_proj"}),
    ],
)
def test_lora_default_targets_train_and_save(kind, targets, tokenizer, batch, tmp_path):
    model = prepare(hf.load_model(saved_base(kind, tokenizer, tmp_path / "base")), MethodSpec(kind="lora", r=4))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable} == targets
    losses = train(model, batch)
    assert losses[-1] < losses[0] - 0.05, losses

    out = save_trained(model, tokenizer, tmp_path / "adapter")
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    assert set(json.loads((out / "adapter_config.json").read_text())["target_modules"]) == targets
    assert not list(out.glob("*.bin"))


def test_describe_counts_trainable_share(tokenizer):
    model = prepare(build("llama", len(tokenizer)), MethodSpec(kind="lora", r=4))
    trainable, total = count_trainable(model)
    # Llama attention: q,o are 32x32, k,v are 32x16 (2 kv heads); LoRA adds r*(in+out) per module, 2 layers.
    assert trainable == 2 * 4 * ((32 + 32) * 2 + (32 + 16) * 2)
    assert describe(model) == f"trainable {trainable:,} / {total:,} parameters ({100 * trainable / total:.2f}%)"


# 2. the adapter is a plain peft folder ----------------------------------------------------------


def test_adapter_loads_with_plain_peft_in_fresh_process(llama_adapter, batch, tmp_path):
    base, adapter, expected = llama_adapter
    save_file(
        {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "logits": expected},
        tmp_path / "expected.safetensors",
    )
    code = textwrap.dedent(f"""
        import sys, torch
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM
        data = load_file({str(tmp_path / "expected.safetensors")!r})
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({base!r}), {str(adapter)!r}).eval()
        with torch.no_grad():
            got = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
        assert not [m for m in sys.modules if m.split(".")[0] == "finetune"], "finetune was imported"
        print("MAXDIFF", (got - data["logits"]).abs().max().item())
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    diff = float(result.stdout.split("MAXDIFF")[-1])
    assert diff <= 1e-5


# 3. merging ------------------------------------------------------------------------------------


def test_merged_model_matches_adapter_and_keeps_extra_files(llama_adapter, batch, tmp_path):
    base, adapter, expected = llama_adapter
    merged_dir = merge(adapter, tmp_path / "merged")
    merged = hf.load_model(str(merged_dir))
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert torch.allclose(logits(merged, batch), expected, atol=1e-5, rtol=0)
    # The adapter mattered: the base alone gives different logits.
    assert (logits(hf.load_model(base), batch) - expected).abs().max() > 1e-3
    assert json.loads((merged_dir / "ft_template.json").read_text()) == {"shape": "instruction"}
    assert (merged_dir / "tokenizer_config.json").is_file()


def test_load_trained_restores_adapter_and_tokenizer(llama_adapter, batch, tokenizer):
    _, adapter, expected = llama_adapter
    model, loaded_tokenizer = load_trained(adapter)
    assert torch.allclose(logits(model, batch), expected, atol=1e-6, rtol=0)
    assert loaded_tokenizer("the clerk files")["input_ids"] == tokenizer("the clerk files")["input_ids"]


def test_load_trained_refuses_pickled_adapter(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path)}))
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match=r"refusing to load pickle weights from .*adapter_model\.bin"):
        load_trained(tmp_path)


def test_load_trained_names_a_missing_base(llama_adapter, tmp_path):
    _, adapter, _ = llama_adapter
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(
        (adapter / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(UserError, match=r"base_model_name_or_path.*gone does not exist"):
        load_trained(tmp_path / "adapter")


# 4. DoRA and partial full fine-tuning on the core model ----------------------------------------


def test_dora_on_core_model_trains(tokenizer, batch, tmp_path):
    model = prepare(hf.load_model(saved_base("core", tokenizer, tmp_path / "base")), MethodSpec(kind="dora", r=4))
    magnitudes = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_magnitude_vector" in n}
    assert len(magnitudes) == 2 * 4  # q/k/v/o in two blocks
    losses = train(model, batch)
    assert losses[-1] < losses[0] - 0.05, losses
    after = dict(model.named_parameters())
    assert all(not torch.equal(after[n], before) for n, before in magnitudes.items())
    save_trained(model, tokenizer, tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["use_dora"] is True


def test_full_with_top_block_only_leaves_lower_block_unchanged(tokenizer, batch):
    model = prepare(build("core", len(tokenizer)), MethodSpec(kind="full", freeze=FreezeSpec(train_top_blocks=1)))
    lower, upper = model.model.layers
    before = {
        name: [p.detach().clone() for p in block.parameters()] for name, block in (("lower", lower), ("upper", upper))
    }
    assert model.model.norm.weight.requires_grad and model.lm_head.weight.requires_grad
    train(model, batch, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(lower.parameters(), before["lower"]))
    assert all(not torch.equal(p, q) for p, q in zip(upper.parameters(), before["upper"]))


def test_full_trains_everything_and_freezing_embeddings_says_head_is_tied(tokenizer, batch, caplog):
    model = prepare(build("core", len(tokenizer)), MethodSpec(kind="full"))
    trainable, total = count_trainable(model)
    assert trainable == total
    with caplog.at_level(logging.WARNING, logger="finetune.methods.full"):
        model = prepare(model, MethodSpec(kind="full", freeze=FreezeSpec(embeddings=True)))
    assert "output head is tied" in caplog.text and "frozen too" in caplog.text
    embeddings = model.get_input_embeddings().weight
    assert not embeddings.requires_grad
    assert count_trainable(model) == (total - embeddings.numel(), total)


@pytest.mark.parametrize("targets", ["default", "all-linear"])
def test_lora_in_the_top_block_only_stops_backward_below_it(tokenizer, batch, targets):
    model = prepare(
        build("core", len(tokenizer)),
        MethodSpec(kind="lora", r=4, targets=targets, freeze=FreezeSpec(train_top_blocks=1)),
    )
    lower, upper = model.get_base_model().model.layers
    assert not any("lora_" in n for n, _ in lower.named_parameters())
    assert any("lora_" in n and p.requires_grad for n, p in upper.named_parameters())
    assert not any("lora_" in n for n, _ in model.named_parameters() if ".layers." not in n)  # never the head
    needs_grad = {}
    for name, block in (("lower", lower), ("upper", upper)):
        block.register_forward_hook(
            lambda m, a, out, name=name: needs_grad.__setitem__(name, _first(out).requires_grad)
        )
    losses = train(model, batch, steps=3)
    assert needs_grad == {"lower": False, "upper": True}  # autograd records nothing for the lower block
    assert losses[-1] < losses[0]
    with pytest.raises(UserError, match=r"train_top_blocks=3 but the model has 2 blocks"):
        prepare(build("core", len(tokenizer)), MethodSpec(kind="lora", freeze=FreezeSpec(train_top_blocks=3)))


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def test_train_top_blocks_larger_than_model_is_a_user_error(tokenizer):
    with pytest.raises(UserError, match=r"train_top_blocks=3 but the model has 2 blocks"):
        prepare(build("core", len(tokenizer)), MethodSpec(kind="full", freeze=FreezeSpec(train_top_blocks=3)))


# 5. target names -------------------------------------------------------------------------------


def test_bad_target_names_it_and_lists_available_modules(tokenizer):
    with pytest.raises(UserError) as info:
        prepare(build("llama", len(tokenizer)), MethodSpec(kind="lora", targets=["q_proj", "qq_proj"]))
    message = str(info.value)
    assert "'qq_proj'" in message
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head" in message


def test_target_resolution(tokenizer):
    gpt2, llama = build("gpt2", len(tokenizer)), build("llama", len(tokenizer))
    assert resolve_targets(gpt2, "default") == ["c_attn", "c_proj"]
    assert resolve_targets(llama, "all-linear") == "all-linear"
    assert resolve_targets(llama, ["self_attn.q_proj", "down_proj"]) == ["self_attn.q_proj", "down_proj"]
    llama.config.model_type = "someone_elses_arch"
    assert resolve_targets(llama, "default") == "all-linear"
