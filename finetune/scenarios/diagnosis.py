"""Diagnostic assistance: medical multiple-choice questions (MedQA / MedMCQA style).

A row is a question with lettered options; the target is the letter (``choices`` are the
letters, ``options`` maps each letter to its text, ``answer`` is the right text).

Synthetic vignettes come from ``CONDITIONS``, a small table of INVENTED conditions and
INVENTED drugs (real symptom words, made-up names, so nothing here is medical advice):
per body system five conditions, each with three findings no other condition of its
system has and one first-line treatment, plus one finding the whole system shares. A
vignette names two of the condition's findings and the shared one, then asks for the
most likely diagnosis or the first-line treatment (findings -> condition -> drug); the
distractors are the other conditions (or their drugs) of the same body system, so a
model must read the findings, not the organ. The fifth condition of every system is
held out: it appears only in test rows (``heldout: True``, about ``HELDOUT_SHARE`` of
them), where a model can still answer by ruling out the three conditions it knows.

Real formats: MedQA / MedAgentsBench JSONL (``question``, ``options`` {A..D or A..E},
``answer_idx``, optional ``answer`` text, checked against the option), MedMCQA JSONL
(``question``, ``opa``..``opd``, ``cop``: 1-4 in the original release, ``medmcqa_hf`` for
the 0-3 of the Hugging Face copy).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from finetune.scenarios._common import (
    check_lengths,
    data_error,
    fill_splits,
    iter_jsonl,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")
N_OPTIONS = 4


@dataclass(frozen=True)
class Condition:
    name: str
    findings: tuple[str, str, str]
    treatment: str


# body system -> (finding every condition of it shares, conditions; the LAST one is held out)
CONDITIONS: dict[str, tuple[str, tuple[Condition, ...]]] = {
    "cardiovascular": (
        "fatigue",
        (
            Condition(
                "Marlow heart syndrome",
                ("chest pain on exertion", "a harsh systolic murmur", "fainting during exercise"),
                "corvastin",
            ),
            Condition(
                "Pellan myocarditis",
                ("fever", "sharp chest pain that eases when leaning forward", "a friction rub"),
                "myoprenil",
            ),
            Condition(
                "Tessard arrhythmia", ("palpitations", "an irregularly irregular pulse", "dizziness"), "rhythmolol"
            ),
            Condition(
                "Obern vascular disease", ("calf pain when walking", "cool pale feet", "weak foot pulses"), "vasoclar"
            ),
            Condition(
                "Quill valve disorder",
                ("breathlessness when lying flat", "swollen ankles", "a diastolic murmur"),
                "valvotrex",
            ),
        ),
    ),
    "respiratory": (
        "cough",
        (
            Condition(
                "Harlen lung disease", ("wheezing", "a night-time cough", "a tight chest in cold air"), "bronchalin"
            ),
            Condition("Dewitt pneumonitis", ("high fever", "crackles over one lung", "rusty sputum"), "pulmocillin"),
            Condition(
                "Sorrel fibrosis",
                ("dry crackles at both bases", "clubbed fingers", "slowly worsening breathlessness"),
                "fibrazone",
            ),
            Condition(
                "Kesley pleurisy", ("chest pain when breathing in", "a pleural rub", "shallow breathing"), "pleuradol"
            ),
            Condition("Vance airway syndrome", ("loud snoring", "daytime sleepiness", "morning headaches"), "airvexa"),
        ),
    ),
    "gastrointestinal": (
        "nausea",
        (
            Condition(
                "Brannock gastritis",
                ("burning upper abdominal pain", "pain relieved by food", "black stools"),
                "gastrozole",
            ),
            Condition(
                "Lowry colitis",
                ("bloody diarrhoea", "cramping lower abdominal pain", "urgency to pass stool"),
                "colimab",
            ),
            Condition(
                "Fenwick gallbladder disease", ("pain after fatty meals", "yellow skin", "pale stools"), "biliflux"
            ),
            Condition(
                "Ardent pancreatitis",
                ("severe pain spreading to the back", "repeated vomiting", "a tender upper abdomen"),
                "pancrelin",
            ),
            Condition(
                "Cobbett bowel syndrome",
                ("bloating", "alternating constipation and diarrhoea", "pain eased by passing stool"),
                "entercalm",
            ),
        ),
    ),
    "renal": (
        "tiredness",
        (
            Condition(
                "Graymoor nephritis", ("blood in the urine", "puffy eyelids", "high blood pressure"), "nephrocort"
            ),
            Condition(
                "Halden stone disease",
                ("colicky flank pain", "pain spreading to the groin", "restlessness"),
                "lithosol",
            ),
            Condition(
                "Ivers kidney infection",
                ("fever with chills", "flank tenderness", "burning on urination"),
                "renacillin",
            ),
            Condition(
                "Jessup nephrosis",
                ("frothy urine", "swelling of the whole body", "a very low blood albumin"),
                "albuvan",
            ),
            Condition(
                "Kirwan cyst disease",
                ("a family history of kidney cysts", "enlarged kidneys on examination", "dull loin discomfort"),
                "cystorin",
            ),
        ),
    ),
    "neurological": (
        "headache",
        (
            Condition(
                "Lomax migraine",
                ("one-sided throbbing pain", "flashing lights before the pain", "sensitivity to light"),
                "cephalin",
            ),
            Condition(
                "Mercer neuropathy",
                ("numbness in both feet", "burning feet at night", "absent ankle reflexes"),
                "neurabine",
            ),
            Condition("Northam tremor", ("a tremor at rest", "slow movements", "stiff limbs"), "dopavex"),
            Condition(
                "Orrin meningitis",
                ("neck stiffness", "a high fever", "a rash that does not fade under pressure"),
                "meningocil",
            ),
            Condition(
                "Prescott palsy",
                ("sudden drooping of one side of the face", "inability to close one eye", "loss of taste"),
                "facioprin",
            ),
        ),
    ),
    "dermatological": (
        "itching",
        (
            Condition(
                "Rowan dermatitis",
                ("dry red patches in skin folds", "scratch marks", "a history of hay fever"),
                "dermasone",
            ),
            Condition(
                "Stiles psoriasis",
                ("silvery scaly plaques", "pitted nails", "plaques on elbows and knees"),
                "plaquinol",
            ),
            Condition(
                "Thorne impetigo", ("honey-coloured crusts", "sores around the mouth", "spread to siblings"), "impecin"
            ),
            Condition(
                "Umber urticaria",
                ("raised wheals that move within hours", "swelling of the lips", "onset after a new food"),
                "histavex",
            ),
            Condition(
                "Whitley scabies",
                ("burrows between the fingers", "itching worse at night", "itchy household contacts"),
                "scabinol",
            ),
        ),
    ),
}
HELDOUT_CONDITIONS: tuple[str, ...] = tuple(conds[-1].name for _, conds in CONDITIONS.values())
HELDOUT_SHARE = 0.3  # of test rows ask about a held-out condition
QUESTIONS: dict[str, str] = {
    "diagnosis": "What is the most likely diagnosis?",
    "treatment": "What is the first-line treatment?",
}

# ---------------------------------------------------------------- generation


def render(question: str, options: dict[str, str]) -> str:
    """The model's input: the question, then one ``X. text`` line per option; read rows share it."""
    return question.strip() + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())


def _vignette(rng: random.Random, heldout: bool) -> Row:
    system = rng.choice(sorted(CONDITIONS))
    shared, conditions = CONDITIONS[system]
    known = list(conditions[:-1])
    target = conditions[-1] if heldout else rng.choice(known)
    distractors = rng.sample([c for c in known if c is not target], N_OPTIONS - 1)
    listed = [target, *distractors]
    rng.shuffle(listed)
    qtype = rng.choice(sorted(QUESTIONS))
    findings = [*rng.sample(target.findings, 2), shared]
    rng.shuffle(findings)
    who = f"A {rng.randint(18, 80)}-year-old {rng.choice(('man', 'woman'))}"
    question = f"{who} presents with {findings[0]}, {findings[1]} and {findings[2]}. {QUESTIONS[qtype]}"
    texts = [c.name if qtype == "diagnosis" else c.treatment for c in listed]
    options = dict(zip(LETTERS, texts))
    letter = LETTERS[listed.index(target)]
    return {
        "input": render(question, options),
        "output": letter,
        "choices": list(LETTERS[:N_OPTIONS]),
        "options": options,
        "answer": options[letter],
        "system": system,
        "condition": target.name,
        "qtype": qtype,
        "heldout": heldout,
    }


def generate(seed: int = 0, sizes: dict[str, int] | None = None) -> Splits:
    """Vignettes from the invented table (module docstring); held-out conditions only in test."""
    rng = random.Random(seed)

    def make(split: str) -> Row:
        return _vignette(rng, split == "test" and rng.random() < HELDOUT_SHARE)

    return fill_splits("diagnosis", sizes, SCENARIO.default_sizes, make)


# ---------------------------------------------------------------- real formats


def _mcq_row(path: Path, n: int, row_id: str, question: str, options: dict[str, str], letter: str) -> Row:
    if not question.strip():
        raise data_error(path, n, "question is empty")
    return {
        "id": row_id,
        "input": render(question, options),
        "output": letter,
        "choices": list(options),
        "options": options,
        "answer": options[letter],
    }


def _options(path: Path, n: int, raw: object) -> dict[str, str]:
    """Options as letter -> text, A first and no letter skipped (A-D, or A-E in 5-option MedQA)."""
    if not isinstance(raw, dict) or not raw:
        raise data_error(path, n, 'options must be an object like {"A": "...", "B": "..."}')
    letters = sorted(raw)
    if letters != list(LETTERS[: len(letters)]) or len(letters) < 2:
        raise data_error(path, n, f"options keys {', '.join(letters)} must be consecutive letters from A (A-D or A-E)")
    return {k: str(raw[k]).strip() for k in letters}


def _read_medqa(path: Path) -> list[Row]:
    rows = []
    for n, obj in iter_jsonl(path, ("question", "options", "answer_idx")):
        options = _options(path, n, obj["options"])
        letter = str(obj["answer_idx"]).strip().upper()
        if letter not in options:
            raise data_error(
                path, n, f"answer_idx {obj['answer_idx']!r} is not one of the options {', '.join(options)}"
            )
        if "answer" in obj and str(obj["answer"]).strip() != options[letter]:
            raise data_error(path, n, f"answer {str(obj['answer'])[:40]!r} differs from option {letter}; fix either")
        row_id = str(obj.get("id") or obj.get("realidx") or f"{path.stem}-{n}")
        rows.append(_mcq_row(path, n, row_id, str(obj["question"]), options, letter))
    return rows


def _read_medmcqa(path: Path, first: int) -> list[Row]:
    """MedMCQA rows; ``first`` is the number ``cop`` gives option A (1 in the release, 0 on the Hub)."""
    rows = []
    for n, obj in iter_jsonl(path, ("question", "opa", "opb", "opc", "opd", "cop")):
        options = {k: str(obj[f"op{k.lower()}"]).strip() for k in LETTERS[:4]}
        cop = obj["cop"]
        if not isinstance(cop, int) or isinstance(cop, bool) or not first <= cop < first + 4:
            hint = " (0-3: use format medmcqa_hf)" if first == 1 and cop == 0 else ""
            raise data_error(path, n, f"cop {cop!r} must be an option number {first}-{first + 3}{hint}")
        row = _mcq_row(
            path, n, str(obj.get("id") or f"{path.stem}-{n}"), str(obj["question"]), options, LETTERS[cop - first]
        )
        for key in ("subject_name", "topic_name", "choice_type"):
            if obj.get(key):
                row[key] = str(obj[key])
        rows.append(row)
    return rows


_READERS: dict[str, Callable[[Path], list[Row]]] = {
    "medqa_jsonl": _read_medqa,
    "medmcqa": lambda p: _read_medmcqa(p, 1),
    "medmcqa_hf": lambda p: _read_medmcqa(p, 0),
}


def _detect(path: Path) -> str:
    for _, obj in iter_jsonl(path, ()):
        return "medmcqa" if "opa" in obj else "medqa_jsonl"
    return "medqa_jsonl"  # no rows: the reader says so


def read(path: Path, fmt: str | None = None) -> list[Row]:
    """MedQA / MedAgentsBench JSONL (``options`` + ``answer_idx``) or MedMCQA JSONL (``opa``..``opd`` + ``cop``)."""
    return read_with("diagnosis", path, fmt, _READERS, _detect)


# ---------------------------------------------------------------- evaluation

_ANSWER_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:correct\s+)?(?:answer|option)\s*(?:is)?\s*[:\-]?\s*", re.I)
_LETTER = re.compile(r"^\(?([A-Z])\)?(?=[.):,\s]|$)")


def parse_letter(text: str, choices: list[str]) -> str | None:
    """The option letter an answer starts with ("B", "B.", "(B) text", "Answer: B"); None otherwise.

    Only a capital letter at the start counts, so "A patient..." or "a" inside a sentence is
    not read as option A; a letter that is not one of ``choices`` is no answer.
    """
    m = _LETTER.match(_ANSWER_PREFIX.sub("", text.strip(), count=1))
    if m is None or m.group(1) not in choices:
        return None
    if m.group(1) == "A" and re.match(r"^A\s+[a-z]", text.strip()):  # "A 45-year-old" vs "A bleeding..."
        return None
    return m.group(1)


def _argmax(probs: dict[str, float], choices: list[str], i: int) -> str:
    scored = [(probs[c], -k, c) for k, c in enumerate(choices) if c in probs]
    if not scored:
        raise ValueError(f"probabilities[{i}] score none of {choices}")
    return max(scored)[2]


def _calibration(label_probs: list[dict[str, float]], rows: list[Row], picked: list[str]) -> dict[str, float]:
    """Multi-class Brier (sum over options of (p - y)^2, mean over rows) and top-label ECE."""
    from finetune.metrics.classification import brier, ece

    flat_p, flat_y = [], []
    for probs, row in zip(label_probs, rows):
        total = sum(probs.get(c, 0.0) for c in row["choices"]) or 1.0
        for c in row["choices"]:
            flat_p.append(probs.get(c, 0.0) / total)
            flat_y.append(int(c == row["output"]))
    confidence = [
        probs[p] / (sum(probs.get(c, 0.0) for c in r["choices"]) or 1.0)
        for probs, p, r in zip(label_probs, picked, rows)
    ]
    correct = [int(p == r["output"]) for p, r in zip(picked, rows)]
    return {"brier": brier(flat_p, flat_y) * len(flat_p) / len(rows), "ece": ece(confidence, correct)}


def _accuracy(picked: list[str], rows: list[Row]) -> float:
    return sum(p == r["output"] for p, r in zip(picked, rows)) / len(rows) if rows else 0.0


def _heldout_split(picked: list[str], rows: list[Row]) -> dict[str, float]:
    out = {}
    for key, want in (("heldout_accuracy", True), ("seen_accuracy", False)):
        idx = [i for i, r in enumerate(rows) if r.get("heldout") is want]
        if idx:
            out[key] = _accuracy([picked[i] for i in idx], [rows[i] for i in idx])
    return out


def evaluate(
    predictions: list[str],
    rows: list[Row],
    label_probs: list[dict[str, float]] | None = None,
    option_probs: list[dict[str, float]] | None = None,
) -> dict[str, float]:
    """Accuracy over the option letters: constrained (with Brier, ECE) and ``gen_`` (parsed letter).

    ``option_probs`` (per row: letter -> score of that option's TEXT given the prompt) gives
    ``text_accuracy``; the eval loop does not compute them yet (it scores only ``choices``).
    Beside them: chance (1 / options), the most frequent answer letter's accuracy, and
    accuracy on ``heldout`` vs seen conditions (constrained when given, else generated).
    """
    check_lengths(predictions, rows, label_probs)
    if option_probs is not None and len(option_probs) != len(rows):
        raise ValueError(f"evaluate: {len(option_probs)} option_probs for {len(rows)} rows; pass one per row")
    out: dict[str, float] = {}
    parsed = [parse_letter(p, r["choices"]) for p, r in zip(predictions, rows)]
    generated = [p if p is not None else "<unparsed>" for p in parsed]
    picked = generated
    if label_probs is not None:
        picked = [_argmax(p, r["choices"], i) for i, (p, r) in enumerate(zip(label_probs, rows))]
        out["accuracy"] = _accuracy(picked, rows)
        if rows:
            out.update(_calibration(label_probs, rows, picked))
    if option_probs is not None:
        out["text_accuracy"] = _accuracy(
            [_argmax(p, r["choices"], i) for i, (p, r) in enumerate(zip(option_probs, rows))], rows
        )
    out["gen_accuracy"] = _accuracy(generated, rows)
    out["parse_failure_rate"] = sum(p is None for p in parsed) / len(rows) if rows else 0.0
    out["ref_chance_accuracy"] = sum(1 / len(r["choices"]) for r in rows) / len(rows) if rows else 0.0
    truth = [r["output"] for r in rows]
    out["ref_majority_letter_accuracy"] = Counter(truth).most_common(1)[0][1] / len(truth) if truth else 0.0
    out.update(_heldout_split(picked, rows))
    return out


SCENARIO = Scenario(
    name="diagnosis",
    task="classification",
    system="Answer the medical multiple-choice question with the letter of the best option.",
    card="diagnosis_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={"medqa_jsonl": "medmcqa", "medmcqa": "medmcqa", "medmcqa_hf": "medmcqa"},
    default_sizes={"train": 1200, "validation": 100, "test": 200},
)
