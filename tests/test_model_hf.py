"""Model-folder checks in finetune/model/hf.py: every bad folder is a one-line UserError, and
pickled code is refused without being unpickled."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from helpers_tiny import tiny_llama_model
from transformers import AutoConfig, LlamaForCausalLM

from finetune.errors import UserError
from finetune.model import hf


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a hostile .bin does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _write_pickle(path, marker, fmt: str) -> None:
    if fmt == "torch.save":
        torch.save({"weight": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny Llama saved with save_model (2 layers, width 32)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("llama")
    hf.save_model(tiny_llama_model(64, bos_token_id=1, eos_token_id=2), None, out)
    return out


def _copy_without_weights(src, dst):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


# ---------------------------------------------------------------- loading and saving


def test_save_model_writes_safetensors_and_load_model_round_trips(llama_dir, tmp_path):
    assert sorted(p.suffix for p in llama_dir.iterdir() if p.suffix in (".bin", ".safetensors")) == [".safetensors"]
    model = hf.load_model(str(llama_dir))
    reference = LlamaForCausalLM.from_pretrained(llama_dir)
    ids = torch.tensor([[3, 5, 7, 11, 13]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
    assert model.config._name_or_path == str(llama_dir.resolve())


def test_load_model_dtype_is_applied(llama_dir):
    model = hf.load_model(str(llama_dir), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_core_architecture_is_registered_for_load_model(tmp_path):
    from finetune.model.core import CoreConfig, CoreForCausalLM

    torch.manual_seed(0)
    hf.save_model(CoreForCausalLM(CoreConfig(vocab_size=50, width=32, layers=2, heads=4)), None, tmp_path)
    assert type(hf.load_model(str(tmp_path))).__name__ == "CoreForCausalLM"


# ---------------------------------------------------------------- bad folders


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"does not exist.*model\.path"):
        hf.load_model(str(tmp_path / "nowhere"))


def test_plausible_hub_id_goes_to_transformers_and_failure_is_a_user_error(monkeypatch):
    seen = []

    def offline(source, **kwargs):
        seen.append(source)
        raise OSError("We couldn't connect to the hub\nmore detail")

    monkeypatch.setattr(AutoConfig, "from_pretrained", offline)
    with pytest.raises(UserError, match=r"owner/tiny-model is not a local folder.*couldn't connect") as info:
        hf.load_model("owner/tiny-model")
    assert seen == ["owner/tiny-model"]
    assert "\n" not in str(info.value)


def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=r"has no config\.json"):
        hf.load_model(str(tmp_path))


def test_adapter_folder_points_to_load_trained(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match=r"no config\.json.*adapter.*load_trained"):
        hf.load_model(str(tmp_path))


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=r"is a file"):
        hf.load_model(str(tmp_path / "model.safetensors"))


def test_folder_without_weights(llama_dir, tmp_path):
    folder = _copy_without_weights(llama_dir, tmp_path / "empty")
    with pytest.raises(UserError, match=r"has no weights"):
        hf.load_model(str(folder))


def test_bin_only_folder_is_refused(llama_dir, tmp_path):
    folder = _copy_without_weights(llama_dir, tmp_path / "bin")
    torch.save({"model.embed_tokens.weight": torch.zeros(64, 32)}, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"refusing to load pickle weights from .*pytorch_model\.bin.*safetensors"):
        hf.load_model(str(folder))


def test_unknown_model_type_names_it_and_the_remote_code_key(llama_dir, tmp_path):
    folder = tmp_path / "alien"
    folder.mkdir()
    config = json.loads((llama_dir / "config.json").read_text())
    config["model_type"] = "no_such_arch"
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((llama_dir / "model.safetensors").read_bytes())
    with pytest.raises(UserError) as info:
        hf.load_model(str(folder))
    message = str(info.value)
    assert "'no_such_arch'" in message and "model.trust_remote_code is off" in message
    assert "\n" not in message


def test_known_but_not_causal_lm_config_is_a_user_error(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    DistilBertModel(DistilBertConfig(vocab_size=30, dim=16, n_layers=1, n_heads=2, hidden_dim=16)).save_pretrained(
        tmp_path
    )
    with pytest.raises(UserError, match=r"model_type 'distilbert'.*causal LM"):
        hf.load_model(str(tmp_path))


# ---------------------------------------------------------------- pickled code


@pytest.mark.parametrize("fmt", ["torch.save", "raw pickle"])
def test_payload_is_real_but_safe_torch_load_refuses_it(tmp_path, fmt):
    marker = tmp_path / "pwned"
    payload = tmp_path / "weights.pt"
    # Control: plain unpickling of the same payload does run the command.
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()
    marker.unlink()

    _write_pickle(payload, marker, fmt)
    with pytest.raises(UserError, match=r"weights\.pt is not a plain tensor file; refusing to unpickle code"):
        hf.safe_torch_load(payload)
    assert not marker.exists()


def test_safe_torch_load_reads_plain_tensors(tmp_path):
    torch.save({"w": torch.arange(4.0)}, tmp_path / "plain.pt")
    assert torch.equal(hf.safe_torch_load(tmp_path / "plain.pt")["w"], torch.arange(4.0))


def test_pickle_named_pytorch_model_bin_is_refused_without_opening(llama_dir, tmp_path, monkeypatch):
    folder = _copy_without_weights(llama_dir, tmp_path / "hostile")
    marker = tmp_path / "pwned"
    _write_pickle(folder / "pytorch_model.bin", marker, "torch.save")
    opened = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a))
    with pytest.raises(UserError, match=r"refusing to load pickle weights"):
        hf.load_model(str(folder))
    assert not marker.exists() and opened == []


def test_unreadable_config_is_a_user_error(llama_dir, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    (folder / "model.safetensors").write_bytes((llama_dir / "model.safetensors").read_bytes())
    with pytest.raises(UserError, match=r"config"):
        hf.load_model(str(folder))
