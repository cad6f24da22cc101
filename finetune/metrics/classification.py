"""Classification, calibration and fairness metrics on plain label lists.

Pure Python/numpy so evaluators stay fast to import; labels may be str or int.
Empty inputs return 0.0 rather than raising, so an empty split never crashes a report.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np

Label = Hashable
Average = Literal["binary", "macro", "weighted"]


def _check_lengths(name: str, **columns: Sequence) -> None:
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(f"{name}: inputs differ in length ({shown}); pass one value per example")


def accuracy(y_true: Sequence[Label], y_pred: Sequence[Label]) -> float:
    _check_lengths("accuracy", y_true=y_true, y_pred=y_pred)
    if not y_true:
        return 0.0
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def _prf_counts(y_true: Sequence[Label], y_pred: Sequence[Label], label: Label) -> tuple[int, int, int]:
    tp = sum(t == label and p == label for t, p in zip(y_true, y_pred))
    fp = sum(t != label and p == label for t, p in zip(y_true, y_pred))
    fn = sum(t == label and p != label for t, p in zip(y_true, y_pred))
    return tp, fp, fn


def _f1_for(y_true: Sequence[Label], y_pred: Sequence[Label], label: Label) -> float:
    tp, fp, fn = _prf_counts(y_true, y_pred, label)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _sorted_labels(*columns: Sequence[Label]) -> list[Label]:
    labels = set().union(*columns)
    try:
        return sorted(labels)
    except TypeError:  # mixed str/int labels: any stable order will do
        return sorted(labels, key=repr)


def f1(
    y_true: Sequence[Label],
    y_pred: Sequence[Label],
    average: Average = "binary",
    pos_label: Label | None = None,
) -> float:
    """F1 as scikit-learn computes it (zero_division=0).

    ``binary`` needs ``pos_label`` unless the labels are {0, 1} (then 1 is positive,
    as in sklearn). ``macro`` averages over every label seen in either list;
    ``weighted`` weights each label's F1 by its count in ``y_true``.
    """
    _check_lengths("f1", y_true=y_true, y_pred=y_pred)
    if not y_true:
        return 0.0
    labels = _sorted_labels(y_true, y_pred)
    if average == "binary":
        if pos_label is None:
            if not set(labels) <= {0, 1}:
                raise ValueError(
                    f"f1(average='binary'): labels {labels} are not 0/1; pass pos_label= or use average='macro'"
                )
            pos_label = 1
        return _f1_for(y_true, y_pred, pos_label)
    if average == "macro":
        return float(np.mean([_f1_for(y_true, y_pred, lab) for lab in labels]))
    if average == "weighted":
        support = [sum(t == lab for t in y_true) for lab in labels]
        scores = [_f1_for(y_true, y_pred, lab) for lab in labels]
        return float(np.dot(support, scores) / sum(support))
    raise ValueError(f"f1: unknown average {average!r}; use 'binary', 'macro' or 'weighted'")


def confusion_matrix(
    y_true: Sequence[Label], y_pred: Sequence[Label], labels: Sequence[Label] | None = None
) -> tuple[list[Label], list[list[int]]]:
    """(labels, counts) with counts[i][j] = rows of true ``labels[i]`` predicted ``labels[j]``.

    ``labels`` fixes the order (the task's label set first); labels seen in either list but
    not named there, such as an unparsed answer, are appended so no row goes uncounted.
    """
    _check_lengths("confusion_matrix", y_true=y_true, y_pred=y_pred)
    order = list(labels or [])
    order += [lab for lab in _sorted_labels(y_true, y_pred) if lab not in order]
    index = {lab: i for i, lab in enumerate(order)}
    counts = [[0] * len(order) for _ in order]
    for t, p in zip(y_true, y_pred):
        counts[index[t]][index[p]] += 1
    return order, counts


def per_class(
    y_true: Sequence[Label], y_pred: Sequence[Label], labels: Sequence[Label] | None = None
) -> dict[Label, dict[str, float]]:
    """Precision, recall, F1 and support per true label (zero_division=0, as scikit-learn).

    Only labels that occur in ``y_true`` or in ``labels`` get a row: an unparsed answer is a
    wrong prediction, not a class, so it lowers recall without a row of its own.
    """
    _check_lengths("per_class", y_true=y_true, y_pred=y_pred)
    order = list(labels or []) + [lab for lab in _sorted_labels(y_true) if lab not in (labels or [])]
    out = {}
    for lab in order:
        tp, fp, fn = _prf_counts(y_true, y_pred, lab)
        out[lab] = {
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
            "support": tp + fn,
        }
    return out


def mcc(y_true: Sequence[Label], y_pred: Sequence[Label]) -> float:
    """Matthews correlation, multi-class form (Gorodkin's R_K, as sklearn); 0 when undefined."""
    _check_lengths("mcc", y_true=y_true, y_pred=y_pred)
    if not y_true:
        return 0.0
    labels = _sorted_labels(y_true, y_pred)
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for t, p in zip(y_true, y_pred):
        cm[index[t], index[p]] += 1
    t_sum, p_sum = cm.sum(axis=1), cm.sum(axis=0)
    n_correct, n = np.trace(cm), cm.sum()
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n * n - np.dot(p_sum, p_sum)
    cov_ytyt = n * n - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def _binary_arrays(name: str, probs: Sequence[float], y_true: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    _check_lengths(name, probs=probs, y_true=y_true)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.float64)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"{name}: probabilities must lie in [0, 1]; got range [{p.min()}, {p.max()}]")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name}: y_true must be 0/1 labels; map the positive class to 1 first")
    return p, y


def brier(probs: Sequence[float], y_true: Sequence[int]) -> float:
    """Mean squared error between P(positive) and the 0/1 outcome (lower is better)."""
    p, y = _binary_arrays("brier", probs, y_true)
    return float(np.mean((p - y) ** 2)) if p.size else 0.0


def ece(probs: Sequence[float], y_true: Sequence[int], bins: int = 10) -> float:
    """Expected calibration error for binary P(positive).

    Definition: split [0, 1] into ``bins`` equal-width bins (last bin closed,
    others [lo, hi)); ECE = sum over non-empty bins b of (n_b / n) *
    |mean(y in b) - mean(p in b)|, i.e. the calibration gap of P(positive)
    itself (not of the max-class confidence).
    """
    if bins < 1:
        raise ValueError(f"ece: bins must be >= 1, got {bins}")
    p, y = _binary_arrays("ece", probs, y_true)
    if not p.size:
        return 0.0
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / p.size)


def _rate_gap(rates: list[float]) -> float:
    return max(rates) - min(rates) if rates else 0.0


def demographic_parity_difference(y_pred: Sequence[Label], groups: Sequence[Hashable], positive: Label) -> float:
    """Largest gap between groups in the share of ``positive`` predictions (0 = parity)."""
    _check_lengths("demographic_parity_difference", y_pred=y_pred, groups=groups)
    rates = []
    for g in set(groups):
        preds = [p for p, gg in zip(y_pred, groups) if gg == g]
        rates.append(sum(p == positive for p in preds) / len(preds))
    return _rate_gap(rates)


def equal_opportunity_difference(
    y_true: Sequence[Label], y_pred: Sequence[Label], groups: Sequence[Hashable], positive: Label
) -> float:
    """Largest gap between groups in true-positive rate; groups with no true positives are skipped."""
    _check_lengths("equal_opportunity_difference", y_true=y_true, y_pred=y_pred, groups=groups)
    rates = []
    for g in set(groups):
        hits = [p == positive for t, p, gg in zip(y_true, y_pred, groups) if gg == g and t == positive]
        if hits:
            rates.append(sum(hits) / len(hits))
    return _rate_gap(rates)
