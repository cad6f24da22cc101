"""Preference losses equal TRL's own code on the same log-probs; completion log-probs equal a full-logits sum.

TRL's DPO loss lives inside DPOTrainer._compute_loss, so it is called unbound on a stand-in trainer whose model
returns the per-token log-probs we give it (TRL then sums them, takes the precomputed references and computes
the loss); TRL's ORPO term is ORPOTrainer.odds_ratio_loss, called the same way.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers_tiny import tiny_llama_model

from finetune.data.format import IGNORE, Template
from finetune.data.preference import collate_pairs, encode_pair, row_problem
from finetune.train.preference import dpo_losses, log1mexp, orpo_losses, sequence_logps

B, L = 4, 9


def _per_token(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs [2B, L-1] of chosen-then-rejected rows and their completion masks [2B, L]."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2 * B, L, dtype=torch.long)
    for row in range(2 * B):
        start = int(torch.randint(1, 4, (1,), generator=g))
        end = int(torch.randint(start + 2, L + 1, (1,), generator=g))
        mask[row, start:end] = 1
    logps = -torch.rand(2 * B, L - 1, generator=g, dtype=torch.float64).float() * 3
    return logps * mask[:, 1:], mask


class _Acc:
    device = torch.device("cpu")

    @staticmethod
    def gather(x: torch.Tensor) -> torch.Tensor:
        return x

    gather_for_metrics = gather


def _trl_dpo(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    ref: torch.Tensor,
    beta: float,
    loss_type: str,
    loss_types: list[str] | None = None,
    loss_weights: list[float] | None = None,
) -> float:
    from trl.trainer.dpo_trainer import DPOTrainer

    n = per_token.shape[0]
    outputs = SimpleNamespace(
        log_probs=per_token,
        entropy=torch.zeros_like(per_token),
        mean_logits=torch.zeros_like(per_token),
        is_top1=torch.zeros_like(per_token, dtype=torch.bool),
    )
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_Acc(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=loss_types or [loss_type],
        loss_weights=loss_weights or [1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.ones(n, mask.shape[1], dtype=torch.long),
        "attention_mask": torch.ones(n, mask.shape[1], dtype=torch.long),
        "completion_mask": mask,
        "ref_chosen_logps": ref[: n // 2],
        "ref_rejected_logps": ref[n // 2 :],
    }
    return float(DPOTrainer._compute_loss(trainer, lambda **kw: outputs, inputs, return_outputs=False))


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_and_ipo_equal_trl(loss_type, beta):
    per_token, mask = _per_token()
    ref = -torch.rand(2 * B, generator=torch.Generator().manual_seed(1)) * 20
    sums, counts = per_token.sum(1), mask[:, 1:].sum(1).float()
    pc, pr = sums.chunk(2)
    nc, nr = counts.chunk(2)
    ours, _, _ = dpo_losses(pc, pr, *ref.chunk(2), beta, loss_type, nc, nr)
    assert abs(float(ours.mean()) - _trl_dpo(per_token, mask, ref, beta, loss_type)) <= 1e-6


def test_rpo_term_equals_trl_sigmoid_plus_sft():
    """RPO: DPO plus alpha x the chosen NLL per token; TRL 1.x spells it loss_type [sigmoid, sft] with weights
    [1, alpha] and averages the NLL over the batch's chosen tokens, which is our per-pair mean when the chosen
    completions have equal lengths (as here)."""
    from finetune.train.preference import nll_per_token

    per_token, mask = _per_token(seed=3)
    mask[:B] = 0
    mask[:B, 2:7] = 1  # every chosen completion 5 tokens; rejected ones keep their random spans
    per_token = per_token * mask[:, 1:] + (per_token == 0) * mask[:, 1:] * -0.5
    ref = -torch.rand(2 * B, generator=torch.Generator().manual_seed(4)) * 20
    sums, counts = per_token.sum(1), mask[:, 1:].sum(1).float()
    pc, pr = sums.chunk(2)
    nc, nr = counts.chunk(2)
    alpha = 0.7
    dpo, _, _ = dpo_losses(pc, pr, *ref.chunk(2), 0.1, "sigmoid", nc, nr)
    ours = float((dpo + alpha * nll_per_token(pc, nc)).mean())
    trl = _trl_dpo(per_token, mask, ref, 0.1, "sigmoid", ["sigmoid", "sft"], [1.0, alpha])
    assert abs(ours - trl) <= 1e-6
    assert abs(ours - float(dpo.mean())) > 0.1  # the term is there


def test_orpo_odds_ratio_term_equals_trl_and_the_loss_adds_the_chosen_nll():
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    per_token, mask = _per_token(seed=2)
    sums, counts = per_token.sum(1), mask[:, 1:].sum(1).float()
    means = sums / counts
    lam = 0.25
    trainer = SimpleNamespace(beta=lam, accelerator=_Acc())
    trl_terms, trl_chosen, trl_rejected, _, _ = ORPOTrainer.odds_ratio_loss(trainer, *means.chunk(2))
    ours, chosen_rewards, rejected_rewards = orpo_losses(*sums.chunk(2), *counts.chunk(2), lam)
    nll = -means.chunk(2)[0]
    assert torch.allclose(ours, nll - trl_terms, atol=1e-6)
    assert torch.allclose(chosen_rewards, trl_chosen, atol=1e-7) and torch.allclose(rejected_rewards, trl_rejected)


def test_hand_computed_dpo_and_log1mexp():
    """One pair by hand: margin (-10 - -12) - (-15 - -13) = 4; sigmoid DPO: -log sigmoid(0.1 * 4)."""
    loss, rc, rr = dpo_losses(*(torch.tensor([v]) for v in (-10.0, -15.0, -12.0, -13.0)), beta=0.1)
    assert abs(float(loss) - 0.5130152523999526) <= 1e-6
    assert abs(float(rc) - 0.2) <= 1e-7 and abs(float(rr) + 0.2) <= 1e-7
    x = torch.tensor([-5.0, -0.7, -0.69, -1e-4])
    assert torch.allclose(log1mexp(x), torch.log(1 - torch.exp(x.double())).float(), atol=1e-5)


def test_sequence_logps_equal_a_full_logits_sum():
    """The scored-position head gives each row's completion log-prob as the plain full-logits sum does."""
    torch.manual_seed(0)
    model = tiny_llama_model(50).eval()
    ids = torch.randint(0, 50, (4, 10))
    labels = ids.clone()
    labels[:, :4] = IGNORE
    labels[1, 8:] = IGNORE
    attention = torch.ones_like(ids)
    attention[1, 8:] = 0
    batch = {"input_ids": ids, "labels": labels, "attention_mask": attention}
    sums, counts = sequence_logps(model, batch)
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    target = labels[:, 1:]
    per = -F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none") * (target != IGNORE)
    assert torch.allclose(sums, per.sum(1), atol=1e-5)
    assert counts.tolist() == [6.0, 4.0, 6.0, 6.0]


class _CharTokenizer:
    """One id per character: enough for the pair encoder's arithmetic."""

    def __call__(self, texts, add_special_tokens=False, **_):
        return {
            "input_ids": [[ord(c) for c in t] for t in texts] if isinstance(texts, list) else [ord(c) for c in texts]
        }

    def __len__(self):
        return 256

    all_special_tokens = []
    added_tokens_decoder = {}


def test_pairs_mask_the_prompt_share_its_cut_and_collate_chosen_first():
    template = Template(shape="instruction", eos_token="$")
    row = {"prompt": "abcdefghij", "chosen": "yes", "rejected": "no way"}
    assert row_problem(row) is None
    stats: dict[str, int] = {}
    whole = encode_pair(template, _CharTokenizer(), row, 200, "truncate", stats)
    n_prompt = whole["labels"].count(IGNORE)
    assert whole["labels"][n_prompt:] == [ord(c) for c in "yes$"] and whole["rejected_labels"].count(IGNORE) == n_prompt
    cut = encode_pair(template, _CharTokenizer(), row, n_prompt + 3, "truncate", stats)
    assert len(cut["rejected_input_ids"]) == n_prompt + 3 and len(cut["input_ids"]) == n_prompt  # the same 4 cut
    assert cut["input_ids"][: n_prompt - 4] == cut["rejected_input_ids"][: n_prompt - 4]
    assert encode_pair(template, _CharTokenizer(), row, n_prompt, "drop", stats) is None
    batch = collate_pairs([whole, {**whole, "ref_chosen": -1.0, "ref_rejected": -2.0}], pad_id=0)
    assert (
        batch["input_ids"].shape[0] == 4
        and batch["input_ids"][0].tolist()[: len(whole["input_ids"])] == (whole["input_ids"])
    )
    assert row_problem({**row, "rejected": "yes"}).startswith("'chosen' and 'rejected' are the same")


# ---------------------------------------------------------------- two passes (chosen, then rejected) = one pass


def _lora_pair_batch() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A tiny LoRA model with a non-zero adapter (policy != reference) and 3 pairs of unequal, right-padded rows."""
    from helpers_tiny import tiny_llama_model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        tiny_llama_model(50), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    ).train()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 50, (6, 14), generator=g)
    lengths = [14, 9, 11, 6, 12, 10]  # the rejected half is shorter than the chosen one: it is cut to 12
    attention = torch.tensor([[1] * n + [0] * (14 - n) for n in lengths])
    labels = ids.masked_fill(attention == 0, IGNORE)
    labels[:, :4] = IGNORE
    return model, {"input_ids": ids * attention, "labels": labels, "attention_mask": attention}


def _loss_and_grads(model, batch, passes: int, **objective) -> tuple[float, list[torch.Tensor]]:
    from finetune.train.preference import PreferenceObjective

    model.zero_grad(set_to_none=True)
    loss = PreferenceObjective(passes=passes, **objective).loss(model, batch)
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize(
    "objective",
    [{"kind": "dpo"}, {"kind": "dpo", "loss_type": "ipo", "beta": 0.5}, {"kind": "orpo", "orpo_lambda": 0.3}],
    ids=["sigmoid", "ipo", "orpo"],
)
def test_two_checkpointed_passes_give_the_one_pass_loss_and_gradients(objective):
    model, batch = _lora_pair_batch()
    loss_one, grads_one = _loss_and_grads(model, batch, 1, **objective)
    loss_two, grads_two = _loss_and_grads(model, batch, 2, **objective)
    assert abs(loss_one - loss_two) <= 1e-6
    assert max(float((a - b).abs().max()) for a, b in zip(grads_one, grads_two)) <= 1e-6
    assert max(float(g.abs().max()) for g in grads_one) > 1e-3  # the gradients compared are not all zero


def test_two_passes_keep_no_activations_for_backward():
    """What autograd keeps after the forward: one pass keeps every layer's activations of 2B rows; two
    checkpointed passes keep only their inputs (activations are recomputed in backward, one side at a time)."""
    from finetune.train.preference import PreferenceObjective

    model, batch = _lora_pair_batch()
    kept = {n: _bytes_kept(PreferenceObjective("dpo", passes=n).loss, model, batch) for n in (1, 2)}
    assert kept[2] * 20 < kept[1], kept


def _bytes_kept(forward, *args) -> int:
    """Bytes of the tensors autograd saves for backward while ``forward`` runs (checkpointed regions save theirs
    through their own hooks, so only what stays alive is counted)."""
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward(*args)
    return sum(sizes)
