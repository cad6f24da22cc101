"""Privacy before training: no planted identifier survives into any tokenized sequence; data cards are recorded."""

import pytest

from finetune.config.schema import DataSpec
from finetune.data.format import Template
from finetune.data.sources import load_sources
from finetune.errors import UserError
from finetune.model.tokenizer import train_tokenizer
from finetune.stages.finetune import check_cards, scrub_sources, tokenize_split


def test_planted_identifiers_absent_from_every_tokenized_sequence(tmp_path):
    spec = DataSpec(
        sources=[{"scenario": "medical_records", "sizes": {"train": 60, "validation": 20, "test": 5}}],
        max_length=512,
        scrub_pii=True,
    )
    sources = load_sources(spec, seed=3)
    planted = {i for split in ("train", "validation") for r in sources[0].splits[split] for i in r["identifiers"]}
    assert len(planted) > 100
    texts = [r["input"] for r in sources[0].splits["train"]]
    tok = train_tokenizer(texts, 400, tmp_path / "tok")
    counts = scrub_sources(sources, tmp_path, is_main=True)
    assert counts.get("NAME", 0) > 0 and counts.get("PHONE", 0) > 0
    assert (tmp_path / "pii_scrub.json").exists()
    templates = {s.name: Template.for_tokenizer(tok, s.system, s.instruction, spec.shape) for s in sources}
    for split in ("train", "validation"):
        data, _ = tokenize_split(sources, split, templates, tok, spec, None)
        assert data.examples
        for example in data.examples:
            text = tok.decode(example["input_ids"])
            leaked = [p for p in planted if p in text]
            assert not leaked, leaked


def test_cards_recorded_warned_or_required():
    spec = DataSpec(
        sources=[
            {"scenario": "tutoring", "sizes": {"train": 4, "validation": 2, "test": 2}},
            {"scenario": "tutoring", "card": "no_such_card", "sizes": {"train": 4, "validation": 2, "test": 2}},
        ]
    )
    sources = load_sources(spec, seed=0)
    sources[1].name = "mine"
    said = []
    cards = check_cards(sources, require=False, say=said.append)
    assert cards == {"tutoring": "tutoring_synthetic", "mine": None}
    assert any("mine has no data card" in s for s in said)
    with pytest.raises(UserError, match="no data card"):
        check_cards(sources, require=True, say=said.append)
