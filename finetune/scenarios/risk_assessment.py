"""Credit risk: label an application ``good`` or ``bad`` under a documented scoring rule.

Synthetic applications are one short line, e.g.
``age: 25-34; income: low; employment: 2 years; debt: high; amount: 5000; purpose: car; prior default: no``.
Every attribute is drawn independently; the clean label is ``bad`` when the
points below exceed 4 (sum >= 5), about 40% of rows:

=================  ==========================================
attribute          points
=================  ==========================================
income             low 2, medium 1, high 0
employment         0 years 2, 1-2 years 1, 3+ years 0
debt               none 0, low 0, medium 1, high 2
amount             < 5000: 0, 5000-14999: 1, >= 15000: 2
purpose            business 1, vacation 1, car/home/education/medical 0
prior default      yes 3, no 0
age (protected)    0 for every band: the rule ignores it
=================  ==========================================

Then each label flips with probability ``noise`` (default 0.1); rows keep the
rule's label as ``clean_label``, so ``ref_bayes_mcc`` (clean vs noisy) is the
best score any model can reach. No single attribute value predicts the label
well (best shortcut, prior default: MCC ~0.45 on clean labels vs 1.0 for the
rule), so a model must combine attributes. The age band is the protected
attribute (``group``); since it carries no points, any fairness gap a model
shows is learnt from noise, not from the rule. Loan amounts are whole thousands from
1000 to 30000, so the bands can be learnt from how numbers are written; the amounts in
``HELDOUT_AMOUNTS`` appear only in the test split (about 30% of its rows: same bands,
unseen numbers), beside the training amounts.

Real formats: UCI Statlog German credit (``german.data``, codes decoded with
``GERMAN_ATTRIBUTES``), UCI Australian credit (``australian.dat``), and any CSV
of features plus a label column.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from finetune.scenarios._common import (
    argmax_labels,
    check_lengths,
    data_error,
    fill_splits,
    gen_labels,
    iter_csv,
    iter_lines,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

CHOICES: list[str] = ["good", "bad"]
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-49", "50-64", "65+")
INCOME_POINTS = {"low": 2, "medium": 1, "high": 0}
INCOME_WEIGHTS = (0.35, 0.4, 0.25)
EMPLOYMENT_YEARS: tuple[int, ...] = (0, 1, 2, 3, 5, 8, 12)
DEBT_POINTS = {"none": 0, "low": 0, "medium": 1, "high": 2}
PURPOSE_POINTS = {"car": 0, "home": 0, "education": 0, "medical": 0, "business": 1, "vacation": 1}
HELDOUT_AMOUNTS: tuple[int, ...] = (2500, 6000, 10000, 18000)
TRAIN_AMOUNTS: tuple[int, ...] = tuple(a for a in range(1000, 30001, 1000) if a not in HELDOUT_AMOUNTS)
HELDOUT_SHARE = 0.3  # of test rows
PRIOR_DEFAULT_RATE = 0.15
THRESHOLD = 4  # bad when points exceed this


def age_band(years: float) -> str:
    """The protected group: an age band shared by generated rows and real files."""
    for band in reversed(AGE_BANDS):
        if years >= int(band.rstrip("+").split("-")[0]):
            return band
    return AGE_BANDS[0]


def points(income: str, employment: int, debt: str, amount: int, purpose: str, prior_default: bool) -> int:
    """The documented rule (see the module docstring); age takes no part."""
    employment_points = 2 if employment == 0 else 1 if employment <= 2 else 0
    amount_points = 0 if amount < 5000 else 1 if amount < 15000 else 2
    return (
        INCOME_POINTS[income]
        + employment_points
        + DEBT_POINTS[debt]
        + amount_points
        + PURPOSE_POINTS[purpose]
        + 3 * prior_default
    )


def _render(attributes: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in attributes.items())


def _application(rng: random.Random, heldout_share: float, noise: float) -> Row:
    income = rng.choices(list(INCOME_POINTS), weights=INCOME_WEIGHTS)[0]
    employment, debt = rng.choice(EMPLOYMENT_YEARS), rng.choice(list(DEBT_POINTS))
    amount = rng.choice(HELDOUT_AMOUNTS if rng.random() < heldout_share else TRAIN_AMOUNTS)
    purpose = rng.choice(list(PURPOSE_POINTS))
    prior_default = rng.random() < PRIOR_DEFAULT_RATE
    group = rng.choice(AGE_BANDS)
    score = points(income, employment, debt, amount, purpose, prior_default)
    clean = "bad" if score > THRESHOLD else "good"
    noisy = clean if rng.random() >= noise else ("good" if clean == "bad" else "bad")
    attributes = {
        "age": group,
        "income": income,
        "employment": f"{employment} years",
        "debt": debt,
        "amount": str(amount),
        "purpose": purpose,
        "prior default": "yes" if prior_default else "no",
    }
    return {
        "input": _render(attributes),
        "output": noisy,
        "choices": list(CHOICES),
        "group": group,
        "clean_label": clean,
        "points": score,
        "attributes": attributes,
        "heldout": amount in HELDOUT_AMOUNTS,
    }


def generate(seed: int = 0, sizes: dict[str, int] | None = None, noise: float = 0.1) -> Splits:
    """Applications scored by the rule, labels flipped with probability ``noise``."""
    if not 0.0 <= noise < 0.5:
        raise ValueError(f"risk_assessment: noise must be in [0, 0.5), got {noise!r}")
    rng = random.Random(seed)

    def make(split: str) -> Row:
        # test rows draw from both lists: the held-out numbers never reach training, yet most of
        # the test measures the rule rather than how a tiny tokenizer happens to split new numbers
        return _application(rng, HELDOUT_SHARE if split == "test" else 0.0, noise)

    return fill_splits("risk_assessment", sizes, SCENARIO.default_sizes, make)


# ---------------------------------------------------------------- real formats

# UCI Statlog German credit: (attribute name, code -> meaning, or None for a number, unit).
GERMAN_ATTRIBUTES: tuple[tuple[str, dict[str, str] | None, str], ...] = (
    ("checking account", {"A11": "< 0 DM", "A12": "0-200 DM", "A13": ">= 200 DM", "A14": "none"}, ""),
    ("duration", None, " months"),
    (
        "credit history",
        {
            "A30": "no credits taken",
            "A31": "all paid back at this bank",
            "A32": "existing paid back duly",
            "A33": "delays in the past",
            "A34": "critical account",
        },
        "",
    ),
    (
        "purpose",
        {
            "A40": "new car",
            "A41": "used car",
            "A42": "furniture",
            "A43": "radio/TV",
            "A44": "appliances",
            "A45": "repairs",
            "A46": "education",
            "A47": "vacation",
            "A48": "retraining",
            "A49": "business",
            "A410": "other",
        },
        "",
    ),
    ("amount", None, ""),
    (
        "savings",
        {"A61": "< 100 DM", "A62": "100-500 DM", "A63": "500-1000 DM", "A64": ">= 1000 DM", "A65": "unknown"},
        "",
    ),
    (
        "employment",
        {"A71": "unemployed", "A72": "< 1 year", "A73": "1-4 years", "A74": "4-7 years", "A75": ">= 7 years"},
        "",
    ),
    ("installment rate", None, "% of income"),
    (
        "personal status",
        {
            "A91": "male divorced",
            "A92": "female divorced or married",
            "A93": "male single",
            "A94": "male married or widowed",
            "A95": "female single",
        },
        "",
    ),
    ("other debtors", {"A101": "none", "A102": "co-applicant", "A103": "guarantor"}, ""),
    ("residence", None, " years"),
    (
        "property",
        {"A121": "real estate", "A122": "savings or life insurance", "A123": "car or other", "A124": "none"},
        "",
    ),
    ("age", None, ""),
    ("other plans", {"A141": "bank", "A142": "stores", "A143": "none"}, ""),
    ("housing", {"A151": "rent", "A152": "own", "A153": "free"}, ""),
    ("existing credits", None, ""),
    (
        "job",
        {
            "A171": "unskilled non-resident",
            "A172": "unskilled resident",
            "A173": "skilled",
            "A174": "management or self-employed",
        },
        "",
    ),
    ("dependents", None, ""),
    ("telephone", {"A191": "no", "A192": "yes"}, ""),
    ("foreign worker", {"A201": "yes", "A202": "no"}, ""),
)
_GERMAN_LABELS = {"1": "good", "2": "bad"}
_AUSTRALIAN_LABELS = {"1": "good", "0": "bad"}  # 1 = approved
# Generic CSV labels: good/bad, 1/0 and yes/no all mean good/bad in that order (1 = yes = good).
CSV_LABELS = {"good": "good", "bad": "bad", "1": "good", "0": "bad", "yes": "good", "no": "bad"}


def _number(path: Path, n: int, name: str, token: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise data_error(path, n, f"{name} must be a number, got {token!r}") from None


def _row(path: Path, n: int, attributes: dict[str, str], label: str, group: str | None) -> Row:
    row: Row = {
        "id": f"{path.stem}-{n}",
        "input": _render(attributes),
        "output": label,
        "choices": list(CHOICES),
        "attributes": attributes,
    }
    if group is not None:
        row["group"] = group
    return row


def _german_row(path: Path, n: int, tokens: list[str]) -> Row:
    if len(tokens) != 21:
        raise data_error(path, n, f"expected 20 attributes and a label, found {len(tokens)} fields")
    attributes: dict[str, str] = {}
    for (name, codes, unit), token in zip(GERMAN_ATTRIBUTES, tokens):
        if codes is None:
            value = _number(path, n, name, token)
            text = age_band(value) if name == "age" else f"{value:g}{unit}"
        elif token in codes:
            text = codes[token]
        else:
            raise data_error(path, n, f"{name} code {token!r} is not one of {', '.join(codes)}")
        attributes[name] = text
    label = _GERMAN_LABELS.get(tokens[20])
    if label is None:
        raise data_error(path, n, f"label {tokens[20]!r} must be 1 (good) or 2 (bad)")
    return _row(path, n, attributes, label, attributes["age"])


def _australian_row(path: Path, n: int, tokens: list[str]) -> Row:
    if len(tokens) != 15:
        raise data_error(path, n, f"expected 14 attributes and a label, found {len(tokens)} fields")
    attributes = {f"A{i}": f"{_number(path, n, f'A{i}', t):g}" for i, t in enumerate(tokens[:14], start=1)}
    label = _AUSTRALIAN_LABELS.get(tokens[14])
    if label is None:
        raise data_error(path, n, f"label {tokens[14]!r} must be 1 (approved) or 0 (rejected)")
    return _row(path, n, attributes, label, None)


def _read_whitespace(path: Path, parse: Callable[[Path, int, list[str]], Row]) -> list[Row]:
    return [parse(path, n, line.split()) for n, line in iter_lines(path)]


def _read_csv(path: Path, label_column: str) -> list[Row]:
    rows = []
    for n, record in iter_csv(path, (label_column,)):
        raw = record[label_column].strip()
        label = CSV_LABELS.get(raw.lower())
        if label is None:
            raise data_error(path, n, f"{label_column} {raw!r} must be good/bad, 1/0 or yes/no (1 = yes = good)")
        attributes = {k: v.strip() for k, v in record.items() if k != label_column}
        group = attributes.get("group")
        if group is None and "age" in attributes:
            group = age_band(_number(path, n, "age", attributes["age"]))
        rows.append(_row(path, n, attributes, label, group))
    return rows


FORMATS: tuple[str, ...] = ("german_credit", "australian_credit", "csv")


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    first = next((line.split() for _, line in iter_lines(path)), [])
    if len(first) == 21 and first[0].startswith("A1"):
        return "german_credit"
    if len(first) == 15:
        return "australian_credit"
    raise data_error(path, 1, f"cannot tell the format; pass fmt= one of {', '.join(FORMATS)}")


def read(path: Path, fmt: str | None = None, label_column: str = "label") -> list[Row]:
    """German ``german.data``, Australian ``australian.dat``, or a CSV with a ``label_column``."""
    readers: dict[str, Callable[[Path], list[Row]]] = {
        "german_credit": lambda p: _read_whitespace(p, _german_row),
        "australian_credit": lambda p: _read_whitespace(p, _australian_row),
        "csv": lambda p: _read_csv(p, label_column),
    }
    return read_with("risk_assessment", path, fmt, readers, _detect)


# ---------------------------------------------------------------- evaluation


def _binary_mcc(tp: int, fp: int, fn: int, tn: int) -> float:
    """MCC from a 2x2 table: the shortcut search scores thousands of candidate rules in one pass."""
    denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def best_shortcut_mcc(rows: list[Row]) -> float:
    """Best |MCC| of a one-attribute rule "bad iff attr == v" (or, for numbers, "attr >= v").

    |MCC| also covers the complement rule ("bad iff attr != v"), which scores -MCC.
    """
    labels = [r["output"] == "bad" for r in rows]
    n_bad, n = sum(labels), len(labels)
    best = 0.0
    for key in sorted({k for r in rows for k in r.get("attributes", {})}):
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # value -> [bad, total]
        for r, bad in zip(rows, labels):
            counts = tally[r.get("attributes", {}).get(key, "")]
            counts[0] += bad
            counts[1] += 1
        candidates = [tuple(c) for c in tally.values()]
        try:  # numeric attribute ("12", "2 years"): add "bad iff value >= v" for each v
            ordered = sorted(tally.items(), key=lambda kv: -float(kv[0].split()[0]))
        except (ValueError, IndexError):
            ordered = []
        run_bad = run_total = 0
        for _, (bad, total) in ordered:
            run_bad, run_total = run_bad + bad, run_total + total
            candidates.append((run_bad, run_total))
        for tp, hits in candidates:
            fp = hits - tp
            best = max(best, abs(_binary_mcc(tp, fp, n_bad - tp, n - n_bad - fp)))
    return best


def _scores(truth: list[str], predicted: list[str], groups: list | None, prefix: str) -> dict[str, float]:
    from finetune.metrics.classification import (
        accuracy,
        demographic_parity_difference,
        equal_opportunity_difference,
        f1,
        mcc,
    )

    out = {
        f"{prefix}f1": f1(truth, predicted, average="binary", pos_label="bad"),
        f"{prefix}mcc": mcc(truth, predicted),
        f"{prefix}accuracy": accuracy(truth, predicted),
    }
    if groups is not None:
        out[f"{prefix}dp_diff"] = demographic_parity_difference(predicted, groups, "bad")
        out[f"{prefix}eo_diff"] = equal_opportunity_difference(truth, predicted, groups, "bad")
    return out


def _p_bad(probs: dict[str, float]) -> float:
    total = probs.get("bad", 0.0) + probs.get("good", 0.0)
    return probs.get("bad", 0.0) / total if total > 0 else 0.5


def evaluate(
    predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    """F1 (positive class ``bad``), MCC, accuracy, fairness gaps over ``group``; calibration of P(bad).

    Constrained metrics (from ``label_probs``) have no prefix, generated-text ones ``gen_``;
    an answer naming neither label counts as wrong. Fairness keys appear when every row has
    a ``group`` (``ref_label_dp_diff``: the gap of the reference labels themselves, so of a
    perfect model); ``ref_bayes_mcc`` when every row has a ``clean_label``; ``heldout_mcc`` and
    ``seen_mcc`` (constrained) when rows say whether their values were ``heldout`` from training,
    so generalisation to unseen numbers is visible apart from the rule itself.
    """
    from finetune.metrics.classification import (
        brier,
        demographic_parity_difference,
        ece,
        mcc,
    )

    check_lengths(predictions, rows, label_probs)
    truth = [r["output"] for r in rows]
    groups = [r["group"] for r in rows] if rows and all("group" in r for r in rows) else None
    out: dict[str, float] = {}
    if label_probs is not None:
        constrained = argmax_labels(label_probs, CHOICES)
        out.update(_scores(truth, constrained, groups, ""))
        p_bad = [_p_bad(p) for p in label_probs]
        y_bad = [int(t == "bad") for t in truth]
        out["brier"], out["ece"] = brier(p_bad, y_bad), ece(p_bad, y_bad)
        out.update(_heldout_split(truth, constrained, rows))
    labels, failure = gen_labels(predictions, CHOICES)
    out.update(_scores(truth, labels, groups, "gen_"))
    out["parse_failure_rate"] = failure
    out["ref_majority_mcc"] = 0.0
    out["ref_majority_accuracy"] = Counter(truth).most_common(1)[0][1] / len(truth) if truth else 0.0
    out["ref_best_shortcut_mcc"] = best_shortcut_mcc(rows)
    if groups is not None:  # the labels' own gap: what sampling alone gives a perfect model
        out["ref_label_dp_diff"] = demographic_parity_difference(truth, groups, "bad")
    if rows and all("clean_label" in r for r in rows):
        out["ref_bayes_mcc"] = mcc(truth, [r["clean_label"] for r in rows])
    return out


def _heldout_split(truth: list[str], predicted: list[str], rows: list[Row]) -> dict[str, float]:
    from finetune.metrics.classification import mcc

    if not rows or not all("heldout" in r for r in rows):
        return {}
    out = {}
    for key, want in (("heldout_mcc", True), ("seen_mcc", False)):
        idx = [i for i, r in enumerate(rows) if bool(r["heldout"]) is want]
        if idx:
            out[key] = mcc([truth[i] for i in idx], [predicted[i] for i in idx])
    return out


SCENARIO = Scenario(
    name="risk_assessment",
    task="classification",
    system="Assess the credit application and answer good or bad.",
    card="risk_assessment_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={"german_credit": "german_credit", "australian_credit": "australian_credit", "csv": "generic_csv"},
    default_sizes={"train": 800, "validation": 100, "test": 100},
)
