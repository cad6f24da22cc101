"""Content fingerprints (issue 12, points 1 and 2): a resume or a cached base must notice changed bytes, not only changed settings.

The repros in miniature: a LoRA run on a user CSV is stopped mid-way (a real
SIGTERM from inside a backward pass), the CSV is rewritten at the same path with
other rows and flipped labels, and --resume must refuse naming the CSV; the same
with noise added to the base's model.safetensors. A cached pretraining must not
be reused for another corpus, and must be reused when only logging settings
change. Digests are remembered by stat, so an unchanged big file is read once.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from helpers_tiny import (
    checkpoint_steps,
    finetune_recipe,
    losses,
    pretrain_recipe,
    run_inprocess,
    signalling_backward,
    write_corpus,
)

from finetune import fingerprint as fp
from finetune.config import recipe_from_dict
from finetune.errors import StopRequested, UserError
from finetune.stages.pretrain import pretrain_dir

LORA = {"kind": "lora", "r": 4}
WORDS = "income savings duration purpose history housing job credit amount".split()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny pretrained base (4 steps), cache off."""
    folder = tmp_path_factory.mktemp("fp-base")
    corpus = write_corpus(folder / "corpus.txt", seed=11)
    run_inprocess(pretrain_recipe(corpus, folder / "run", max_steps=4))
    return folder / "run" / "pretrain" / "model"


def write_csv(path: Path, seed: int, flip: bool = False, rows: int = 48) -> Path:
    """A user classification file: text -> good/bad; ``flip`` swaps every label."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(6))
            good = "savings" in text
            writer.writerow([text, "bad" if good == flip else "good"])
    return path


def stop_mid_run(monkeypatch, recipe: dict) -> None:
    """Run ``recipe`` and SIGTERM it during its 3rd backward pass: a checkpoint at step 3, StopRequested."""
    original = Accelerator.backward
    monkeypatch.setattr(Accelerator, "backward", signalling_backward(original, 3, signal.SIGTERM))
    with pytest.raises(StopRequested):
        run_inprocess(recipe)
    monkeypatch.setattr(Accelerator, "backward", original)
    assert checkpoint_steps(Path(recipe["output"]))[-1] == 3


# ---------------------------------------------------------------- 1: resume checks content


def test_resume_refuses_a_csv_rewritten_at_the_same_path_naming_it(base, tmp_path, monkeypatch):
    data = write_csv(tmp_path / "my.csv", seed=0)
    original = data.read_bytes()
    recipe = finetune_recipe(base, tmp_path / "run", LORA, max_steps=6, save_every=1)
    recipe["data"]["sources"] = [{"path": str(data), "fields": {"input": "text", "output": "label"}}]
    stop_mid_run(monkeypatch, recipe)

    write_csv(data, seed=1, flip=True)  # other rows, flipped labels, same path
    with pytest.raises(UserError) as err:
        run_inprocess(recipe, resume=True)
    message = str(err.value)
    assert f"data file {data} changed since the checkpoint (sha256 " in message, message
    assert "step-00000003" in message and "\n" not in message
    assert checkpoint_steps(tmp_path / "run")[-1] == 3, "a refused resume must not train"

    data.write_bytes(original)  # the same bytes again (new mtime): the resume goes on
    run_inprocess(recipe, resume=True)
    assert sorted(losses(tmp_path / "run" / "metrics.jsonl")) == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_a_base_whose_weights_changed_in_place(base, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    recipe = finetune_recipe(copy, tmp_path / "run", LORA, max_steps=6, save_every=1)
    stop_mid_run(monkeypatch, recipe)

    weights_file = copy / "model.safetensors"
    weights = load_file(str(weights_file))
    torch.manual_seed(0)
    save_file(
        {k: v + 0.5 * torch.randn_like(v) for k, v in weights.items()}, str(weights_file), metadata={"format": "pt"}
    )
    with pytest.raises(UserError) as err:
        run_inprocess(recipe, resume=True)
    message = str(err.value)
    assert f"base model file {weights_file} changed since the checkpoint (sha256 " in message, message
    assert "config.json" not in message, "only the changed file is named"


def test_resume_of_an_unchanged_run_records_and_accepts_the_content(base, tmp_path, monkeypatch):
    """The checkpoint holds the digests of the data file and of the base's weights, config and tokenizer."""
    import json

    data = write_csv(tmp_path / "rows.csv", seed=3)
    recipe = finetune_recipe(base, tmp_path / "run", LORA, max_steps=4, save_every=1)
    recipe["data"]["sources"] = [{"path": str(data), "fields": {"input": "text", "output": "label"}}]
    stop_mid_run(monkeypatch, recipe)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000003" / "state.json").read_text())
    content = state["fingerprint"]["content"]
    assert content[f"data file {data}"] == fp.hash_file(data)
    names = {key.rsplit("/", 1)[-1] for key in content if key.startswith("base model file ")}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    run_inprocess(recipe, resume=True)
    assert checkpoint_steps(tmp_path / "run")[-1] == 4


def test_checkpoint_without_recorded_content_still_resumes():
    """Checkpoints written before content was recorded: their files are taken as they are, settings still checked."""
    from finetune.train.loop import _check_fingerprint

    old = {"stage": "finetune", "method": "a"}
    _check_fingerprint(old, {**old, "content": {"data file x.csv": "ab" * 32}}, Path("ck"))
    with pytest.raises(UserError, match="method changed"):
        _check_fingerprint(old, {**old, "method": "b", "content": {}}, Path("ck"))


def test_a_new_or_missing_file_is_named():
    from finetune.train.loop import _check_fingerprint

    saved = {"content": {"data file d/a.csv": "1" * 64}}
    with pytest.raises(UserError) as err:
        _check_fingerprint(
            saved, {"content": {"data file d/a.csv": "1" * 64, "data file d/b.csv": "2" * 64}}, Path("ck")
        )
    assert "data file d/b.csv is new since the checkpoint" in str(err.value)
    with pytest.raises(UserError, match="data file d/a.csv is gone since the checkpoint"):
        _check_fingerprint(saved, {"content": {}}, Path("ck"))


# ---------------------------------------------------------------- digests are remembered by stat


@pytest.fixture
def counted(monkeypatch) -> list[Path]:
    """Every real read of a file's bytes by the fingerprint module."""
    reads: list[Path] = []
    original = fp.hash_file

    def hash_file(path: Path) -> str:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(fp, "hash_file", hash_file)
    return reads


def _settle() -> None:
    """Let the clock pass the file's timestamps (with RACY_SECONDS 0, a digest is then remembered)."""
    time.sleep(0.05)


def test_an_unchanged_file_is_hashed_once(tmp_path, counted, monkeypatch):
    monkeypatch.setattr(fp, "RACY_SECONDS", 0.0)
    big = tmp_path / "model.safetensors"
    big.write_bytes(os.urandom(1 << 20))
    _settle()
    first = fp.file_sha256(big)
    assert first == hashlib.sha256(big.read_bytes()).hexdigest()
    assert fp.file_sha256(big) == first and fp.file_sha256(str(big)) == first
    assert len(counted) == 1, "the second and third fingerprints must come from the digest cache"


def test_a_rewrite_that_keeps_size_and_mtime_is_still_seen(tmp_path, counted, monkeypatch):
    """`cp -p`-style: same size, mtime set back; ctime moved, so the file is read again."""
    monkeypatch.setattr(fp, "RACY_SECONDS", 0.0)
    f = tmp_path / "data.csv"
    f.write_bytes(b"text,label\nfoo,good\n")
    past = time.time_ns() - 10**11
    os.utime(f, ns=(past, past))
    _settle()
    before = fp.file_sha256(f)
    time.sleep(0.02)
    f.write_bytes(b"text,label\nfoo,bad!\n")
    os.utime(f, ns=(past, past))
    after = fp.file_sha256(f)
    assert after != before and len(counted) == 2


def test_a_just_written_file_is_not_remembered(tmp_path, counted):
    """Timestamps tick coarsely: a digest of a file changed moments ago is used once, not cached."""
    f = tmp_path / "fresh.csv"
    f.write_text("a,b\n1,2\n")
    fp.file_sha256(f)
    fp.file_sha256(f)
    assert len(counted) == 2


def test_model_files_are_weights_config_and_tokenizer(tmp_path):
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "metrics.jsonl",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ):
        (tmp_path / name).write_text("x")
    names = [p.name for p in fp.model_files(tmp_path)]
    assert names == sorted(
        [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors.index.json",
            "pytorch_model.bin",
        ]
    )
    assert fp.model_digests("org/some-hub-model", "base model file") == {}


# ---------------------------------------------------------------- 2: the pretrain cache is keyed on the corpus


def _cached(corpus: Path, out: Path, **train) -> dict:
    recipe = pretrain_recipe(corpus, out, max_steps=3, **train)
    recipe["pretrain"]["cache"] = True
    return recipe


def test_pretrain_cache_follows_the_corpus_content_not_its_logging(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", seed=21)
    first = run_inprocess(_cached(corpus, tmp_path / "a"))
    assert first.metrics["pretrain.reused"] is False

    write_corpus(corpus, seed=22)  # same path, other text
    changed = _cached(corpus, tmp_path / "b")
    second = run_inprocess(changed)
    assert second.metrics["pretrain.reused"] is False, "a base trained on the old corpus was reused"
    assert second.metrics["pretrain.val_loss"] != first.metrics["pretrain.val_loss"]
    assert pretrain_dir(recipe_from_dict(changed), tmp_path / "b") != Path(first.model_dir).parent

    watched = _cached(corpus, tmp_path / "c", log_every=2, eval_every=1, save_every=1, save_total_limit=5, threads=2)
    third = run_inprocess(watched)
    assert third.metrics["pretrain.reused"] is True, "logging and checkpoint settings cannot change the base"
    assert third.metrics["pretrain.val_loss"] == second.metrics["pretrain.val_loss"]
