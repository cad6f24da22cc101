"""Fine-tuning methods (full, LoRA, DoRA) and saving/loading/merging what they train.

An adapter folder is a standard peft folder (adapter_config.json + adapter_model.safetensors
+ tokenizer), so it loads with plain `PeftModel.from_pretrained` outside this toolkit.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from peft import PeftModel
from torch import nn

from finetune.config.schema import MethodSpec
from finetune.errors import UserError
from finetune.methods.full import prepare_full
from finetune.methods.lora import prepare_lora
from finetune.model import hf
from finetune.model.tokenizer import load_tokenizer

METHODS: dict[str, Callable[[nn.Module, MethodSpec], nn.Module]] = {
    "full": prepare_full,
    "lora": prepare_lora,
    "dora": prepare_lora,
}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def prepare(model: nn.Module, spec: MethodSpec) -> nn.Module:
    """The model ready to train with ``spec.kind``; report it with describe()."""
    try:
        method = METHODS[spec.kind]
    except KeyError:
        raise UserError(f"method.kind {spec.kind!r} is unknown; use one of {', '.join(METHODS)}") from None
    return method(model, spec)


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; shared (tied) tensors count once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def describe(model: nn.Module) -> str:
    trainable, total = count_trainable(model)
    share = 100.0 * trainable / total if total else 0.0
    return f"trainable {trainable:,} / {total:,} parameters ({share:.2f}%)"


def save_trained(
    model: nn.Module, tokenizer: Any, out_dir: str | Path, extra_files: Mapping[str, str] | None = None
) -> Path:
    """An adapter folder for peft models, a full model folder otherwise; extra text files alongside."""
    out = Path(out_dir)
    if isinstance(model, PeftModel):
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        if not (out / ADAPTER_WEIGHTS).is_file():
            raise RuntimeError(f"peft wrote no {ADAPTER_WEIGHTS} to {out}")
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
    else:
        hf.save_model(model, tokenizer, out)
    for name, text in (extra_files or {}).items():
        if Path(name).name != name:
            raise ValueError(f"extra file name {name!r} must be a plain file name, not a path")
        (out / name).write_text(text, encoding="utf-8")
    return out


def load_trained(path: str | Path, *, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """(model, tokenizer) from a save_trained folder: an adapter on its recorded base, or a full model."""
    folder = Path(path)
    if not (folder / ADAPTER_CONFIG).is_file():
        model = hf.load_model(str(folder), trust_remote_code=trust_remote_code)
        return model, load_tokenizer(folder, trust_remote_code=trust_remote_code)
    base = _adapter_base(folder)
    try:
        base_model = hf.load_model(base, trust_remote_code=trust_remote_code)
    except UserError as exc:
        raise UserError(
            f"adapter {folder}: its base model (base_model_name_or_path in {ADAPTER_CONFIG}) failed to load: {exc}"
        ) from None
    model = PeftModel.from_pretrained(base_model, str(folder))
    has_tokenizer = any((folder / name).is_file() for name in _TOKENIZER_FILES)
    return model, load_tokenizer(folder if has_tokenizer else base, trust_remote_code=trust_remote_code)


def _adapter_base(folder: Path) -> str:
    """The adapter's base model path, after refusing pickled adapter weights."""
    if not (folder / ADAPTER_WEIGHTS).is_file():
        pickled = folder / "adapter_model.bin"
        if pickled.is_file():
            raise UserError(f"refusing to load pickle weights from {pickled}; re-save the adapter as safetensors")
        raise UserError(f"adapter folder {folder} has no {ADAPTER_WEIGHTS}; copy the adapter weights into it")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{folder / ADAPTER_CONFIG} is not valid JSON: {exc}") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not base:
        raise UserError(
            f"{folder / ADAPTER_CONFIG} has no base_model_name_or_path; set it to the base model's folder"
        )
    return base


def merge(adapter_dir: str | Path, out_dir: str | Path, *, trust_remote_code: bool = False) -> Path:
    """Fold an adapter into its base and save a plain model folder (plus the adapter's extra json files)."""
    source = Path(adapter_dir)
    if not (source / ADAPTER_CONFIG).is_file():
        raise UserError(f"{source} has no {ADAPTER_CONFIG}, so there is no adapter to merge; it is already a full model")
    model, tokenizer = load_trained(source, trust_remote_code=trust_remote_code)
    out = hf.save_model(model.merge_and_unload(), tokenizer, out_dir)
    for extra in sorted(source.glob("*.json")):
        if extra.name != ADAPTER_CONFIG and not (out / extra.name).exists():
            shutil.copy2(extra, out / extra.name)
    return out
