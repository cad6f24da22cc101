"""Medical records: a doctor-patient dialogue -> a compact clinical note in fixed sections.

The note always has ``CHIEF COMPLAINT:``, ``HISTORY:``, ``MEDICATIONS:``, ``VITALS:``,
``ASSESSMENT:`` and ``PLAN:`` lines, in that order, about 60-100 words, so a tiny model
can learn the layout. Every dialogue opens with fake identifiers (name, phone, date
of birth, record number, sometimes e-mail and street address) that a good note
leaves out; rows list them in ``identifiers``. ``medications`` holds every dosed
drug the reference note names (current ones and those the plan starts or changes),
normalised as "drug dose unit frequency" by :func:`extract_medications`, the same
function the evaluator applies to predictions.

Drugs in ``HELDOUT_DRUGS`` appear only in the test split.
"""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path

from finetune.scenarios._common import (
    check_lengths,
    data_error,
    fill_splits,
    iter_csv,
    read_text,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

SECTIONS: tuple[str, ...] = ("CHIEF COMPLAINT", "HISTORY", "MEDICATIONS", "VITALS", "ASSESSMENT", "PLAN")
VISIT_YEAR = 2024

# drug -> (doses, unit, frequency). Background conditions pick one drug each.
_DRUGS: dict[str, tuple[tuple[int, ...], str, str]] = {
    "lisinopril": ((10, 20, 40), "mg", "once daily"),
    "amlodipine": ((5, 10), "mg", "once daily"),
    "losartan": ((25, 50, 100), "mg", "once daily"),
    "metformin": ((500, 1000), "mg", "twice daily"),
    "glipizide": ((5, 10), "mg", "once daily"),
    "sitagliptin": ((50, 100), "mg", "once daily"),
    "atorvastatin": ((10, 20, 40), "mg", "at bedtime"),
    "simvastatin": ((20, 40), "mg", "at bedtime"),
    "rosuvastatin": ((5, 10, 20), "mg", "once daily"),
    "levothyroxine": ((50, 75, 100), "mcg", "once daily"),
    "liothyronine": ((5, 25), "mcg", "once daily"),
    "omeprazole": ((20, 40), "mg", "once daily"),
    "pantoprazole": ((20, 40), "mg", "once daily"),
    "sertraline": ((50, 100), "mg", "once daily"),
    "escitalopram": ((10, 20), "mg", "once daily"),
    "montelukast": ((10,), "mg", "at bedtime"),
    "fluticasone": ((110, 220), "mcg", "twice daily"),
    "ibuprofen": ((400, 600), "mg", "every 6 hours as needed"),
    "naproxen": ((250, 500), "mg", "twice daily"),
    "acetaminophen": ((500, 1000), "mg", "every 6 hours as needed"),
    "benzonatate": ((100, 200), "mg", "three times daily"),
    "nitrofurantoin": ((100,), "mg", "twice daily"),
    "cephalexin": ((500,), "mg", "twice daily"),
    "amoxicillin": ((500, 875), "mg", "twice daily"),
    "cetirizine": ((10,), "mg", "once daily"),
    "loratadine": ((10,), "mg", "once daily"),
    "melatonin": ((3, 5), "mg", "at bedtime"),
    "famotidine": ((20, 40), "mg", "twice daily"),
    "cyclobenzaprine": ((5, 10), "mg", "at bedtime"),
}
HELDOUT_DRUGS: tuple[str, ...] = (
    "losartan",
    "sitagliptin",
    "rosuvastatin",
    "liothyronine",
    "pantoprazole",
    "escitalopram",
    "fluticasone",
    "cephalexin",
    "loratadine",
    "cyclobenzaprine",
)

# condition in the note -> (how the patient says it, drugs for it)
_CONDITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hypertension": ("high blood pressure", ("lisinopril", "amlodipine", "losartan")),
    "type 2 diabetes": ("diabetes", ("metformin", "glipizide", "sitagliptin")),
    "hyperlipidemia": ("high cholesterol", ("atorvastatin", "simvastatin", "rosuvastatin")),
    "hypothyroidism": ("an underactive thyroid", ("levothyroxine", "liothyronine")),
    "GERD": ("acid reflux", ("omeprazole", "pantoprazole")),
    "depression": ("depression", ("sertraline", "escitalopram")),
    "asthma": ("asthma", ("montelukast", "fluticasone")),
}


# complaint: chief complaint, patient's opening, (question, answer, history phrase) details, assessment,
# drugs the plan may start, advice
_COMPLAINTS: tuple[dict, ...] = (
    {
        "cc": "Headache",
        "say": "I keep getting headaches",
        "details": (
            (
                "Where is the pain?",
                "Across my forehead, worse in the mornings.",
                "frontal headaches, worse in the mornings",
            ),
            ("Any vision changes or nausea?", "No, none of that.", "no vision changes or nausea"),
        ),
        "assessment": "Tension headache",
        "start": ("ibuprofen", "acetaminophen"),
        "advice": "Limit screen time and keep a headache diary",
    },
    {
        "cc": "Cough",
        "say": "I have had a cough that will not go away",
        "details": (
            ("Are you bringing anything up?", "A little clear phlegm, no blood.", "cough with clear sputum, no blood"),
            ("Any fever?", "Just a low fever at night.", "low-grade fevers at night"),
        ),
        "assessment": "Acute bronchitis",
        "start": ("benzonatate",),
        "advice": "Rest, fluids and return if short of breath",
    },
    {
        "cc": "Burning with urination",
        "say": "It burns when I pee",
        "details": (
            ("How often are you going?", "Much more often than usual.", "urinary frequency"),
            ("Any back pain or fever?", "No back pain and no fever.", "no flank pain or fever"),
        ),
        "assessment": "Uncomplicated urinary tract infection",
        "start": ("nitrofurantoin", "cephalexin"),
        "advice": "Urine culture sent; drink plenty of water",
    },
    {
        "cc": "Sore throat",
        "say": "My throat is really sore",
        "details": (
            ("Does it hurt to swallow?", "Yes, it hurts a lot to swallow.", "painful swallowing"),
            ("Any cough?", "No cough at all.", "no cough"),
        ),
        "assessment": "Streptococcal pharyngitis",
        "start": ("amoxicillin",),
        "advice": "Rapid strep test positive; salt water gargles",
    },
    {
        "cc": "Low back pain",
        "say": "My lower back has been hurting",
        "details": (
            ("Did you injure it?", "I lifted a heavy box at work.", "pain after lifting a heavy box"),
            ("Any numbness in your legs?", "No numbness or weakness.", "no numbness or weakness"),
        ),
        "assessment": "Lumbar strain",
        "start": ("naproxen", "cyclobenzaprine"),
        "advice": "Heat, gentle stretching and avoid heavy lifting",
    },
    {
        "cc": "Trouble sleeping",
        "say": "I can not sleep at night",
        "details": (
            ("How long does it take to fall asleep?", "About two hours most nights.", "takes two hours to fall asleep"),
            ("Do you drink coffee late?", "Yes, a cup after dinner.", "drinks coffee after dinner"),
        ),
        "assessment": "Insomnia",
        "start": ("melatonin",),
        "advice": "No caffeine after noon and a regular bedtime",
    },
    {
        "cc": "Sneezing and itchy eyes",
        "say": "I keep sneezing and my eyes itch",
        "details": (
            ("Is it worse outside?", "Yes, especially in spring.", "worse outdoors in spring"),
            ("Any wheezing?", "No wheezing.", "no wheezing"),
        ),
        "assessment": "Seasonal allergic rhinitis",
        "start": ("cetirizine", "loratadine"),
        "advice": "Keep windows closed on high pollen days",
    },
    {
        "cc": "Heartburn",
        "say": "I get a burning feeling in my chest after meals",
        "details": (
            ("Is it worse lying down?", "Yes, mostly at night.", "worse lying down at night"),
            ("Any trouble swallowing?", "No trouble swallowing.", "no trouble swallowing"),
        ),
        "assessment": "Gastroesophageal reflux",
        "start": ("famotidine",),
        "advice": "Avoid late meals and raise the head of the bed",
    },
    {
        "cc": "Knee pain",
        "say": "My right knee has been aching",
        "details": (
            ("Is it worse on stairs?", "Yes, going down stairs.", "worse going down stairs"),
            ("Any swelling?", "A little swelling in the evening.", "mild evening swelling"),
        ),
        "assessment": "Osteoarthritis of the right knee",
        "start": ("acetaminophen", "naproxen"),
        "advice": "Physical therapy referral and weight-bearing exercise",
    },
)

_DURATIONS = ("three days", "five days", "a week", "two weeks", "three weeks", "a month")
_FOLLOW_UP = ("one week", "two weeks", "four weeks", "six weeks", "three months")
# Invented people; a share of these are not in the scrubber's name lists on purpose.
_FIRST = {
    "F": (
        "Maria",
        "Linda",
        "Odalys",
        "Priya",
        "Marisol",
        "Helen",
        "Yara",
        "Ingrid",
        "Nkechi",
        "Tamsin",
        "Carmen",
        "Aiko",
        "Greta",
        "Lucinda",
        "Shirin",
    ),
    "M": (
        "James",
        "Tobiah",
        "Ravi",
        "Ezekiel",
        "Arturo",
        "Kofi",
        "Dmitri",
        "Wendell",
        "Hugo",
        "Lorcan",
        "Bashir",
        "Kenji",
        "Anselm",
        "Thabo",
        "Cyrus",
    ),
}
_SURNAMES = (
    "Lopez",
    "Okafor",
    "Quillane",
    "Brandt",
    "Novak",
    "Castellano",
    "Whitlock",
    "Ferreira",
    "Halvorsen",
    "Oyelaran",
    "Marchetti",
    "Kowalczyk",
    "Abernathy",
    "Tanaka",
    "Delacroix",
    "Moreau",
    "Vasquez",
    "Pellegrin",
)
_STREETS = ("Maple Street", "Cedar Avenue", "Harbor Road", "Willow Lane", "Birch Drive", "Orchard Way")
_MONTH_NAMES = ("January", "February", "March", "April", "May")


def _dose_str(drug: str, dose: int) -> str:
    _, unit, freq = _DRUGS[drug]
    return f"{drug} {dose} {unit} {freq}"


def _pick_drug(rng: random.Random, options: tuple[str, ...], split: str) -> str:
    """Test rows prefer a held-out drug when the condition has one; other splits never see them."""
    allowed = [d for d in options if (d in HELDOUT_DRUGS) == (split == "test")]
    if not allowed:
        allowed = [d for d in options if d not in HELDOUT_DRUGS]
    return rng.choice(allowed)


def _identity(rng: random.Random) -> dict[str, str]:
    sex = rng.choice("FM")
    first, last = rng.choice(_FIRST[sex]), rng.choice(_SURNAMES)
    age = rng.randint(24, 84)
    month, day = rng.randint(1, 5), rng.randint(1, 28)
    dob = rng.choice(
        (f"{month:02d}/{day:02d}/{VISIT_YEAR - age}", f"{_MONTH_NAMES[month - 1]} {day}, {VISIT_YEAR - age}")
    )
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    return {
        "sex": sex,
        "title": "Ms." if sex == "F" else "Mr.",
        "first": first,
        "last": last,
        "name": f"{first} {last}",
        "age": str(age),
        "dob": dob,
        "phone": rng.choice((f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}")),
        "mrn": str(rng.randint(1000000, 9999999)),
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com",
        "address": f"{rng.randint(2, 2999)} {rng.choice(_STREETS)}",
    }


def _opening(rng: random.Random, who: dict[str, str]) -> tuple[list[str], list[str]]:
    """Identity-check turns and the identifiers they plant."""
    lines = rng.choice(
        (
            [
                "Doctor: Good morning, can you tell me your name and date of birth?",
                f"Patient: My name is {who['name']}, born {who['dob']}.",
            ],
            [
                f"Patient: Hi, I'm {who['name']}. My date of birth is {who['dob']}.",
                f"Doctor: Thank you, {who['title']} {who['last']}.",
            ],
        )
    )
    lines.append(f"Doctor: Your record number is {who['mrn']} and your phone is {who['phone']}?")
    lines.append("Patient: Yes.")
    planted = [who["name"], who["dob"], who["mrn"], who["phone"]]
    if " ".join(lines).count(f"{who['title']} {who['last']}"):
        planted.append(who["last"])
    if rng.random() < 0.4:
        lines.append(f"Patient: You can also email me at {who['email']}.")
        planted.append(who["email"])
    if rng.random() < 0.3:
        lines.append(f"Patient: I moved to {who['address']} last month.")
        planted.append(who["address"])
    return lines, planted


def _visit(rng: random.Random, split: str) -> Row:
    who = _identity(rng)
    lines, identifiers = _opening(rng, who)
    complaint = rng.choice(_COMPLAINTS)
    duration = rng.choice(_DURATIONS)
    conditions = rng.sample(sorted(_CONDITIONS), rng.choice((1, 1, 2)))
    current = [(c, _pick_drug(rng, _CONDITIONS[c][1], split)) for c in conditions]
    current = [(c, d, rng.choice(_DRUGS[d][0])) for c, d in current]
    new_drug = _pick_drug(rng, complaint["start"], split)
    new_dose = rng.choice(_DRUGS[new_drug][0])
    vitals = {
        "sys": rng.randint(108, 165),
        "dia": rng.randint(64, 98),
        "hr": rng.randint(58, 104),
        "temp": f"{rng.choice((98.1, 98.4, 98.6, 99.1, 100.2, 100.9))}",
        "sat": rng.randint(94, 100),
    }
    follow = rng.choice(_FOLLOW_UP)
    details = complaint["details"]

    lines.append(rng.choice(("Doctor: What brings you in?", "Doctor: How can I help today?")))
    lines.append(f"Patient: {complaint['say']} for {duration}.")
    for question, answer, _ in details:
        lines += [f"Doctor: {question}", f"Patient: {answer}"]
    lines.append("Doctor: Other medical problems or medicines?")
    lines.append(
        f"Patient: I have {' and '.join(_CONDITIONS[c][0] for c, _, _ in current)}. "
        f"I take {' and '.join(_dose_str(d, dose) for _, d, dose in current)}."
    )
    lines.append(
        f"Doctor: Blood pressure {vitals['sys']} over {vitals['dia']}, heart rate {vitals['hr']}, "
        f"temperature {vitals['temp']}, oxygen {vitals['sat']} percent."
    )
    lines.append(
        f"Doctor: This looks like {complaint['assessment'].lower()}. Let's start {_dose_str(new_drug, new_dose)}. "
        f"{complaint['advice']}. See you in {follow}."
    )
    lines.append(rng.choice(("Patient: Okay, thank you.", "Patient: Sounds good, thanks.")))

    sex_word = "woman" if who["sex"] == "F" else "man"
    background = " and ".join(c for c, _, _ in current)
    history_bits = "; ".join(phrase for _, _, phrase in details)
    note = "\n".join(
        (
            f"CHIEF COMPLAINT: {complaint['cc']} for {duration}.",
            f"HISTORY: {who['age']}-year-old {sex_word} with {background}; "
            f"{complaint['cc'].lower()} for {duration}, {history_bits}.",
            f"MEDICATIONS: {'; '.join(_dose_str(d, dose) for _, d, dose in current)}.",
            f"VITALS: BP {vitals['sys']}/{vitals['dia']}, HR {vitals['hr']}, T {vitals['temp']} F, SpO2 {vitals['sat']}%.",
            f"ASSESSMENT: {complaint['assessment']}. {background[0].upper()}{background[1:]} stable.",
            f"PLAN: Start {_dose_str(new_drug, new_dose)}. {complaint['advice']}. Follow up in {follow}.",
        )
    )
    return {
        "input": "\n".join(lines),
        "output": note,
        "identifiers": identifiers,
        "medications": extract_medications(note),
    }


def generate(seed: int = 0, sizes: dict[str, int] | None = None) -> Splits:
    """Templated visits; identifiers are invented, held-out drugs only in "test"."""
    rng = random.Random(seed)
    return fill_splits("medical_records", sizes, SCENARIO.default_sizes, lambda split: _visit(rng, split))


# ---------------------------------------------------------------- preference pairs


def _wrong_dose(note: str, rng: random.Random) -> str | None:
    """The note with one listed drug's dose changed to another of its doses (or doubled when it has one)."""
    present = [d for d in _DRUGS if re.search(rf"\b{d} \d+ ", note)]
    if not present:
        return None
    drug = rng.choice(present)
    dose = int(re.search(rf"\b{drug} (\d+) ", note).group(1))
    others = [d for d in _DRUGS[drug][0] if d != dose] or [dose * 2]
    return re.sub(rf"\b{drug} {dose} ", f"{drug} {rng.choice(others)} ", note, count=1)


def _unmentioned_drug(row: Row, rng: random.Random) -> str | None:
    """The note with a dosed drug added to MEDICATIONS that the visit never mentions."""
    absent = [d for d in _DRUGS if d not in row["input"].lower()]
    if not absent or "MEDICATIONS: " not in row["output"]:
        return None
    drug = rng.choice(absent)
    return row["output"].replace("MEDICATIONS: ", f"MEDICATIONS: {_dose_str(drug, rng.choice(_DRUGS[drug][0]))}; ", 1)


def _pair(row: Row, rng: random.Random) -> Row:
    """Chosen: the reference note; rejected: the same note with a wrong dose or an unmentioned medication."""
    wrong = _wrong_dose(row["output"], rng) if rng.random() < 0.5 else None
    kind = "wrong_dose" if wrong else "unmentioned_medication"
    rejected = wrong or _unmentioned_drug(row, rng)
    if rejected is None or rejected == row["output"]:
        raise ValueError("medical_records: cannot corrupt a note for a preference pair")  # never for generated notes
    return {**row, "prompt": row["input"], "chosen": row["output"], "rejected": rejected, "rejected_kind": kind}


def preference_pairs(seed: int = 0, sizes: dict[str, int] | None = None) -> Splits:
    """The generated visits as pairs with ground truth by construction: the reference note is preferred to the same
    note with one medication's dose changed or a medication the visit never mentions added (``rejected_kind``)."""
    rng = random.Random(f"{seed}:pairs")
    return {split: [_pair(r, rng) for r in rows] for split, rows in generate(seed, sizes).items()}


# ---------------------------------------------------------------- medication mentions

_FREQUENCIES: tuple[tuple[str, str], ...] = (
    (r"once (?:a )?daily|once a day|every day|daily|q\.?d\.?", "once daily"),
    (r"twice (?:a )?daily|twice a day|two times (?:a|per) day|b\.?i\.?d\.?", "twice daily"),
    (r"three times (?:a |per )?day|three times daily|t\.?i\.?d\.?", "three times daily"),
    (r"four times (?:a |per )?day|four times daily|q\.?i\.?d\.?", "four times daily"),
    (r"at bedtime|at night|nightly|q\.?h\.?s\.?", "at bedtime"),
    (r"every (\d+) hours", "every {0} hours"),
    (r"as needed|p\.?r\.?n\.?", "as needed"),
    (r"once (?:a )?week(?:ly)?|weekly", "once weekly"),
)
_FREQ_RE = "|".join(f"(?:{pattern})" for pattern, _ in _FREQUENCIES)
_NOT_DRUGS = frozenset(
    "to at from of and or the take takes taking took dose doses increase increased decrease start started "
    "continue continued is was by on with about around than only each per glucose weight had has have "
    "output intake total received given gave approximately additional another being decreased reduced "
    "increasing decreasing now currently".split()
)
_MED_RE = re.compile(
    rf"\b(?P<drug>[a-z][a-z-]{{2,}}(?:\s+(?:sulfate|hydrochloride|hcl|sodium|succinate|tartrate|xl|er|sr|xr|cr))?)\s+(?:(?:to|at|from)\s+)?(?P<dose>\d+(?:\.\d+)?)\s*"
    rf"(?P<unit>mg|mcg|g|ml|units?|iu)\b(?!/)(?:\s+(?:tablets?|capsules?|by mouth|orally|po|iv|im|sc|subcutaneous(?:ly)?|intravenous(?:ly)?)\b)*"
    rf"(?:,?\s+(?P<freq>{_FREQ_RE}))?(?:\s+(?P<prn>as needed|prn))?",
    re.IGNORECASE,
)


def _normalise_frequency(text: str) -> str:
    """ "BID" -> "twice daily", "q6h"-style spelled out; a trailing "as needed"/"prn" kept as "as needed"."""
    text = text.lower().strip()
    prn = re.search(r"(?:^|\s)(?:as needed|p\.?r\.?n\.?)$", text) is not None
    core = re.sub(r"\s*(?:as needed|p\.?r\.?n\.?)$", "", text).strip()
    base = core
    for pattern, canonical in _FREQUENCIES:
        m = re.fullmatch(pattern, core)
        if core and m:
            base = canonical.format(*m.groups())
            break
    return " ".join(x for x in (base, "as needed" if prn else "") if x)


def extract_medications(text: str) -> list[str]:
    """Dosed drug mentions as "drug dose unit frequency" (frequency left out when not given), in order."""
    found: list[str] = []
    for m in _MED_RE.finditer(text):
        drug = m.group("drug").lower()
        if drug in _NOT_DRUGS:
            continue
        dose = m.group("dose").rstrip("0").rstrip(".") if "." in m.group("dose") else m.group("dose")
        freq = _normalise_frequency(f"{m.group('freq') or ''} {m.group('prn') or ''}")
        parts = [drug, dose, m.group("unit").lower(), freq]
        mention = " ".join(p for p in parts if p)
        if mention not in found:
            found.append(mention)
    return found


# ---------------------------------------------------------------- real formats

_MTS_COLUMNS = ("ID", "section_header", "section_text", "dialogue")
_ACI_COLUMNS = ("dialogue", "note")
_ACI_TAG_RE = re.compile(r"\s*\[(doctor|patient|patient_guest|guest_family|guest_clinician|nurse|[a-z_]+)\]\s*", re.I)


def _need(path: Path, n: int, record: dict[str, str], *fields: str) -> list[str]:
    values = [record[f].strip() for f in fields]
    for field, value in zip(fields, values):
        if not value:
            raise data_error(path, n, f"empty {field!r}; every row needs a dialogue and its note")
    return values


def _note_row(row_id: str, dialogue: str, note: str, **extra: str) -> Row:
    return {
        "id": row_id,
        "input": dialogue,
        "output": note,
        "identifiers": [],
        "medications": extract_medications(note),
        **extra,
    }


def _read_mts(path: Path) -> list[Row]:
    rows = []
    for n, rec in iter_csv(path, _MTS_COLUMNS):
        dialogue, text = _need(path, n, rec, "dialogue", "section_text")
        rows.append(
            _note_row(f"mts-{rec['ID'].strip() or n}", dialogue, text, section_header=rec["section_header"].strip())
        )
    return rows


def aci_dialogue(text: str) -> str:
    """ACI-Bench ``[doctor] ... [patient] ...`` turns -> one ``Doctor: ...`` line per turn, as generated data."""
    parts = _ACI_TAG_RE.split(text.strip())
    if len(parts) < 3:
        return text.strip()
    turns = [parts[0].strip()] if parts[0].strip() else []
    for tag, said in zip(parts[1::2], parts[2::2]):
        turns.append(f"{tag.replace('_', ' ').capitalize()}: {said.strip()}")
    return "\n".join(turns)


def _read_aci(path: Path) -> list[Row]:
    rows = []
    for n, rec in iter_csv(path, _ACI_COLUMNS):
        dialogue, note = _need(path, n, rec, "dialogue", "note")
        extra = {k: rec[k].strip() for k in ("dataset",) if rec.get(k)}
        row_id = rec.get("encounter_id", "").strip() or f"aci-{n}"
        rows.append(_note_row(row_id, aci_dialogue(dialogue), note, **extra))
    return rows


_READERS = {"mts_dialog": _read_mts, "aci_bench": _read_aci}


def _detect(path: Path) -> str:
    if path.suffix.lower() != ".csv":
        raise data_error(
            path, None, f"expected a .csv file (MTS-Dialog or ACI-Bench); pass fmt= one of {', '.join(_READERS)}"
        )
    header = next(csv.reader(io.StringIO(read_text(path), newline="")), [])
    if "section_text" in header:
        return "mts_dialog"
    if "note" in header:
        return "aci_bench"
    raise data_error(
        path,
        1,
        f"header {', '.join(header) or '(empty)'} fits neither MTS-Dialog "
        f"({', '.join(_MTS_COLUMNS)}) nor ACI-Bench ({', '.join(_ACI_COLUMNS)})",
    )


def read(path: Path, fmt: str | None = None) -> list[Row]:
    """MTS-Dialog CSV (input = dialogue, output = section_text) or ACI-Bench CSV (dialogue -> note)."""
    return read_with("medical_records", path, fmt, _READERS, _detect)


# ---------------------------------------------------------------- evaluation

_SECTION_RES = {s: re.compile(rf"(?im)^[ \t]*{s}[ \t]*:?") for s in SECTIONS}


def _section_presence(notes: list[str]) -> dict[str, float]:
    n = max(len(notes), 1)
    shares = {s: sum(bool(_SECTION_RES[s].search(t)) for t in notes) / n for s in SECTIONS}
    return {f"section_{s.lower().replace(' ', '_')}": v for s, v in shares.items()}


def _micro_prf(pred: list[set[str]], gold: list[set[str]]) -> tuple[float, float, float]:
    """Micro precision/recall/F1; nothing to find and nothing found counts as perfect."""
    tp = sum(len(p & g) for p, g in zip(pred, gold))
    fp = sum(len(p - g) for p, g in zip(pred, gold))
    fn = sum(len(g - p) for p, g in zip(pred, gold))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def evaluate(
    predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    """ROUGE (no stemming), section presence, medication-with-dose F1 and identifier leakage."""
    from finetune.metrics.text import rouge

    check_lengths(predictions, rows, label_probs)
    out = dict(rouge(predictions, [r["output"] for r in rows], use_stemmer=False))
    presence = _section_presence(predictions)
    out.update(presence)
    out["section_mean"] = sum(presence.values()) / len(presence)
    ref_presence = _section_presence([r["output"] for r in rows])
    out["ref_section_mean"] = sum(ref_presence.values()) / len(ref_presence)
    gold = [set(r["medications"] if "medications" in r else extract_medications(r["output"])) for r in rows]
    out["med_precision"], out["med_recall"], out["med_f1"] = _micro_prf(
        [set(extract_medications(p)) for p in predictions], gold
    )
    leaks = [any(i and i.lower() in p.lower() for i in r.get("identifiers", [])) for p, r in zip(predictions, rows)]
    out["identifier_leak_rate"] = sum(leaks) / max(len(rows), 1)
    return out


SCENARIO = Scenario(
    name="medical_records",
    task="generation",
    system="Write a short clinical note for this visit with the sections CHIEF COMPLAINT, HISTORY, "
    "MEDICATIONS, VITALS, ASSESSMENT and PLAN, and leave out the patient's personal identifiers.",
    card="medical_records_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={"mts_dialog": "mts_dialog", "aci_bench": "aci_bench"},
    default_sizes={"train": 800, "validation": 100, "test": 100},
    preference_pairs=preference_pairs,
)
