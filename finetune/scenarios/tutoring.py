"""Tutoring: math word problems with worked steps in GSM8K format, or a guiding hint.

Solve mode targets are GSM8K-style: one line per step with a ``<<a*b=c>>``
calculator note, then ``#### <answer>``. Hint mode targets a question that
guides the first step without stating the final answer (the generator rejects
any hint that contains it), so ``telling_rate`` measures a tutor giving the
answer away. Problems are templated and small so a tiny model can learn them:
difficulty 1 = one step, 2 = two, 3 = three; numbers stay up to 20 (up to 100
at difficulty 3).

Names in ``HELDOUT_NAMES`` and nouns in ``HELDOUT_NOUNS`` appear only in the test split.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from pathlib import Path

from finetune.scenarios._common import (
    FREE_TEXT,
    check_lengths,
    data_error,
    fill_splits,
    iter_jsonl,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

TRAIN_NAMES: tuple[str, ...] = (
    "Tom",
    "Ana",
    "Ben",
    "Mia",
    "Sam",
    "Lily",
    "Omar",
    "Zoe",
    "Leo",
    "Emma",
    "Raj",
    "Nina",
    "Max",
    "Ella",
    "Ivan",
    "Sara",
)
HELDOUT_NAMES: tuple[str, ...] = ("Kofi", "Yuki", "Pablo", "Greta")
TRAIN_NOUNS: tuple[str, ...] = (
    "apples",
    "pencils",
    "stickers",
    "marbles",
    "cookies",
    "books",
    "shells",
    "balloons",
    "cards",
    "coins",
    "stamps",
    "eggs",
)
HELDOUT_NOUNS: tuple[str, ...] = ("oranges", "crayons", "buttons")

MODES: tuple[str, ...] = ("solve", "hint")
HINT_PREFIX = "Give a hint: "  # marks hint requests so one model can serve both modes
_NUM = r"\$?\d+(?:,\d{3})*(?:\.\d+)?"
_OP = r"[-+*/x×÷]"
_NOTE = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
# a op b (op c ...) = c, where c may be a fraction ("3 * 1/4 = 3/4"); not followed by a letter ("= 5A")
_PLAIN = re.compile(rf"(?<![\w.]){_NUM}(?:\s*{_OP}\s*{_NUM})+\s*=\s*{_NUM}(?:\s*/\s*{_NUM})?(?![\w]|\.\d)")
_NUMBERS = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


# ---------------------------------------------------------------- generation


class _Problem:
    """A problem built step by step: question sentences, solution lines, hint, running value."""

    def __init__(self, name: str, noun: str) -> None:
        self.name, self.noun = name, noun
        self.sentences: list[str] = []
        self.lines: list[str] = []
        self.steps: list[str] = []
        self.hint = ""
        self.question = f"How many {noun} does {name} have now?"
        self.value = 0

    def solution(self) -> str:
        """The worked answer in GSM8K format: one line per step, then ``#### <answer>``."""
        return "\n".join(self.lines + [f"#### {self.value}"])

    def step(self, a: int, sym: str, b: int, result: int, line: str, hint: str) -> None:
        note = f"{a}{sym}{b}={result}"
        self.lines.append(line.format(calc=f"{a} {sym} {b} = <<{note}>>{result}"))
        self.steps.append(note)
        self.hint = self.hint or hint
        self.value = result


def _start(p: _Problem, rng: random.Random, top: int, boxes: bool) -> bool:
    n, s = p.name, p.noun
    if not boxes:
        p.value = rng.randint(2, top)
        p.sentences.append(f"{n} has {p.value} {s}.")
        return True
    a = rng.randint(2, max(2, top // 2))
    if top // a < 2:
        return False
    b = rng.randint(2, top // a)
    p.sentences.append(f"{n} has {a} boxes with {b} {s} in each.")
    p.step(a, "*", b, a * b, f"{n} has {{calc}} {s}.", f"How many {s} are in {a} boxes of {b}?")
    return True


def _follow(p: _Problem, rng: random.Random, top: int, op: str) -> bool:
    """Apply one more operation to the running value; False when no small operand fits."""
    n, s, x = p.name, p.noun, p.value
    lead = "Then " if p.lines else ""
    if op == "add" and x + 2 <= top:
        b = rng.randint(2, top - x)
        p.sentences.append(f"{n} buys {b} more {s}.")
        p.step(
            x,
            "+",
            b,
            x + b,
            f"{lead}{n} has {{calc}} {s}.",
            f"What do you get if you add the {x} {s} {n} had to the {b} {n} bought?",
        )
        return True
    if op == "sub" and x >= 3:
        b = rng.randint(2, x - 1)
        p.sentences.append(f"{n} gives {b} {s} to a friend.")
        p.step(
            x,
            "-",
            b,
            x - b,
            f"{lead}{n} has {{calc}} {s}.",
            f"What is left if you take the {b} {s} {n} gave away from the {x} {n} had?",
        )
        return True
    divisors = [d for d in range(2, x) if x % d == 0]
    if op == "div" and divisors:
        b = rng.choice(divisors)
        p.sentences.append(f"{n} shares them equally among {b} friends.")
        p.question = f"How many {s} does each friend get?"
        p.step(
            x,
            "/",
            b,
            x // b,
            f"{'Then each' if p.lines else 'Each'} friend gets {{calc}} {s}.",
            f"What do you get if you split the {x} {s} into {b} equal shares?",
        )
        return True
    return False


def _problem(rng: random.Random, name: str, noun: str, difficulty: int) -> _Problem | None:
    top = 100 if difficulty >= 3 else 20
    p = _Problem(name, noun)
    boxes = rng.random() < 0.25
    if not _start(p, rng, top, boxes):
        return None
    for k in range(difficulty - int(boxes)):
        last = k == difficulty - int(boxes) - 1
        if not _follow(p, rng, top, rng.choice(("add", "sub", "div") if last else ("add", "sub"))):
            return None
    return p


def _row(p: _Problem, mode: str, difficulty: int) -> Row | None:
    question = " ".join(p.sentences + [p.question])
    if mode == "hint":
        question = f"{HINT_PREFIX}{question}"
    if mode == "solve":
        output = p.solution()
    else:
        output = p.hint if difficulty == 1 else f"First, {p.hint[0].lower()}{p.hint[1:]}"
        if _tells(output, float(p.value)):
            return None
    return {
        "input": question,
        "output": output,
        "answer": float(p.value),
        "steps": list(p.steps),
        "mode": mode,
        "difficulty": difficulty,
    }


def generate(
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    mode: str = "solve",
    difficulty: int = 1,
    hint_share: float = 0.3,
    tell_share: float = 0.0,
) -> Splits:
    """Templated word problems; test rows use only held-out names and nouns. ``mode: mixed`` draws hint requests
    for ``hint_share`` of the rows and solve requests for the rest (one source, one evaluation of both).

    ``tell_share``: the share of training and validation hint requests answered with the worked answer, as tutors
    in real dialogues often give the answer away (MathDial's "telling"); an SFT model learns to tell from them, which
    is what preference tuning is for. Test references stay hints."""
    if mode not in (*MODES, "mixed"):
        raise ValueError(f"tutoring: mode must be 'solve', 'hint' or 'mixed', got {mode!r}")
    if not isinstance(hint_share, (int, float)) or not 0.0 <= hint_share <= 1.0:
        raise ValueError(f"tutoring: hint_share must be a number from 0 to 1, got {hint_share!r}")
    if not isinstance(tell_share, (int, float)) or not 0.0 <= tell_share <= 1.0:
        raise ValueError(f"tutoring: tell_share must be a number from 0 to 1, got {tell_share!r}")
    if difficulty not in (1, 2, 3):
        raise ValueError(f"tutoring: difficulty must be 1, 2 or 3, got {difficulty!r}")
    rng = random.Random(seed)

    def make(split: str) -> Row:
        names, nouns = (HELDOUT_NAMES, HELDOUT_NOUNS) if split == "test" else (TRAIN_NAMES, TRAIN_NOUNS)
        this = mode if mode != "mixed" else ("hint" if rng.random() < hint_share else "solve")
        while True:
            p = _problem(rng, rng.choice(names), rng.choice(nouns), difficulty)
            row = _row(p, this, difficulty) if p else None
            if row and this == "hint" and split != "test" and tell_share and rng.random() < tell_share:
                row["output"] = p.solution()  # the tutor tells
            if row:
                return row

    return fill_splits("tutoring", sizes, SCENARIO.default_sizes, make)


# ---------------------------------------------------------------- preference pairs


def _wrong_final(solution: str, answer: float, rng: random.Random) -> str:
    """The worked steps with a different number after ``####``: the rejected side of a solve pair."""
    value = int(answer)
    wrong = value + rng.choice([d for d in (-2, -1, 1, 2, 10) if value + d >= 0])
    head, _, _ = solution.rpartition("#### ")
    return f"{head}#### {wrong}"


def _pair(p: _Problem, mode: str, difficulty: int, rng: random.Random, solve_rejected: str) -> Row | None:
    """A hint request whose chosen reply guides and whose rejected reply is the worked answer that tells it; or a
    solve request whose chosen reply is the right worked answer and whose rejected one ends in a wrong number
    (``solve_rejected: wrong_number``) or is the hint that does not solve it (``hint``); ``both`` draws one of the
    two for each solve request."""
    row = _row(p, mode, difficulty)
    if row is None:
        return None
    solution = p.solution()
    kind = rng.choice(("wrong_number", "hint")) if mode == "solve" and solve_rejected == "both" else solve_rejected
    if mode == "hint":
        rejected = solution
    elif kind == "hint":
        hint = _row(p, "hint", difficulty)
        if hint is None:
            return None
        rejected = hint["output"]
    else:
        rejected = _wrong_final(solution, row["answer"], rng)
    return {**row, "prompt": row["input"], "chosen": row["output"], "rejected": rejected}


def preference_pairs(
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    difficulty: int = 1,
    solve_share: float = 0.5,
    solve_rejected: str = "wrong_number",
) -> Splits:
    """Tutoring pairs with ground truth by construction: hint requests (chosen: the hint that does not state the final
    number; rejected: the worked answer, which does), and for ``solve_share`` of the rows solve requests (chosen: the
    right worked answer; rejected: the same steps ending in a wrong number, or with ``solve_rejected: hint`` the hint
    that answers a solve request as if it were a hint request; ``both``: half of each), so tuning away from telling
    keeps the solving. A wrong number asks DPO to teach arithmetic; a hint teaches the two requests apart, which is
    what the push away from telling blurs. Rows keep ``input``/``output`` (the chosen side), ``answer`` and ``mode``: the evaluator scores them."""
    if difficulty not in (1, 2, 3):
        raise ValueError(f"tutoring: difficulty must be 1, 2 or 3, got {difficulty!r}")
    if not isinstance(solve_share, (int, float)) or not 0.0 <= solve_share <= 1.0:
        raise ValueError(f"tutoring: solve_share must be a number from 0 to 1, got {solve_share!r}")
    if solve_rejected not in ("wrong_number", "hint", "both"):
        raise ValueError(f"tutoring: solve_rejected must be 'wrong_number', 'hint' or 'both', got {solve_rejected!r}")
    rng = random.Random(f"{seed}:pairs")

    def make(split: str) -> Row:
        names, nouns = (HELDOUT_NAMES, HELDOUT_NOUNS) if split == "test" else (TRAIN_NAMES, TRAIN_NOUNS)
        mode = "solve" if rng.random() < solve_share else "hint"
        while True:
            p = _problem(rng, rng.choice(names), rng.choice(nouns), difficulty)
            row = _pair(p, mode, difficulty, rng, solve_rejected) if p else None
            if row:
                return row

    return fill_splits("tutoring", sizes, SCENARIO.default_sizes, make)


def telling_rate(replies: list[str], answers: list[float]) -> float:
    """Share of replies that state the final answer (any number in them equal to it): a tutor giving it away."""
    return sum(_tells(r, float(a)) for r, a in zip(replies, answers)) / max(len(replies), 1)


# ---------------------------------------------------------------- real format


def _read_gsm8k(path: Path) -> list[Row]:
    from finetune.metrics.numeric import parse_number

    rows = []
    for n, obj in iter_jsonl(path, ("question", "answer")):
        answer = str(obj["answer"])
        value = parse_number(answer) if "####" in answer else None
        if value is None:
            raise data_error(path, n, "answer must end in '#### <number>' (GSM8K format)")
        rows.append(
            {
                "id": f"{path.stem}-{n}",
                "input": str(obj["question"]).strip(),
                "output": answer.strip(),
                "answer": value,
                "steps": [f"{a}={c}".replace(" ", "") for a, c in _NOTE.findall(answer)],
                "mode": "solve",
            }
        )
    return rows


def read(path: Path, fmt: str | None = None) -> list[Row]:
    """GSM8K JSONL: ``question`` and ``answer`` (worked steps ending in ``#### <number>``)."""
    return read_with("tutoring", path, fmt, {"gsm8k": _read_gsm8k})


# ---------------------------------------------------------------- evaluation


def _calc(expr: str) -> float | None:
    """Value of an arithmetic expression (+ - * / x, parentheses); None if it is anything else."""
    text = expr.replace("×", "*").replace("÷", "/").replace("x", "*").replace("$", "").replace(",", "")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not arithmetic")

    try:
        return value(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _step_ok(expr: str, stated: str) -> bool | None:
    """Is ``expr = stated`` right to the precision written? None when not arithmetic at all."""
    got, want = _calc(expr), _calc(stated)
    if got is None or want is None:
        return None
    decimals = len(stated.strip().split(".")[1]) if "." in stated else 0
    return abs(got - want) <= (0.5 * 10**-decimals if decimals else 1e-6 * max(1.0, abs(want)))


def step_checks(text: str) -> list[bool]:
    """One verdict per ``a op b = c`` step: calculator notes first, then plain equations outside them."""
    verdicts = [_step_ok(a, c) for a, c in _NOTE.findall(text)]
    for m in _PLAIN.finditer(_NOTE.sub("|", text)):
        expr, _, stated = m.group().rpartition("=")
        verdicts.append(_step_ok(expr, stated))
    return [v for v in verdicts if v is not None]


def _tells(text: str, answer: float) -> bool:
    from finetune.metrics.numeric import numeric_match

    return any(numeric_match(float(t.replace(",", "")), answer, rel_tol=1e-9) for t in _NUMBERS.findall(text))


def parse_answer(text: str, row: Row) -> float | str | None:
    """A solve answer's final number, by GSM8K's rule (right after the last ``####``); hints are free text."""
    from finetune.metrics.numeric import marked_number

    return marked_number(text) if row.get("mode", "solve") == "solve" else FREE_TEXT


def _solve_scores(predictions: list[str], rows: list[Row]) -> dict[str, float]:
    from finetune.metrics.numeric import numeric_match

    finals = [parse_answer(p, r) for p, r in zip(predictions, rows)]
    checks = [step_checks(p) for p in predictions]
    n_steps = sum(len(c) for c in checks)
    return {
        "exact_match": sum(numeric_match(v, float(r["answer"]), rel_tol=1e-9) for v, r in zip(finals, rows))
        / len(rows),
        "parse_failure_rate": sum(v is None for v in finals) / len(rows),
        "step_validity": sum(sum(c) for c in checks) / n_steps if n_steps else 0.0,
        "steps_per_answer": n_steps / len(rows),
    }


def _hint_scores(predictions: list[str], rows: list[Row]) -> dict[str, float]:
    from finetune.metrics.text import rouge

    return {
        "telling_rate": telling_rate(predictions, [r["answer"] for r in rows]),
        "question_rate": sum(p.strip().endswith("?") for p in predictions) / len(rows),
        "hint_rougeL": rouge(predictions, [r["output"] for r in rows])["rougeL"],
    }


def evaluate(predictions: list[str], rows: list[Row], label_probs: list | None = None) -> dict[str, float]:
    """Solve rows: final-answer exact match after ``####`` and step validity; hint rows: telling rate.

    ``step_validity`` is the share of steps (notes and plain equations) whose arithmetic is
    right, 0 when the predictions hold no step; ``steps_per_answer`` says how many there were.
    """
    check_lengths(predictions, rows, label_probs)
    out: dict[str, float] = {}
    for mode, scorer in (("solve", _solve_scores), ("hint", _hint_scores)):
        picked = [i for i, r in enumerate(rows) if r.get("mode", "solve") == mode]
        if picked:
            out.update(scorer([predictions[i] for i in picked], [rows[i] for i in picked]))
    return out


SCENARIO = Scenario(
    name="tutoring",
    task="numeric",
    system="Solve the math word problem step by step and end with '#### <answer>', "
    "or, when asked for a hint, guide the first step without giving the answer.",
    card="tutoring_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={"gsm8k": "gsm8k"},
    default_sizes={"train": 800, "validation": 100, "test": 100},
    preference_pairs=preference_pairs,
)
