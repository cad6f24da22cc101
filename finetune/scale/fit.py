"""Scaling-law fits: Chinchilla's parametric law (approach 3), the compute frontier (approach 1), bootstrap CIs.

Approach 3 (Hoffmann et al. 2022) fits L(N, D) = E + A/N^alpha + B/D^beta by minimising a Huber loss
(delta 1e-3) between log L and the log of the law written as a log-sum-exp of a - alpha log N,
b - beta log D and e (A = exp a, ...), with L-BFGS started from the best points of a grid of
initialisations. We minimise the sum to tight tolerances: Besiroglu et al. (2024) traced Chinchilla's
published exponents, which their data did not support, to an optimiser stopped early. The Huber
loss is divided by delta so its gradients are of order one and the tolerances mean what they say.

Approach 1 reads the frontier off the runs themselves: the runs no cheaper run beats, and a power
law N_opt = k C^a through them. Intervals come from refitting on runs resampled with replacement.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

HUBER_DELTA = 1e-3
# Hoffmann et al.'s grid of initialisations: a, b in 0..25 step 5, e in -1..1 step .5, alpha, beta in 0..2 step .5
INIT_GRID = np.array(
    list(
        itertools.product(
            np.arange(0, 30, 5.0),
            np.arange(0, 30, 5.0),
            np.arange(-1, 1.5, 0.5),
            np.arange(0, 2.5, 0.5),
            np.arange(0, 2.5, 0.5),
        )
    )
)
STARTS = 10  # L-BFGS runs from the best grid points
# a, b, e, alpha, beta: wide enough for any law seen in practice; they keep a degenerate fit (a few runs, a
# bootstrap draw of one size) finite, and exponents non-negative (loss does not rise with N or D)
BOUNDS = [(-20.0, 60.0), (-20.0, 60.0), (-20.0, 5.0), (0.0, 4.0), (0.0, 4.0)]
BOOTSTRAP_STARTS = 2  # a refit starts from the full fit and the resample's best grid points


@dataclass(frozen=True)
class Law:
    """L(N, D) = E + A / N^alpha + B / D^beta, with the Huber objective it reached."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float = float("nan")

    def loss(self, n: Any, d: Any) -> Any:
        return self.E + self.A / np.power(n, self.alpha) + self.B / np.power(d, self.beta)

    @property
    def has_optimum(self) -> bool:
        """Compute-optimal sizes exist only when loss falls with both N and D."""
        return self.alpha > 0 and self.beta > 0 and self.A > 0 and self.B > 0

    def optimum(self, flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising L under 6ND = flops (Hoffmann et al. eq. 4)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        n = g * (flops / 6) ** (self.beta / (self.alpha + self.beta))
        return n, flops / 6 / n

    def frontier_loss(self, flops: Any) -> Any:
        """The lowest loss the law allows at each compute budget (along N_opt, D_opt)."""
        n, d = self.optimum(flops)
        return self.loss(n, d)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _theta_to_law(theta: np.ndarray, objective: float) -> Law:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return Law(math.exp(e), math.exp(a), math.exp(b), alpha, beta, objective)


def _huber_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray
) -> tuple[float, np.ndarray]:
    """Sum of Huber(delta)/delta over the runs' log-loss residuals, and its gradient in (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    predicted = top + np.log(total)
    weights /= total
    r = predicted - log_l
    small = np.abs(r) <= HUBER_DELTA
    value = np.where(small, r * r / (2 * HUBER_DELTA), np.abs(r) - HUBER_DELTA / 2).sum() / HUBER_DELTA
    slope = np.clip(r / HUBER_DELTA, -1, 1) / HUBER_DELTA
    grad = np.array(
        [
            (slope * weights[0]).sum(),
            (slope * weights[1]).sum(),
            (slope * weights[2]).sum(),
            -(slope * weights[0] * log_n).sum(),
            -(slope * weights[1] * log_d).sum(),
        ]
    )
    return float(value), grad


def _grid_values(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> np.ndarray:
    """The objective at every grid point at once (a few thousand points x the runs)."""
    g = INIT_GRID
    t1 = g[:, 0:1] - g[:, 3:4] * log_n
    t2 = g[:, 1:2] - g[:, 4:5] * log_d
    t3 = np.repeat(g[:, 2:3], len(log_n), axis=1)
    r = np.logaddexp(np.logaddexp(t1, t2), t3) - log_l
    return np.where(np.abs(r) <= HUBER_DELTA, r * r / (2 * HUBER_DELTA), np.abs(r) - HUBER_DELTA / 2).sum(axis=1)


def fit_law(
    n: Sequence[float],
    d: Sequence[float],
    loss: Sequence[float],
    starts: Sequence[Sequence[float]] = (),
    grid_starts: int = STARTS,
) -> Law:
    """Approach 3: the law with the lowest Huber objective over L-BFGS runs from the best grid points (and ``starts``)."""
    with _one_blas_thread():
        return _fit_law(n, d, loss, starts, grid_starts)


def _fit_law(n: Any, d: Any, loss: Any, starts: Sequence[Sequence[float]], grid_starts: int) -> Law:
    from scipy.optimize import minimize

    log_n, log_d, log_l = (np.log(np.asarray(x, dtype=float)) for x in (n, d, loss))
    best_grid = INIT_GRID[np.argsort(_grid_values(log_n, log_d, log_l))[:grid_starts]]
    candidates = [np.asarray(s, dtype=float) for s in starts] + list(best_grid)
    best: tuple[float, np.ndarray] | None = None
    for theta0 in candidates:
        res = minimize(
            _huber_objective,
            theta0,
            args=(log_n, log_d, log_l),
            jac=True,
            method="L-BFGS-B",
            bounds=BOUNDS,
            options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-9},
        )
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best[0]):
            best = (float(res.fun), res.x)
    return _theta_to_law(best[1], best[0])


def law_theta(law: Law) -> list[float]:
    """The law as the optimiser's parameters (a warm start for refits)."""
    return [math.log(law.A), math.log(law.B), math.log(law.E), law.alpha, law.beta]


def bootstrap_laws(
    n: Sequence[float], d: Sequence[float], loss: Sequence[float], law: Law, resamples: int, seed: int
) -> list[Law]:
    """Refits on runs drawn with replacement; a draw without two distinct N and two distinct D is drawn again."""
    rng = np.random.default_rng(seed)
    n, d, loss = (np.asarray(x, dtype=float) for x in (n, d, loss))
    laws: list[Law] = []
    tries = 0
    with _one_blas_thread():
        while len(laws) < resamples and tries < resamples * 20:
            tries += 1
            pick = rng.integers(0, len(n), len(n))
            if len(set(n[pick])) < 2 or len(set(d[pick])) < 2:
                continue
            laws.append(_fit_law(n[pick], d[pick], loss[pick], [law_theta(law)], BOOTSTRAP_STARTS))
    return laws


def _one_blas_thread() -> Any:
    """L-BFGS on five parameters spends its time in BLAS thread hand-offs on a busy machine (15x slower seen)."""
    import contextlib

    import scipy.optimize  # noqa: F401 - its BLAS must be loaded for the limit to reach it

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the finite bootstrap values (None when there are none)."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(finite) == 0:
        return None
    tail = (1 - level) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


# ---------------------------------------------------------------- approach 1: the measured frontier


def pareto_frontier(flops: Sequence[float], loss: Sequence[float]) -> list[int]:
    """Indices of the runs with a lower loss than every run of less (or equal) compute, by compute."""
    order = sorted(range(len(flops)), key=lambda i: (flops[i], loss[i]))
    frontier: list[int] = []
    best = math.inf
    for i in order:
        if loss[i] < best:
            frontier.append(i)
            best = loss[i]
    return frontier


def power_law(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """(k, a) of y = k x^a by least squares in log-log; None without two distinct x."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if len(set(lx.tolist())) < 2:
        return None
    a, log_k = np.polyfit(lx, ly, 1)
    return float(math.exp(log_k)), float(a)


def frontier_fit(n: Sequence[float], flops: Sequence[float], loss: Sequence[float]) -> dict[str, Any]:
    """Approach 1: the frontier runs and N_opt = k C^a through them (the exponent Chinchilla found near 0.5)."""
    idx = pareto_frontier(flops, loss)
    fit = power_law([flops[i] for i in idx], [n[i] for i in idx]) if len(idx) >= 2 else None
    return {"runs": idx, "k": None if fit is None else fit[0], "a": None if fit is None else fit[1]}


# ---------------------------------------------------------------- everything the report shows

MIN_POINTS = 5  # the law has five parameters


def analyse(runs: list[dict[str, Any]], predict: dict[str, Any] | None, resamples: int, seed: int) -> dict[str, Any]:
    """Fits, intervals, frontier and depth-vs-width from the finished grid runs (dicts as in sweep.json).

    ``predict``: the held-out run's record (its parameters and tokens), whose loss the law then predicts.
    """
    n = [float(r["parameters"]) for r in runs]
    d = [float(r["tokens"]) for r in runs]
    loss = [float(r["val_loss"]) for r in runs]
    flops = [6 * a * b for a, b in zip(n, d)]
    out: dict[str, Any] = {"points": len(runs), "depth_vs_width": depth_vs_width(runs)}
    frontier = frontier_fit(n, flops, loss)
    out["frontier"] = {**frontier, "runs": [runs[i]["id"] for i in frontier["runs"]]}
    reference = float(predict["flops"]) if predict else max(flops, default=0.0)
    out["reference_flops"] = reference
    if frontier["a"] is not None and reference:
        n_opt = frontier["k"] * reference ** frontier["a"]
        out["frontier"]["optimum"] = _optimum_dict(n_opt, reference / 6 / n_opt)
    if len(runs) < MIN_POINTS or len(set(n)) < 2 or len(set(d)) < 2:
        out["law"] = None
        out["note"] = f"the law needs at least {MIN_POINTS} runs over two sizes and two budgets; {len(runs)} finished"
        return out
    law = fit_law(n, d, loss)
    laws = bootstrap_laws(n, d, loss, law, resamples, seed)
    out["law"] = law.to_dict()
    out["bootstrap"] = len(laws)
    out["law_ci"] = {k: interval([getattr(b, k) for b in laws]) for k in ("E", "A", "B", "alpha", "beta")}
    out["fit_error"] = _fit_error(law, n, d, loss)
    if law.has_optimum and reference:
        out["optimum"] = _law_optimum(law, laws, reference)
    if predict:
        out["prediction"] = {
            "id": predict["id"],
            "loss": float(law.loss(float(predict["parameters"]), float(predict["tokens"]))),
            "ci": interval([float(b.loss(float(predict["parameters"]), float(predict["tokens"]))) for b in laws]),
        }
    return out


def _optimum_dict(n_opt: float, d_opt: float) -> dict[str, float]:
    return {"parameters": n_opt, "tokens": d_opt, "tokens_per_parameter": d_opt / n_opt}


def _law_optimum(law: Law, laws: list[Law], flops: float) -> dict[str, Any]:
    """Compute-optimal N, D and D/N at ``flops`` by the law, with intervals over the bootstrap laws."""
    n_opt, d_opt = law.optimum(flops)
    good = [b for b in laws if b.has_optimum]
    sizes = [b.optimum(flops) for b in good]
    return {
        **_optimum_dict(n_opt, d_opt),
        "loss": float(law.frontier_loss(flops)),
        "n_exponent": law.beta / (law.alpha + law.beta),
        "n_exponent_ci": interval([b.beta / (b.alpha + b.beta) for b in good]),
        "parameters_ci": interval([s[0] for s in sizes]),
        "tokens_ci": interval([s[1] for s in sizes]),
        "tokens_per_parameter_ci": interval([s[1] / s[0] for s in sizes]),
    }


def _fit_error(law: Law, n: list[float], d: list[float], loss: list[float]) -> dict[str, float]:
    rel = [abs(float(law.loss(a, b)) / y - 1) for a, b, y in zip(n, d, loss)]
    return {"mean_relative": float(np.mean(rel)), "max_relative": float(np.max(rel))}


def depth_vs_width(runs: list[dict[str, Any]], tolerance: float = 1.25) -> dict[str, Any]:
    """Pairs of runs at the same tokens whose N differ by less than ``tolerance``x but whose shapes differ.

    In each pair the deeper (narrower) model meets the wider (shallower) one; the summary counts wins.
    """
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a["tokens"] != b["tokens"] or a["layers"] == b["layers"]:
                continue
            if max(a["parameters"], b["parameters"]) / min(a["parameters"], b["parameters"]) > tolerance:
                continue
            deep, wide = (a, b) if a["layers"] > b["layers"] else (b, a)
            pairs.append(
                {
                    "tokens": a["tokens"],
                    "deep": {k: deep[k] for k in ("id", "layers", "width", "parameters", "val_loss")},
                    "wide": {k: wide[k] for k in ("id", "layers", "width", "parameters", "val_loss")},
                    "winner": "deep" if deep["val_loss"] < wide["val_loss"] else "wide",
                    "difference": float(wide["val_loss"] - deep["val_loss"]),
                }
            )
    wins = {"deep": sum(p["winner"] == "deep" for p in pairs), "wide": sum(p["winner"] == "wide" for p in pairs)}
    return {"pairs": pairs, "wins": wins}
