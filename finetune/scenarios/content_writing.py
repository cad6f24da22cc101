"""Content writing: E2E-style attributes of a restaurant or a product -> a one-to-three sentence description.

Inputs use the E2E meaning-representation format (``name[The Eagle], eatType[pub],
food[French]``). Each generated row carries three differently worded references
(``references``, ``output`` is the first) and ``slots``: attribute -> value, every one
of which the description must mention. Whether a text mentions a value is decided
by :func:`mentions`, from the surface forms in ``_FORMS`` (``moderate`` counts in
"moderately priced", ``familyFriendly[no]`` in "not family-friendly"); the
generator only writes forms that :func:`mentions` recognises, so references
score full coverage and no hallucination.

Venue and product names in ``HELDOUT_NAMES`` appear only in the test split.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

from finetune.scenarios._common import (
    check_lengths,
    data_error,
    fill_splits,
    iter_csv,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

VENUES: tuple[str, ...] = (
    "The Golden Lantern",
    "Blue Heron",
    "The Copper Kettle",
    "Juniper House",
    "The Red Fox",
    "Olive Grove",
    "The Wandering Goose",
    "Saffron Table",
    "The Silver Spoon",
    "Maple Corner",
    "The Brass Anchor",
    "Harbour Lights",
    "The Green Man",
    "Little Plum",
    "The Painted Door",
    "Cinnamon Court",
    "The Old Bakehouse",
    "Moonflower",
    "The Black Swan",
    "Fig and Thistle",
    "The Crooked Chimney",
    "Lotus Garden",
    "The Salt Cellar",
    "Amber Bistro",
)
LANDMARKS: tuple[str, ...] = (
    "the Crown Theatre",
    "the Old Mill",
    "the Central Library",
    "St Mary's Church",
    "the Market Hall",
    "the Clock Tower",
    "the Railway Museum",
    "the Botanic Gardens",
)
PRODUCTS: tuple[str, ...] = (
    "AeroSound X2",
    "TrailMate 30",
    "BrewPro Mini",
    "LumaDesk",
    "StrideLite",
    "HydroPeak",
    "VortexBlend 500",
    "ErgoSeat Plus",
    "EchoBuds Air",
    "SummitPack 45",
    "CremaOne",
    "BeamArc",
    "PacerFlex",
    "FrostFlask",
)
HELDOUT_VENUES: tuple[str, ...] = (
    "The Velvet Owl",
    "Quince and Clove",
    "The Lamplighter",
    "Marigold Kitchen",
    "The Tin Whistle",
)
HELDOUT_PRODUCTS: tuple[str, ...] = ("NovaTone Pro", "GlideStep 2", "ArcticSip", "PivotDesk Lite")
HELDOUT_NAMES: tuple[str, ...] = HELDOUT_VENUES + HELDOUT_PRODUCTS

# product category -> the features that make sense for it
_CATEGORY_FEATURES: dict[str, tuple[str, ...]] = {
    "headset": ("noise cancelling", "rechargeable battery", "foldable", "lightweight"),
    "speaker": ("waterproof", "rechargeable battery", "lightweight", "USB charging"),
    "backpack": ("waterproof", "lightweight", "foldable"),
    "coffee maker": ("programmable timer", "quiet motor"),
    "desk lamp": ("adjustable height", "USB charging", "foldable"),
    "smartwatch": ("waterproof", "rechargeable battery", "lightweight"),
    "water bottle": ("insulated", "lightweight", "foldable"),
    "blender": ("quiet motor", "rechargeable battery", "USB charging"),
    "office chair": ("adjustable height", "lightweight", "foldable"),
}
_WHO = r"(?:famil(?:y|ies)|kids?|child(?:ren)?)"
_NOT_NEGATED = r"(?<!not )(?<!not a )(?<!non-)(?<!non )(?<!no )(?<!not very )"


def _rated(word: str) -> tuple[str, ...]:
    """ "low rated", "low customer rating", "rated low", "customer rating is low" (not "... low prices")."""
    return (
        rf"{word}(?:ly)?[- ]?(?:customer )?(?:rated|ratings?|reviews?)",
        rf"(?:rated|rates?|ratings?|reviews?)(?: \w+){{0,2}} {word}(?:ly)?(?![- ]pric|[- ]cost)",
    )


# attribute -> value -> regexes (lower-case text) that count as mentioning the value
_FORMS: dict[str, dict[str, tuple[str, ...]]] = {
    "eatType": {
        "restaurant": (r"restaurants?",),
        "pub": (r"pubs?",),
        "coffee shop": (r"coffee[- ]?shops?", "café", "cafe"),
    },
    "food": {
        "French": ("french",),
        "Italian": ("italian",),
        "Chinese": ("chinese",),
        "Indian": ("indian",),
        "Japanese": ("japanese",),
        "English": ("english", "british"),
        "Fast food": (r"fast[- ]food",),
    },
    "priceRange": {
        "cheap": ("cheap", "inexpensive", r"low[- ]priced?", r"low[- ]cost", r"low prices?", "affordable"),
        "moderate": (
            "moderate",
            "moderately priced",
            "reasonably priced",
            "average price",
            r"mid[- ]?priced?",
            r"medium[- ]priced?",
        ),
        "high": (
            "expensive",
            "pricey",
            "costly",
            r"high(?:ly)?[- ]priced?",
            r"high prices?",
            r"high[- ]end",
            r"high price range",
            r"price range is high",
            "priced high",
        ),
        "less than £20": (r"(?:less than|under|below) (?:£20|20 pounds)",),
        "£20-25": (r"£?20 ?(?:-|–|to) ?£?25(?: pounds)?",),
        "more than £30": (r"(?:more than|over|above) (?:£30|30 pounds)",),
        "budget": ("budget",),
        "mid-range": (r"mid[- ]range",),
        "premium": ("premium",),
    },
    "customer rating": {
        "low": (*_rated("low"), "poorly rated"),
        "average": _rated("average"),
        "high": (*_rated("high"), "well rated"),
        "1 out of 5": (r"(?:1|one) out (?:of )?(?:5|five)", r"(?:1|one)[- ]stars?", "1/5"),
        "3 out of 5": (r"(?:3|three) out (?:of )?(?:5|five)", r"(?:3|three)[- ]stars?", "3/5"),
        "5 out of 5": (r"(?:5|five) out (?:of )?(?:5|five)", r"(?:5|five)[- ]stars?", "5/5"),
    },
    "area": {
        "city centre": (r"city cent(?:re|er)", r"cent(?:re|er) of (?:the )?(?:city|town)", "downtown"),
        "riverside": (r"river ?side", "river"),
    },
    "familyFriendly": {
        "yes": tuple(
            _NOT_NEGATED + f.format(who=_WHO)
            for f in (
                r"{who}[- ]?(?:friendly|oriented|orientated)",
                r"friendly (?:to|for) {who}",
                r"suitable for {who}",
                r"(?:welcomes|welcoming|allows|accepts) {who}",
                r"{who} (?:are )?welcome",
                r"good for {who}",
            )
        ),
        "no": (
            rf"(?:not|non|no)[- ](?:a |very |really |so |particularly |suitable for |good for |for )?{_WHO}",
            r"adults?[- ]only",
        ),
    },
    "category": {c: (c.replace(" ", "[- ]?") + "s?",) for c in _CATEGORY_FEATURES},
    "feature": {
        "noise cancelling": (r"noise[- ]cancell?ing",),
        "waterproof": ("waterproof",),
        "foldable": ("foldable",),
        "rechargeable battery": ("rechargeable",),
        "lightweight": (r"light ?weight",),
        "adjustable height": (r"adjustable height", r"height[- ]adjustable"),
        "USB charging": (r"usb[- ]charging",),
        "quiet motor": ("quiet motor",),
        "insulated": ("insulated",),
        "programmable timer": ("programmable timer",),
    },
    "colour": {
        "black": ("black",),
        "white": ("white",),
        "navy blue": (r"navy(?: blue)?",),
        "silver": ("silver",),
        "red": ("red",),
        "forest green": (r"(?:forest )?green",),
    },
    "warranty": {
        "1 year": (r"(?:1|one)[- ]year",),
        "2 years": (r"(?:2|two)[- ]years?",),
        "5 years": (r"(?:5|five)[- ]years?",),
    },
}
# Values that say the same thing: "cheap" mentions priceRange[less than £20] and is no hallucination of it.
_SAME: dict[str, tuple[frozenset[str], ...]] = {
    "priceRange": (
        frozenset({"cheap", "less than £20", "budget"}),
        frozenset({"moderate", "£20-25", "mid-range"}),
        frozenset({"high", "more than £30", "premium"}),
    ),
    "customer rating": (
        frozenset({"low", "1 out of 5"}),
        frozenset({"average", "3 out of 5"}),
        frozenset({"high", "5 out of 5"}),
    ),
}
_NAME_ATTRS = ("name", "near")
# "restaurant" is also the generic word for any venue: a hallucination only against another eatType.
_GENERIC = {("eatType", "restaurant")}

# What the generator writes: predicates after "It" / the name, each recognised by _FORMS.
_SAY: dict[str, dict[str, tuple[str, ...]]] = {
    "priceRange": {
        "cheap": ("is cheap", "is inexpensive", "offers low-priced meals"),
        "moderate": ("is moderately priced", "has moderate prices", "is reasonably priced"),
        "high": ("is expensive", "has a high price range", "is high-priced"),
        "less than £20": ("costs less than £20 per person", "serves meals under £20"),
        "£20-25": ("costs £20-25 per person", "has a price range of £20-25"),
        "more than £30": ("costs more than £30 per person", "serves meals over £30"),
        "budget": ("is a budget option", "sits in the budget range"),
        "mid-range": ("is mid-range", "is priced in the mid-range"),
        "premium": ("is a premium choice", "is priced as a premium item"),
    },
    "customer rating": {
        "low": ("has a low customer rating", "is rated low by customers"),
        "average": ("has an average customer rating", "has an average rating"),
        "high": ("has a high customer rating", "is highly rated"),
        "1 out of 5": ("is rated 1 out of 5", "has a customer rating of 1 out of 5", "has a one-star rating"),
        "3 out of 5": ("is rated 3 out of 5", "has a customer rating of 3 out of 5", "has a three-star rating"),
        "5 out of 5": ("is rated 5 out of 5", "has a customer rating of 5 out of 5", "has a five-star rating"),
    },
    "familyFriendly": {
        "yes": ("is family-friendly", "is kid friendly", "welcomes families"),
        "no": ("is not family-friendly", "is not kid friendly", "is adults only"),
    },
    "feature": {
        "noise cancelling": ("offers noise cancelling", "has active noise cancelling"),
        "waterproof": ("is waterproof", "has a waterproof shell"),
        "foldable": ("is foldable", "has a foldable design"),
        "rechargeable battery": ("runs on a rechargeable battery", "has a rechargeable battery"),
        "lightweight": ("is lightweight", "has a lightweight frame"),
        "adjustable height": ("offers adjustable height", "is height-adjustable"),
        "USB charging": ("supports USB charging", "has USB charging"),
        "quiet motor": ("has a quiet motor", "runs on a quiet motor"),
        "insulated": ("is insulated", "has an insulated double wall"),
        "programmable timer": ("has a programmable timer", "offers a programmable timer"),
    },
    "colour": {c: (f"comes in {c}", f"is available in {c}") for c in _FORMS["colour"]},
    "warranty": {
        "1 year": ("comes with a one-year warranty", "has a 1-year warranty"),
        "2 years": ("comes with a two-year warranty", "has a 2-year warranty"),
        "5 years": ("comes with a five-year warranty", "has a 5-year warranty"),
    },
}
_AREA_SAY = {
    "city centre": ("in the city centre", "in the centre of the city"),
    "riverside": ("by the riverside", "in the riverside area", "along the river"),
}
_RESTAURANT_ATTRS = ("eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near")
_PRODUCT_ATTRS = ("priceRange", "customer rating", "feature", "colour", "warranty")
_RESTAURANT_PRICES = ("cheap", "moderate", "high", "less than £20", "£20-25", "more than £30")
_PRODUCT_PRICES = ("budget", "mid-range", "premium")


def format_mr(slots: dict[str, str]) -> str:
    return ", ".join(f"{k}[{v}]" for k, v in slots.items())


_MR_ITEM = re.compile(r"\s*([^\[\],]+?)\s*\[([^\[\]]*)\]\s*(?:,|$)")


def parse_mr(text: str) -> dict[str, str] | None:
    """``name[X], food[Y]`` -> {"name": "X", "food": "Y"}; None when the text is not in that form."""
    slots, pos = {}, 0
    text = text.strip()
    while pos < len(text):
        m = _MR_ITEM.match(text, pos)
        if not m or m.end() == pos:
            return None
        slots[m.group(1)] = m.group(2).strip()
        pos = m.end()
    return slots or None


# ---------------------------------------------------------------- generation


def _restaurant_slots(rng: random.Random, names: tuple[str, ...]) -> dict[str, str]:
    chosen = set(rng.sample(_RESTAURANT_ATTRS, rng.randint(2, 6)))
    values = {
        "eatType": tuple(_FORMS["eatType"]),
        "food": tuple(_FORMS["food"]),
        "priceRange": _RESTAURANT_PRICES,
        "customer rating": tuple(_FORMS["customer rating"]),
        "area": tuple(_FORMS["area"]),
        "familyFriendly": ("yes", "no"),
        "near": LANDMARKS,
    }
    slots = {"name": rng.choice(names)}
    slots.update({a: rng.choice(values[a]) for a in _RESTAURANT_ATTRS if a in chosen})
    return slots


def _product_slots(rng: random.Random, names: tuple[str, ...]) -> dict[str, str]:
    chosen = set(rng.sample(_PRODUCT_ATTRS, rng.randint(2, 4)))
    values = {
        "priceRange": _PRODUCT_PRICES,
        "customer rating": tuple(_FORMS["customer rating"]),
        "colour": tuple(_FORMS["colour"]),
        "warranty": tuple(_FORMS["warranty"]),
    }
    category = rng.choice(tuple(_CATEGORY_FEATURES))
    values["feature"] = _CATEGORY_FEATURES[category]
    slots = {"name": rng.choice(names), "category": category}
    slots.update({a: rng.choice(values[a]) for a in _PRODUCT_ATTRS if a in chosen})
    return slots


def _a(word: str) -> str:
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"


def _sentences(subject: str, predicates: list[str], rng: random.Random) -> list[str]:
    """Predicates joined into one or two "It ... and ..." sentences."""
    if not predicates:
        return []
    cut = rng.randint(1, len(predicates)) if len(predicates) > 2 else len(predicates)
    groups = [g for g in (predicates[:cut], predicates[cut:]) if g]
    out = []
    for g in groups:
        body = g[0] if len(g) == 1 else ", ".join(g[:-1]) + " and " + g[-1]
        out.append(f"{subject} {body}.")
    return out


def _describe_restaurant(slots: dict[str, str], rng: random.Random) -> str:
    name, kind, food = slots["name"], slots.get("eatType"), slots.get("food")
    noun = kind or rng.choice(("place", "venue"))
    if food is not None:
        food = "fast food" if food == "Fast food" else food
        dish = food if food == "fast food" else f"{food} food"
        head = rng.choice(
            (
                f"{name} is {_a(food)} {noun}",
                f"{name} is {_a(noun)} serving {dish}",
                f"There is {_a(food)} {noun} called {name}",
            )
        )
    else:
        head = rng.choice((f"{name} is {_a(noun)}", f"There is {_a(noun)} called {name}"))
    where = []
    if "area" in slots:
        where.append(rng.choice(_AREA_SAY[slots["area"]]))
    if "near" in slots:
        where.append(rng.choice(("near", "close to")) + " " + slots["near"])
    predicates = [
        rng.choice(_SAY[a][slots[a]]) for a in ("priceRange", "customer rating", "familyFriendly") if a in slots
    ]
    rng.shuffle(predicates)
    first = " ".join([head, *where]) + "."
    return " ".join([first, *_sentences(rng.choice(("It", "The " + noun)), predicates, rng)])


def _describe_product(slots: dict[str, str], rng: random.Random) -> str:
    name, category = slots["name"], slots["category"]
    head = rng.choice(
        (f"The {name} is {_a(category)}", f"{name} is {_a(category)}", f"Meet the {name}, {_a(category)}")
    )
    predicates = [rng.choice(_SAY[a][slots[a]]) for a in _PRODUCT_ATTRS if a in slots]
    rng.shuffle(predicates)
    first = predicates.pop(0) if predicates and rng.random() < 0.5 else None
    opening = f"{head} that {first}." if first else f"{head}."
    return " ".join([opening, *_sentences(rng.choice(("It", f"This {category}")), predicates, rng)])


def _row(rng: random.Random, split: str, product_share: float) -> Row:
    product = rng.random() < product_share
    if product:
        pool = HELDOUT_PRODUCTS if split == "test" else PRODUCTS
        slots, describe = _product_slots(rng, pool), _describe_product
    else:
        pool = HELDOUT_VENUES if split == "test" else VENUES
        slots, describe = _restaurant_slots(rng, pool), _describe_restaurant
    references: list[str] = []
    for _ in range(12):  # three distinct wordings when the attributes allow them
        text = describe(slots, rng)
        if text not in references:
            references.append(text)
        if len(references) == 3:
            break
    return {
        "input": format_mr(slots),
        "output": references[0],
        "references": references,
        "slots": slots,
        "kind": "product" if product else "restaurant",
    }


def generate(seed: int = 0, sizes: dict[str, int] | None = None, product_share: float = 0.3) -> Splits:
    """Restaurants (E2E attributes) and, for ``product_share`` of rows, products."""
    if not isinstance(product_share, (int, float)) or not 0.0 <= product_share <= 1.0:
        raise ValueError(f"content_writing: product_share must be a number from 0 to 1, got {product_share!r}")
    rng = random.Random(seed)
    return fill_splits("content_writing", sizes, SCENARIO.default_sizes, lambda split: _row(rng, split, product_share))


# ---------------------------------------------------------------- preference pairs


def _flawed(row: Row, rng: random.Random) -> tuple[str, str] | None:
    """(a description with a slot missing or a value the input did not give, which), checked with the evaluator's
    own ``mentions`` and ``hallucinated``; None when this draw does not give one."""
    slots = row["slots"]
    describe = _describe_product if row["kind"] == "product" else _describe_restaurant
    optional = [a for a in slots if a not in ("name", "category")]
    if optional and rng.random() < 0.5:
        dropped = rng.choice(optional)
        text = describe({a: v for a, v in slots.items() if a != dropped}, rng)
        return (text, "missing_slot") if not mentions(text, dropped, slots[dropped]) else None
    attrs = _PRODUCT_ATTRS if row["kind"] == "product" else _RESTAURANT_ATTRS
    absent = [a for a in attrs if a not in slots and a in _FORMS]
    if not absent:
        return None
    extra = rng.choice(absent)
    text = describe({**slots, extra: rng.choice(tuple(_FORMS[extra]))}, rng)
    return (text, "hallucinated_slot") if hallucinated(text, slots) else None


def _pair(row: Row, rng: random.Random) -> Row:
    for _ in range(20):
        flawed = _flawed(row, rng)
        if flawed is not None:
            break
    else:
        raise ValueError("content_writing: cannot draw a flawed description for a preference pair")
    text, kind = flawed
    return {**row, "prompt": row["input"], "chosen": row["output"], "rejected": text, "rejected_kind": kind}


def preference_pairs(seed: int = 0, sizes: dict[str, int] | None = None, product_share: float = 0.3) -> Splits:
    """The generated rows as pairs with ground truth by construction: the reference description is preferred to one
    that leaves out a given slot or states a value the attributes did not give (``rejected_kind``)."""
    rng = random.Random(f"{seed}:pairs")
    return {split: [_pair(r, rng) for r in rows] for split, rows in generate(seed, sizes, product_share).items()}


# ---------------------------------------------------------------- real format


def _read_e2e(path: Path) -> list[Row]:
    """One row per distinct ``mr`` with all its ``ref`` texts, in file order."""
    if path.suffix.lower() != ".csv":
        raise data_error(path, None, "expected an E2E .csv file with columns mr,ref")
    grouped: dict[str, Row] = {}
    for n, rec in iter_csv(path, ("mr", "ref")):
        mr, ref = rec["mr"].strip(), rec["ref"].strip()
        slots = parse_mr(mr)
        if slots is None:
            raise data_error(path, n, f"mr {mr[:60]!r} is not in the form 'name[The Eagle], food[French]'")
        if "name" not in slots:
            raise data_error(path, n, f"mr {mr[:60]!r} has no name[...] attribute")
        if not ref:
            raise data_error(path, n, "empty 'ref'; every row needs a reference description")
        if mr not in grouped:
            grouped[mr] = {"id": f"{path.stem}-{n}", "input": mr, "output": ref, "references": [], "slots": slots}
        grouped[mr]["references"].append(ref)
    return list(grouped.values())


def read(path: Path, fmt: str | None = None) -> list[Row]:
    """E2E CSV (columns ``mr``, ``ref``; several refs per mr become one row with ``references``)."""
    return read_with("content_writing", path, fmt, {"e2e": _read_e2e})


# ---------------------------------------------------------------- evaluation


def _normalise(text: str) -> str:
    """Lower case, one space between words, "isn't" -> "is not" so one negation form serves."""
    return " ".join(text.lower().replace("’", "'").replace("n't", " not").split())


def _equivalents(attribute: str, value: str) -> frozenset[str]:
    return next((g for g in _SAME.get(attribute, ()) if value in g), frozenset({value}))


@lru_cache(maxsize=4096)
def _pattern(attribute: str, value: str) -> re.Pattern[str]:
    known = _FORMS.get(attribute, {})
    forms = [f for v in sorted(_equivalents(attribute, value)) for f in known.get(v, ())]
    forms = forms or [re.escape(_normalise(value))]
    return re.compile("|".join(rf"(?<!\w)(?:{f})(?!\w)" for f in forms))


def mentions(text: str, attribute: str, value: str) -> bool:
    """Does ``text`` mention ``value`` of ``attribute`` (in any form listed in ``_FORMS``)?"""
    return _pattern(attribute, value).search(_normalise(text)) is not None


_VOCABULARY: dict[str, tuple[str, ...]] = {
    **{a: tuple(v) for a, v in _FORMS.items()},
    "name": VENUES + LANDMARKS + PRODUCTS + HELDOUT_NAMES,
}


def hallucinated(text: str, slots: dict[str, str]) -> list[tuple[str, str]]:
    """Known values the input did not give that ``text`` mentions.

    A venue's name counts for name and near; words inside a given name ("Olive Grove"
    is no mention of green) are not mentions.
    """
    norm = _normalise(text)
    for a in _NAME_ATTRS:
        if a in slots:
            norm = norm.replace(_normalise(slots[a]), " | ")
    found = []
    for attribute, values in _VOCABULARY.items():
        for value in values:
            given = (attribute in slots and value in _equivalents(attribute, slots[attribute])) or (
                attribute == "name" and value in slots.values()
            )
            if given or ((attribute, value) in _GENERIC and attribute not in slots):
                continue
            if _pattern(attribute, value).search(norm):
                found.append((attribute, value))
    return found


def _coverage(text: str, slots: dict[str, str]) -> tuple[int, int]:
    return sum(mentions(text, a, v) for a, v in slots.items()), len(slots)


def _text_scores(texts: list[str], rows: list[Row]) -> tuple[float, float, float]:
    """Slot coverage (micro), share of texts with a hallucinated value, mean length in words."""
    hit = total = 0
    for text, row in zip(texts, rows):
        h, t = _coverage(text, row["slots"])
        hit, total = hit + h, total + t
    halluc = sum(bool(hallucinated(t, r["slots"])) for t, r in zip(texts, rows))
    n = max(len(rows), 1)
    return (hit / total if total else 1.0), halluc / n, sum(len(t.split()) for t in texts) / n


def evaluate(
    predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    """ROUGE (best reference), slot coverage, hallucination rate and length; ``ref_`` = the first reference."""
    from finetune.metrics.text import rouge

    check_lengths(predictions, rows, label_probs)
    out = dict(rouge(predictions, [r.get("references") or [r["output"]] for r in rows]))
    out["slot_coverage"], out["hallucination_rate"], out["mean_words"] = _text_scores(predictions, rows)
    refs = [r["output"] for r in rows]
    out["ref_slot_coverage"], out["ref_hallucination_rate"], out["ref_mean_words"] = _text_scores(refs, rows)
    return out


SCENARIO = Scenario(
    name="content_writing",
    task="generation",
    system="Write a short, fluent description that mentions every attribute given and invents none.",
    card="content_writing_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={"e2e": "e2e"},
    default_sizes={"train": 800, "validation": 100, "test": 100},
    preference_pairs=preference_pairs,
)
