"""Content writing scenario: generator invariants, E2E reader, slot/hallucination/ROUGE evaluator."""

from __future__ import annotations

import csv

import pytest

from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import content_writing as cw

SMALL = {"train": 300, "validation": 40, "test": 80}


@pytest.fixture(scope="module")
def splits():
    return cw.generate(seed=2, sizes=SMALL)


def test_registry_finds_scenario():
    scenario = get("content_writing")
    assert scenario.name == "content_writing" and scenario.task == "generation"
    assert scenario.card == "content_writing_synthetic" and scenario.formats == {"e2e": "e2e"}


def test_deterministic_and_disjoint(splits):
    assert splits == cw.generate(seed=2, sizes=SMALL)
    assert splits != cw.generate(seed=3, sizes=SMALL)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs)) == sum(SMALL.values())


def test_heldout_names_only_in_test(splits):
    for split, rows in splits.items():
        for r in rows:
            assert (r["slots"]["name"] in cw.HELDOUT_NAMES) == (split == "test")
    held_seen = {r["slots"]["name"] for r in splits["test"]}
    assert held_seen & set(cw.HELDOUT_VENUES) and held_seen & set(cw.HELDOUT_PRODUCTS)


def test_rows_short_varied_and_in_mr_format(splits):
    rows = [r for rs in splits.values() for r in rs]
    assert {r["kind"] for r in rows} == {"restaurant", "product"}
    for r in rows:
        assert cw.parse_mr(r["input"]) == r["slots"] and "name" in r["slots"]
        assert r["output"] == r["references"][0] and len(set(r["references"])) == len(r["references"])
        assert all(len(ref.split()) <= 60 and 1 <= ref.count(".") <= 3 for ref in r["references"])
    assert sum(len(r["references"]) == 3 for r in rows) > 0.9 * len(rows)


def test_references_cover_every_slot_and_invent_none(splits):
    rows = splits["test"]
    scores = cw.evaluate([r["references"][-1] for r in rows], rows)
    assert scores["slot_coverage"] == 1.0 and scores["hallucination_rate"] == 0.0
    assert scores["ref_slot_coverage"] == 1.0 and scores["ref_hallucination_rate"] == 0.0
    assert scores["rouge1"] == pytest.approx(1.0)  # the prediction is one of the references


def test_product_share_option():
    only_restaurants = cw.generate(seed=0, sizes={"train": 30, "validation": 5, "test": 5}, product_share=0.0)
    assert all(r["kind"] == "restaurant" for rows in only_restaurants.values() for r in rows)
    with pytest.raises(ValueError, match="product_share"):
        cw.generate(seed=0, product_share=1.5)
    with pytest.raises(TypeError):
        cw.generate(seed=0, style="poem")


@pytest.mark.parametrize(
    ("text", "attribute", "value", "expected"),
    [
        ("It is moderately priced.", "priceRange", "moderate", True),
        ("Meals cost under £20.", "priceRange", "less than £20", True),
        ("A cheap place.", "priceRange", "less than £20", True),  # same meaning counts
        ("It is not family-friendly.", "familyFriendly", "no", True),
        ("It isn't kid friendly.", "familyFriendly", "no", True),
        ("It is not family-friendly.", "familyFriendly", "yes", False),
        ("Families are welcome.", "familyFriendly", "yes", True),
        ("It is highly rated and cheap.", "customer rating", "high", True),
        ("Ratings are fine but prices are high.", "customer rating", "high", False),
        ("It has a high price range.", "priceRange", "high", True),
        ("Rated 5 out of 5.", "customer rating", "5 out of 5", True),
        ("Rated 5 out of 5.", "customer rating", "1 out of 5", False),
        ("The Eagle, in the City Center.", "area", "city centre", True),
        ("The Eagle is here.", "name", "the eagle", True),
    ],
)
def test_mentions(text, attribute, value, expected):
    assert cw.mentions(text, attribute, value) is expected


# ---------------------------------------------------------------- E2E reader


def _write_e2e(path, rows, header=("mr", "ref")):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_read_e2e_groups_references(tmp_path):
    path = _write_e2e(
        tmp_path / "dev.csv",
        [
            ["name[The Eagle], eatType[pub], food[French]", "The Eagle is a French pub."],
            ["name[The Mill], area[riverside]", "The Mill is by the river."],
            ["name[The Eagle], eatType[pub], food[French]", "French food at The Eagle, a pub."],
        ],
    )
    rows = get("content_writing").read_file(path)
    assert [r["id"] for r in rows] == ["dev-2", "dev-3"]
    eagle = rows[0]
    assert eagle["input"] == "name[The Eagle], eatType[pub], food[French]"
    assert eagle["output"] == "The Eagle is a French pub."
    assert eagle["references"] == ["The Eagle is a French pub.", "French food at The Eagle, a pub."]
    assert eagle["slots"] == {"name": "The Eagle", "eatType": "pub", "food": "French"}
    assert rows[1]["references"] == ["The Mill is by the river."]
    assert cw.read(path, "e2e") == rows


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            [["name[A], food[French]", "ok"], ["name[B] food[Thai", "bad"]],
            ("mr", "ref"),
            r"bad\.csv: row 3: mr .* not in the form",
        ),
        ([["eatType[pub]", "A pub."]], ("mr", "ref"), r"bad\.csv: row 2: .*no name"),
        ([["name[A]", "  "]], ("mr", "ref"), r"bad\.csv: row 2: empty 'ref'"),
        ([["name[A]", "x"]], ("meaning", "ref"), r"bad\.csv: row 1: header lacks column\(s\) mr"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path, rows, header, message):
    path = _write_e2e(tmp_path / "bad.csv", rows, header)
    with pytest.raises(ScenarioDataError, match=message):
        cw.read(path)


def test_bad_format_and_extension(tmp_path):
    path = _write_e2e(tmp_path / "dev.csv", [["name[A]", "A."]])
    with pytest.raises(ValueError, match="unknown format 'mts_dialog'"):
        cw.read(path, "mts_dialog")
    with pytest.raises(ScenarioDataError, match=r"dev\.txt"):
        cw.read(tmp_path / "dev.txt")


# ---------------------------------------------------------------- evaluator


ROWS = [
    {
        "id": "a",
        "input": "",
        "output": "The Eagle is a cheap French pub.",
        "references": ["The Eagle is a cheap French pub.", "A French pub, The Eagle, is cheap."],
        "slots": {"name": "The Eagle", "eatType": "pub", "food": "French", "priceRange": "cheap"},
    },
    {
        "id": "b",
        "input": "",
        "output": "Blue Heron is in the city centre.",
        "slots": {"name": "Blue Heron", "area": "city centre"},
    },
]


def test_evaluate_hand_computed():
    predictions = [
        "The Eagle is an Italian pub.",  # covers name, eatType (2 of 4); Italian is invented
        "Blue Heron is in the city centre and is family-friendly.",  # covers both; family-friendly invented
    ]
    scores = cw.evaluate(predictions, ROWS)
    assert scores["slot_coverage"] == pytest.approx(4 / 6)
    assert scores["hallucination_rate"] == 1.0
    assert scores["mean_words"] == pytest.approx((6 + 10) / 2)
    assert scores["ref_slot_coverage"] == 1.0 and scores["ref_hallucination_rate"] == 0.0
    assert scores["ref_mean_words"] == pytest.approx((7 + 7) / 2)
    # ROUGE-1: pred 1 has 6 tokens, either reference 7, 4 shared -> 8/13; pred 2 has 11 tokens
    # ("family-friendly" is two), its reference 7, all 7 shared -> 14/18
    assert scores["rouge1"] == pytest.approx((8 / 13 + 14 / 18) / 2)


def test_evaluate_names_and_generic_restaurant():
    row = {"id": "c", "input": "", "output": "x", "slots": {"name": "The Red Fox", "near": "the Old Mill"}}
    assert cw.hallucinated("The Red Fox is a restaurant near the Old Mill.", row["slots"]) == []
    assert cw.hallucinated("The Red Fox is near The Black Swan.", row["slots"]) == [
        ("colour", "black"),
        ("name", "The Black Swan"),
    ]
    pub = {"name": "The Red Fox", "eatType": "pub"}
    assert cw.hallucinated("The Red Fox is a restaurant.", pub) == [("eatType", "restaurant")]


def test_evaluate_empty_and_perfect():
    empty = cw.evaluate(["", ""], ROWS)
    assert empty["rouge1"] == 0.0 and empty["slot_coverage"] == 0.0
    assert empty["hallucination_rate"] == 0.0 and empty["mean_words"] == 0.0
    perfect = cw.evaluate([r["output"] for r in ROWS], ROWS)
    assert perfect["rouge1"] == pytest.approx(1.0) and perfect["slot_coverage"] == 1.0
    assert cw.evaluate([], [])["slot_coverage"] == 1.0
    with pytest.raises(ValueError, match="predictions"):
        cw.evaluate(["a"], ROWS)
