"""Financial analysis: news sentiment (3 classes) and arithmetic over a small statement.

Two subtasks share one scenario because a finance assistant does both: label a
news line ``positive``/``negative``/``neutral`` (rows carry ``choices``), and
answer a margin/growth question over a two-year statement given in the input
(rows carry ``answer``). Units: money in $ millions as whole numbers, ratios
and growth as PERCENT numbers rounded to one decimal (``The gross margin in
2023 is 42.5%.`` -> answer 42.5).

Company names in ``HELDOUT_COMPANIES`` appear only in the test split. In the
sentiment lines cue words decide the label (rose/beat/raised -> positive,
fell/missed/cut -> negative, scheduling/appointments -> neutral); a share of
rows (``hard: True``) need more than one cue word: negation, contrast, "loss
narrowed".
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from finetune.scenarios._common import (
    argmax_labels,
    check_lengths,
    data_error,
    fill_splits,
    gen_labels,
    iter_csv,
    iter_jsonl,
    iter_lines,
    parse_label,
    read_text,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

LABELS: tuple[str, ...] = ("positive", "negative", "neutral")

TRAIN_COMPANIES: tuple[str, ...] = (
    "Apex Mining",
    "Blue Harbor Bank",
    "Cobalt Motors",
    "Delta Foods",
    "Evergreen Energy",
    "Falcon Air",
    "Granite Steel",
    "Harbor Retail",
    "Ion Software",
    "Juniper Health",
    "Keystone Insurance",
    "Lumen Telecom",
    "Maple Pharma",
    "Northwind Logistics",
    "Orion Chemicals",
    "Pinnacle Homes",
    "Quartz Media",
    "Redwood Paper",
)
HELDOUT_COMPANIES: tuple[str, ...] = ("Summit Textiles", "Tidewater Shipping", "Vertex Robotics", "Willow Bakeries")

_Q = ("Q1", "Q2", "Q3", "Q4")
_MONTHS = ("March", "May", "June", "September", "November")
_CITIES = ("Austin", "Denver", "Boston", "Chicago")
# (template, label, hard). Slots: {co} company, {p} percent, {n} amount, {q} quarter, {m} month, {c} city.
_NEWS: tuple[tuple[str, str, bool], ...] = (
    ("{co} shares rose {p}% after strong quarterly results.", "positive", False),
    ("{co} beat profit expectations in {q}.", "positive", False),
    ("{co} raised its full-year sales forecast.", "positive", False),
    ("{co} reported record revenue of ${n} million.", "positive", False),
    ("Analysts upgraded {co} to buy.", "positive", False),
    ("{co} won a new contract worth ${n} million.", "positive", False),
    ("{co} shares fell {p}% after weak quarterly results.", "negative", False),
    ("{co} missed profit expectations in {q}.", "negative", False),
    ("{co} cut its full-year sales forecast.", "negative", False),
    ("{co} reported a loss of ${n} million.", "negative", False),
    ("Analysts downgraded {co} to sell.", "negative", False),
    ("{co} lost a contract worth ${n} million.", "negative", False),
    ("{co} will report {q} results in {m}.", "neutral", False),
    ("{co} appointed a new chief financial officer.", "neutral", False),
    ("{co} will hold its annual meeting in {m}.", "neutral", False),
    ("{co} moved its head office to {c}.", "neutral", False),
    ("{co} shares were unchanged at ${n}.", "neutral", False),
    ("{co} narrowed its loss to ${n} million.", "positive", True),
    ("Despite weak sales, {co} raised its dividend by {p}%.", "positive", True),
    ("{co} did not meet its sales target in {q}.", "negative", True),
    ("Although revenue rose, {co} cut its forecast.", "negative", True),
    ("{co} shares rose early but closed unchanged.", "neutral", True),
    ("{co} expects {q} results in line with forecasts.", "neutral", True),
)

# question kind -> (question, output). {y}: the year asked about, {y0}: the year before, {v}: the value,
# always the last number of the output (evaluators take the last number).
_QUESTIONS: dict[str, tuple[str, str]] = {
    "gross_margin": ("What is the gross margin in {y}?", "The gross margin in {y} is {v}%."),
    "operating_margin": ("What is the operating margin in {y}?", "The operating margin in {y} is {v}%."),
    "net_margin": ("What is the net margin in {y}?", "The net margin in {y} is {v}%."),
    "revenue_growth": (
        "By what percent did revenue change from {y0} to {y}?",
        "From {y0} to {y}, revenue changed by {v}%.",
    ),
    "income_growth": (
        "By what percent did net income change from {y0} to {y}?",
        "From {y0} to {y}, net income changed by {v}%.",
    ),
    "gross_profit": ("What is the gross profit in {y}?", "The gross profit in {y} is ${v} million."),
    "operating_income": ("What is the operating income in {y}?", "The operating income in {y} is ${v} million."),
}


# ---------------------------------------------------------------- generation


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _news_row(rng: random.Random, companies: tuple[str, ...]) -> Row:
    template, label, hard = rng.choice(_NEWS)
    sentence = template.format(
        co=rng.choice(companies),
        p=rng.randint(2, 30),
        n=rng.randint(2, 90) * 10,
        q=rng.choice(_Q),
        m=rng.choice(_MONTHS),
        c=rng.choice(_CITIES),
    )
    return {
        "input": f"News: {sentence}",
        "output": label,
        "choices": list(LABELS),
        "subtask": "sentiment",
        "hard": hard,
    }


def _year(rng: random.Random, revenue: int) -> dict[str, int]:
    cogs = round(revenue * rng.uniform(0.4, 0.7) / 10) * 10
    opex = rng.randint(1, max(1, (revenue - cogs) // 10 - 1)) * 10
    net = (revenue - cogs - opex) * 3 // 4
    return {"revenue": revenue, "cogs": cogs, "opex": opex, "net": net}


def _answer(kind: str, prev: dict[str, int], cur: dict[str, int]) -> float:
    """Exact value rounded to one decimal; every year has revenue and net income above zero."""
    r, c, o, n = cur["revenue"], cur["cogs"], cur["opex"], cur["net"]
    value = {
        "gross_margin": lambda: 100 * (r - c) / r,
        "operating_margin": lambda: 100 * (r - c - o) / r,
        "net_margin": lambda: 100 * n / r,
        "revenue_growth": lambda: 100 * (r - prev["revenue"]) / prev["revenue"],
        "income_growth": lambda: 100 * (n - prev["net"]) / prev["net"],
        "gross_profit": lambda: float(r - c),
        "operating_income": lambda: float(r - c - o),
    }[kind]()
    return round(value, 1)


def _statement_row(rng: random.Random, companies: tuple[str, ...]) -> Row:
    y0 = rng.randint(2018, 2023)
    first = _year(rng, rng.randint(10, 50) * 10)
    years = (first, _year(rng, max(50, round(first["revenue"] * rng.uniform(0.8, 1.3) / 10) * 10)))
    kind = rng.choice(sorted(_QUESTIONS))
    asked = rng.choice((0, 1)) if not kind.endswith("growth") else 1
    value = _answer(kind, years[0], years[asked])
    lines = [
        f"{y0 + i}: revenue {y['revenue']}, cost of goods {y['cogs']}, "
        f"operating expenses {y['opex']}, net income {y['net']}."
        for i, y in enumerate(years)
    ]
    question, answer = _QUESTIONS[kind]
    y, y_prev = y0 + asked, y0
    statement = f"{rng.choice(companies)} ($ millions) " + " ".join(lines)
    return {
        "input": f"{statement}\nQuestion: {question.format(y=y, y0=y_prev)}",
        "output": answer.format(y=y, y0=y_prev, v=_fmt(value)),
        "answer": value,
        "subtask": "numeric",
        "kind": kind,
    }


def generate(seed: int = 0, sizes: dict[str, int] | None = None, subtask: str = "both") -> Splits:
    """Templated news lines and/or statement questions; "both" alternates the two at random."""
    if subtask not in ("sentiment", "numeric", "both"):
        raise ValueError(f"financial_analysis: subtask must be 'sentiment', 'numeric' or 'both', got {subtask!r}")
    rng = random.Random(seed)

    def make(split: str) -> Row:
        companies = HELDOUT_COMPANIES if split == "test" else TRAIN_COMPANIES
        kind = subtask if subtask != "both" else rng.choice(("sentiment", "numeric"))
        return _news_row(rng, companies) if kind == "sentiment" else _statement_row(rng, companies)

    return fill_splits("financial_analysis", sizes, SCENARIO.default_sizes, make)


# ---------------------------------------------------------------- real formats

_TFNS_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}  # bearish, bullish, neutral


def _sentiment_row(path: Path, n: int, text: str, label: str) -> Row:
    return {
        "id": f"{path.stem}-{n}",
        "input": f"News: {text.strip()}",
        "output": label,
        "choices": list(LABELS),
        "subtask": "sentiment",
    }


def _read_phrasebank(path: Path) -> list[Row]:
    rows = []
    for n, line in iter_lines(path):
        text, sep, label = line.rpartition("@")
        label = label.strip().lower()
        if not sep or not text.strip():
            raise data_error(path, n, "expected 'sentence@label'")
        if label not in LABELS:
            raise data_error(path, n, f"label {label!r} is not one of {', '.join(LABELS)}")
        rows.append(_sentiment_row(path, n, text, label))
    return rows


def _read_tfns(path: Path) -> list[Row]:
    rows = []
    for n, rec in iter_csv(path, ("text", "label")):
        label = _TFNS_LABELS.get(rec["label"].strip())
        if label is None:
            raise data_error(path, n, f"label {rec['label']!r} must be 0 (bearish), 1 (bullish) or 2 (neutral)")
        rows.append(_sentiment_row(path, n, rec["text"], label))
    return rows


def _read_qa(path: Path) -> list[Row]:
    from finetune.metrics.numeric import parse_number

    rows = []
    for n, obj in iter_jsonl(path, ("question", "answer")):
        answer = str(obj["answer"]).strip()
        context = str(obj.get("context") or "").strip()
        question = str(obj["question"]).strip()
        if answer.lower() in LABELS:
            rows.append(_sentiment_row(path, n, f"{context} {question}".strip(), answer.lower()))
            continue
        value = parse_number(answer)
        if value is None:
            raise data_error(path, n, f"answer {answer[:40]!r} holds no number and is not one of {', '.join(LABELS)}")
        text = f"{context}\nQuestion: {question}" if context else question
        rows.append({"id": f"{path.stem}-{n}", "input": text, "output": answer, "answer": value, "subtask": "numeric"})
    return rows


_READERS: dict[str, Callable[[Path], list[Row]]] = {
    "financial_phrasebank": _read_phrasebank,
    "tfns": _read_tfns,
    "qa_jsonl": _read_qa,
}


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "tfns"
    if suffix in (".jsonl", ".json"):
        return "qa_jsonl"
    if suffix == ".txt" or "@" in read_text(path)[:2000]:
        return "financial_phrasebank"
    raise data_error(path, None, f"cannot tell the format from {suffix!r}; pass fmt= one of {', '.join(_READERS)}")


def read(path: Path, fmt: str | None = None) -> list[Row]:
    """Financial PhraseBank ``sentence@label`` (.txt), TFNS CSV, or question/answer JSONL."""
    return read_with("financial_analysis", path, fmt, _READERS, _detect)


# ---------------------------------------------------------------- evaluation


def _label_scores(truth: list[str], predicted: list[str], prefix: str) -> dict[str, float]:
    from finetune.metrics.classification import accuracy, f1, mcc

    return {
        f"{prefix}accuracy": accuracy(truth, predicted),
        f"{prefix}f1_weighted": f1(truth, predicted, average="weighted"),
        f"{prefix}f1_macro": f1(truth, predicted, average="macro"),
        f"{prefix}mcc": mcc(truth, predicted),  # multi-class MCC: what a majority answer cannot inflate
    }


def parse_answer(text: str, row: Row) -> str | float | None:
    """What an answer is read as: the label it starts with (sentiment rows) or its last number
    (statement rows: the value is always the last number of the reference sentence)."""
    from finetune.metrics.numeric import last_number

    return parse_label(text, row["choices"]) if row.get("choices") else last_number(text)


def evaluate(
    predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    """Sentiment rows (with ``choices``): accuracy/F1 constrained and ``gen_``; numeric rows: ``numeric_em``.

    An answer not starting with a label counts as wrong (label UNPARSED, which also enters macro
    F1 as a class with F1 0, as scikit-learn does with an unseen prediction label). ``numeric_em``
    is exact: the answer's last number equals the reference value (rounded to one decimal, as written).
    """
    from finetune.metrics.numeric import numeric_match

    check_lengths(predictions, rows, label_probs)
    out: dict[str, float] = {}
    cls = [i for i, r in enumerate(rows) if r.get("choices")]
    num = [i for i, r in enumerate(rows) if not r.get("choices")]
    if cls:
        truth = [rows[i]["output"] for i in cls]
        choices = rows[cls[0]]["choices"]
        if label_probs is not None:
            out.update(_label_scores(truth, argmax_labels([label_probs[i] for i in cls], choices), ""))
        labels, failure = gen_labels([predictions[i] for i in cls], choices)
        out.update(_label_scores(truth, labels, "gen_"))
        out["parse_failure_rate"] = failure
        out["ref_majority_accuracy"] = Counter(truth).most_common(1)[0][1] / len(truth)
    if num:
        values = [parse_answer(predictions[i], rows[i]) for i in num]
        hits = [numeric_match(v, float(rows[i]["answer"]), rel_tol=0.0) for v, i in zip(values, num)]
        out["numeric_em"] = sum(hits) / len(num)
        out["numeric_parse_failure_rate"] = sum(v is None for v in values) / len(num)
    return out


SCENARIO = Scenario(
    name="financial_analysis",
    task="mixed",
    system="Answer as a financial analyst: give the sentiment (positive, negative or neutral) "
    "of a news line, or compute the asked figure from the statement.",
    card="financial_analysis_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={"financial_phrasebank": "financial_phrasebank", "tfns": "tfns"},
    default_sizes={"train": 800, "validation": 100, "test": 100},
)
