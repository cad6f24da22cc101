"""Scaling-law fits on synthetic runs from a known law: exponents recovered, optimum and frontier right,
the report and plots written; the scale section's checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finetune.config.load import RecipeError, recipe_from_dict
from finetune.scale.fit import Law, analyse, depth_vs_width, fit_law, pareto_frontier

# Chinchilla's fitted law (Hoffmann et al. 2022) as ground truth
TRUE = Law(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def _synthetic(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 sizes x 4 budgets over two decades each, loss times exp(normal noise)."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.logspace(7, 9, 4), 4)
    d = np.tile(np.logspace(9, 11, 4), 4)
    return n, d, TRUE.loss(n, d) * np.exp(rng.normal(0, noise, len(n)))


def test_fit_recovers_known_exponents_from_noisy_points():
    n, d, loss = _synthetic(noise=0.005)
    law = fit_law(n, d, loss)
    assert abs(law.alpha - TRUE.alpha) < 0.05
    assert abs(law.beta - TRUE.beta) < 0.05
    assert abs(law.E - TRUE.E) < 0.1
    assert np.max(np.abs(law.loss(n, d) / loss - 1)) < 0.02


def test_huber_fit_shrugs_off_one_bad_run():
    n, d, loss = _synthetic(noise=0.002, seed=1)
    loss[5] *= 1.3  # one diverged run
    law = fit_law(n, d, loss)
    assert abs(law.alpha - TRUE.alpha) < 0.05 and abs(law.beta - TRUE.beta) < 0.05


def test_optimum_is_the_minimum_along_an_iso_flop_line():
    flops = 1e21
    n_opt, d_opt = TRUE.optimum(flops)
    assert 6 * n_opt * d_opt == pytest.approx(flops)
    sizes = np.logspace(np.log10(n_opt) - 1, np.log10(n_opt) + 1, 2001)
    numeric = sizes[np.argmin(TRUE.loss(sizes, flops / 6 / sizes))]
    assert numeric == pytest.approx(n_opt, rel=0.01)
    assert TRUE.frontier_loss(flops) == pytest.approx(float(TRUE.loss(n_opt, d_opt)))


def test_pareto_frontier_keeps_runs_no_cheaper_run_beats():
    flops = [1, 2, 3, 4, 5]
    loss = [3.0, 3.2, 2.8, 2.9, 2.5]
    assert pareto_frontier(flops, loss) == [0, 2, 4]


def _record(layers: int, width: int, n: float, d: float, loss: float, role: str = "grid") -> dict:
    return {
        "id": f"L{layers}-W{width}-T{int(d)}",
        "role": role,
        "layers": layers,
        "width": width,
        "parameters": int(n),
        "tokens": int(d),
        "flops": 6 * n * d,
        "val_loss": loss,
        "status": "done",
    }


def test_depth_vs_width_pairs_equal_sizes_at_equal_tokens():
    runs = [
        _record(4, 64, 200_000, 1e6, 3.00),
        _record(1, 128, 198_000, 1e6, 3.10),
        _record(1, 128, 198_000, 2e6, 2.90),  # other tokens: no partner
        _record(2, 64, 100_000, 1e6, 3.20),  # half the size: no partner
    ]
    dw = depth_vs_width(runs)
    assert len(dw["pairs"]) == 1
    pair = dw["pairs"][0]
    assert pair["deep"]["layers"] == 4 and pair["winner"] == "deep" and pair["difference"] == pytest.approx(0.1)


def test_analyse_predicts_a_held_out_run_and_writes_the_report(tmp_path):
    from finetune.scale.main import _write

    n, d, loss = _synthetic(noise=0.003, seed=2)
    runs = [_record(1 + i % 2, 32 * (1 + i // 4), a, b, y) for i, (a, b, y) in enumerate(zip(n, d, loss))]
    held = _record(8, 512, 3e9, 3e11, float(TRUE.loss(3e9, 3e11)), role="predict")
    fit = analyse(runs, held, resamples=8, seed=0)
    assert fit["bootstrap"] == 8
    lo, hi = fit["law_ci"]["alpha"]
    assert lo <= fit["law"]["alpha"] <= hi
    assert fit["prediction"]["loss"] == pytest.approx(held["val_loss"], rel=0.02)
    assert fit["optimum"]["tokens_per_parameter"] == pytest.approx(
        TRUE.optimum(held["flops"])[1] / TRUE.optimum(held["flops"])[0], rel=0.5
    )
    summary = {
        "recipe": "synthetic",
        "folder": str(tmp_path),
        "status": "complete",
        "finished": len(runs) + 1,
        "wall_s": 1.0,
        "machine": {"cores": 2, "load": [0.1, 0.1, 0.1]},
        "runs": runs + [held],
        "fit": fit,
    }
    _write(tmp_path, summary)
    md = (tmp_path / "scale.md").read_text()
    assert "| alpha |" in md and "tokens per parameter" in md and "measured" in md
    assert json.loads((tmp_path / "scale.json").read_text())["fit"]["law"]["alpha"] == fit["law"]["alpha"]
    for png in summary["plots"]:
        assert (tmp_path / png).stat().st_size > 1000


def _recipe(**scale) -> dict:
    return {
        "name": "s",
        "model": {"core": {"layers": 1, "width": 32, "heads": 4}},
        "pretrain": {"tokenizer": {"vocab_size": 300}},
        "scale": {"tokens": [1000, 2000], **scale},
    }


@pytest.mark.parametrize(
    "scale, message",
    [
        ({}, "depths and widths"),
        ({"depths": [1], "widths": [32], "cores": [{"width": 32}]}, "not both"),
        ({"depths": [1], "widths": [30]}, "not divisible by model.core.heads"),
        ({"depths": [1], "widths": [32], "predict": {"depth": 2, "width": 34, "tokens": 10}}, "not divisible"),
    ],
)
def test_scale_section_is_checked(scale, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(_recipe(**scale))


def test_scale_needs_a_pretraining():
    data = _recipe(depths=[1], widths=[32])
    data["model"] = {"path": "some/model"}
    del data["pretrain"]
    with pytest.raises(RecipeError, match="scale needs model.core"):
        recipe_from_dict(data)
