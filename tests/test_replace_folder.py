"""rundir.replace_folder, the swap ft merge and ft export end with: the old folder or the new, never neither."""

from __future__ import annotations

import os

import pytest

from finetune import rundir


def _folder(path, text):
    path.mkdir()
    (path / "model.safetensors").write_text(text)
    return path


def test_the_new_folder_replaces_the_old_and_nothing_is_left_beside_it(tmp_path):
    out, new = _folder(tmp_path / "out", "old"), _folder(tmp_path / ".out.merging", "new")
    rundir.replace_folder(new, out)
    assert (out / "model.safetensors").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    out, new = _folder(tmp_path / "out", "old"), _folder(tmp_path / ".out.merging", "new")
    real = os.replace

    def fail_on_new(src, dst):
        if str(src) == str(new):
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(rundir.os, "replace", fail_on_new)
    with pytest.raises(OSError, match="disk full"):
        rundir.replace_folder(new, out)
    assert (out / "model.safetensors").read_text() == "old"
