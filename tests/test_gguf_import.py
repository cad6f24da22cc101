"""GGUF import: a .gguf file becomes a cached Hugging Face folder that computes what the file's model computes.

Every file here is a tiny Llama written in-test (tests/helpers_gguf.py), so the source model is at hand
to compare logits against, and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from helpers_gguf import CHAT_TEMPLATE, dequantized_model, write_tiny_llama_gguf
from helpers_tiny import finetune_recipe, run_inprocess

from finetune.errors import UserError
from finetune.model import gguf_import
from finetune.model.hf import load_model
from finetune.model.tokenizer import load_tokenizer

IDS = torch.tensor([[0, 5, 9, 44, 100, 200, 3, 263, 311, 268]])
TEXT = "the risk of a loan depends on income"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", chat_template=CHAT_TEMPLATE)


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def test_import_round_trips_logits_tokenizer_and_chat_template(tiny):
    folder = gguf_import.import_gguf(tiny.path, say=lambda _: None)
    assert folder == gguf_import.cache_dir(hashlib.sha256(tiny.path.read_bytes()).hexdigest())
    assert sorted(p.suffix for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")) == [".safetensors"]
    model = load_model(str(folder))
    assert model.config.model_type == "llama" and getattr(model.config, "quantization_config", None) is None
    assert (_logits(model) - _logits(tiny.model)).abs().max().item() < 1e-5

    tok = load_tokenizer(folder)
    from transformers import AutoTokenizer

    direct = AutoTokenizer.from_pretrained(str(tiny.path.parent), gguf_file=tiny.path.name)
    assert tok(TEXT).input_ids == direct(TEXT).input_ids
    assert tok(TEXT).input_ids[0] == tiny.bos_id  # the file asks for BOS (tokenizer.ggml.add_bos_token)
    assert (tok.bos_token, tok.eos_token) == ("<s>", "</s>")
    assert tok.decode(tok(TEXT).input_ids, skip_special_tokens=True) == TEXT
    assert tok.chat_template == CHAT_TEMPLATE


def test_quantized_file_matches_its_dequantized_weights(tmp_path):
    q8 = write_tiny_llama_gguf(tmp_path / "q8.gguf", quant="Q8_0", seed=1)
    folder = gguf_import.import_gguf(q8.path, say=lambda _: None)
    info = gguf_import.source_info(folder)
    assert info["quantization"] == "MOSTLY_Q8_0"
    model = load_model(str(folder))
    assert (_logits(model) - _logits(dequantized_model(q8))).abs().max().item() < 1e-5
    assert (_logits(model) - _logits(q8.model)).abs().max().item() > 1e-4  # Q8_0 really rounded the weights


def test_loaders_take_the_gguf_path_and_convert_only_once(tiny, tmp_path, monkeypatch):
    gguf_import.import_gguf(tiny.path, say=lambda _: None)
    copy = tmp_path / "same-bytes.gguf"
    copy.write_bytes(tiny.path.read_bytes())

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_import, "_convert", no_second_conversion)
    said = []
    folder = gguf_import.import_gguf(copy, say=said.append)
    assert folder == gguf_import.import_gguf(tiny.path, say=lambda _: None)  # keyed by content, not path
    assert "converted earlier" in said[0]
    model = load_model(str(copy))  # model.path naming the file works wherever a folder did
    assert model.config._name_or_path == str(folder.resolve())
    assert load_tokenizer(copy)(TEXT).input_ids == load_tokenizer(folder)(TEXT).input_ids


def test_provenance_and_gemma_terms_from_metadata(tmp_path):
    gemma = write_tiny_llama_gguf(tmp_path / "g.gguf", name="Gemma 3 270m", license="gemma", seed=2)
    folder = gguf_import.import_gguf(gemma.path, say=lambda _: None)
    info = gguf_import.source_info(folder)
    assert info["sha256"] == hashlib.sha256(gemma.path.read_bytes()).hexdigest()
    assert info["source_file"] == str(gemma.path.resolve())
    assert (info["license"], info["terms"]) == ("gemma", gguf_import.GEMMA_TERMS)
    assert "Gemma Terms of Use" in (folder / gguf_import.NOTICE_FILE).read_text()

    plain = write_tiny_llama_gguf(tmp_path / "p.gguf", license=None, seed=3)
    info = gguf_import.read_info(plain.path)
    assert info["license"] is None and info["terms"].startswith("not stated in the file")
    assert gguf_import.licence_terms({"license": "apache-2.0"}).startswith("apache-2.0")


def test_interrupted_conversion_leaves_no_folder_and_the_next_one_completes(tmp_path, monkeypatch):
    tiny = write_tiny_llama_gguf(tmp_path / "k.gguf", seed=4)
    real_save = gguf_import._save

    def killed_while_saving(model, tokenizer, folder, info):
        (folder / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_import, "_save", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        gguf_import.import_gguf(tiny.path, say=lambda _: None)
    target = gguf_import.cache_dir(hashlib.sha256(tiny.path.read_bytes()).hexdigest())
    assert not target.exists() and not list(target.parent.glob(f".{target.name}.*.tmp"))

    monkeypatch.setattr(gguf_import, "_save", real_save)
    folder = gguf_import.import_gguf(tiny.path, say=lambda _: None)
    assert (_logits(load_model(str(folder))) - _logits(tiny.model)).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "is not a readable GGUF file"),
        (b"not a gguf at all, just text" * 10, "is not a readable GGUF file"),
        (None, "does not exist"),
    ],
)
def test_bad_gguf_is_a_one_line_user_error(tmp_path, tiny, content, expected):
    path = tmp_path / "bad.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_model(str(path))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_truncated_gguf_is_a_one_line_user_error(tmp_path, tiny):
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny.path.read_bytes()[:2000])
    with pytest.raises(UserError) as err:
        gguf_import.import_gguf(path, say=lambda _: None)
    assert "cut.gguf" in str(err.value) and "\n" not in str(err.value)


def test_ft_import_out_and_refusals(tiny, tmp_path):
    from typer.testing import CliRunner

    import cli

    out = tmp_path / "imported"
    result = CliRunner().invoke(cli.app, ["import", str(tiny.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"model folder: {out}" in result.output
    assert (_logits(load_model(str(out))) - _logits(tiny.model)).abs().max().item() < 1e-5
    again = CliRunner().invoke(cli.app, ["import", str(tiny.path), "--out", str(out)])
    assert again.exit_code == 0 and "converted earlier" in again.output  # the same file's import: a no-op

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("mine")
    refused = CliRunner().invoke(cli.app, ["import", str(tiny.path), "--out", str(busy)])
    assert refused.exit_code == 2 and refused.output.strip().splitlines() == [
        f"error: --out {busy} already holds files; choose a new or empty folder"
    ]
    assert (busy / "x.txt").read_text() == "mine"


def test_recipe_with_a_gguf_base_fine_tunes_and_records_where_it_came_from(tiny, tmp_path):
    data = finetune_recipe(tiny.path, tmp_path / "run", {"kind": "lora", "r": 4}, train_rows=8, max_steps=2)
    result = run_inprocess(data)
    run_info = json.loads((result.run_dir / "run.json").read_text())
    base = run_info["base_model"]
    assert base["sha256"] == hashlib.sha256(tiny.path.read_bytes()).hexdigest()
    assert base["source_file"] == str(tiny.path.resolve()) and base["license"] == "apache-2.0"
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["base_model"]["sha256"] == base["sha256"]
    assert f"sha256 `{base['sha256']}`" in (result.run_dir / "report.md").read_text()
    adapter = json.loads((result.run_dir / "model" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == base["converted_folder"]  # the adapter loads without the .gguf
