"""Financial analysis scenario: generator invariants, PhraseBank/TFNS/QA readers, mixed evaluator."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import financial_analysis as fa
from finetune.scenarios._common import parse_label

SMALL = {"train": 300, "validation": 50, "test": 50}


def test_registry_finds_scenario():
    scenario = get("financial_analysis")
    assert scenario.name == "financial_analysis" and scenario.task == "mixed"
    assert scenario.formats == {"financial_phrasebank": "financial_phrasebank", "tfns": "tfns"}


@pytest.mark.parametrize("subtask", ["sentiment", "numeric", "both"])
def test_deterministic_disjoint_and_heldout(subtask):
    splits = fa.generate(seed=5, sizes=SMALL, subtask=subtask)
    assert splits == fa.generate(seed=5, sizes=SMALL, subtask=subtask)
    assert splits != fa.generate(seed=6, sizes=SMALL, subtask=subtask)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs)) == sum(SMALL.values())
    for split, rows in splits.items():
        for r in rows:
            held = any(c in r["input"] for c in fa.HELDOUT_COMPANIES)
            known = any(c in r["input"] for c in fa.TRAIN_COMPANIES)
            assert (held, known) == ((True, False) if split == "test" else (False, True))
            assert len(r["input"].split()) < 60 and len(r["output"].split()) < 60
    kinds = Counter(r["subtask"] for r in splits["train"])
    assert set(kinds) == ({"sentiment", "numeric"} if subtask == "both" else {subtask})


def test_sentiment_rows_balanced_with_choices_and_hard_cases():
    rows = fa.generate(seed=0, sizes=SMALL, subtask="sentiment")["train"]
    counts = Counter(r["output"] for r in rows)
    assert set(counts) == set(fa.LABELS) and min(counts.values()) > 0.2 * len(rows)
    assert all(r["choices"] == list(fa.LABELS) for r in rows)
    assert 0.1 < sum(r["hard"] for r in rows) / len(rows) < 0.5


def _statement(text: str) -> list[dict[str, int]]:
    pattern = r"revenue (\d+), cost of goods (\d+), operating expenses (\d+), net income (\d+)"
    return [dict(zip(("r", "c", "o", "n"), map(int, m))) for m in re.findall(pattern, text)]


def test_numeric_answers_follow_from_the_statement():
    rows = fa.generate(seed=2, sizes=SMALL, subtask="numeric")["train"]
    formulas = {
        "gross_margin": lambda p, y: 100 * (y["r"] - y["c"]) / y["r"],
        "operating_margin": lambda p, y: 100 * (y["r"] - y["c"] - y["o"]) / y["r"],
        "net_margin": lambda p, y: 100 * y["n"] / y["r"],
        "revenue_growth": lambda p, y: 100 * (y["r"] - p["r"]) / p["r"],
        "income_growth": lambda p, y: 100 * (y["n"] - p["n"]) / p["n"],
        "gross_profit": lambda p, y: y["r"] - y["c"],
        "operating_income": lambda p, y: y["r"] - y["c"] - y["o"],
    }
    assert {r["kind"] for r in rows} == set(formulas)
    for r in rows:
        first, second = _statement(r["input"])
        years = re.findall(r"(\d{4}):", r["input"])
        in_year = re.search(r"in (\d{4})\?", r["input"])  # growth questions always ask about the later year
        asked = first if in_year and in_year.group(1) == years[0] else second
        assert r["answer"] == pytest.approx(formulas[r["kind"]](first, asked), abs=0.051)
        assert r["output"].rstrip(".").endswith(("%", "million"))
    assert fa.evaluate([r["output"] for r in rows], rows)["numeric_em"] == 1.0


def test_bad_options_raise():
    with pytest.raises(TypeError):
        fa.generate(seed=0, companies=3)
    with pytest.raises(ValueError, match="subtask"):
        fa.generate(seed=0, subtask="ratios")


# ---------------------------------------------------------------- readers


def test_read_phrasebank_latin1(tmp_path):
    path = tmp_path / "Sentences_50Agree.txt"
    text = "Operating profit rose to EUR 13.1 mn .@positive\nThe café chain cut 40 jobs .@negative\n\nSales were flat .@neutral\n"
    path.write_bytes(text.encode("latin-1"))
    rows = get("financial_analysis").read_file(path)
    assert [r["output"] for r in rows] == ["positive", "negative", "neutral"]
    assert rows[1]["input"] == "News: The café chain cut 40 jobs ." and rows[1]["choices"] == list(fa.LABELS)


def test_read_phrasebank_bad_label_names_row(tmp_path):
    path = tmp_path / "pb.txt"
    path.write_text("Good year .@positive\nOdd line .@bullish\n", encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"pb\.txt: row 2: label 'bullish'"):
        fa.read(path)


def test_read_tfns_label_mapping_and_errors(tmp_path):
    path = tmp_path / "tfns.csv"
    path.write_text('text,label\n"$X - cut to sell, says bank",0\n$Y beats,1\n$Z files 10-Q,2\n', encoding="utf-8")
    rows = fa.read(path)
    assert [r["output"] for r in rows] == ["negative", "positive", "neutral"]
    assert rows[0]["input"] == "News: $X - cut to sell, says bank"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,1\nnot fine,3\n", encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"bad\.csv: row 3: label '3'"):
        fa.read(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("sentence,sentiment\nx,1\n", encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"wrong\.csv: row 1: header lacks column\(s\) text, label"):
        fa.read(wrong)


def test_read_qa_jsonl(tmp_path):
    path = tmp_path / "qa.jsonl"
    lines = [
        {"context": "Revenue 200, costs 150.", "question": "What is the profit margin?", "answer": "25%"},
        {"question": "Sentiment of: shares soared", "answer": "Positive"},
        {"question": "Net income?", "answer": 12.5},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    rows = fa.read(path)
    assert (
        rows[0]["answer"] == 25.0
        and rows[0]["input"] == "Revenue 200, costs 150.\nQuestion: What is the profit margin?"
    )
    assert rows[1]["output"] == "positive" and rows[1]["choices"] == list(fa.LABELS)
    assert rows[2]["answer"] == 12.5
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "n/a"}), encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"bad\.jsonl: row 1: answer 'n/a' holds no number"):
        fa.read(bad)


def test_read_unknown_format(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ScenarioDataError, match="pass fmt="):
        fa.read(path)
    with pytest.raises(ValueError, match="unknown format"):
        fa.read(path, fmt="xlsx")


# ---------------------------------------------------------------- evaluator


def _sentiment(labels):
    return [
        {"id": str(i), "input": "News: x", "output": lab, "choices": list(fa.LABELS)} for i, lab in enumerate(labels)
    ]


def test_parse_label():
    """The label must open the answer (issue 12, point 16): a label inside free text is a parse failure."""
    assert parse_label("The sentiment is Negative.", fa.LABELS) == "negative"  # a field name before it is fine
    assert parse_label('  "Neutral" ', fa.LABELS) == "neutral"
    assert parse_label("positive, not negative", fa.LABELS) == "positive"
    assert parse_label("It is negative.", fa.LABELS) is None
    assert parse_label("not positive, negative", fa.LABELS) is None
    assert parse_label("nonpositive", fa.LABELS) is None
    assert parse_label("", fa.LABELS) is None


def test_evaluate_sentiment_hand_computed():
    rows = _sentiment(["positive", "negative", "neutral", "positive"])
    preds = [
        "positive",
        "It is negative.",
        "no idea",
        "neutral",
    ]  # 1 right, 2 unparsable (the label must come first), 1 wrong
    m = fa.evaluate(preds, rows)
    assert m["gen_accuracy"] == pytest.approx(0.25)
    assert m["parse_failure_rate"] == pytest.approx(0.5)
    # per class F1: positive 2/3, negative 0, neutral 0; unparsed enters macro with 0
    assert m["gen_f1_weighted"] == pytest.approx((2 * 2 / 3 + 0 + 0) / 4)
    assert m["gen_f1_macro"] == pytest.approx((2 / 3 + 0 + 0 + 0) / 4)
    assert m["ref_majority_accuracy"] == pytest.approx(0.5)
    assert "accuracy" not in m  # constrained metrics need label_probs

    probs = [
        {"positive": 0.7, "negative": 0.2, "neutral": 0.1},
        {"positive": 0.1, "negative": 0.8, "neutral": 0.1},
        {"positive": 0.3, "negative": 0.3, "neutral": 0.4},
        {"positive": 0.5, "negative": 0.0, "neutral": 0.5},
    ]
    m = fa.evaluate(preds, rows, probs)
    assert m["accuracy"] == m["f1_weighted"] == m["f1_macro"] == pytest.approx(1.0)  # tie -> first choice


def test_evaluate_edge_cases():
    rows = _sentiment(["positive", "negative", "neutral"])
    m = fa.evaluate(["", "", ""], rows)
    assert m["gen_accuracy"] == 0.0 and m["parse_failure_rate"] == 1.0 and m["gen_f1_macro"] == 0.0
    one = fa.evaluate(["neutral"] * 3, rows)
    assert one["gen_accuracy"] == pytest.approx(1 / 3) and one["gen_f1_macro"] == pytest.approx(1 / 6)
    assert fa.evaluate([], []) == {}
    with pytest.raises(ValueError, match="label_probs"):
        fa.evaluate(["a"] * 3, rows, [{}] * 2)


def test_evaluate_numeric_is_exact():
    """The task's rule is exact match at the one decimal answers are written to (issue 12, point 17):
    42.6 against 42.5 was a hit under the old 1% tolerance."""
    rows = [
        {"id": str(i), "input": "q", "output": "o", "answer": a} for i, a in enumerate([42.5, 10.0, -3.8, 120.0, 7.0])
    ]
    preds = [
        "The gross margin is 42.6%.",
        "$12 million",
        "",
        "The gross profit in 2019 is $120 million.",
        "It is 7.0%.",
    ]
    m = fa.evaluate(preds, rows)
    assert m == {"numeric_em": pytest.approx(0.4), "numeric_parse_failure_rate": pytest.approx(0.2)}


def test_evaluate_mixed_rows_split_by_kind():
    splits = fa.generate(seed=1, sizes={"train": 0, "validation": 0, "test": 60})
    rows = splits["test"]
    m = fa.evaluate([r["output"] for r in rows], rows)
    assert m["gen_accuracy"] == m["numeric_em"] == 1.0 and m["parse_failure_rate"] == 0.0
