"""Unit tests of the training loop's pure parts: learning-rate schedule, batch plans, progress, step order.

The resume tests exercise these end to end through real runs; here each property is pinned on its own,
in milliseconds, so a broken piece is named directly.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from finetune.config.schema import DistributedSpec, TrainSpec
from finetune.data.pack import pack
from finetune.data.tokenized import TokenizedData
from finetune.train import loop
from finetune.train.batching import micro_batches, steps_for_epoch
from finetune.train.loop import Progress
from finetune.train.schedule import lr_at, warmup_steps

# ---------------------------------------------------------------- lr_at


def _spec(**kw) -> TrainSpec:
    return TrainSpec(learning_rate=1e-3, **kw)


def test_warmup_is_a_fraction_below_one_and_a_step_count_above():
    assert warmup_steps(_spec(warmup=0.1), 200) == 20
    assert warmup_steps(_spec(warmup=7), 200) == 7
    assert warmup_steps(_spec(warmup=0), 200) == 0


def test_warmup_rises_linearly_to_the_peak_without_a_zero_step():
    spec = _spec(warmup=4, schedule="constant")
    assert [lr_at(s, 100, spec) for s in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_runs_from_the_peak_after_warmup_to_the_floor_on_the_last_step(schedule):
    spec = _spec(warmup=10, schedule=schedule, min_lr_ratio=0.1)
    total = 110
    rates = [lr_at(s, total, spec) for s in range(total)]
    assert rates[10] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])), "the decay never rises"
    middle = 10 + (total - 10 - 1) / 2  # half-way through the decay: both shapes sit at the mean of peak and floor
    assert lr_at(math.floor(middle), total, spec) >= 5.5e-4 >= lr_at(math.ceil(middle), total, spec)


def test_linear_and_cosine_differ_in_shape():
    linear, cosine = _spec(warmup=0, schedule="linear"), _spec(warmup=0, schedule="cosine")
    quarter = 25
    assert lr_at(quarter, 101, linear) == pytest.approx(1e-3 - 0.25 * 9e-4)
    assert lr_at(quarter, 101, cosine) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.25)))


def test_constant_stays_at_the_peak_and_steps_past_the_end_stay_at_the_floor():
    assert {lr_at(s, 50, _spec(warmup=0, schedule="constant")) for s in range(50)} == {1e-3}
    spec = _spec(warmup=0, schedule="cosine", min_lr_ratio=0.2)
    assert lr_at(80, 50, spec) == pytest.approx(2e-4)


def test_a_single_step_run_trains_at_the_peak():
    assert lr_at(0, 1, _spec(warmup=0.05)) == pytest.approx(1e-3)


# ---------------------------------------------------------------- micro_batches / steps_for_epoch


def _lengths(n: int = 103, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 60) for _ in range(n)]


@pytest.mark.parametrize("grouped", [False, True])
def test_an_epoch_uses_each_example_at_most_once_in_full_batches(grouped):
    lengths = _lengths()
    batches = micro_batches(lengths, 8, seed=0, epoch=0, group_by_length=grouped)
    used = [i for b in batches for i in b]
    assert all(len(b) == 8 for b in batches)
    assert len(used) == len(set(used)) == (len(lengths) // 8) * 8


@pytest.mark.parametrize("grouped", [False, True])
def test_the_plan_is_a_pure_function_of_seed_and_epoch(grouped):
    lengths = _lengths()
    plan = micro_batches(lengths, 4, seed=3, epoch=2, group_by_length=grouped)
    assert plan == micro_batches(lengths, 4, seed=3, epoch=2, group_by_length=grouped)
    assert plan != micro_batches(lengths, 4, seed=3, epoch=1, group_by_length=grouped)
    assert plan != micro_batches(lengths, 4, seed=4, epoch=2, group_by_length=grouped)


def _padding(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_grouping_by_length_cuts_padding_and_still_shuffles_the_batches():
    lengths = _lengths(400)
    grouped = micro_batches(lengths, 8, seed=0, epoch=0, group_by_length=True)
    plain = micro_batches(lengths, 8, seed=0, epoch=0, group_by_length=False)
    assert _padding(lengths, grouped) < 0.5 * _padding(lengths, plain)
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert longest != sorted(longest, reverse=True), "batches come in random order, not longest first"


def test_steps_group_micro_batches_and_drop_an_incomplete_last_step():
    batches = [[i] for i in range(7)]
    assert steps_for_epoch(batches, 3) == [[[0], [1], [2]], [[3], [4], [5]]]
    assert steps_for_epoch(batches, 1) == [[b] for b in batches]


def test_one_process_accumulating_sees_what_two_processes_see_together():
    """grad_accum 2 on one process and 1 on each of two processes consume the same examples in the same steps."""
    batches = micro_batches(_lengths(), 4, seed=0, epoch=0, group_by_length=True)
    plan = steps_for_epoch(batches, 2)
    for step in plan:
        ranks = [step[rank::2] for rank in range(2)]  # the loop's share of each process
        assert sorted(mb for share in ranks for mb in share) == sorted(step)


# ---------------------------------------------------------------- Progress


OLD_KEYS = ["step", "epoch", "pos", "samples", "tokens", "pad_tokens", "skipped"]  # checkpoints written so far


def test_progress_saves_exactly_the_keys_checkpoints_have_always_held():
    progress = Progress(step=6, epoch=1, pos=2, samples=24, tokens=900, pad_tokens=12, skipped=1, bad_streak=1)
    assert list(progress.to_dict()) == OLD_KEYS
    assert progress.to_dict()["tokens"] == 900


def test_progress_round_trips_and_reads_older_checkpoints():
    progress = Progress(step=6, epoch=1, pos=2, samples=24, tokens=900, pad_tokens=12, skipped=1)
    assert Progress.from_dict(progress.to_dict()) == progress
    old = {"step": 3, "epoch": 0, "pos": 3, "samples": 12, "tokens": 400}  # written before pad/skip counts
    assert Progress.from_dict(old) == Progress(step=3, epoch=0, pos=3, samples=12, tokens=400)


def test_a_resumed_progress_starts_a_fresh_bad_streak():
    assert Progress.from_dict({**Progress(step=2).to_dict(), "bad_streak": 4}).bad_streak == 0


# ---------------------------------------------------------------- step order


def _walk(progress: Progress, lengths: list[int], spec: TrainSpec, total: int, stop_at: int | None = None):
    """Run ``loop._steps`` as train() does (pos and step move after each step); stop after step ``stop_at``."""
    seen = []
    for pos, batches in loop._steps(progress, lengths, spec, 0, True, 1, total):
        seen.append((progress.epoch, pos, batches))
        progress.step += 1
        progress.pos = pos + 1
        if progress.step == stop_at:
            break
    return seen


def test_steps_run_through_epochs_in_plan_order_and_stop_at_the_total():
    lengths, spec = _lengths(40), TrainSpec(batch_size=4, grad_accum=2)  # 5 steps per epoch
    seen = _walk(Progress(), lengths, spec, total=12)
    plans = [steps_for_epoch(micro_batches(lengths, 4, 0, e, True), 2) for e in range(3)]
    assert [(e, p) for e, p, _ in seen] == [(0, p) for p in range(5)] + [(1, p) for p in range(5)] + [(2, 0), (2, 1)]
    assert [b for *_, b in seen] == plans[0] + plans[1] + plans[2][:2]


@pytest.mark.parametrize("stop_at", [3, 5, 7])
def test_resuming_from_a_saved_progress_continues_where_it_stopped(stop_at):
    """Stop after ``stop_at`` steps (5 = the end of epoch 0), save the progress, resume: the steps are those of one walk."""
    lengths, spec = _lengths(40), TrainSpec(batch_size=4, grad_accum=2)
    whole = _walk(Progress(), lengths, spec, total=12)
    first_progress = Progress()
    first = _walk(first_progress, lengths, spec, total=12, stop_at=stop_at)
    saved = first_progress.to_dict()
    if stop_at == 5:  # a checkpoint closing an epoch holds (that epoch, end of its plan)
        assert (saved["epoch"], saved["pos"]) == (0, 5)
    rest = _walk(Progress.from_dict(saved), lengths, spec, total=12)
    assert first + rest == whole


# ---------------------------------------------------------------- model inputs


def test_unpacked_batches_keep_their_attention_mask():
    batch = {
        "input_ids": torch.ones(2, 3, dtype=torch.long),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
        "labels": torch.ones(2, 3, dtype=torch.long),
    }
    assert set(loop._inputs(batch)) == {"input_ids", "attention_mask"}


def test_the_loop_feeds_packed_batches_through_packed_inputs(tmp_path, monkeypatch):
    """train() and evaluate_loss() must use data/pack.packed_inputs (the function tests/test_data_pack.py checks)."""
    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.train.accel import make_accelerator

    rng = random.Random(0)
    examples = []
    for _ in range(24):
        ids = [rng.randint(3, 49) for _ in range(rng.randint(4, 14))]
        examples.append({"input_ids": ids, "labels": list(ids)})
    data = pack(TokenizedData(examples=examples, choice_sets=[], pad_id=0), 32)
    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(vocab_size=50, width=32, layers=2, heads=4, context_length=32, pad_token_id=0, eos_token_id=1)
    )
    calls, forwarded = [], []
    real_inputs, real_forward = loop.packed_inputs, model.forward

    def spy_inputs(batch):
        calls.append(batch["input_ids"].shape)
        return real_inputs(batch)

    def spy_forward(*args, **kwargs):
        forwarded.append(set(kwargs))
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(loop, "packed_inputs", spy_inputs)
    monkeypatch.setattr(model, "forward", spy_forward)
    spec = TrainSpec(max_steps=2, batch_size=2, learning_rate=1e-3, log_every=1)
    acc = make_accelerator(spec, DistributedSpec())
    result = loop.train(
        model,
        data,
        data,
        spec,
        tmp_path / "run",
        acc,
        seed=0,
        fingerprint={},
        resume=False,
        group_by_length=False,
        forward_kwargs={"use_cache": False},
    )
    assert result.steps == 2 and math.isfinite(result.val_loss)
    assert len(calls) == len(forwarded) > 2  # training steps and the validation batches
    assert all("attention_mask" not in keys and "position_ids" in keys for keys in forwarded)
