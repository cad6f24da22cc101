"""Mixing sources by proportion (issue #16, point 2): draws within 2% of the requested shares of examples or
tokens, deterministic for a seed, without replacement within a source, and the same after kill -9 and resume."""

from __future__ import annotations

import bisect
import itertools
import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from helpers_tiny import assert_same_run, checkpoint_steps, run_cli, run_inprocess, write_recipe

from finetune.config.load import RecipeError, recipe_from_dict
from finetune.data.mixing import apportion, plan_mixture
from finetune.train.batching import micro_batches

SIZES = (500, 3000, 8000)  # the smallest source is drawn 4 times over per epoch, the largest partly
SHARES = (0.2, 0.3, 0.5)


def groups(sizes=SIZES) -> list[list[int]]:
    start, out = 0, []
    for n in sizes:
        out.append(list(range(start, start + n)))
        start += n
    return out


def source_of(index: int, sizes=SIZES) -> int:
    return bisect.bisect_right(list(itertools.accumulate(sizes)), index)


def test_example_shares_within_two_percent_over_ten_thousand_draws():
    lengths = [10] * sum(SIZES)
    mix = plan_mixture(["a", "b", "c"], groups(), list(SHARES), lengths, "examples", per_epoch=10_000)
    drawn = mix.epoch_indices(seed=3, epoch=0)
    assert len(drawn) == 10_000
    counts = Counter(source_of(i) for i in drawn)
    for s, share in enumerate(SHARES):
        assert abs(counts[s] / 10_000 - share) <= 0.02
    small = Counter(i for i in drawn if source_of(i) == 0)
    assert set(small.values()) == {4}  # 2000 draws of 500 rows: every row 4 times, none 3 or 5 (no replacement)


def test_token_shares_within_two_percent():
    sizes = (4000, 4000)
    lengths = [8] * 4000 + [40 + i % 21 for i in range(4000)]  # the second source's rows are ~6x longer
    mix = plan_mixture(["short", "long"], groups(sizes), [0.5, 0.5], lengths, "tokens", per_epoch=10_000)
    drawn = mix.epoch_indices(seed=0, epoch=1)
    tokens = Counter()
    for i in drawn:
        tokens[source_of(i, sizes)] += lengths[i]
    assert abs(tokens[0] / sum(tokens.values()) - 0.5) <= 0.02
    assert Counter(source_of(i, sizes) for i in drawn)[0] > 8000  # by tokens, short rows are drawn far more often


def test_draws_are_a_pure_function_of_seed_and_epoch_and_walk_on_across_epochs():
    mix = plan_mixture(["a", "b", "c"], groups(), list(SHARES), [1] * sum(SIZES), "examples", per_epoch=1000)
    again = plan_mixture(["a", "b", "c"], groups(), list(SHARES), [1] * sum(SIZES), "examples", per_epoch=1000)
    assert mix.epoch_indices(5, 2) == again.epoch_indices(5, 2)
    assert mix.epoch_indices(5, 2) != mix.epoch_indices(6, 2)
    big = [i for e in range(3) for i in mix.epoch_indices(5, e) if source_of(i) == 2]
    assert len(big) == len(set(big)) == 1500  # epochs 0-2 take the largest source's next rows, none twice


def test_apportion_adds_up():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(apportion(9999, [0.2, 0.3, 0.5])) == 9999


def test_micro_batches_take_the_pool_and_are_unchanged_without_one():
    lengths = [i % 7 + 1 for i in range(40)]
    assert micro_batches(lengths, 4, 0, 0, True) == micro_batches(lengths, 4, 0, 0, True, pool=list(range(40)))
    pool = [3, 3, 5, 7, 9, 11, 13, 15]
    drawn = sorted(i for mb in micro_batches(lengths, 4, 0, 1, False, pool=pool) for i in mb)
    assert drawn == sorted(pool)


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            {"sources": [{"scenario": "tutoring", "proportion": 0.5}, {"scenario": "legal", "proportion": 0.4}]},
            "sum to 0.9",
        ),
        (
            {"sources": [{"scenario": "tutoring", "proportion": 0.5}, {"scenario": "legal"}]},
            "sources[1].proportion is missing",
        ),
        (
            {"sources": [{"scenario": "tutoring", "proportion": 1, "weight": 2}]},
            "data.sources.0: proportion and weight",
        ),
        ({"sources": [{"scenario": "tutoring"}], "mix_by": "tokens"}, "need sources[].proportion"),
        ({"sources": [{"scenario": "tutoring", "proportion": 1}], "packing": True}, "packing"),
    ],
)
def test_bad_proportions_name_the_key(data, expected):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"name": "x", "model": {"path": "m"}, "method": {"kind": "lora"}, "data": data})
    assert expected in str(err.value)


# ---------------------------------------------------------------- a real run, killed and resumed


def mixed_recipe(base: Path, out: Path) -> dict:
    """Two generated sources at 3:1 of 32 draws per epoch: batch 4 x accumulation 2 = 4 steps an epoch, 2 epochs."""
    return {
        "name": "mixed",
        "seed": 0,
        "output": str(out),
        "model": {"path": str(base)},
        "data": {
            "sources": [
                {"scenario": "risk_assessment", "sizes": {"train": 40, "validation": 4, "test": 4}, "proportion": 0.75},
                {
                    "scenario": "financial_analysis",
                    "sizes": {"train": 6, "validation": 4, "test": 4},
                    "proportion": 0.25,
                },
            ],
            "max_length": 64,
            "examples_per_epoch": 32,
        },
        "method": {"kind": "lora", "r": 4},
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "grad_accum": 2,
            "learning_rate": 1e-3,
            "log_every": 1,
            "save_every": 1,
            "threads": 1,
        },
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from bench.gpu_check import build_base

    return build_base(tmp_path_factory.mktemp("base"), width=32, layers=2, heads=4)


def test_mixed_run_is_identical_after_kill_and_resume(base, tmp_path):
    reference = mixed_recipe(base, tmp_path / "reference")
    run_inprocess(reference)
    killed = mixed_recipe(base, tmp_path / "killed")
    path = write_recipe(killed, tmp_path / "killed.yaml")
    code, log = run_cli(["run", str(path)], kill="backward:11")  # dies mid step 6, in the second epoch
    assert code == -signal.SIGKILL, log[-2000:]
    assert checkpoint_steps(tmp_path / "killed")[-1] == 5
    code, log = run_cli(["run", str(path), "--resume"])
    assert code == 0, log[-2000:]
    assert "mixing by examples: 32 examples per epoch: risk_assessment 24 (75%), financial_analysis 8 (25%)" in log
    assert_same_run(tmp_path / "killed", tmp_path / "reference", "model/adapter_model.safetensors")
    stats = json.loads((tmp_path / "reference" / "report.json").read_text())["finetune"]["data_stats"]
    assert stats["mixture"]["sources"]["financial_analysis"] == {"proportion": 0.25, "per_epoch": 8, "rows": 6}
    assert (tmp_path / "reference" / "overlap.json").is_file() and "overlap" in stats
