"""Behavioural tests of the core causal LM (finetune/model/core.py) on tiny CPU configs."""

from __future__ import annotations

import importlib
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

import finetune.model.core as core
from finetune.methods import count_trainable
from finetune.model.core import CoreConfig, CoreForCausalLM
from finetune.model.positions import sinusoidal_encoding

VOCAB = 100
POSITIONS = ["sinusoidal", "rope", "learned"]


def tiny_config(**overrides) -> CoreConfig:
    # A large init range makes attention far from uniform, so masking bugs show up in the logits.
    settings = dict(vocab_size=VOCAB, width=32, layers=2, heads=4, context_length=64, initializer_range=0.2)
    settings.update(overrides)
    return CoreConfig(**settings)


def tiny_model(seed: int = 0, **overrides) -> CoreForCausalLM:
    torch.manual_seed(seed)
    return CoreForCausalLM(tiny_config(**overrides)).eval()


def tokens(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits_of(model, input_ids, **kwargs) -> torch.Tensor:
    return model(input_ids=input_ids, use_cache=False, **kwargs).logits


# 1. sinusoidal encodings -------------------------------------------------------------------------


def test_sinusoidal_matches_paper_formula_and_is_added_to_embeddings():
    length, dim = 50, 32
    naive = torch.zeros(length, dim, dtype=torch.float64)
    for pos in range(length):
        for i in range(dim // 2):
            naive[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / dim))
            naive[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / dim))
    got = sinusoidal_encoding(torch.arange(length)[None], dim)[0]
    assert torch.allclose(got.double(), naive, atol=1e-5)

    model = tiny_model(positions="sinusoidal")
    ids = tokens(1, 10)
    with torch.no_grad():
        first = model(ids, output_hidden_states=True, use_cache=False).hidden_states[0]
    expected = model.model.embed_tokens(ids) + naive[:10].float()
    assert torch.allclose(first, expected, atol=1e-5)


# 2. attention equals the textbook formula --------------------------------------------------------


def test_attention_matches_naive_reference():
    model = tiny_model(positions="sinusoidal")
    attn = model.model.layers[0].attn
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(3))
    heads, d_k = 4, 8

    def split(t):
        return t.view(2, 7, heads, d_k).transpose(1, 2)

    q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
    causal = torch.triu(torch.full((7, 7), float("-inf")), diagonal=1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d_k) + causal, dim=-1)
    reference = attn.o_proj((weights @ v).transpose(1, 2).reshape(2, 7, 32))

    with torch.no_grad():
        fast = attn(x)  # is_causal fast path
        explicit_mask = torch.ones(7, 7, dtype=torch.bool).tril()[None, None]
        masked = attn(x, attention_mask=explicit_mask)
    assert (fast - reference).abs().max() < 1e-5
    assert (masked - reference).abs().max() < 1e-5


# 3. causality ------------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", POSITIONS)
def test_future_tokens_never_change_past_logits(positions):
    model = tiny_model(positions=positions)
    ids = tokens(2, 12)
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 7) % VOCAB
    for kwargs in (
        {},
        {"attention_mask": torch.ones_like(ids)},
        {"attention_mask": torch.tensor([[0] * 2 + [1] * 10] * 2)},
    ):
        a, b = logits_of(model, ids, **kwargs), logits_of(model, changed, **kwargs)
        assert torch.equal(a[:, :6], b[:, :6])
        assert (a[:, 6] - b[:, 6]).abs().max() > 1e-3


# 4. packing and padding --------------------------------------------------------------------------


@pytest.mark.parametrize("positions", POSITIONS)
def test_packed_row_equals_separate_examples(positions):
    model = tiny_model(positions=positions)
    first, second = tokens(1, 6, seed=2), tokens(1, 5, seed=3)
    row = torch.cat([first, second], dim=1)
    position_ids = torch.cat([torch.arange(6), torch.arange(5)])[None]
    packed = logits_of(model, row, position_ids=position_ids)
    assert (packed[:, :6] - logits_of(model, first)).abs().max() < 1e-5
    assert (packed[:, 6:] - logits_of(model, second)).abs().max() < 1e-5

    # packing combined with trailing padding
    padded_row = torch.cat([row, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 11), torch.zeros(1, 3)], dim=1).long()
    padded_positions = torch.cat([position_ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    both = logits_of(model, padded_row, attention_mask=mask, position_ids=padded_positions)
    assert (both[:, 6:11] - logits_of(model, second)).abs().max() < 1e-5

    # without restarting positions the second example sees the first one
    unpacked = logits_of(model, row)
    assert (unpacked[:, 6:] - logits_of(model, second)).abs().max() > 1e-3


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_unpadded_single_runs(positions, side):
    model = tiny_model(positions=positions)
    seqs = [tokens(1, 9, seed=4)[0], tokens(1, 4, seed=5)[0]]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span], mask[row, span] = seq, 1
    batched = logits_of(model, ids, attention_mask=mask)
    for row, seq in enumerate(seqs):
        alone = logits_of(model, seq[None])[0]
        assert (batched[row][mask[row].bool()] - alone).abs().max() < 1e-5


# KV cache and loss -------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", POSITIONS)
def test_incremental_decoding_with_cache_matches_full_forward(positions):
    model = tiny_model(positions=positions)
    ids = tokens(2, 10)
    full = logits_of(model, ids)
    with torch.no_grad():
        prefix = model(ids[:, :7], use_cache=True)
        step = model(ids[:, 7:], cache=prefix.cache, use_cache=True)
        legacy = model(ids[:, 7:8], past_key_values=model(ids[:, :7], use_cache=True).cache, use_cache=True)
    assert step.cache.get_seq_length() == 10
    assert (step.logits - full[:, 7:]).abs().max() < 1e-5
    assert (legacy.logits[:, 0] - full[:, 7]).abs().max() < 1e-5


def test_loss_is_shifted_mean_cross_entropy_ignoring_minus_100():
    model = tiny_model()
    ids = tokens(2, 8)
    labels = ids.clone()
    labels[0, :3] = -100
    out = model(ids, labels=labels, use_cache=False)
    logits = out.logits[:, :-1].reshape(-1, VOCAB)
    targets = labels[:, 1:].reshape(-1)
    keep = targets != -100
    manual = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(out.loss, manual, atol=1e-6)
    summed = model(ids, labels=labels, use_cache=False, num_items_in_batch=torch.tensor(4)).loss
    assert torch.allclose(summed, manual * keep.sum() / 4, atol=1e-5)


# 5. save / load ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("positions", "tie"), [("learned", True), ("rope", False)])
def test_save_pretrained_round_trip(tmp_path, positions, tie):
    model = tiny_model(positions=positions, tie_embeddings=tie)
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files
    assert not any(name.endswith(".bin") for name in files)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, CoreForCausalLM)
    assert loaded.config.tie_word_embeddings is tie and loaded.config.positions == positions
    ids = tokens(2, 9)
    assert torch.equal(logits_of(loaded, ids), logits_of(model, ids))
    shares = loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    assert shares is tie


# 6. generation -----------------------------------------------------------------------------------


def _generate(model, ids, **kwargs) -> torch.Tensor:
    settings = dict(max_new_tokens=20, do_sample=False, pad_token_id=0, eos_token_id=None)
    settings.update(kwargs)
    with torch.no_grad():
        return model.generate(ids, **settings)


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_generate_cache_on_off_and_left_padded_batch(positions):
    model = tiny_model(positions=positions)
    prompt = tokens(1, 5)
    cached, uncached = _generate(model, prompt, use_cache=True), _generate(model, prompt, use_cache=False)
    assert cached.shape == (1, 25)
    assert torch.equal(cached, uncached)

    prompts = [tokens(1, n, seed=n)[0] for n in (3, 6, 8)]
    ids = torch.zeros(3, 8, dtype=torch.long)
    mask = torch.zeros(3, 8, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, 8 - len(p) :], mask[row, 8 - len(p) :] = p, 1
    for use_cache in (True, False):
        batched = _generate(model, ids, attention_mask=mask, use_cache=use_cache)
        for row, p in enumerate(prompts):
            alone = _generate(model, p[None], use_cache=use_cache)
            assert torch.equal(batched[row, 8:], alone[0, len(p) :])


def test_generate_sampling_runs_with_and_without_cache():
    model = tiny_model()
    for use_cache in (True, False):
        torch.manual_seed(0)
        out = _generate(model, tokens(2, 4), do_sample=True, top_k=0, use_cache=use_cache)
        assert out.shape == (2, 24) and int(out.max()) < VOCAB


# 7. peft -----------------------------------------------------------------------------------------


def test_lora_trains_only_adapters_and_merges_exactly():
    model = tiny_model()
    ids = tokens(2, 10)
    base_logits = logits_of(model, ids)
    peft_model = get_peft_model(model, LoraConfig(target_modules=["q_proj", "v_proj"], r=4))
    peft_model.train()
    loss = peft_model(input_ids=ids, labels=ids, use_cache=False).loss
    assert torch.isfinite(loss)
    loss.backward()
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert any("lora_B" in n for n in with_grad)
    torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5).step()

    peft_model.eval()
    adapted = logits_of(peft_model, ids)
    assert (adapted - base_logits).abs().max() > 1e-4  # the step changed the model
    merged = peft_model.merge_and_unload()
    assert isinstance(merged, CoreForCausalLM)
    assert (logits_of(merged, ids) - adapted).abs().max() < 1e-5


def test_dora_forward_and_merge():
    model = tiny_model()
    ids = tokens(2, 10)
    config = LoraConfig(target_modules=["q_proj", "v_proj"], r=4, use_dora=True, init_lora_weights=False)
    peft_model = get_peft_model(model, config).eval()
    adapted = logits_of(peft_model, ids)
    assert torch.isfinite(adapted).all()
    merged = peft_model.merge_and_unload()
    assert (logits_of(merged, ids) - adapted).abs().max() < 1e-5


# 8. gradient checkpointing -----------------------------------------------------------------------


def test_gradient_checkpointing_gives_same_loss_and_grads():
    model = tiny_model().train()
    ids = tokens(2, 12)

    def loss_and_grads():
        model.zero_grad()
        loss = model(ids, labels=ids, use_cache=False).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain_loss, plain_grads = loss_and_grads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # 5.x renames it activation_checkpointing_enable
        model.gradient_checkpointing_enable()
    assert all(block.gradient_checkpointing for block in model.model.layers)
    ckpt_loss, ckpt_grads = loss_and_grads()
    assert torch.allclose(plain_loss, ckpt_loss, atol=1e-6)
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, ckpt_grads[name], atol=1e-6), name


# 9. every architecture variant -------------------------------------------------------------------


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("ffn", ["relu", "gelu", "swiglu"])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_all_variants_construct_and_run(positions, ffn, norm):
    model = tiny_model(positions=positions, ffn=ffn, norm=norm)
    mlp = model.model.layers[0].mlp
    assert hasattr(mlp, "gate_proj") is (ffn == "swiglu")
    assert hasattr(model.model, "embed_positions") is (positions == "learned")
    ids = tokens(2, 6)
    out = model(ids, labels=ids, use_cache=False)
    assert out.logits.shape == (2, 6, VOCAB) and torch.isfinite(out.loss)


# config, init, registration ----------------------------------------------------------------------


def test_config_aliases_and_ffn_sizes():
    config = CoreConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, max_position_embeddings=32)
    assert (config.width, config.heads, config.layers, config.context_length) == (48, 6, 3, 32)
    assert CoreConfig(tie_embeddings=False).tie_word_embeddings is False
    assert CoreConfig(width=64, ffn="swiglu").ffn_hidden == 176  # int(2/3*256)=170 -> 176
    assert CoreConfig(width=64, ffn="gelu", ffn_mult=3.0).ffn_hidden == 192


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positions": "alibi"}, "positions"),
        ({"ffn": "geglu"}, "ffn"),
        ({"norm": "batchnorm"}, "norm"),
        ({"width": 30, "heads": 4}, "divisible"),
        ({"width": 12, "heads": 4, "positions": "rope"}, "even head size"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CoreConfig(**kwargs)


def test_init_statistics_and_counts():
    torch.manual_seed(0)
    model = CoreForCausalLM(CoreConfig(vocab_size=VOCAB, width=64, norm="layernorm"))
    q = model.model.layers[0].attn.q_proj.weight
    assert abs(q.std().item() - 0.02) < 0.003
    assert torch.equal(model.model.layers[0].attn_norm.weight, torch.ones(64))
    assert torch.equal(model.model.norm.bias, torch.zeros(64))
    for p in model.model.embed_tokens.parameters():
        p.requires_grad_(False)
    trainable, total = count_trainable(model)
    assert total - trainable == VOCAB * 64


def test_registration_survives_reimport():
    saved = dict(vars(core))
    try:
        reloaded = importlib.reload(core)  # re-runs the module-level register calls
        model = AutoModelForCausalLM.from_config(reloaded.CoreConfig(vocab_size=VOCAB, width=32))
        assert isinstance(model, reloaded.CoreForCausalLM)
        assert AutoConfig.for_model("ft_core").model_type == "ft_core"
    finally:  # put the original classes back: other modules and tests hold (and patch) them
        vars(core).update(saved)
        AutoConfig.register("ft_core", CoreConfig, exist_ok=True)
        AutoModelForCausalLM.register(CoreConfig, CoreForCausalLM, exist_ok=True)


def test_rope_depends_only_on_relative_positions():
    model = tiny_model(positions="rope")
    ids = tokens(2, 10)
    base = torch.arange(10)[None].expand(2, -1)
    reference = logits_of(model, ids, position_ids=base)
    assert (logits_of(model, ids, position_ids=base + 17) - reference).abs().max() < 1e-4
    assert (logits_of(model, ids, position_ids=base * 2) - reference).abs().max() > 1e-3
