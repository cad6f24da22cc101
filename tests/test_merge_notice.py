"""A merged or exported model is a copy of its base's weights: the base's licence NOTICE (Gemma's terms, written
by the GGUF import) goes with it, from `ft merge` and from `ft export --format safetensors`."""

from __future__ import annotations

import shutil

import pytest
from helpers_gguf import write_tiny_llama_gguf

from finetune import methods
from finetune.config.schema import MethodSpec
from finetune.export import export_model
from finetune.model import gguf_import
from finetune.model.hf import load_model
from finetune.model.tokenizer import load_tokenizer


def _adapter(base, out):
    model = methods.prepare(load_model(str(base)), MethodSpec(kind="lora", r=4, alpha=8, targets="all-linear"))
    return methods.save_trained(model, load_tokenizer(base), out)


@pytest.fixture(scope="module")
def gemma_adapter(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notice")
    tiny = write_tiny_llama_gguf(tmp / "gemma.gguf", name="Gemma 3 270m", license="gemma", seed=11)
    base = gguf_import.import_gguf(tiny.path, say=lambda _: None)
    assert (base / gguf_import.NOTICE_FILE).is_file()
    return base, _adapter(base, tmp / "adapter")


def test_a_trained_adapter_or_full_model_carries_the_bases_notice(gemma_adapter, tmp_path):
    """What training saves is a derivative of the base: its folder carries the base's NOTICE too."""
    base, adapter = gemma_adapter
    assert (adapter / "NOTICE").read_text() == (base / "NOTICE").read_text()
    full = methods.save_trained(load_model(str(base)), load_tokenizer(base), tmp_path / "full")
    assert (full / "NOTICE").read_text() == (base / "NOTICE").read_text()


def test_merge_copies_the_bases_notice(gemma_adapter, tmp_path):
    base, adapter = gemma_adapter
    bare = tmp_path / "adapter"  # the adapter without its own copy: merge must find the base's
    shutil.copytree(adapter, bare)
    (bare / "NOTICE").unlink()
    merged = methods.merge(bare, tmp_path / "merged")
    assert (merged / "NOTICE").read_text() == (base / "NOTICE").read_text()
    assert "Gemma Terms of Use" in (merged / "NOTICE").read_text()


def test_safetensors_export_of_an_adapter_and_of_a_full_model_copies_it(gemma_adapter, tmp_path):
    base, adapter = gemma_adapter
    exported = export_model(adapter, "safetensors", tmp_path / "exported")
    assert (exported / "NOTICE").read_text() == (base / "NOTICE").read_text()
    again = export_model(exported, "safetensors", tmp_path / "again")  # a full model folder carrying it
    assert (again / "NOTICE").read_text() == (base / "NOTICE").read_text()


def test_a_base_without_a_notice_gets_none(tmp_path):
    tiny = write_tiny_llama_gguf(tmp_path / "plain.gguf", license="apache-2.0", seed=12)
    base = gguf_import.import_gguf(tiny.path, say=lambda _: None)
    merged = methods.merge(_adapter(base, tmp_path / "adapter"), tmp_path / "merged")
    assert not (merged / "NOTICE").exists() and not (merged / "LICENSE").exists()
