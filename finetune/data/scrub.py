"""Replace personal identifiers in free text with typed placeholders, offline and fast.

Rule-based on purpose: no model download, deterministic, and each rule can be
read and tested. Numbers are matched first (they are unambiguous), names last,
so a street or an e-mail address is never half-eaten by the name rules. Names
are found from cues (titles, "my name is", speaker tags, relatives) and from a
shipped list of common first names and surnames; words that are also ordinary
English, places or months only count next to another name.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from finetune.data.names import AMBIGUOUS_NAMES, FIRST_NAMES, SURNAMES

PLACEHOLDERS: dict[str, str] = {
    t: f"[{t}]" for t in ("NAME", "EMAIL", "PHONE", "ID", "RECORD", "DOB", "ADDRESS", "CARD")
}

_FIRST = frozenset(FIRST_NAMES)
_SURNAME = frozenset(SURNAMES)

# Capitalised words that are never names: they stop a cue's name and a name's extension.
_COMMON_WORDS: frozenset[str] = frozenset(
    """
I A An The And Or But If So Yes No Not Okay Ok Oh Well Hi Hello Hey Thanks Thank Sorry Please
Sure Good Great Fine Right Alright Here There This That These Those It Its He She We They You
Your My Our His Her Their Me Him Us Them What When Where Why How Who Which Today Tomorrow
Yesterday Tonight Now Then Also Just Still Again Any Some All None Each Every Both Since
Because After Before During While Until About Around At On In Of To For From With Without By
As Is Are Was Were Be Been Being Have Has Had Do Does Did Can Could Should Would Must Shall
Might Going Doing Feeling Calling Coming Looking Taking Having Being Getting Trying Seeing
Sounds Let Lets Let's Got Get Go Take Call Ask See Tell Keep Come Make Check Please Very Really
Actually Mostly Usually Sometimes Never Always Maybe Perhaps Dear Sincerely Regards
Doctor Dr Patient Nurse Practitioner Physician Surgeon Therapist Pharmacist Sir Madam Miss
""".split()
)
_NOT_NAMES: frozenset[str] = _COMMON_WORDS | frozenset(
    """
January February March April May June July August September October November December
Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Monday Tuesday Wednesday Thursday Friday
Saturday Sunday Mon Tue Tues Wed Thu Thur Thurs Fri Sat Sun
Clinic Clinical
Hospital Center Centre Medical Health Healthcare Emergency Department Ward Unit Room Office
Street Avenue Road Lane Drive Boulevard Court Place Way Terrace Close Crescent
Chief Complaint History Medications Medication Vitals Vital Signs Assessment Plan Exam
Examination Allergies Allergy Review Systems Family Social Past Surgical Diagnosis Impression
Disposition Labs Imaging Procedures Immunizations Note Notes Summary Findings Results Follow
Blood Pressure Heart Rate Temperature Pulse Oxygen Saturation Weight Height BMI Respiratory
Head Neck Chest Lungs Lung Abdomen Back Knee Knees Hip Hips Shoulder Arm Arms Leg Legs Foot
Feet Hand Hands Eye Eyes Ear Ears Nose Throat Skin Spine Liver Kidney Kidneys Stomach Brain
Metformin Lisinopril Amlodipine Atorvastatin Simvastatin Rosuvastatin Losartan Levothyroxine
Omeprazole Pantoprazole Sertraline Escitalopram Fluoxetine Albuterol Ibuprofen Acetaminophen
Paracetamol Aspirin Warfarin Apixaban Gabapentin Prednisone Amoxicillin Azithromycin Insulin
Hydrochlorothiazide Furosemide Metoprolol Carvedilol Glipizide Montelukast Cetirizine
Tylenol Advil Motrin Aleve Lipitor Zoloft Prozac Lasix Coumadin Eliquis Xarelto Synthroid
Norvasc Zestril Glucophage Ventolin Nexium Prilosec Zyrtec Claritin Benadryl Neurontin
Diabetes Hypertension Asthma Covid Tamiflu Medicare Medicaid Mg
""".split()
)

# A capitalised word right before one of these is an eponym (Bell's palsy), not a person.
_EPONYM_NOUNS = (
    "disease|syndrome|sign|palsy|cyst|catheter|monitor|test|maneuver|manoeuvre|procedure|"
    "esophagus|oesophagus|lymphoma|phenomenon|score|scale|criteria|triad|fracture|ulcer|"
    "reflex|node|nodes|stain|smear|classification|operation|tube|technique|position|law|"
    "muscular|dystrophy|index|method|formula|solution|block|incision|clamp|drain|tumou?r"
)
_EPONYM_AFTER = re.compile(rf"(?:['’]s?)?\s+(?:{_EPONYM_NOUNS})\b", re.IGNORECASE)

_NAME_TOKEN = r"(?:O['’]|Mc|Mac)?[A-Z][a-z]+(?:-[A-Za-z][a-z]+)?"
_NAME_TOKEN_RE = re.compile(rf"(?<![\w'’@.-]){_NAME_TOKEN}(?![\w@])")
_NAME_SEQ = rf"(?:[A-Z]\.[ \t]?)?{_NAME_TOKEN}(?:[ \t]+(?:[A-Z]\.[ \t]?)?{_NAME_TOKEN}){{0,2}}"

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_ORD = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE = (
    rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})|\d{{4}}-\d{{1,2}}-\d{{1,2}}|"
    rf"{_MONTH}\s+{_ORD},?\s+\d{{4}}|(?:the\s+)?{_ORD}\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}|"
    rf"(?<=\bborn in )\d{{4}})"
)
_STREET_SUFFIX = (
    r"(?:Street|Avenue|Road|Lane|Drive|Boulevard|Court|Way|Place|Terrace|Close|Crescent|Parkway|"
    r"Highway|Square|Circle|Gardens|Grove|Row|Hill|(?:St|Ave|Rd|Ln|Dr|Blvd|Ct|Pl)\.?)"
)
_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
_ID_CUE = (
    r"(?:social security(?:\s+number)?|SSN|national insurance(?:\s+number)?|NI\s+number|"
    r"NHS\s+number|passport(?:\s+number)?|driver['’]?s\s+licen[cs]e(?:\s+number)?|"
    r"national\s+ID(?:\s+number)?|insurance\s+(?:ID|member\s+ID|number)|member\s+ID|"
    r"policy\s+number|tax\s+ID)"
)
_RECORD_CUE = (
    r"(?:MRN|medical\s+record(?:\s+(?:number|no\.?|#))?|(?:patient\s+)?record\s+(?:number|no\.?|#)|"
    r"chart\s+(?:number|no\.?|#)|patient\s+(?:ID|number)|hospital\s+number|case\s+number)"
)
_LINK = r"(?:\s*(?:is|was|:|#|=|-|number|no\.?)){0,3}\s*"


_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_DIGIT_RUN_RE = re.compile(r"(?<![\w.,/-])\d{3,}(?:[ -]\d{3,})*(?![\w/]|[.,]\d)")
_SSN_RE = re.compile(r"(?<![\w-])\d{3}[- ]\d{2}[- ]\d{4}(?![\w-])")
_NI_RE = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b")
_ID_CUE_RE = re.compile(
    rf"\b(?i:{_ID_CUE}{_LINK})(?P<v>(?:[A-Z]{{1,3}}\s?)?\d(?:[ -]?\d){{3,15}}(?:\s?[A-D]\b|[A-Z])?)(?![\w-]|\.\d)"
)
_RECORD_RE = re.compile(rf"\b(?i:{_RECORD_CUE}{_LINK})(?P<v>[A-Z]{{0,4}}-?\d[\d-]{{2,14}}\d)(?![\w-]|\.\d)")
_DOB_RE = re.compile(
    rf"(?:\b(?:born|DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s?date|birthday)\b[^\n.;\d]{{0,24}}?"
    rf"(?P<v>{_DATE})|(?P<w>{_DATE})\s*\(\s*(?:DOB|date of birth|born)\s*\))",
    re.I,
)
_ADDRESS_RE = re.compile(
    rf"(?:(?:Apt|Apartment|Unit|Suite|Flat)\.?\s*#?\w{{1,5}},?\s+)?\b\d{{1,5}}[A-Z]?\s+"
    rf"(?:[A-Z][a-z]+\s+){{1,3}}{_STREET_SUFFIX}"
    rf"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    rf"(?:,?\s+(?:Apt|Apartment|Unit|Suite|Flat)\.?\s*#?\w{{1,5}})?"
    rf"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)?(?=,|\s+[A-Z]{{2}}\s+\d|\s+{_POSTCODE}))?"
    rf"(?:,?\s*[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?|,?\s+{_POSTCODE}\b)?"
    rf"|\b{_POSTCODE}\b(?=[\s,.;)]|$)"
)
_PHONE_RES = (
    re.compile(r"(?<![\w/+.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w/-]|\.\d)"),
    re.compile(r"(?<![\w/+.-])(?:\+44\s?(?:\(0\)\s?)?|0)\d{2,4}\s?\d{3,4}\s?\d{3,4}(?![\w/-]|\.\d)"),
    re.compile(r"(?<![\w/+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w/-]|\.\d)"),
    re.compile(
        r"\b(?:phone|tel|telephone|cell|mobile|call|reach|contact|text|ring)\b[^\n\d]{0,20}?"
        r"(?P<v>\+?\d[\d\s().-]{5,16}\d)(?![\w/-]|\.\d)",
        re.I,
    ),
)
_SPEAKER_TAG_RE = re.compile(
    r"(?m)^[ \t]*(?i:patient|doctor|dr|nurse|physician|clinician|caregiver|guest_family|guest_clinician|"
    r"parent|mother|father|husband|wife|son|daughter|interpreter|speaker\s*\d*|pt|md|rn)"
    r"\s*\((?P<v>[A-Z][^()\n:]{1,39})\)\s*:"
)
_TITLE_RE = re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Doctor|Nurse|Professor)\.?[ \t]+(?P<v>{_NAME_SEQ})")
_CUE_RE = re.compile(
    rf"\b(?i:my\s+name\s+is|name\s+is|name['’]s|name\s*:|named|"
    rf"call\s+me|speaking\s+with|spoke\s+(?:with|to)|signed|regards|sincerely|"
    rf"wife|husband|son|daughter|mother|father|brother|sister|partner|friend|mom|dad|"
    rf"grandson|granddaughter|caregiver|neighbou?r)[ \t]*,?[ \t]+(?P<v>{_NAME_SEQ})"
)
# "I'm Tired in the evenings": after these weaker cues a lone unknown word must end the clause.
_WEAK_CUE_RE = re.compile(rf"\b(?i:i['’]m|i\s+am|this\s+is|it['’]s)[ \t]*,?[ \t]+(?P<v>{_NAME_SEQ})")
_CLAUSE_END_RE = re.compile(r"[ \t]*(?:[,.!?;:)]|$|\n|[ \t]+(?:and|from|here|speaking|calling)\b)")


def luhn_valid(number: str) -> bool:
    """Payment card checksum: a random digit string passes only one time in ten."""
    digits = [int(c) for c in number if c.isdigit()]
    if not digits:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_span(run: str) -> tuple[int, int] | None:
    """Longest stretch of whole digit groups in ``run`` that is a Luhn-valid 13-19 digit card."""
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", run)]
    best: tuple[int, int] | None = None
    for i in range(len(groups)):
        for j in range(len(groups) - 1, i - 1, -1):
            start, end = groups[i][0], groups[j][1]
            n = sum(e - s for s, e in groups[i : j + 1])
            if 13 <= n <= 19 and luhn_valid(run[start:end]):
                if best is None or end - start > best[1] - best[0]:
                    best = (start, end)
                break
    return best


def _sub_cards(text: str, counts: Counter) -> str:
    def repl(m: re.Match[str]) -> str:
        run = m.group(0)
        span = _card_span(run)
        if span is None:
            return run
        counts["CARD"] += 1
        return run[: span[0]] + PLACEHOLDERS["CARD"] + run[span[1] :]

    return _DIGIT_RUN_RE.sub(repl, text)


def _sub(
    pattern: re.Pattern[str], kind: str, text: str, counts: Counter, accept: Callable[[str], bool] | None = None
) -> str:
    """Replace the named group ``v`` (or the whole match) of every hit with ``kind``'s placeholder."""

    def repl(m: re.Match[str]) -> str:
        group = next((g for g in ("v", "w") if g in m.re.groupindex and m.group(g)), None)
        value = m.group(group) if group else m.group(0)
        if accept is not None and not accept(value):
            return m.group(0)
        counts[kind] += 1
        if group is None:
            return PLACEHOLDERS[kind]
        s, e = m.span(group)
        whole = m.group(0)
        return whole[: s - m.start()] + PLACEHOLDERS[kind] + whole[e - m.start() :]

    return pattern.sub(repl, text)


def _phone_digits_ok(value: str) -> bool:
    return 7 <= sum(c.isdigit() for c in value) <= 15


def _name_end(seq: str, blocked: frozenset[str]) -> int:
    """Length of the leading name words in a cue's capture; 0 if the first word is no name."""
    end = 0
    for m in re.finditer(rf"(?:[A-Z]\.\s?)?{_NAME_TOKEN}", seq):
        word = m.group(0).split(".")[-1].strip()
        if word in blocked or seq[end : m.start()].strip():
            break
        end = m.end()
    return end


def _cue_spans(text: str) -> list[tuple[int, int]]:
    spans = [m.span("v") for m in _SPEAKER_TAG_RE.finditer(text)]
    for pattern, blocked in ((_TITLE_RE, _COMMON_WORDS), (_CUE_RE, _NOT_NAMES), (_WEAK_CUE_RE, _NOT_NAMES)):
        for m in pattern.finditer(text):
            length = _name_end(m.group("v"), blocked)
            if not length:
                continue
            start, end = m.start("v"), m.start("v") + length
            name = text[start:end]
            if (
                pattern is _WEAK_CUE_RE
                and " " not in name
                and not (name in _FIRST or name in _SURNAME or _CLAUSE_END_RE.match(text, end))
            ):
                continue
            spans.append((start, end))
    return spans


def _list_spans(text: str) -> list[tuple[int, int]]:
    """Listed names, widened to the capitalised words right next to them (rare or ambiguous names).

    A first name takes up to two following words ("Maria Quillane"); a surname takes the word
    before it ("Zephyra Smith") and a following listed or ambiguous one ("Kim Brown").
    """
    tokens = [
        m
        for m in _NAME_TOKEN_RE.finditer(text)
        if m.group(0) not in _NOT_NAMES and not _EPONYM_AFTER.match(text, m.end())
    ]
    words = [t.group(0) for t in tokens]
    joined = [i + 1 < len(tokens) and text[tokens[i].end() : tokens[i + 1].start()] == " " for i in range(len(tokens))]
    spans: list[tuple[int, int]] = []
    for i, word in enumerate(words):
        if word not in _FIRST and word not in _SURNAME:
            continue
        start, end = tokens[i].span()
        if word in _SURNAME and i > 0 and joined[i - 1]:
            start = tokens[i - 1].start()
        for j in range(i, min(i + 2, len(tokens) - 1)):
            nxt = words[j + 1]
            if not joined[j] or not (word in _FIRST or nxt in _SURNAME or nxt in AMBIGUOUS_NAMES):
                break
            end = tokens[j + 1].end()
        spans.append((start, end))
    return spans


def _sub_names(text: str, counts: Counter) -> str:
    spans = sorted(_cue_spans(text) + _list_spans(text))
    merged: list[list[int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1] + 1 and not text[merged[-1][1] : s].strip():
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    for s, e in reversed(merged):
        text = text[:s] + PLACEHOLDERS["NAME"] + text[e:]
    counts["NAME"] += len(merged)
    return text


def scrub_text(text: str) -> tuple[str, Counter]:
    """``text`` with identifiers replaced by ``[NAME]``, ``[EMAIL]``, ... and the count per type."""
    counts: Counter = Counter()
    text = _sub(_EMAIL_RE, "EMAIL", text, counts)
    text = _sub(_ID_CUE_RE, "ID", text, counts)
    text = _sub(_RECORD_RE, "RECORD", text, counts)
    text = _sub_cards(text, counts)
    text = _sub(_SSN_RE, "ID", text, counts)
    text = _sub(_NI_RE, "ID", text, counts)
    text = _sub(_DOB_RE, "DOB", text, counts)
    text = _sub(_ADDRESS_RE, "ADDRESS", text, counts)
    for pattern in _PHONE_RES:
        text = _sub(pattern, "PHONE", text, counts, accept=_phone_digits_ok)
    text = _sub_names(text, counts)
    return text, +counts


def scrub_rows(rows: list[dict], fields: Iterable[str] = ("input", "output")) -> tuple[list[dict], Counter]:
    """Scrubbed copies of ``rows`` (the originals are untouched) and the total counts per type."""
    total: Counter = Counter()
    out: list[dict] = []
    for row in rows:
        new = dict(row)
        for name in fields:
            if isinstance(new.get(name), str):
                new[name], counts = scrub_text(new[name])
                total.update(counts)
        out.append(new)
    return out, total
