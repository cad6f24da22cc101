"""Preference objectives in ft's own loop: DPO (sigmoid), IPO and ORPO.

A batch holds B pairs as 2B rows, the B chosen completions first, then the B rejected ones
(data/preference.py ``collate_pairs``), so one forward pass scores both sides of every pair.
Only completion tokens are scored: the sequence log-prob of a completion is the sum of its
tokens' log-probs, computed through the same scored-position head hook as the SFT loss
(model/loss.py), so no [rows, length, vocab] logits tensor is built.

Memory: with ``passes=2`` (the default) the chosen rows and the rejected rows run as two passes of B rows, each under
non-reentrant activation checkpointing, so in backward one side's activations are recomputed and freed before the
other's are built: the step's activation peak is that of B rows, as SFT on the same rows, for one extra forward.
The gradients equal the one [2B, L] pass's (tests/test_preference_loss.py). The reference is scored before the
policy, so its no-grad pass never sits on top of the policy's kept activations.

Each pair contributes one loss term; the loop divides the step's summed loss by the step's
pairs on all processes, so accumulation and processes split a step without changing it,
exactly as token weighting does for SFT.

Reference log-probs for DPO come, in this order, from the batch (``ref_logps``, precomputed
before training), from a frozen copy (full fine-tuning), or from the policy itself with its
adapter disabled (LoRA / DoRA: no second copy in memory).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from finetune.model.loss import head_sees_only, output_head

STAT_KEYS = ("pairs", "correct", "margin", "chosen_logps", "rejected_logps", "chosen_rewards", "rejected_rewards")


# ---------------------------------------------------------------- log-probs


def sequence_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], forward_kwargs: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob of each row's scored tokens [rows], scored tokens per row [rows]).

    ``labels[b, t]`` is the token at t (-100: not scored), predicted from position t-1, as in the SFT loss.
    """
    labels = batch["labels"]
    targets = F.pad(labels[:, 1:], (0, 1), value=-100)
    mask = targets != -100
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    kwargs = forward_kwargs or {}
    rows_of = mask.nonzero()[:, 0]
    head = output_head(model)
    per_token, logits = None, None
    if head is not None:
        with head_sees_only(head, mask) as hooked:
            logits = model(**inputs, **kwargs).logits
        if hooked["done"] and logits.shape[:2] == (1, int(mask.sum())):
            per_token = -F.cross_entropy(logits[0].float(), targets[mask], reduction="none")
        elif hooked["done"]:  # the head saw gathered rows but its output is not theirs: run it whole
            logits = model(**inputs, **kwargs).logits
    if per_token is None:
        if logits is None:
            logits = model(**inputs, **kwargs).logits
        per_token = -F.cross_entropy(logits[mask].float(), targets[mask], reduction="none")
    n_rows = labels.shape[0]
    sums = torch.zeros(n_rows, dtype=torch.float32, device=labels.device).index_add(0, rows_of, per_token)
    counts = mask.sum(1).to(torch.float32)
    return sums, counts


def scored_counts(labels: torch.Tensor) -> torch.Tensor:
    """Scored tokens per row, as ``sequence_logps`` counts them."""
    return (labels[:, 1:] != -100).sum(1).to(torch.float32)


def side(batch: dict[str, torch.Tensor], which: int) -> dict[str, torch.Tensor]:
    """The chosen (0) or rejected (1) half of a pair batch, cut to its own longest row (right padding scores nothing)."""
    rows = batch["input_ids"].shape[0] // 2
    part = {
        k: batch[k][which * rows : (which + 1) * rows] for k in ("input_ids", "labels", "attention_mask") if k in batch
    }
    if "attention_mask" in part:
        length = int(part["attention_mask"].sum(1).max())
        part = {k: v[:, :length] for k, v in part.items()}
    return part


def pair_logps(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    forward_kwargs: dict[str, Any] | None = None,
    passes: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sequence_logps`` of a pair batch's 2B rows, in one pass or in two (chosen, then rejected).

    With two passes and gradients on, each side's forward is checkpointed: its activations are not kept but
    recomputed in backward, one side at a time, which is what halves the step's activation peak.
    """
    if passes == 1:
        return sequence_logps(model, batch, forward_kwargs)
    sums = [_side_sums(model, side(batch, k), forward_kwargs) for k in (0, 1)]
    return torch.cat(sums), scored_counts(batch["labels"])


def _side_sums(
    model: torch.nn.Module, part: dict[str, torch.Tensor], forward_kwargs: dict[str, Any] | None
) -> torch.Tensor:
    """One side's summed completion log-probs; checkpointed when gradients are on (see ``pair_logps``)."""
    if not torch.is_grad_enabled():
        return sequence_logps(model, part, forward_kwargs)[0]
    from torch.utils.checkpoint import checkpoint

    def sums(*tensors: torch.Tensor) -> torch.Tensor:
        return sequence_logps(model, dict(zip(part, tensors)), forward_kwargs)[0]

    return checkpoint(sums, *part.values(), use_reentrant=False)


# ---------------------------------------------------------------- losses


def dpo_losses(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss per pair, chosen reward, rejected reward) from summed sequence log-probs.

    sigmoid: -log sigmoid(beta * margin), margin = (chosen log-ratio) - (rejected log-ratio) (Rafailov et al.).
    ipo: (margin per token - 1 / (2 beta))^2, each log-ratio divided by its completion's tokens, as TRL does.
    Rewards are beta times the log-ratios.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    elif loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("ipo needs the completions' token counts")
        margin = chosen_ratio / chosen_tokens.clamp(min=1.0) - rejected_ratio / rejected_tokens.clamp(min=1.0)
        losses = (margin - 1.0 / (2.0 * beta)) ** 2
    else:
        raise ValueError(f"loss_type must be sigmoid or ipo, got {loss_type!r}")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def nll_per_token(sums: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Each completion's negative log-likelihood per token. Of the chosen side it is RPO's term (Pang et al. 2024;
    TRL's ``rpo_alpha``), which keeps DPO from lowering the chosen answer's likelihood along with the rejected one's,
    and ORPO's NLL.

    TRL averages it over the batch's chosen tokens (equal for equal lengths); per pair, a step's loss does not depend
    on how its pairs are split over micro-batches and processes.
    """
    return -sums / tokens.clamp(min=1.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -ln 2."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_losses(
    chosen_sum: torch.Tensor,
    rejected_sum: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    orpo_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss per pair, chosen reward, rejected reward): the chosen NLL per token minus lambda x log sigmoid(log odds ratio).

    The odds use per-token mean log-probs (Hong et al., Eq. 4 and 7); rewards are lambda times those means, as TRL
    logs them. The NLL is averaged per pair (TRL averages it over the batch's tokens: equal for equal lengths), so a
    step's loss does not depend on how its pairs are split over micro-batches and processes.
    """
    chosen = -nll_per_token(chosen_sum, chosen_tokens)
    rejected = -nll_per_token(rejected_sum, rejected_tokens)
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    losses = -chosen - orpo_lambda * F.logsigmoid(log_odds)
    return losses, orpo_lambda * chosen.detach(), orpo_lambda * rejected.detach()


# ---------------------------------------------------------------- the objective the loop calls


@dataclass
class PreferenceObjective:
    """What the loop calls instead of the SFT loss: collate pairs, score them, keep the numbers the report shows."""

    kind: str  # dpo | orpo
    beta: float = 0.1
    loss_type: str = "sigmoid"
    orpo_lambda: float = 0.1
    passes: int = 2  # 2: chosen and rejected in separate checkpointed passes (see the module docstring); 1: one pass
    ref_model: torch.nn.Module | None = None  # a frozen copy (full fine-tuning without precomputed references)
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    rpo_alpha: float = 0.0  # dpo: weight of the chosen completion's NLL per token in each pair's loss (RPO)
    val_stats: dict[str, float] = field(default_factory=dict)  # the last validation pass's numbers
    _stats: torch.Tensor | None = None

    @classmethod
    def from_spec(cls, method: Any, ref_model: torch.nn.Module | None = None) -> PreferenceObjective:
        return cls(
            method.objective,
            method.beta,
            method.loss_type,
            method.orpo_lambda,
            method.pair_passes,
            ref_model,
            rpo_alpha=method.rpo_alpha,
        )

    @staticmethod
    def terms(example: dict[str, Any]) -> int:
        """Loss terms of one example: one per pair, the step normaliser."""
        return 1

    @staticmethod
    def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        from finetune.data.preference import collate_pairs

        return collate_pairs(examples, pad_id)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], unwrap: Any = None) -> torch.Tensor:
        """Summed loss over the batch's pairs; the pair statistics accumulate until ``take_stats``.

        The reference runs first: its no-grad pass then never adds to the policy's kept activations.
        """
        ref = self.reference(model, batch, unwrap) if self.kind == "dpo" else None
        policy, tokens = pair_logps(model, batch, self.forward_kwargs, self.passes)
        pc, pr = policy.chunk(2)
        nc, nr = tokens.chunk(2)
        if ref is None:
            losses, rc, rr = orpo_losses(pc, pr, nc, nr, self.orpo_lambda)
        else:
            ref_c, ref_r = ref.chunk(2)
            losses, rc, rr = dpo_losses(pc, pr, ref_c, ref_r, self.beta, self.loss_type, nc, nr)
            if self.rpo_alpha:
                losses = losses + self.rpo_alpha * nll_per_token(pc, nc)
        self._add_stats(pc.detach(), pr.detach(), rc, rr)
        return losses.sum()

    def reference(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], unwrap: Any = None) -> torch.Tensor:
        """Reference log-probs of the batch's rows: precomputed, a frozen copy's, or the policy's with the adapter off."""
        if "ref_logps" in batch:
            return batch["ref_logps"]
        source = self.ref_model if self.ref_model is not None else (unwrap(model) if unwrap else model)
        with torch.no_grad(), _reference_mode(source, adapter_off=self.ref_model is None):
            return pair_logps(source, batch, self.forward_kwargs, self.passes)[0]

    def _add_stats(self, pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor) -> None:
        row = torch.stack(
            [
                torch.tensor(float(pc.numel()), device=pc.device),
                (rc > rr).float().sum(),
                (rc - rr).sum(),
                pc.sum(),
                pr.sum(),
                rc.sum(),
                rr.sum(),
            ]
        ).double()
        self._stats = row if self._stats is None else self._stats + row

    def reset_stats(self) -> None:
        self._stats = None

    def take_stats(self, accelerator: Any = None, prefix: str = "") -> dict[str, float]:
        """Means over the pairs scored since the last call, on all processes (a collective when there are several)."""
        stats = self._stats if self._stats is not None else torch.zeros(len(STAT_KEYS), dtype=torch.float64)
        self._stats = None
        if accelerator is not None and accelerator.num_processes > 1:
            stats = accelerator.reduce(stats.to(accelerator.device), reduction="sum")
        values = dict(zip(STAT_KEYS, stats.tolist()))
        n = max(values.pop("pairs"), 1.0)
        names = {"correct": "reward_accuracy", "margin": "reward_margin"}
        return {f"{prefix}{names.get(k, k)}": round(v / n, 6) for k, v in values.items()}


@contextlib.contextmanager
def _reference_mode(model: torch.nn.Module, adapter_off: bool) -> Iterator[None]:
    """Eval mode (no dropout: the reference is a fixed function) and, for an adapter, the adapter disabled."""
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter() if adapter_off and hasattr(model, "disable_adapter") else contextlib.nullcontext():
            yield
    finally:
        model.train(was_training)


@torch.no_grad()
def precompute_reference(
    model: torch.nn.Module, examples: list[dict[str, Any]], pad_id: int, batch_size: int, device: Any
) -> list[dict[str, Any]]:
    """Each pair with its reference log-probs (``ref_chosen``, ``ref_rejected``), from ``model`` before training.

    With an adapter, it is disabled, so the numbers are the base's whatever the adapter holds.
    """
    from finetune.data.preference import collate_pairs

    out = []
    with _reference_mode(model, adapter_off=True):
        for start in range(0, len(examples), batch_size):
            part = examples[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate_pairs(part, pad_id).items()}
            chosen, rejected = sequence_logps(model, batch)[0].chunk(2)
            for e, c, r in zip(part, chosen.tolist(), rejected.tolist()):
                out.append({**e, "ref_chosen": c, "ref_rejected": r})
    return out
