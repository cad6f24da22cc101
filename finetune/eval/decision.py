"""The decision rule on constrained label scores, and the check that a model is not stuck on one class.

An argmax over label probabilities decides at the training prior: a model whose scores
rank the rows well can still put every row on the majority side (German credit: MCC 0
with every row "good"). ``eval.decision: tuned`` keeps the model and moves the rule:
per-class offsets are added to the log-probabilities, chosen on the validation split to
maximise the set's main metric, then applied unchanged to the test rows. With two labels
one offset is a threshold on the log-odds, searched exhaustively; with more, the offsets
are found by coordinate ascent. The metric is MCC for two labels (symmetric in the
labels and blind to the prior, so the majority side earns nothing) and macro-F1 for more
(each class counts the same, however rare). Offsets that do not also beat argmax out of
fold on the validation split are dropped: on a few dozen rows a tuned rule fits noise.

:func:`class_warning` says when the predictions are one class, or one class far beyond
its share of the references, so a score near zero is never left unexplained.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

Scores = list[dict[str, float]]  # per row: label -> probability (renormalised over the row's labels)
FEW = 20  # validation rows of a class below which the report calls the tuned offsets noisy
FLOOR = 1e-12  # a probability of 0 still needs a finite log-score
ROUNDS = 4  # coordinate-ascent passes for more than two labels
FOLDS = 5  # the out-of-fold check of a tuned rule (fewer when a class has fewer validation rows)
MAX_CANDIDATES = 256  # offsets tried per class and pass (quantiles of the flip points beyond that)
DOMINANT_SHARE = 0.9  # a class predicted for at least this share of rows...
EXCESS = 0.5  # ...and covering at least half of the rows its reference share leaves to other classes


# ---------------------------------------------------------------- metric


def metric_name(labels: list[str]) -> str:
    """The metric a rule is tuned for: MCC for two labels, macro-F1 for more."""
    return "mcc" if len(labels) == 2 else "f1_macro"


def score(metric: str, truth: list[str], predicted: list[str]) -> float:
    from finetune.metrics.classification import f1, mcc

    if metric == "mcc":
        return mcc(truth, predicted)
    return f1(truth, predicted, average="macro")


# ---------------------------------------------------------------- offsets


def label_set(scores: Scores) -> list[str]:
    """The labels tuned: the most common label set among the scored rows, in its own order."""
    sets = Counter(tuple(p) for p in scores if p)
    return list(sets.most_common(1)[0][0]) if sets else []


def log_scores(probs: dict[str, float], labels: list[str]) -> list[float]:
    return [math.log(max(probs.get(c, 0.0), FLOOR)) for c in labels]


def decide(probs: dict[str, float], offsets: dict[str, float]) -> str:
    """The label with the highest log-probability plus offset (ties: the first label, as argmax)."""
    best, pick = -math.inf, next(iter(probs))
    for c, p in probs.items():
        value = math.log(max(p, FLOOR)) + offsets.get(c, 0.0)
        if value > best:
            best, pick = value, c
    return pick


def apply_offsets(scores: Scores, offsets: dict[str, float]) -> Scores:
    """Scores renormalised after adding ``offsets`` to their logs: an argmax over them is the tuned rule."""
    out = []
    for probs in scores:
        if not probs:
            out.append(probs)
            continue
        logits = {c: math.log(max(p, FLOOR)) + offsets.get(c, 0.0) for c, p in probs.items()}
        top = max(logits.values())
        exp = {c: math.exp(v - top) for c, v in logits.items()}
        total = sum(exp.values())
        out.append({c: v / total for c, v in exp.items()})
    return out


def tune_offsets(
    scores: Scores, truth: list[str], metric: str | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Offsets (label -> added log-score, the first label fixed at 0) maximising ``metric`` on these rows.

    Only rows scored over the common label set and whose reference is one of those labels take
    part. Among offsets that score alike the one nearest 0 wins, so a model that gains nothing
    keeps its argmax. A rule tuned on few rows can fit their noise (36 validation rows, 7 of one
    class, moved a test MCC from 0.73 to 0.30), so the tuning is first cross-checked: offsets tuned
    on all folds but one decide the held-out fold, and unless those out-of-fold decisions beat
    argmax on the same rows the offsets stay 0. Returns the offsets and what was measured: metric,
    rows, argmax and tuned score (of the offsets returned), the out-of-fold check.
    """
    labels = label_set(scores)
    rows = [(log_scores(p, labels), t) for p, t in zip(scores, truth) if p and set(p) == set(labels) and t in labels]
    metric = metric or metric_name(labels)
    offsets = {c: 0.0 for c in labels}
    if len(labels) < 2 or len({t for _, t in rows}) < 2:
        return offsets, {"metric": metric, "rows": len(rows), "labels": labels, "argmax": None, "tuned": None}
    logs = [s for s, _ in rows]
    gold = [t for _, t in rows]
    argmax_score = score(metric, gold, _predict(logs, labels, [0.0] * len(labels)))
    vector, best = _tune(logs, gold, labels, metric)
    measured: dict[str, Any] = {"metric": metric, "rows": len(rows), "labels": labels, "argmax": argmax_score}
    folds_score = _out_of_fold(logs, gold, labels, metric) if any(vector) else None
    if folds_score is not None:
        folds, tuned_out = folds_score
        check = {"folds": folds, "argmax": argmax_score, "tuned": tuned_out}  # argmax decides row by row: no folds
        measured["out_of_fold"] = check
        if check["tuned"] <= check["argmax"] + 1e-12:
            measured["kept_argmax"] = {"in_sample": best}
            vector, best = [0.0] * len(labels), argmax_score
    measured["tuned"] = best
    measured["class_rows"] = {c: gold.count(c) for c in labels}
    return dict(zip(labels, vector)), measured


def _tune(logs: list[list[float]], gold: list[str], labels: list[str], metric: str) -> tuple[list[float], float]:
    """The offset vector (first label 0) and its score: one exhaustive pass for two labels, coordinate ascent for more."""
    vector = [0.0] * len(labels)
    best = score(metric, gold, _predict(logs, labels, vector))
    passes = 1 if len(labels) == 2 else ROUNDS
    for _ in range(passes):
        changed = False
        for k in range(1, len(labels)):
            value, got = _best_offset(logs, gold, labels, vector, k, metric)
            if got > best + 1e-12 or (abs(got - best) <= 1e-12 and abs(value) < abs(vector[k])):
                changed = changed or value != vector[k]
                vector[k], best = value, max(best, got)
        if not changed:
            break
    return vector, best


def _out_of_fold(logs: list[list[float]], gold: list[str], labels: list[str], metric: str) -> tuple[int, float] | None:
    """(folds, score) of the decisions made by offsets tuned without each row's fold; None with under 2 rows of a class.

    Folds are stratified (each class dealt round-robin in row order, so the check is deterministic);
    there are ``FOLDS`` of them, fewer when the rarest class has fewer rows.
    """
    rarest = min(gold.count(c) for c in set(gold))
    folds = min(FOLDS, rarest)
    if folds < 2:
        return None
    fold_of, seen = [], Counter()
    for t in gold:
        fold_of.append(seen[t] % folds)
        seen[t] += 1
    predicted = [""] * len(gold)
    for f in range(folds):
        train = [i for i in range(len(gold)) if fold_of[i] != f]
        vector, _ = _tune([logs[i] for i in train], [gold[i] for i in train], labels, metric)
        held = [i for i in range(len(gold)) if fold_of[i] == f]
        for i, p in zip(held, _predict([logs[i] for i in held], labels, vector)):
            predicted[i] = p
    return folds, score(metric, gold, predicted)


def _predict(logs: list[list[float]], labels: list[str], vector: list[float]) -> list[str]:
    out = []
    for s in logs:
        values = [v + b for v, b in zip(s, vector)]
        out.append(labels[values.index(max(values))])
    return out


def _best_offset(
    logs: list[list[float]], gold: list[str], labels: list[str], vector: list[float], k: int, metric: str
) -> tuple[float, float]:
    """Class k's offset, the others held: only points where some row changes its decision matter."""
    flips = sorted({max(v + b for j, (v, b) in enumerate(zip(s, vector)) if j != k) - s[k] for s in logs})
    if len(flips) > MAX_CANDIDATES:
        flips = [flips[round(i * (len(flips) - 1) / (MAX_CANDIDATES - 1))] for i in range(MAX_CANDIDATES)]
    # between two flip points every offset decides alike: try the midpoints, beyond both ends, and 0
    candidates = [0.0, flips[0] - 1.0, flips[-1] + 1.0]
    candidates += [(a + b) / 2 for a, b in zip(flips, flips[1:])]
    best_value, best_score = vector[k], -math.inf
    trial = list(vector)
    for value in sorted(set(candidates), key=abs):  # nearest 0 first: ties keep the smallest change
        trial[k] = value
        got = score(metric, gold, _predict(logs, labels, trial))
        if got > best_score + 1e-12:
            best_value, best_score = value, got
    return best_value, best_score


def describe(rule: dict[str, Any]) -> str:
    """One line for the console and the report: which rule decided, on what, with what gain."""
    if rule.get("rule") != "tuned":
        return "decision: argmax of the constrained label scores (the model's own prior)"
    if rule.get("tuned") is None:
        return f"decision: argmax (eval.decision tuned, but {rule.get('why', 'the validation split had fewer than two classes')})"
    if rule.get("kept_argmax"):
        cv = rule["out_of_fold"]
        return (
            f"decision: argmax kept (eval.decision tuned): offsets tuned on {rule['rows']} validation rows raised "
            f"{rule['metric']} there ({rule['argmax']:.3f} -> {rule['kept_argmax']['in_sample']:.3f}) but not out of "
            f"fold ({cv['folds']} folds: {cv['tuned']:.3f} against argmax {cv['argmax']:.3f}): a rule fitted to noise"
        )
    offsets = ", ".join(f"{c} {v:+.3f}" for c, v in rule["offsets"].items() if c != rule["labels"][0])
    few = {c: n for c, n in rule.get("class_rows", {}).items() if n < FEW}
    noisy = ("; noisy: only " + ", ".join(f"{n} {c!r}" for c, n in few.items()) + " validation rows") if few else ""
    return (
        f"decision: tuned on {rule['rows']} validation rows to maximise {rule['metric']} "
        f"({rule['argmax']:.3f} at argmax -> {rule['tuned']:.3f}); log-score offsets vs {rule['labels'][0]}: {offsets}"
        + noisy
    )


# ---------------------------------------------------------------- warnings


def class_warning(predicted: list[str], truth: list[str], what: str = "constrained") -> str | None:
    """A line when every prediction is one class, or one class takes far more rows than its share.

    "Far more": at least 90% of the rows and at least half of the rows the references give to
    the other classes. None when the references themselves hold a single class.
    """
    if not predicted or len(set(truth)) < 2:
        return None
    counts = Counter(predicted)
    top, n_top = counts.most_common(1)[0]
    share, ref_share = n_top / len(predicted), truth.count(top) / len(truth)
    ref_note = f"{100 * ref_share:.0f}% of the references are {top!r}"
    if len(counts) == 1:
        return (
            f"warning: the model predicts {top!r} for all {len(predicted)} rows ({what}; {ref_note}); "
            "its metrics are those of a constant answer; see data.class_balance and eval.decision: tuned"
        )
    if share >= max(DOMINANT_SHARE, ref_share + EXCESS * (1 - ref_share)):
        return (
            f"warning: the model predicts {top!r} for {100 * share:.0f}% of {len(predicted)} rows ({what}; "
            f"{ref_note}); see data.class_balance and eval.decision: tuned"
        )
    return None
