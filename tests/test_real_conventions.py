"""Real models' own conventions: chat template or plain layout, their BOS/EOS, Gemma 3's sliding-window attention,
Gemma 2's soft-capped (eager) attention, LoRA on the real module names, merge and generate.

A tiny Llama arrives the way users bring one (a GGUF file with a chat template, imported); a tiny Gemma 3 is built
from its config with random weights and a plain tokenizer (a base model: no chat template).
"""

from __future__ import annotations

import pytest
import torch
from helpers_gguf import CHAT_TEMPLATE, write_tiny_llama_gguf
from helpers_tiny import tiny_gemma3_model

from finetune import methods
from finetune.config.schema import MethodSpec
from finetune.data.format import Template, encode_example
from finetune.eval.generate import generate
from finetune.model import gguf_import
from finetune.model.hf import load_model
from finetune.model.tokenizer import load_tokenizer, train_tokenizer

WORDS = "the risk of a loan depends on income duration purpose savings and history of the applicant".split()
ROW = {"input": "income 300 duration 12", "output": "good"}
ALL_LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
WINDOW = 4


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    tiny = write_tiny_llama_gguf(tmp_path_factory.mktemp("llama") / "llama.gguf", chat_template=CHAT_TEMPLATE)
    return gguf_import.import_gguf(tiny.path, say=lambda _: None)


def _gemma3(vocab: int, tok: object, window: int = WINDOW):
    """One sliding and one full layer, the tokenizer's special ids (a random base, not a chat model)."""
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    layers = ["sliding_attention", "full_attention"]
    return tiny_gemma3_model(vocab, sliding_window=window, layer_types=layers, **ids)


@pytest.fixture(scope="module")
def gemma3_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gemma3")
    texts = [" ".join(WORDS[i:] + WORDS[:i]) + " income 300 duration 12 good bad" for i in range(len(WORDS))]
    tok = train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))
    tok.chat_template = None  # a base model: ft's plain layout
    tok.save_pretrained(out)
    torch.manual_seed(0)
    _gemma3(len(tok), tok).save_pretrained(out)
    return out


@pytest.fixture(params=["llama", "gemma3"])
def model_dir(request, llama_dir, gemma3_dir):
    return llama_dir if request.param == "llama" else gemma3_dir


def _encode(tokenizer, template):
    return encode_example(template, tokenizer, ROW, 128, "truncate", False)


def test_chat_template_when_the_model_has_one_with_its_own_bos_and_eos(llama_dir):
    tok = load_tokenizer(llama_dir)
    template = Template.for_tokenizer(tok, None, None, "instruction")
    assert template.chat_template == CHAT_TEMPLATE
    example = _encode(tok, template)
    ids, labels = example["input_ids"], example["labels"]
    # the template writes BOS and the tokenizer would add one too: exactly one, first
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": ROW["input"]}], tokenize=False, add_generation_prompt=True
    )
    assert tok.decode(ids[: labels.index(next(x for x in labels if x != -100))]) == rendered
    trained = [x for x in labels if x != -100]
    assert trained[-1] == tok.eos_token_id and tok.decode(trained[:-1]).strip() == ROW["output"]


def test_plain_layout_without_a_chat_template(llama_dir, gemma3_dir):
    tok = load_tokenizer(gemma3_dir)
    template = Template.for_tokenizer(tok, None, None, "instruction")
    assert template.chat_template is None
    example = _encode(tok, template)
    assert [x for x in example["labels"] if x != -100][-1] == tok.eos_token_id

    llama = load_tokenizer(llama_dir)
    llama.chat_template = None
    plain = Template.for_tokenizer(llama, None, None, "instruction")
    ids = _encode(llama, plain)["input_ids"]
    assert plain.chat_template is None and ids[0] == llama.bos_token_id and ids.count(llama.bos_token_id) == 1


def _logits(model, ids, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, **kwargs).logits


def test_gemma3_sliding_window_is_kept_in_loading_and_packing(gemma3_dir, tmp_path):
    from transformers import Gemma3ForCausalLM

    ids = torch.randint(5, 290, (1, 12))
    model = load_model(str(gemma3_dir))
    eager = Gemma3ForCausalLM.from_pretrained(gemma3_dir, attn_implementation="eager").eval()
    assert (_logits(model, ids) - _logits(eager, ids)).abs().max().item() < 1e-5
    wide = _gemma3(model.config.vocab_size, load_tokenizer(gemma3_dir), window=64)
    wide.load_state_dict(model.state_dict())
    assert (_logits(wide.eval(), ids) - _logits(model, ids)).abs().max().item() > 1e-4  # the window matters here

    # packed as ft packs (position_ids restart, no attention mask): each example sees only itself
    a, b = ids[:, :7], ids[:, 7:]
    positions = torch.cat([torch.arange(7), torch.arange(5)]).unsqueeze(0)
    packed = _logits(model, ids, position_ids=positions, use_cache=False)
    assert (packed[:, :7] - _logits(model, a)).abs().max().item() < 1e-5
    assert (packed[:, 7:] - _logits(model, b)).abs().max().item() < 1e-5


def test_gemma3_batched_cached_generation_equals_one_by_one(gemma3_dir):
    model, tok = load_model(str(gemma3_dir)), load_tokenizer(gemma3_dir)
    prompts = ["the risk of a loan depends on income", "savings", "history of the applicant and income 300 duration"]
    batched = generate(model, tok, prompts, max_new_tokens=10, batch_size=3, progress=False)
    alone = [generate(model, tok, [p], max_new_tokens=10, batch_size=1, progress=False)[0] for p in prompts]
    assert batched == alone and all(batched)


def test_gemma2_soft_capped_attention_loads_eager(tmp_path):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=WINDOW,
        attn_logit_softcapping=0.5,
        max_position_embeddings=64,
    )
    Gemma2ForCausalLM(config).save_pretrained(tmp_path)
    assert load_model(str(tmp_path)).config._attn_implementation == "eager"  # SDPA cannot soft-cap


def _wrapped(model) -> dict[str, set[str]]:
    """layer index -> names of the Linear modules that carry a LoRA adapter; plus "other" for any outside layers."""
    out: dict[str, set[str]] = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and not name.endswith(("lora_A", "lora_B")):
            parts = name.split(".")
            key = parts[parts.index("layers") + 1] if "layers" in parts else "other"
            out.setdefault(key, set()).add(parts[-1])
    return out


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_lora_all_linear_wraps_every_projection_of_every_layer_and_not_the_head(arch, llama_dir, gemma3_dir):
    folder = llama_dir if arch == "llama" else gemma3_dir
    model = methods.prepare(load_model(str(folder)), MethodSpec(kind="lora", r=2, targets="all-linear"))
    assert _wrapped(model) == {"0": ALL_LINEAR, "1": ALL_LINEAR}
    default = _wrapped(methods.prepare(load_model(str(folder)), MethodSpec(kind="lora", r=2)))
    expected = {"q_proj", "k_proj", "v_proj", "o_proj"} if arch == "llama" else ALL_LINEAR  # gemma3_text: fallback
    assert default == {"0": expected, "1": expected}


def test_merge_and_generate_on_the_real_architectures(model_dir, tmp_path):
    from finetune.commands import generate_command

    tok = load_tokenizer(model_dir)
    model = methods.prepare(load_model(str(model_dir)), MethodSpec(kind="lora", r=2, targets="all-linear"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    adapter = methods.save_trained(model, tok, tmp_path / "adapter")
    merged = methods.merge(adapter, tmp_path / "merged")
    ids = torch.tensor([tok("the risk of a loan").input_ids])
    plain = load_model(str(merged))
    assert (_logits(plain, ids) - _logits(model.eval(), ids)).abs().max().item() < 1e-4
    assert (_logits(plain, ids) - _logits(load_model(str(model_dir)), ids)).abs().max().item() > 1e-3
    text = generate_command(merged, "income 300", 6, None)
    assert text and text == generate_command(adapter, "income 300", 6, None)
