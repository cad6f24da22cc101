"""data.replay (issue 16, point 2b): general text mixed into fine-tuning with a plain language-model loss.

The replayed rows are a pure function of (seed, text, task lengths), take the asked share of the training
rows, score every token, fit the task rows' keys and weights, and a run stopped mid-way and resumed ends
exactly where an uninterrupted one does.
"""

from __future__ import annotations

import json
import signal

import pytest

from finetune.config.load import recipe_from_dict
from finetune.data.replay import MIN_LENGTH, mix_replay, replay_count, replay_documents, replay_rows
from finetune.data.tokenized import TokenizedData, count_label_tokens, weigh_examples
from finetune.errors import StopRequested, UserError
from finetune.train.batching import collate
from tests.helpers_tiny import (
    assert_same_run,
    corpus,
    finetune_recipe,
    pretrain_recipe,
    run_inprocess,
    signalling_backward,
)

STREAM = list(range(3, 2003))


def _task(n: int, with_choice: bool = False) -> TokenizedData:
    """n prompt-masked task rows of lengths 20..59, the answer's last 3 tokens scored."""
    examples = []
    for i in range(n):
        length = 20 + i % 40
        e = {"input_ids": [7] * length, "labels": [-100] * (length - 3) + [8, 9, 10]}
        if with_choice:
            e["choice_index"] = [-1] * length
        examples.append(e)
    return TokenizedData(examples, pad_id=0)


@pytest.mark.parametrize("n, fraction", [(1000, 0.05), (333, 0.05), (50, 0.2), (10, 0.01)])
def test_replay_takes_the_asked_share_of_training_rows(n, fraction):
    mixed, stats = mix_replay(_task(n), STREAM, fraction, 64, seed=0, per_example=False)
    added = len(mixed) - n
    assert added == replay_count(n, fraction) == stats["rows"]
    assert abs(added / len(mixed) - fraction) <= max(0.005, 1 / len(mixed))  # rounding to whole rows
    assert replay_count(n, 0.0) == 0


def test_replay_is_deterministic_by_seed_and_shaped_like_task_rows():
    a, _ = mix_replay(_task(200), STREAM, 0.1, 48, seed=3, per_example=False)
    b, _ = mix_replay(_task(200), STREAM, 0.1, 48, seed=3, per_example=False)
    c, _ = mix_replay(_task(200), STREAM, 0.1, 48, seed=4, per_example=False)
    assert a.examples == b.examples
    assert a.examples[200:] != c.examples[200:]
    lengths = {len(e["input_ids"]) for e in a.examples[200:]}
    assert lengths <= set(range(MIN_LENGTH, 49)) and len(lengths) > 3  # drawn from the task's 20..59, capped at 48
    for e in a.examples[200:]:  # consecutive pieces of the stream (wrapping round at its end)
        ids = e["input_ids"]
        assert all((y - x) in (1, -(len(STREAM) - 1)) for x, y in zip(ids, ids[1:]))


def test_replay_rows_score_every_token_with_the_lm_loss():
    mixed, _ = mix_replay(_task(100, with_choice=True), STREAM, 0.1, 64, seed=0, per_example=False)
    for e in mixed.examples[100:]:
        assert e["labels"] == e["input_ids"]  # labels are the inputs: every next token is a loss term
        assert count_label_tokens([e]) == len(e["input_ids"]) - 1
        assert e["choice_index"] == [-1] * len(e["input_ids"])  # no label decision
    batch = collate(mixed.examples[95:105], mixed.pad_id)  # task and replay rows collate together
    assert batch["choice_index"].shape == batch["input_ids"].shape


def test_replay_rows_weigh_one_example_each_under_example_averaging():
    task = weigh_examples(_task(100))
    mixed, _ = mix_replay(task, STREAM, 0.1, 64, seed=0, per_example=True)
    for e in mixed.examples:
        assert count_label_tokens([e]) == pytest.approx(1.0)  # task rows and replay rows alike


def test_replay_wraps_round_a_short_text():
    rows = replay_rows(list(range(10)), [4, 4, 4, 4], seed=0)
    assert [len(r) for r in rows] == [4, 4, 4, 4]
    flat = [t for r in rows for t in r]
    assert flat == [(flat[0] + i) % 10 for i in range(16)]


def _recipe(extra: dict, tmp_path) -> dict:
    return {
        "name": "replay",
        "output": str(tmp_path / "run"),
        "model": {"path": str(tmp_path)},
        "data": {"sources": [{"scenario": "tutoring"}], **extra},
        "method": {"kind": "lora"},
    }


def test_replay_needs_one_source_and_a_pretrain_section_for_the_corpus(tmp_path):
    with pytest.raises(Exception, match="exactly one of text"):
        recipe_from_dict(_recipe({"replay": {"fraction": 0.05}}, tmp_path))
    with pytest.raises(Exception, match="needs a pretrain section"):
        recipe_from_dict(_recipe({"replay": {"corpus": "pretrain"}}, tmp_path))
    missing = recipe_from_dict(_recipe({"replay": {"text": str(tmp_path / "none.txt")}}, tmp_path))
    with pytest.raises(UserError, match=r"data.replay.text: .*none.txt is not a file"):
        replay_documents(missing)


def test_replay_file_shared_with_the_retention_probe_is_split_between_them(tmp_path):
    from finetune.eval.retention import general_text

    text = tmp_path / "general.txt"
    text.write_text("\n\n".join(f"paragraph number {i} about things" for i in range(100)), encoding="utf-8")
    data = _recipe({"replay": {"text": str(text), "fraction": 0.1}}, tmp_path)
    data["eval"] = {"retention": {"text": str(text)}}
    recipe = recipe_from_dict(data)
    trained, _ = replay_documents(recipe)
    probed = general_text(recipe).documents
    assert len(probed) == 10 and len(trained) == 90 and not set(trained) & set(probed)
    data["eval"] = {}  # the probe reads another text: replay trains on the whole file
    assert len(replay_documents(recipe_from_dict(data))[0]) == 100


# ---------------------------------------------------------------- end to end: a stopped and resumed run


@pytest.fixture(scope="module")
def base(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("replay-base")
    run_inprocess(pretrain_recipe(corpus, out))
    return out / "pretrain" / "model"


def _replay_run(base, out, corpus):
    data = finetune_recipe(base, out, {"kind": "full"}, max_steps=6, save_every=2, epochs=1)
    data["data"]["replay"] = {"text": str(corpus), "fraction": 0.2}
    return data


def test_replay_run_stopped_and_resumed_equals_uninterrupted(base, corpus, tmp_path, monkeypatch, capsys):
    want = run_inprocess(_replay_run(base, tmp_path / "want", corpus))
    assert "replay " in capsys.readouterr().out
    record = json.loads((tmp_path / "want" / "run.json").read_text())
    assert record["stages"]["finetune"]["result"]["replay"]["rows"] == replay_count(32, 0.2)

    from accelerate import Accelerator

    monkeypatch.setattr(Accelerator, "backward", signalling_backward(Accelerator.backward, 3, signal.SIGTERM))
    with pytest.raises(StopRequested):
        run_inprocess(_replay_run(base, tmp_path / "got", corpus))
    monkeypatch.undo()
    run_inprocess(_replay_run(base, tmp_path / "got", corpus), resume=True)
    assert_same_run(tmp_path / "got", tmp_path / "want", "model/model.safetensors")
    assert want.metrics["finetune.steps"] == 6
