"""Load and save any Hugging Face causal LM without ever unpickling code.

A model folder from the internet is untrusted input: `.bin` weights are pickles that can run
arbitrary code when loaded, and `trust_remote_code` runs the folder's Python. So every local
folder is checked here, before transformers sees it, and each problem becomes a one-line
`UserError` that says what is wrong and how to fix it.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

import finetune.model.core  # noqa: F401  (registers model_type "ft_core" with the Auto classes)
from finetune.errors import UserError

# "owner/name": what a hub id looks like; anything else that does not exist is a typo'd path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")


def load_model(
    path: str, *, trust_remote_code: bool = False, revision: str | None = None, dtype: Any = None
) -> PreTrainedModel:
    """A causal LM from a local folder (checked first) or a hub id, from safetensors only."""
    source = _source(path)
    config = _load_config(source, trust_remote_code, revision)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "revision": revision, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        return AutoModelForCausalLM.from_pretrained(source, config=config, **kwargs)
    except (ValueError, KeyError) as exc:
        raise UserError(
            f"cannot load {path} (model_type {config.model_type!r}) as a causal LM: {_first_line(exc)}"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot load model {path}: {_first_line(exc)}") from None


def load_config(path: str, *, trust_remote_code: bool = False, revision: str | None = None) -> Any:
    """The model's config alone: cheap, so settings can be checked against it before any work."""
    return _load_config(_source(path), trust_remote_code, revision)


def _source(path: str) -> str:
    from finetune.model.gguf_import import resolve_model_path

    path = resolve_model_path(path)  # a .gguf file: its converted folder (converted once, cached by content)
    folder = Path(path).expanduser()
    if folder.exists():
        check_model_folder(folder)
        # An absolute path is what adapters record as their base, so they load from any directory.
        return str(folder.resolve())
    if _HUB_ID.match(str(path)):
        return str(path)
    raise UserError(f"model folder {path} does not exist; fix model.path (a local folder or a hub id owner/name)")


def check_model_folder(folder: Path) -> None:
    """Refuse folders transformers would fail on obscurely, or load by unpickling."""
    if not folder.is_dir():
        raise UserError(f"model path {folder} is a file; point model.path at the folder holding config.json")
    if not (folder / "config.json").is_file():
        hint = (
            "; it holds a LoRA/DoRA adapter: load it with finetune.methods.load_trained or merge it first"
            if (folder / "adapter_config.json").is_file()
            else "; point model.path at the folder written by save_pretrained"
        )
        raise UserError(f"model folder {folder} has no config.json{hint}")
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        return
    pickles = sorted(p.name for pattern in _PICKLE_WEIGHTS for p in folder.glob(pattern))
    if pickles:
        raise UserError(
            f"refusing to load pickle weights from {folder / pickles[0]}; convert them to safetensors "
            "(e.g. load once in a trusted environment and save_pretrained(safe_serialization=True))"
        )
    raise UserError(f"model folder {folder} has no weights (*.safetensors); copy the model's weight files into it")


def _load_config(source: str, trust_remote_code: bool, revision: str | None):
    """The config step is where an unknown model_type surfaces; say which one and why."""
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, revision=revision)
    except (ValueError, KeyError) as exc:
        model_type = _declared_model_type(Path(source) / "config.json")
        # Without a readable model_type, transformers' own first line is the best explanation.
        what = f"model_type {model_type!r}" if model_type else f"its config ({_first_line(exc)})"
        raise UserError(
            f"model {source}: {what} is not an architecture transformers "
            f"{transformers.__version__} knows{_remote_code_hint(trust_remote_code)}"
        ) from None
    except OSError as exc:
        if Path(source).is_dir():
            raise UserError(f"cannot read the config of model folder {source}: {_first_line(exc)}") from None
        raise UserError(
            f"model {source} is not a local folder and could not be fetched from the hub: {_first_line(exc)}"
        ) from None


def _declared_model_type(config_file: Path) -> str | None:
    """model_type as written in config.json (a hub id has no local file: None)."""
    try:
        return json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _remote_code_hint(trust_remote_code: bool) -> str:
    if trust_remote_code:
        return ""
    return (
        " and model.trust_remote_code is off; set model.trust_remote_code: true only if you trust "
        "the Python code shipped with that model, or upgrade transformers"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def save_model(model: PreTrainedModel, tokenizer: Any, out_dir: str | Path) -> Path:
    """Weights as safetensors (never pickles), plus config and tokenizer, loadable by load_model."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if not any(out.glob("*.safetensors")):
        raise RuntimeError(f"save_pretrained wrote no safetensors file to {out}")
    return out


def safe_torch_load(path: str | Path) -> Any:
    """torch.load for tensor files only: pickled code is an error, never executed."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise UserError(f"{path} is not a plain tensor file; refusing to unpickle code") from None
