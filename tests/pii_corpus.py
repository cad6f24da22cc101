"""Generated text for measuring the PII scrubber: texts with planted identifiers (recall) and
clean clinical sentences (false positives). Test-only: nothing in the package needs it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from finetune.data.names import FIRST_NAMES, SURNAMES
from finetune.data.scrub import _NOT_NAMES, luhn_valid

_DRUGS = (
    "metformin",
    "lisinopril",
    "atorvastatin",
    "amlodipine",
    "levothyroxine",
    "omeprazole",
    "sertraline",
    "albuterol",
    "Tylenol",
    "Lipitor",
    "Eliquis",
    "gabapentin",
    "prednisone",
)
_FREQS = ("once daily", "twice daily", "at bedtime", "every 6 hours as needed", "three times daily")
_BODY = ("left knee", "right shoulder", "lower back", "chest", "abdomen", "neck", "right hip", "left ankle")
_CLINICAL_TEMPLATES = (
    "She takes {drug} {dose} mg {freq}.",
    "{Drug} {dose} mg {freq} was continued.",
    "BP {sys}/{dia}, HR {hr}, temperature {temp} F, SpO2 {sat}%.",
    "Pain in the {body} for {n} weeks, worse with activity.",
    "Seen in clinic on {month} {day}, {year}; follow up in {n} weeks.",
    "Labs drawn on {mm}/{dd}/{year} showed hemoglobin A1c {a1c}% and glucose {glu} mg/dL.",
    "Weight {kg} kg, height {cm} cm, BMI {bmi}.",
    "Patient denies fever, chills or shortness of breath since {weekday}.",
    "Exam of the {body} shows mild swelling without redness.",
    "History of Parkinson's disease and Bell's palsy; Crohn's disease in remission.",
    "Assessment: {Body} strain. Plan: ice, rest and ibuprofen {dose} mg {freq}.",
    "Platelets {plt},000 and INR {inr}; next check on {weekday}, {month} {day}.",
    "Referred to physical therapy, Room {n}, on {year}-{mm}-{dd} at {hr}:{dd}.",
    "Doctor: How is the {body} today?\nPatient: Better since I started {drug}.",
    "White blood cell count {wbc} and creatinine {inr}; Murphy's sign negative.",
    "Flu vaccine given in the {body2} on {month} {day}; no reaction after {n} minutes.",
)


def _clinical_values(rng: random.Random) -> dict[str, object]:
    drug = rng.choice(_DRUGS)
    body = rng.choice(_BODY)
    return {
        "drug": drug,
        "Drug": drug[0].upper() + drug[1:],
        "dose": rng.choice((5, 10, 20, 25, 40, 50, 100, 500)),
        "freq": rng.choice(_FREQS),
        "body": body,
        "Body": body[0].upper() + body[1:],
        "body2": rng.choice(("left arm", "right arm", "left deltoid")),
        "n": rng.randint(2, 12),
        "sys": rng.randint(100, 170),
        "dia": rng.randint(60, 100),
        "hr": rng.randint(50, 110),
        "temp": f"{rng.uniform(97.0, 101.5):.1f}",
        "sat": rng.randint(90, 100),
        "month": rng.choice(("January", "March", "May", "June", "August", "October", "December")),
        "day": rng.randint(1, 28),
        "year": rng.randint(2019, 2025),
        "mm": f"{rng.randint(1, 12):02d}",
        "dd": f"{rng.randint(1, 28):02d}",
        "a1c": f"{rng.uniform(5.0, 10.0):.1f}",
        "glu": rng.randint(70, 260),
        "kg": rng.randint(45, 130),
        "cm": rng.randint(150, 195),
        "bmi": f"{rng.uniform(18, 40):.1f}",
        "weekday": rng.choice(("Monday", "Tuesday", "Friday", "Sunday")),
        "plt": rng.randint(120, 420),
        "inr": f"{rng.uniform(0.8, 3.5):.1f}",
        "wbc": f"{rng.uniform(3.5, 14):.1f}",
    }


def clinical_sentences(seed: int, n: int) -> list[str]:
    """Identifier-free clinical sentences (drugs, doses, vitals, visit dates, eponyms) for false-positive checks."""
    rng = random.Random(seed)
    return [rng.choice(_CLINICAL_TEMPLATES).format(**_clinical_values(rng)) for _ in range(n)]


_SYLLABLES = (
    "zor",
    "van",
    "quil",
    "eth",
    "mar",
    "rix",
    "tal",
    "lor",
    "ven",
    "dra",
    "kos",
    "bel",
    "thu",
    "nim",
    "ora",
    "sel",
    "vek",
    "ida",
    "rho",
    "gan",
    "ulu",
    "fen",
    "yas",
    "pim",
)


def _invented_name(rng: random.Random) -> str:
    while True:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        if word not in FIRST_NAMES and word not in SURNAMES and word not in _NOT_NAMES:
            return word


def _luhn_complete(prefix_and_body: str) -> str:
    """Append the check digit that makes the number Luhn-valid."""
    return next(prefix_and_body + d for d in "0123456789" if luhn_valid(prefix_and_body + d))


def _plant_name(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
    inv_first, inv_last = _invented_name(rng), _invented_name(rng)
    choices = (
        (f"{first} {last}", "{v} reports worsening pain in the lower back."),
        (f"{first} {last}", "Spoke with {v} about the lab results."),
        (f"{first} {inv_last}", "{v} complains of dizziness when standing."),
        (f"{inv_first} {last}", "{v} denies chest pain today."),
        (f"{inv_first} {inv_last}", "My name is {v} and I have had a cough for a week."),
        (f"{inv_first} {inv_last}", "Patient ({v}): The pain started after the fall."),
        (inv_first, "Hello, this is {v}, calling about my prescription."),
        (inv_last, "Mr. {v} declined the flu vaccine."),
        (inv_last, "Dr. {v} reviewed the chest X-ray."),
        (inv_first, "Her daughter, {v}, drives her to appointments."),
        (f"{inv_first} {inv_last}", "Signed, {v}"),
    )
    value, template = rng.choice(choices)
    return template.format(v=value), [("NAME", value)]


def _plant_email(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    user = f"{rng.choice(FIRST_NAMES).lower()}{rng.choice(('.', '_', ''))}{_invented_name(rng).lower()}"
    value = f"{user}{rng.randint(1, 99)}@{rng.choice(('example.com', 'mail.net', 'clinic-mail.org', 'inbox.co.uk'))}"
    template = rng.choice(("Please send the results to {v}.", "Her email is {v}.", "Contact: {v}"))
    return template.format(v=value), [("EMAIL", value)]


def _plant_phone(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    value = rng.choice(
        (
            f"({a}) {b}-{c:04d}",
            f"{a}-{b}-{c:04d}",
            f"{a}.{b}.{c:04d}",
            f"+1 {a} {b} {c:04d}",
            f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
            f"07{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
            f"020 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            f"{a}{b}{c:04d}",
        )
    )
    template = rng.choice(
        (
            "You can reach her at {v}.",
            "Call me at {v} after five.",
            "Mobile {v}, evenings only.",
            "Her phone number is {v}.",
        )
    )
    return template.format(v=value), [("PHONE", value)]


def _plant_id(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    ni = f"{rng.choice('ABCEHJKLMNPRSTWXYZ')}{rng.choice('ABCEHJKLMNPRSTWXYZ')}"
    digits = [rng.randint(10, 99) for _ in range(3)]
    choices = (
        (f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}", "SSN {v} is on file."),
        (
            f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
            "Her social security number is {v}.",
        ),
        (f"{rng.randint(100000000, 899999999)}", "SSN: {v}"),
        (
            f"{ni} {digits[0]} {digits[1]} {digits[2]} {rng.choice('ABCD')}",
            "National Insurance number {v} was checked.",
        ),
        (f"{ni}{digits[0]}{digits[1]}{digits[2]}{rng.choice('ABCD')}", "NI number {v}."),
        (f"{rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}", "NHS number {v} confirmed."),
        (f"{rng.choice('XKLP')}{rng.randint(1000000, 9999999)}", "Passport number {v} was copied for the chart."),
    )
    value, template = rng.choice(choices)
    return template.format(v=value), [("ID", value)]


def _plant_record(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    num = rng.randint(100000, 9999999)
    value = rng.choice((str(num), f"{num:08d}", f"{str(num)[:2]}-{str(num)[2:]}", f"A-{num}"))
    template = rng.choice(
        (
            "MRN {v}.",
            "MRN: {v}, admitted for observation.",
            "Medical record number {v} verified.",
            "Her record number is {v}.",
            "Hospital number {v} on the wristband.",
        )
    )
    return template.format(v=value), [("RECORD", value)]


def _plant_dob(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    y, m, d = rng.randint(1930, 2010), rng.randint(1, 12), rng.randint(1, 28)
    month = (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    )[m - 1]
    suffix = "th" if 11 <= d <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    value = rng.choice(
        (
            f"{m:02d}/{d:02d}/{y}",
            f"{d:02d}/{m:02d}/{y}",
            f"{y}-{m:02d}-{d:02d}",
            f"{month} {d}, {y}",
            f"{d} {month} {y}",
            f"{month[:3]} {d} {y}",
            f"the {d}{suffix} of {month}, {y}",
            f"{d}.{m}.{y}",
        )
    )
    template = rng.choice(
        ("DOB {v}.", "She was born on {v} in Ohio.", "Date of birth: {v}.", "{v} (DOB)", "Confirmed date of birth {v}.")
    )
    return template.format(v=value), [("DOB", value)]


def _plant_address(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    street = rng.choice(("Maple", "Oak", "Harbour", "Baker", "Lincoln", "Cedar Hill", "Elm", "Queens"))
    kind = rng.choice(("Street", "Avenue", "Road", "Lane", "Drive", "Ave", "St"))
    num = rng.randint(1, 4999)
    value = rng.choice(
        (
            f"{num} {street} {kind}",
            f"{num} {street} {kind}, Springfield, IL {rng.randint(10000, 99999)}",
            f"{num} {street} {kind}, London NW{rng.randint(1, 9)} {rng.randint(1, 9)}XE",
            f"Flat {rng.randint(1, 30)}, {num} {street} {kind}",
            f"{num} {street} {kind} Apt {rng.randint(1, 40)}B",
        )
    )
    template = rng.choice(("She lives at {v}.", "Mailing address: {v}.", "Send the letter to {v} please."))
    return template.format(v=value), [("ADDRESS", value)]


def _plant_card(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    if rng.random() < 0.2:  # American Express: 15 digits, 4-6-5
        digits = _luhn_complete("3" + rng.choice("47") + "".join(rng.choice("0123456789") for _ in range(12)))
        value = f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    else:
        digits = _luhn_complete(rng.choice("45") + "".join(rng.choice("0123456789") for _ in range(14)))
        sep = rng.choice((" ", "-", ""))
        value = sep.join(digits[i : i + 4] for i in range(0, 16, 4))
    template = rng.choice(("Copay charged to card {v}.", "He paid with {v} at the front desk.", "Card number: {v}"))
    return template.format(v=value), [("CARD", value)]


_PLANTERS: dict[str, Callable[[random.Random], tuple[str, list[tuple[str, str]]]]] = {
    "NAME": _plant_name,
    "EMAIL": _plant_email,
    "PHONE": _plant_phone,
    "ID": _plant_id,
    "RECORD": _plant_record,
    "DOB": _plant_dob,
    "ADDRESS": _plant_address,
    "CARD": _plant_card,
}


def planted_pii_corpus(seed: int, n: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """``n`` clinical-style texts with planted identifiers and the (type, value) pairs planted.

    Every type is planted in turn, one or two more at random beside it, around an
    identifier-free clinical sentence; some names are invented (not in the shipped
    lists) and appear only where a cue or speaker tag gives them away.
    """
    rng = random.Random(seed)
    kinds = tuple(_PLANTERS)
    corpus: list[tuple[str, list[tuple[str, str]]]] = []
    for i in range(n):
        chosen = [kinds[i % len(kinds)], *rng.sample(kinds, rng.choice((0, 1, 2)))]
        parts, planted = [], []
        for kind in chosen:
            text, values = _PLANTERS[kind](rng)
            parts.append(text)
            planted.extend(values)
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(_CLINICAL_TEMPLATES).format(**_clinical_values(rng)))
        text = parts[0]
        for part in parts[1:]:  # a speaker turn starts its own line, as in a transcript
            text += ("\n" if part.startswith(("Patient (", "Doctor:")) else " ") + part
        corpus.append((text, planted))
    return corpus
