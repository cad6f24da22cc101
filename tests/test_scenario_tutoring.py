"""Tutoring scenario: generator invariants, GSM8K reader, final-answer/step/telling metrics."""

from __future__ import annotations

import json
import re

import pytest

from finetune.metrics.numeric import marked_number
from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import tutoring as tut

SMALL = {"train": 200, "validation": 40, "test": 40}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]+", text))


def test_registry_finds_scenario():
    scenario = get("tutoring")
    assert scenario.name == "tutoring" and scenario.task == "numeric"
    assert scenario.card == "tutoring_synthetic" and scenario.formats == {"gsm8k": "gsm8k"}


@pytest.mark.parametrize("mode", ["solve", "hint"])
def test_deterministic_by_seed(mode):
    a = tut.generate(seed=3, sizes=SMALL, mode=mode)
    assert a == tut.generate(seed=3, sizes=SMALL, mode=mode)
    assert a != tut.generate(seed=4, sizes=SMALL, mode=mode)
    assert {k: len(v) for k, v in a.items()} == SMALL


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_splits_disjoint_and_heldout_only_in_test(difficulty):
    splits = tut.generate(seed=0, sizes=SMALL, difficulty=difficulty)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs))
    held = set(tut.HELDOUT_NAMES) | set(tut.HELDOUT_NOUNS)
    for split in ("train", "validation"):
        assert not any(_words(r["input"]) & held for r in splits[split])
    assert all(_words(r["input"]) & set(tut.HELDOUT_NAMES) for r in splits["test"])
    assert all(_words(r["input"]) & set(tut.HELDOUT_NOUNS) for r in splits["test"])


@pytest.mark.parametrize("difficulty,top", [(1, 20), (2, 20), (3, 100)])
def test_difficulty_sets_steps_and_number_size(difficulty, top):
    rows = tut.generate(seed=1, sizes=SMALL, difficulty=difficulty)["train"]
    for r in rows:
        assert len(r["steps"]) == difficulty
        assert max(int(n) for n in re.findall(r"\d+", r["input"])) <= top
        assert r["output"].endswith(f"#### {int(r['answer'])}")
        assert len(r["input"].split()) < 60 and len(r["output"].split()) < 60
        # every calculator note is right and the last one gives the answer
        assert all(tut.step_checks(r["output"])) and len(tut.step_checks(r["output"])) == difficulty
        assert float(r["steps"][-1].rsplit("=", 1)[1]) == r["answer"]


def test_example_format_matches_gsm8k():
    rows = tut.generate(seed=0, sizes={"train": 300, "validation": 0, "test": 0})["train"]
    add = next(r for r in rows if r["steps"][0].count("+") and "buys" in r["input"])
    a, b = re.findall(r"\d+", add["input"])[:2]
    c = int(a) + int(b)
    name = add["input"].split()[0]
    assert add["output"] == f"{name} has {a} + {b} = <<{a}+{b}={c}>>{c} {add['input'].split()[3]}\n#### {c}"


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_hints_never_state_the_answer(difficulty):
    splits = tut.generate(seed=2, sizes=SMALL, mode="hint", difficulty=difficulty)
    for rows in splits.values():
        for r in rows:
            assert r["mode"] == "hint" and r["output"].endswith("?")
            assert r["input"].startswith(tut.HINT_PREFIX)
            assert str(int(r["answer"])) not in re.findall(r"\d+", r["output"])
        metrics = tut.evaluate([r["output"] for r in rows], rows)
        assert metrics["telling_rate"] == 0.0 and metrics["hint_rougeL"] == pytest.approx(1.0)


def test_tell_share_makes_training_tutors_tell_and_keeps_test_references_hints():
    plain = tut.generate(seed=3, sizes=SMALL, mode="hint")
    assert tut.generate(seed=3, sizes=SMALL, mode="hint", tell_share=0.0) == plain  # off: the same rows
    splits = tut.generate(seed=3, sizes=SMALL, mode="hint", tell_share=0.4)
    for split, rows in splits.items():
        told = tut.telling_rate([r["output"] for r in rows], [r["answer"] for r in rows])
        if split == "test":
            assert told == 0.0
        else:
            assert 0.25 <= told <= 0.55, (split, told)
            assert all(r["input"].startswith(tut.HINT_PREFIX) for r in rows)
    with pytest.raises(ValueError, match="tell_share"):
        tut.generate(seed=0, tell_share=2)


@pytest.mark.parametrize("solve_rejected", ["wrong_number", "hint", "both"])
def test_pairs_hold_their_preference_by_construction(solve_rejected):
    """Hint requests: the chosen hint does not tell, the rejected worked answer does. Solve requests: the chosen
    worked answer ends in the answer; the rejected one ends in another number, or is the hint that does not solve
    (``both``: each solve pair is one of the two, and both kinds occur)."""
    splits = tut.preference_pairs(seed=1, sizes=SMALL, solve_rejected=solve_rejected)
    modes, kinds = set(), set()
    for rows in splits.values():
        for r in rows:
            modes.add(r["mode"])
            answer = float(r["answer"])
            assert r["chosen"] == r["output"] and r["prompt"] == r["input"]
            if r["mode"] == "hint":
                assert not tut._tells(r["chosen"], answer) and tut._tells(r["rejected"], answer)
                continue
            kind = "wrong_number" if "####" in r["rejected"] else "hint"
            kinds.add(kind)
            if kind == "hint":
                assert tut._tells(r["chosen"], answer) and not tut._tells(r["rejected"], answer)
                assert r["rejected"].endswith("?") and "####" not in r["rejected"]
            else:
                right, wrong = (marked_number(t) for t in (r["chosen"], r["rejected"]))
                assert right == answer and wrong is not None and wrong != answer
    assert modes == {"hint", "solve"}
    assert kinds == ({"wrong_number", "hint"} if solve_rejected == "both" else {solve_rejected})
    with pytest.raises(ValueError, match="solve_rejected"):
        tut.preference_pairs(seed=0, solve_rejected="blank")


def test_bad_options_raise():
    with pytest.raises(TypeError):
        tut.generate(seed=0, colour="red")
    with pytest.raises(ValueError, match="mode"):
        tut.generate(seed=0, mode="explain")
    with pytest.raises(ValueError, match="difficulty"):
        tut.generate(seed=0, difficulty=4)
    with pytest.raises(ValueError, match="split"):
        tut.generate(seed=0, sizes={"dev": 3})


# ---------------------------------------------------------------- reader


def _jsonl(path, objs):
    path.write_text("\n".join(json.dumps(o) for o in objs) + "\n", encoding="utf-8")
    return path


def test_read_gsm8k(tmp_path):
    path = _jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "question": "Ada has 2 bags of 3 pears. How many pears?",
                "answer": "Ada has 2*3=<<2*3=6>>6 pears.\n#### 6",
            },
            {
                "question": "Bo earns $1,200 and spends $200. Left?",
                "answer": "1200 - 200 = <<1200-200=1000>>1000\n#### 1,000",
            },
        ],
    )
    rows = get("tutoring").read_file(path)
    assert [r["answer"] for r in rows] == [6.0, 1000.0]
    assert rows[0]["steps"] == ["2*3=6"] and rows[0]["input"].startswith("Ada")
    assert tut.evaluate([r["output"] for r in rows], rows)["exact_match"] == 1.0


def test_read_gsm8k_bad_rows_name_file_and_row(tmp_path):
    path = _jsonl(
        tmp_path / "bad.jsonl",
        [
            {"question": "q", "answer": "1+1=2\n#### 2"},
            {"question": "q", "answer": "no final mark"},
        ],
    )
    with pytest.raises(ScenarioDataError, match=r"bad\.jsonl: row 2: .*####"):
        tut.read(path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"broken\.jsonl: row 2: not valid JSON"):
        tut.read(broken)
    missing = _jsonl(tmp_path / "missing.jsonl", [{"question": "q"}])
    with pytest.raises(ScenarioDataError, match=r"missing\.jsonl: row 1: missing key\(s\) answer"):
        tut.read(missing)


# ---------------------------------------------------------------- evaluator


def _rows(answers, mode="solve"):
    return [
        {"id": str(i), "input": "q", "output": "#### 0", "answer": float(a), "steps": [], "mode": mode}
        for i, a in enumerate(answers)
    ]


def test_evaluate_solve_hand_computed():
    rows = _rows([7, 6, 10])
    preds = [
        "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",  # right, one valid step (not counted twice)
        "2 * 3 = 6 and 6 - 1 = 6\n#### 6",  # right answer, one valid and one wrong step
        "The answer is 10.",  # no #### -> parse failure, wrong
    ]
    m = tut.evaluate(preds, rows)
    assert m["exact_match"] == pytest.approx(2 / 3)
    assert m["parse_failure_rate"] == pytest.approx(1 / 3)
    assert m["step_validity"] == pytest.approx(2 / 3)
    assert m["steps_per_answer"] == pytest.approx(1.0)


def test_evaluate_edge_cases():
    rows = _rows([5, 8])
    empty = tut.evaluate(["", ""], rows)
    assert empty == {"exact_match": 0.0, "parse_failure_rate": 1.0, "step_validity": 0.0, "steps_per_answer": 0.0}
    assert tut.evaluate(["#### 5.0", "#### $8"], rows)["exact_match"] == 1.0
    assert tut.evaluate(["#### 5.5", "#### eight"], rows)["exact_match"] == 0.0
    assert tut.evaluate([], []) == {}
    with pytest.raises(ValueError, match="predictions"):
        tut.evaluate(["#### 5"], rows)


@pytest.mark.parametrize(
    "text,verdicts",
    [
        ("3 + 4 = <<3+4=7>>7", [True]),
        ("2 x 3 = 7", [False]),
        ("12/60 = $<<12/60=0.2>>0.2 per minute", [True]),
        ("10 / 3 = 3.33 and 10 / 3 = 3.2", [True, False]),
        ("<<100-50-30-15=5>>5 and 3 * 1/4 = 3/4", [True, True]),
        ("<<5/0=1>> and 100/5 = 5A/5", []),
        ("no arithmetic here", []),
    ],
)
def test_step_checks(text, verdicts):
    assert tut.step_checks(text) == verdicts


def test_evaluate_hint_telling_rate():
    rows = _rows([7, 12], mode="hint")
    preds = ["What do you get if you add 3 and 4?", "The answer is 12, right?"]
    m = tut.evaluate(preds, rows)
    assert m["telling_rate"] == pytest.approx(0.5)
    assert m["question_rate"] == pytest.approx(1.0)
    assert "exact_match" not in m
