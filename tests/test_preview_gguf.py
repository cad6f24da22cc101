"""`ft data preview` of a recipe whose model.path is a .gguf file: token lengths in the converted folder's
tokenizer once it exists, and one line saying `ft import` converts it first while it does not."""

from __future__ import annotations

from helpers_gguf import write_tiny_llama_gguf

from finetune.commands import preview_command
from finetune.model import gguf_import


def test_preview_of_a_gguf_recipe_counts_tokens_once_converted(tmp_path):
    tiny = write_tiny_llama_gguf(tmp_path / "preview-tiny.gguf", seed=7)  # its own bytes: no earlier test's cache
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: p\nmodel: {{path: {tiny.path}}}\ndata: {{sources: [{{scenario: risk_assessment}}], max_length: 64}}\n"
        "method: {kind: lora}\n"
    )
    before = preview_command(str(recipe), 1).splitlines()
    notes = [line for line in before if line.startswith("note:")]
    assert notes == [
        f"note: {tiny.path} is not converted yet, so lengths are in words; `ft import {tiny.path}` converts it first"
    ]
    assert any(line.startswith("length of train rows in whitespace words") for line in before)

    folder = gguf_import.import_gguf(tiny.path, say=lambda _: None)
    after = preview_command(str(recipe), 1).splitlines()
    assert not any(line.startswith("note:") for line in after)
    assert any(line.startswith(f"length of train rows in tokens of {folder}'s tokenizer") for line in after)
