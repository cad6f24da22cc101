"""The sweep's two pictures: loss against compute (one curve per model size, the fitted frontier) and
iso-loss contours of the fitted law over (N, D), with the runs on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from finetune.scale.fit import Law

LOSS_VS_FLOPS = "scale_loss_vs_flops.png"
ISO_LOSS = "scale_iso_loss.png"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Through a temporary file and a rename, like every other file ft writes."""
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def loss_vs_flops(
    runs: list[dict[str, Any]], law: Law | None, frontier: list[str], predicted: dict[str, Any] | None, path: Path
) -> Path:
    """Final validation loss against 6ND: runs of one size joined, the law's frontier, the predict run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    sizes = sorted(
        {(r["layers"], r["width"], r["parameters"]) for r in runs if r["role"] == "grid"}, key=lambda s: s[2]
    )
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(sizes))))
    for color, (layers, width, n) in zip(colors, sizes):
        mine = sorted(
            (r for r in runs if (r["layers"], r["width"]) == (layers, width) and r["role"] == "grid"),
            key=lambda r: r["flops"],
        )
        ax.plot(
            [r["flops"] for r in mine],
            [r["val_loss"] for r in mine],
            "o-",
            color=color,
            label=f"L{layers} W{width} (N={n:,})",
        )
    on_frontier = [r for r in runs if r["id"] in frontier]
    ax.scatter(
        [r["flops"] for r in on_frontier],
        [r["val_loss"] for r in on_frontier],
        s=140,
        facecolors="none",
        edgecolors="red",
        label="measured frontier",
    )
    flops = [r["flops"] for r in runs]
    if law is not None and law.has_optimum:
        grid = np.logspace(np.log10(min(flops)) - 0.1, np.log10(max(flops)) + 0.2, 100)
        ax.plot(grid, law.frontier_loss(grid), "k--", label="fitted law's frontier")
    _predict_marks(ax, runs, predicted)
    ax.set_xscale("log")
    ax.set_xlabel("training compute 6ND (FLOPs, N non-embedding)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def _predict_marks(ax: Any, runs: list[dict[str, Any]], predicted: dict[str, Any] | None) -> None:
    held = next((r for r in runs if r["role"] == "predict"), None)
    if held is None or predicted is None:
        return
    ci = predicted.get("ci")
    err = None if ci is None else [[predicted["loss"] - ci[0]], [ci[1] - predicted["loss"]]]
    ax.errorbar(
        [held["flops"]], [predicted["loss"]], yerr=err, fmt="s", color="orange", capsize=4, label="predicted (95% CI)"
    )
    if held.get("val_loss") is not None:
        ax.plot([held["flops"]], [held["val_loss"]], "*", color="black", markersize=12, label=f"measured {held['id']}")


def iso_loss(runs: list[dict[str, Any]], law: Law, path: Path) -> Path:
    """Contours of the fitted L(N, D), the runs coloured by measured loss, and the compute-optimal line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    n = np.array([r["parameters"] for r in runs], dtype=float)
    d = np.array([r["tokens"] for r in runs], dtype=float)
    ns = np.logspace(np.log10(n.min()) - 0.3, np.log10(n.max()) + 0.3, 120)
    ds = np.logspace(np.log10(d.min()) - 0.3, np.log10(d.max()) + 0.3, 120)
    grid_n, grid_d = np.meshgrid(ns, ds)
    surface = law.loss(grid_n, grid_d)
    levels = np.quantile(surface, np.linspace(0.03, 0.97, 12))
    contours = ax.contour(grid_n, grid_d, surface, levels=np.unique(levels), colors="0.35", linewidths=0.8)
    ax.clabel(contours, fontsize=7, fmt="%.2f")
    points = ax.scatter(n, d, c=[r["val_loss"] for r in runs], cmap="viridis", edgecolors="black", zorder=3)
    fig.colorbar(points, ax=ax, label="measured validation loss")
    if law.has_optimum:
        budgets = np.logspace(np.log10(6 * ns[0] * ds[0]), np.log10(6 * ns[-1] * ds[-1]), 50)
        opt_n, opt_d = law.optimum(budgets)
        keep = (opt_n >= ns[0]) & (opt_n <= ns[-1]) & (opt_d >= ds[0]) & (opt_d <= ds[-1])
        ax.plot(opt_n[keep], opt_d[keep], "r-", label="compute-optimal N, D")
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("training tokens D")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
