"""Replace personal identifiers in free text with typed placeholders, offline and fast.

Rule-based on purpose: no model download, deterministic, and each rule can be
read and tested. Numbers are matched first (they are unambiguous), names last,
so a street or an e-mail address is never half-eaten by the name rules. Names
are found from cues (titles, "my name is", speaker tags, relatives) and from a
shipped list of common first names and surnames; words that are also ordinary
English, places or months only count next to another name.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable

PLACEHOLDERS: dict[str, str] = {
    t: f"[{t}]" for t in ("NAME", "EMAIL", "PHONE", "ID", "RECORD", "DOB", "ADDRESS", "CARD")
}

FIRST_NAMES: tuple[str, ...] = tuple("""
James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel
Matthew Anthony Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald
Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon
Benjamin Samuel Gregory Alexander Patrick Raymond Dennis Jerry Tyler Aaron Jose Adam Nathan
Henry Douglas Zachary Peter Kyle Walter Ethan Jeremy Harold Keith Roger Noah Gerald
Carl Terry Sean Arthur Lawrence Jesse Dylan Bryan Joe Billy Bruce Albert Willie Gabriel Logan
Alan Juan Wayne Roy Ralph Randy Eugene Vincent Russell Elijah Louis Bobby Philip Johnny Mary
Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa Betty Margaret
Sandra Ashley Kimberly Emily Donna Michelle Dorothy Carol Amanda Melissa Deborah Stephanie
Rebecca Sharon Laura Cynthia Kathleen Amy Shirley Angela Helen Anna Brenda Pamela Nicole Emma
Samantha Katherine Christine Debra Rachel Catherine Carolyn Janet Maria Heather Diane Julie
Joyce Kelly Christina Lauren Joan Evelyn Olivia Judith Megan Cheryl Martha Andrea Frances
Hannah Jacqueline Ann Gloria Jean Kathryn Alice Teresa Sara Janice Doris Madison Julia Judy
Abigail Marie Denise Beverly Theresa Marilyn Danielle Diana Brittany Natalie Sophia Isabella
Alexis Kayla Charlotte Mohammed Muhammad Ahmed Fatima Aisha Omar Hassan Yusuf Priya Rahul Anil
Sunita Deepak Ravi Arjun Ananya Wei Ming Hiroshi Yuki Kenji Sakura Haruto Carlos Luis Miguel
Javier Alejandro Sofia Camila Valentina Mateo Diego Lucia Pedro Ana Olga Ivan Dmitri Sergei
Natasha Katarina Anya Lars Sven Ingrid Astrid Klaus Hans Francois Pierre Amelie Chloe Giulia
Marco Luca Giovanni Francesca Kwame Amara Chidi Ngozi Oluwaseun Tunde Zanele Thabo Siobhan
Niamh Aoife Ciaran Declan Eamon Rhys Dafydd Angus Fiona Hamish Isla Freya Harriet Imogen
Oliver Harry Charlie Alfie Freddie Archie Leo Oscar Theo Arlo Finn Ella Mia Ava Amelia
Isabelle Evie Layla Zara Nia Maya Aaliyah Jasmine Tanisha Keisha Jamal Tyrone Malik Darnell
Latoya Marcus Derek Trevor Colin Graham Nigel Ian Neil Martin Simon Gordon Craig Stuart
Wendy Tracy Gail Lorraine Yvonne Agnes Edith Mildred Ethel Gertrude Bernard Clarence Herbert
Leonard Howard Stanley Norman Francis Ernest Eleanor Louise Bianca Elena Irina Svetlana Yasmin
Leila Nadia Samir Karim Tariq Bilal Imran Ayesha Zainab Mei Xiu Hao Jin Yong Sanjay Vikram
Nikhil Kavya Meera Lakshmi Thanh Minh Linh Duc Hoang Tomasz Katarzyna Agnieszka Piotr
""".split())

SURNAMES: tuple[str, ...] = tuple("""
Smith Johnson Williams Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson Harris Sanchez Clark
Ramirez Lewis Robinson Allen Wright Scott Torres Nguyen Flores Adams Nelson Rivera Campbell
Mitchell Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart
Morris Morales Murphy Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Kelly Howard Ramos
Kim Cox Richardson Watson Brooks Chavez Bennett Mendoza Ruiz Hughes Alvarez Castillo Sanders
Patel Myers Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Coleman Butler Henderson
Barnes Gonzales Fisher Vasquez Simmons Romero Patterson Hamilton Graham Reynolds Griffin
Wallace Moreno Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Castro
Marshall Owens Harrison Fernandez McDonald Kennedy Vargas Chen Freeman Webb Tucker Guzman
Crawford Olson Simpson Mendez Silva Shaw Snyder Dixon Munoz Hicks Holmes Palmer Wagner
Robertson Boyd Salazar Warren Meyer Schmidt Garza Daniels Ferguson Nichols Stephens Soto
Weaver Gardner Payne Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos
Bradley Elliott Cunningham Duncan Armstrong Hudson Carroll Riley Andrews Alvarado Delgado
Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis Sandoval Wang Zhang Liu Yang
Huang Zhao Zhou Zhu Guo Lin Gao Luo Tanaka Suzuki Takahashi Watanabe Yamamoto Nakamura
Kobayashi Sato Choi Jung Kang Cho Yoon Singh Sharma Kumar Gupta Shah Mehta Reddy Iyer Rao
Khan Hussain Rahman Okafor Okonkwo Adeyemi Mensah Osei Nkosi Dlamini Mwangi Kariuki Kowalski
Nowak Novak Muller Schneider Fischer Weber Becker Rossi Russo Ferrari Esposito Bianchi Romano
Dubois Lefebvre Moreau Laurent Petrov Ivanov Smirnov Popov Jensen Nielsen Larsen Andersson
Johansson Eriksson O'Brien O'Connor O'Neill Byrne Doyle Walsh McCarthy Gallagher Quinn
MacLeod Fraser Chowdhury Banerjee Mukherjee Nair Pillai Kapoor Malhotra Bhatt Joshi Desai
Fitzgerald Donovan Brennan Kavanagh Hernandes Schwartz Goldberg Friedman Katz Cohen Levy
""".split())

# Ordinary English words, places and months that are also names: counted only next to a name.
AMBIGUOUS_NAMES: frozenset[str] = frozenset("""
Will Mark Grace Hope Faith Joy Rose Bill Pat Sue Frank Guy Jack Ray Dawn Iris Ivy Holly Lily
Daisy Amber Ruby Crystal April May June August Summer Autumn Drew Chase Dale Glen Victoria
Austin Jordan Georgia Chelsea Florence Sydney Paris Dallas Art Penny Poppy Sandy Hunter Mason
Cole Miles Don Max Christian Reed Brook Skye Angel Ebony Violet Willow Hazel Jade Pearl Ginger Brown
White Green Black Young King Hill Wood Woods Stone Long Price Bell Cook Baker Hall Walker Ward
Gray Grey West Wells Burns Hunt Mills Rice Grant Lane Berry Carter Fox Hart Knight Moss Page
Cross Banks Marsh Park Sun Little Day Dean Holt Booth Chambers Bishop Parsons Barber Mann
""".split())

_FIRST = frozenset(FIRST_NAMES)
_SURNAME = frozenset(SURNAMES)

# Capitalised words that are never names: they stop a cue's name and a name's extension.
_COMMON_WORDS: frozenset[str] = frozenset("""
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
""".split())
_NOT_NAMES: frozenset[str] = _COMMON_WORDS | frozenset("""
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
""".split())

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
_TITLE_RE = re.compile(
    rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Doctor|Nurse|Professor)\.?[ \t]+(?P<v>{_NAME_SEQ})"
)
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


def _sub(pattern: re.Pattern[str], kind: str, text: str, counts: Counter,
         accept: Callable[[str], bool] | None = None) -> str:
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
            if pattern is _WEAK_CUE_RE and " " not in name and not (
                name in _FIRST or name in _SURNAME or _CLAUSE_END_RE.match(text, end)
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
        m for m in _NAME_TOKEN_RE.finditer(text)
        if m.group(0) not in _NOT_NAMES and not _EPONYM_AFTER.match(text, m.end())
    ]
    words = [t.group(0) for t in tokens]
    joined = [i + 1 < len(tokens) and text[tokens[i].end() : tokens[i + 1].start()] == " "
              for i in range(len(tokens))]
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


# ---- generated text for measuring the scrubber (recall on planted identifiers, false positives) ----

_DRUGS = ("metformin", "lisinopril", "atorvastatin", "amlodipine", "levothyroxine", "omeprazole",
          "sertraline", "albuterol", "Tylenol", "Lipitor", "Eliquis", "gabapentin", "prednisone")
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
        "drug": drug, "Drug": drug[0].upper() + drug[1:], "dose": rng.choice((5, 10, 20, 25, 40, 50, 100, 500)),
        "freq": rng.choice(_FREQS), "body": body, "Body": body[0].upper() + body[1:],
        "body2": rng.choice(("left arm", "right arm", "left deltoid")), "n": rng.randint(2, 12),
        "sys": rng.randint(100, 170), "dia": rng.randint(60, 100), "hr": rng.randint(50, 110),
        "temp": f"{rng.uniform(97.0, 101.5):.1f}", "sat": rng.randint(90, 100),
        "month": rng.choice(("January", "March", "May", "June", "August", "October", "December")),
        "day": rng.randint(1, 28), "year": rng.randint(2019, 2025), "mm": f"{rng.randint(1, 12):02d}",
        "dd": f"{rng.randint(1, 28):02d}", "a1c": f"{rng.uniform(5.0, 10.0):.1f}", "glu": rng.randint(70, 260),
        "kg": rng.randint(45, 130), "cm": rng.randint(150, 195), "bmi": f"{rng.uniform(18, 40):.1f}",
        "weekday": rng.choice(("Monday", "Tuesday", "Friday", "Sunday")), "plt": rng.randint(120, 420),
        "inr": f"{rng.uniform(0.8, 3.5):.1f}", "wbc": f"{rng.uniform(3.5, 14):.1f}",
    }


def clinical_sentences(seed: int, n: int) -> list[str]:
    """Identifier-free clinical sentences (drugs, doses, vitals, visit dates, eponyms) for false-positive checks."""
    rng = random.Random(seed)
    return [rng.choice(_CLINICAL_TEMPLATES).format(**_clinical_values(rng)) for _ in range(n)]


_SYLLABLES = ("zor", "van", "quil", "eth", "mar", "rix", "tal", "lor", "ven", "dra", "kos", "bel",
              "thu", "nim", "ora", "sel", "vek", "ida", "rho", "gan", "ulu", "fen", "yas", "pim")


def _invented_name(rng: random.Random) -> str:
    while True:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        if word not in _FIRST and word not in _SURNAME and word not in _NOT_NAMES:
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
    value = rng.choice((
        f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
        f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}", f"07{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        f"020 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}", f"{a}{b}{c:04d}",
    ))
    template = rng.choice(("You can reach her at {v}.", "Call me at {v} after five.", "Mobile {v}, evenings only.",
                           "Her phone number is {v}."))
    return template.format(v=value), [("PHONE", value)]


def _plant_id(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    ni = f"{rng.choice('ABCEHJKLMNPRSTWXYZ')}{rng.choice('ABCEHJKLMNPRSTWXYZ')}"
    digits = [rng.randint(10, 99) for _ in range(3)]
    choices = (
        (f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}", "SSN {v} is on file."),
        (f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}", "Her social security number is {v}."),
        (f"{rng.randint(100000000, 899999999)}", "SSN: {v}"),
        (f"{ni} {digits[0]} {digits[1]} {digits[2]} {rng.choice('ABCD')}", "National Insurance number {v} was checked."),
        (f"{ni}{digits[0]}{digits[1]}{digits[2]}{rng.choice('ABCD')}", "NI number {v}."),
        (f"{rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}", "NHS number {v} confirmed."),
        (f"{rng.choice('XKLP')}{rng.randint(1000000, 9999999)}", "Passport number {v} was copied for the chart."),
    )
    value, template = rng.choice(choices)
    return template.format(v=value), [("ID", value)]


def _plant_record(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    num = rng.randint(100000, 9999999)
    value = rng.choice((str(num), f"{num:08d}", f"{str(num)[:2]}-{str(num)[2:]}", f"A-{num}"))
    template = rng.choice(("MRN {v}.", "MRN: {v}, admitted for observation.", "Medical record number {v} verified.",
                           "Her record number is {v}.", "Hospital number {v} on the wristband."))
    return template.format(v=value), [("RECORD", value)]


def _plant_dob(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    y, m, d = rng.randint(1930, 2010), rng.randint(1, 12), rng.randint(1, 28)
    month = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December")[m - 1]
    suffix = "th" if 11 <= d <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    value = rng.choice((f"{m:02d}/{d:02d}/{y}", f"{d:02d}/{m:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{month} {d}, {y}",
                        f"{d} {month} {y}", f"{month[:3]} {d} {y}", f"the {d}{suffix} of {month}, {y}", f"{d}.{m}.{y}"))
    template = rng.choice(("DOB {v}.", "She was born on {v} in Ohio.", "Date of birth: {v}.", "{v} (DOB)",
                           "Confirmed date of birth {v}."))
    return template.format(v=value), [("DOB", value)]


def _plant_address(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    street = rng.choice(("Maple", "Oak", "Harbour", "Baker", "Lincoln", "Cedar Hill", "Elm", "Queens"))
    kind = rng.choice(("Street", "Avenue", "Road", "Lane", "Drive", "Ave", "St"))
    num = rng.randint(1, 4999)
    value = rng.choice((
        f"{num} {street} {kind}", f"{num} {street} {kind}, Springfield, IL {rng.randint(10000, 99999)}",
        f"{num} {street} {kind}, London NW{rng.randint(1, 9)} {rng.randint(1, 9)}XE",
        f"Flat {rng.randint(1, 30)}, {num} {street} {kind}", f"{num} {street} {kind} Apt {rng.randint(1, 40)}B",
    ))
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
    "NAME": _plant_name, "EMAIL": _plant_email, "PHONE": _plant_phone, "ID": _plant_id,
    "RECORD": _plant_record, "DOB": _plant_dob, "ADDRESS": _plant_address, "CARD": _plant_card,
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
