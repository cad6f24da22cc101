"""The general English text ft ships for the retention probe, and the generator that wrote it.

No network, and no public-domain prose on a bare machine: so ft writes its own. Encyclopedic
paragraphs about invented towns, rivers, animals, plants, crafts, people and events, built from
templates with many slots, plus a few dozen everyday facts written for this file. It is varied
English with real grammar and world knowledge of a simple kind, not natural prose: perplexity on
it measures whether a model still reads ordinary sentences, not what it knows about the world.
The shipped file is this generator's output (``python -m finetune.data.general_gen`` rewrites it;
a test checks it is unchanged), dedicated to the public domain (CC0), see data_cards/general_text.md.
"""

from __future__ import annotations

import random
from pathlib import Path

SHIPPED = Path(__file__).with_name("general_text.txt")
PARAGRAPHS = 1000
SEED = 20261201

_ONSETS = "b br c cl d dr f g gl h k l m n p pr r s st t tr v w z".split()
_VOWELS = "a e i o u ai ea ou ie".split()
_CODAS = ["", "n", "r", "l", "s", "th", "m", "nd", "rk", "st"]
_DIRECTIONS = ["north", "south", "east", "west", "north-east", "south-west", "north-west", "south-east"]
_COLOURS = ["grey", "brown", "red", "pale yellow", "dark green", "white", "black", "blue-grey", "copper", "olive"]
_MATERIALS = ["stone", "timber", "brick", "clay", "slate", "limestone", "iron", "copper", "wool", "reed"]
_GOODS = ["wool", "salt", "timber", "cheese", "wine", "glass", "paper", "rope", "honey", "pottery", "linen", "grain"]
_CRAFTS = ["weaving", "pottery", "boat building", "glass blowing", "bookbinding", "clock making", "tanning"]
_FIELDS = ["astronomy", "botany", "geometry", "medicine", "music", "history", "chemistry", "law", "navigation"]
_SEASONS = ["spring", "summer", "autumn", "winter"]
_HABITATS = ["wet meadows", "pine forests", "rocky coasts", "dry grassland", "mountain streams", "river deltas"]
_FOODS = ["seeds", "insects", "small fish", "berries", "roots", "grasses", "snails", "leaves"]
_ANIMALS = ["beetle", "heron", "vole", "finch", "trout", "moth", "lizard", "owl", "hare", "frog"]
_PLANTS = ["fern", "rush", "thistle", "sedge", "willow", "lily", "moss", "clover", "heather", "laurel"]
_ROLES = ["mapmaker", "physician", "composer", "teacher", "merchant", "engineer", "poet", "judge", "botanist"]
_EVENTS = ["flood", "fire", "fair", "treaty", "strike", "drought", "election", "festival", "bridge opening"]

# Everyday facts, written for this file (public domain, CC0).
_FACTS = [
    "Water freezes at zero degrees Celsius and boils at one hundred degrees at sea level.",
    "The Earth turns once on its axis in about twenty-four hours, which gives us day and night.",
    "A year has twelve months, and most months have thirty or thirty-one days.",
    "Plants take in carbon dioxide and give off oxygen when sunlight falls on their leaves.",
    "The Moon has no light of its own; it reflects the light of the Sun.",
    "Bread is made from flour, water, salt and yeast, which makes the dough rise.",
    "Sound travels faster through water than through air, and faster still through steel.",
    "Most birds build nests in spring and lay their eggs before the warm months.",
    "A triangle has three sides, and its angles add up to one hundred and eighty degrees.",
    "Iron rusts when it is left in damp air for a long time.",
    "Rivers carry sand and mud downstream and leave them where the water slows down.",
    "The heart pumps blood through the body, and the lungs take oxygen from the air.",
    "Ice floats on water because it is less dense than the liquid around it.",
    "Bees carry pollen from flower to flower, which helps many fruits to form.",
    "A library lends books to its readers and asks for them back after a few weeks.",
    "Maps show north at the top by custom, though nothing in nature requires it.",
    "Copper conducts electricity well, which is why it is used in wires.",
    "Tides rise and fall about twice a day, pulled mostly by the Moon.",
    "Wool comes from sheep, and cotton from the seed pods of the cotton plant.",
    "A week has seven days, and many countries rest on one or two of them.",
    "Salt was once so valuable that it was traded over long distances.",
    "Clouds form when warm, moist air rises and cools.",
    "Glass is made by melting sand with soda and lime at a very high heat.",
    "Children learn to speak by listening to the people around them.",
    "The seasons change because the Earth's axis is tilted toward or away from the Sun.",
    "A lever lets a small force lift a heavy load if the load sits close to the pivot.",
    "Paper was first made from plant fibres soaked in water and pressed flat.",
    "Whales are mammals: they breathe air and feed their young on milk.",
    "Mountains are colder at the top because the air there is thinner.",
    "A good letter says who it is for, what it wants, and who wrote it.",
    "Farmers rotate their crops so that the soil does not lose its strength.",
    "A compass needle points toward the magnetic north pole.",
    "Light from the Sun takes about eight minutes to reach the Earth.",
    "Cheese keeps longer than milk because most of its water has been removed.",
    "Most metals expand when they are heated and shrink when they cool.",
    "A bridge must carry its own weight as well as the traffic that crosses it.",
    "Forests store water in their soil and release it slowly into streams.",
    "Vaccines teach the body to recognise an illness before it meets it.",
    "Numbers that end in zero or five can be divided by five.",
    "Old buildings were often made of local stone because moving stone was costly.",
]


def _name(rng: random.Random, syllables: int | None = None) -> str:
    n = syllables or rng.choice((2, 2, 3))
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)) + rng.choice(_CODAS)
    return word.capitalize()


def _century(rng: random.Random) -> str:
    n = rng.randint(11, 19)
    return f"{n}th century"


def _town(rng: random.Random) -> list[str]:
    name, river, region = _name(rng), _name(rng), _name(rng, 3)
    people = rng.randint(2, 90) * 1000 + rng.randint(0, 999)
    good, good2 = rng.sample(_GOODS, 2)
    return [
        f"{name} is a town in the {rng.choice(_DIRECTIONS)} of {region}, on the banks of the river {river}.",
        f"About {people:,} people lived there at the last count, most of them in the old quarter.",
        f"The town grew in the {_century(rng)} around a market for {good} and {good2}.",
        f"Its houses are built of {rng.choice(_COLOURS)} {rng.choice(_MATERIALS)}, and the streets are narrow.",
        f"A {rng.choice(_EVENTS)} in {rng.randint(1650, 1990)} is still remembered in the town's songs.",
        f"Visitors come in {rng.choice(_SEASONS)} for the {rng.choice(_CRAFTS)} workshops and the views of the hills.",
    ]


def _river(rng: random.Random) -> list[str]:
    name, source, sea = _name(rng), _name(rng, 3), _name(rng)
    length = rng.randint(40, 1400)
    return [
        f"The {name} is a river about {length} kilometres long that rises in the {source} hills.",
        f"It flows {rng.choice(_DIRECTIONS)} through farmland and joins the {sea} Sea near a small port.",
        f"Its water is {rng.choice(['clear', 'brown', 'green', 'cold', 'slow'])} for most of the year and rises "
        f"sharply after the {rng.choice(_SEASONS)} rains.",
        f"Mills once stood along its banks, grinding grain and sawing {rng.choice(['oak', 'pine', 'beech', 'ash'])}.",
        f"Today the {name} is known for its {rng.choice(_ANIMALS)}s, which feed on {rng.choice(_FOODS)} in the shallows.",
    ]


def _animal(rng: random.Random) -> list[str]:
    kind, name = rng.choice(_ANIMALS), _name(rng)
    colour = rng.choice(_COLOURS)
    return [
        f"The {name} {kind} is a small {colour} {kind} found in {rng.choice(_HABITATS)}.",
        f"Adults measure {rng.randint(2, 60)} centimetres and live for about {rng.randint(2, 20)} years.",
        f"It feeds mainly on {rng.choice(_FOODS)}, and in {rng.choice(_SEASONS)} also on {rng.choice(_FOODS)}.",
        f"The species was first described in {rng.randint(1750, 1950)} by a {rng.choice(_ROLES)} named {_name(rng)}.",
        f"Its numbers have {rng.choice(['fallen', 'grown', 'stayed steady'])} over the last fifty years, "
        f"mostly because of changes in {rng.choice(_HABITATS)}.",
    ]


def _plant(rng: random.Random) -> list[str]:
    kind, name = rng.choice(_PLANTS), _name(rng)
    return [
        f"{name} {kind} is a plant that grows in {rng.choice(_HABITATS)} and reaches {rng.randint(10, 300)} "
        "centimetres in height.",
        f"Its flowers are {rng.choice(_COLOURS)} and open in late {rng.choice(_SEASONS)}.",
        f"People once used its leaves to make {rng.choice(['tea', 'dye', 'rope', 'baskets', 'medicine', 'paper'])}.",
        f"The seeds are spread by {rng.choice(['wind', 'birds', 'water', 'ants', 'grazing animals'])}.",
    ]


def _person(rng: random.Random) -> list[str]:
    first, last, town = _name(rng, 2), _name(rng), _name(rng)
    born = rng.randint(1600, 1950)
    field = rng.choice(_FIELDS)
    return [
        f"{first} {last} ({born}-{born + rng.randint(35, 90)}) was a {rng.choice(_ROLES)} born in {town}.",
        f"After studying {field}, {first} {last} spent {rng.randint(3, 30)} years teaching in the capital.",
        f"The best known work of {last} is a book on {field} and {rng.choice(_FIELDS)}, printed in {born + 40}.",
        f"Later writers praised its {rng.choice(['clear style', 'careful drawings', 'bold ideas', 'long tables'])}.",
    ]


def _craft(rng: random.Random) -> list[str]:
    craft, town = rng.choice(_CRAFTS), _name(rng)
    return [
        f"{craft.capitalize()} has been practised in {town} since the {_century(rng)}.",
        f"Workers use {rng.choice(_MATERIALS)} tools and learn the trade over {rng.randint(2, 9)} years.",
        f"A single piece can take {rng.randint(2, 40)} days to finish, and most are sold at the {rng.choice(_SEASONS)} fair.",
        f"The guild of {town} still sets the rules for apprentices and keeps a record of every master.",
    ]


def _event(rng: random.Random) -> list[str]:
    event, place, year = rng.choice(_EVENTS), _name(rng), rng.randint(1500, 1995)
    return [
        f"The {place} {event} of {year} took place in the {rng.choice(_SEASONS)} of that year.",
        f"It lasted {rng.randint(2, 40)} days and involved about {rng.randint(2, 200) * 100} people.",
        f"Newspapers of the time blamed {rng.choice(['the weather', 'the council', 'bad roads', 'high prices'])}, "
        f"but later historians pointed to {rng.choice(['poor harvests', 'new taxes', 'a failed bank', 'old quarrels'])}.",
        f"A {rng.choice(_MATERIALS)} memorial near the market square records the names of those who took part.",
    ]


_KINDS = (_town, _river, _animal, _plant, _person, _craft, _event)


def paragraph(rng: random.Random) -> str:
    """One encyclopedic paragraph: a topic's sentences in order (first kept), some dropped, sometimes a fact."""
    sentences = rng.choice(_KINDS)(rng)
    kept = [sentences[0]] + [s for s in sentences[1:] if rng.random() < 0.8]
    if rng.random() < 0.35:
        kept.insert(rng.randint(1, len(kept)), rng.choice(_FACTS))
    return " ".join(kept)


def generate(paragraphs: int = PARAGRAPHS, seed: int = SEED) -> str:
    """The whole text: paragraphs separated by blank lines, a pure function of (paragraphs, seed)."""
    rng = random.Random(seed)
    return "\n\n".join(paragraph(rng) for _ in range(paragraphs)) + "\n"


if __name__ == "__main__":
    SHIPPED.write_text(generate(), encoding="utf-8")
    print(f"wrote {SHIPPED} ({SHIPPED.stat().st_size:,} bytes)")
