"""Fine-tuning methods (full, LoRA, DoRA) and saving/loading/merging what they train.

An adapter folder is a standard peft folder (adapter_config.json + adapter_model.safetensors
+ tokenizer), so it loads with plain `PeftModel.from_pretrained` outside this toolkit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from peft import PeftModel
from torch import nn

from finetune.config.schema import MethodSpec
from finetune.data.format import TEMPLATE_FILE
from finetune.errors import UserError
from finetune.methods.full import prepare_full
from finetune.methods.lora import prepare_lora
from finetune.model import hf
from finetune.model.tokenizer import load_tokenizer
from finetune.rundir import replace_folder

METHODS: dict[str, Callable[[nn.Module, MethodSpec], nn.Module]] = {
    "full": prepare_full,
    "lora": prepare_lora,
    "dora": prepare_lora,
}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
# Licence notices a base's terms require to travel with every copy of its weights (Gemma's NOTICE, written by
# the GGUF import; the LICENSE a Hugging Face folder may carry).
NOTICE_FILES = ("NOTICE", "LICENSE")


def prepare(model: nn.Module, spec: MethodSpec) -> nn.Module:
    """The model ready to train with ``spec.kind``; report it with describe()."""
    try:
        method = METHODS[spec.kind]
    except KeyError:
        raise UserError(f"method.kind {spec.kind!r} is unknown; use one of {', '.join(METHODS)}") from None
    return method(model, spec)


def enable_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder layer's activations in backward instead of keeping them: less memory, slower steps.

    On Gemma 3 270M LoRA (bench.real_speed) it cut ft's peak RSS by about a quarter and cost about a quarter of its
    tokens/s. The embedding's output is made to require grad so a frozen base still sends gradients into the
    checkpointed layers (transformers' own recipe for adapters).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()


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
    base = Path(str(getattr(model, "name_or_path", "") or ""))
    if str(base) and base.is_dir() and base.resolve() != out.resolve():
        copy_notices(base, out)  # a fine-tuned copy (or adapter) of Gemma carries its terms' NOTICE too
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
    base = adapter_base(folder)
    try:
        base_model = hf.load_model(base, trust_remote_code=trust_remote_code)
    except UserError as exc:
        raise UserError(
            f"adapter {folder}: its base model (base_model_name_or_path in {ADAPTER_CONFIG}) failed to load: {exc}"
        ) from None
    from finetune.methods.lora import quiet_checkpointing_alias

    with quiet_checkpointing_alias():
        model = PeftModel.from_pretrained(base_model, str(folder))
    has_tokenizer = any((folder / name).is_file() for name in _TOKENIZER_FILES)
    return model, load_tokenizer(folder if has_tokenizer else base, trust_remote_code=trust_remote_code)


def load_for_eval(path: str | Path, *, trust_remote_code: bool = False) -> tuple[nn.Module, Any, dict[str, Any] | None]:
    """(model, tokenizer, saved templates) of a trained folder: what evaluation and generation need to render
    prompts exactly as training did. The templates are None for a folder ft did not train (plain HF models)."""
    folder = Path(path)
    model, tokenizer = load_trained(folder, trust_remote_code=trust_remote_code)
    return model, tokenizer, saved_templates(folder)


def saved_templates(folder: Path) -> dict[str, Any] | None:
    """The folder's TEMPLATE_FILE ({"default": template, "sources": {name: template}}), checked, or None."""
    path = Path(folder) / TEMPLATE_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); delete it to use the tokenizer's own template") from None
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("default"), dict)
        and isinstance(saved.get("sources", {}), dict)
    ):
        raise UserError(
            f"{path} needs a 'default' template and a 'sources' mapping; delete it to use the tokenizer's own template"
        )
    return {**saved, "sources": saved.get("sources", {})}  # a hand-written file may give only the default


def adapter_base(folder: Path) -> str:
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
        raise UserError(f"{folder / ADAPTER_CONFIG} has no base_model_name_or_path; set it to the base model's folder")
    return base


def merge(
    adapter_dir: str | Path, out_dir: str | Path, *, force: bool = False, trust_remote_code: bool = False
) -> Path:
    """Fold an adapter into its base and save a plain model folder (plus the adapter's extra json files).

    The model is written to a temporary folder beside ``out_dir`` and renamed into place, so a crash
    leaves no half model. ``out_dir`` is refused when it holds anything (unless ``force``), and always
    when it is, or holds, the adapter or its base, lies in a run folder, or is an adapter folder.
    """
    source = Path(adapter_dir)
    if not (source / ADAPTER_CONFIG).is_file():
        raise UserError(
            f"{source} has no {ADAPTER_CONFIG}, so there is no adapter to merge; it is already a full model"
        )
    out = Path(out_dir)
    check_merge_target(out, source, adapter_base(source), force)
    model, tokenizer = load_trained(source, trust_remote_code=trust_remote_code)
    tmp = out.parent / f".{out.name}.merging-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf.save_model(model.merge_and_unload(), tokenizer, tmp)
        for extra in sorted(source.glob("*.json")):
            if extra.name != ADAPTER_CONFIG and not (tmp / extra.name).exists():
                shutil.copy2(extra, tmp / extra.name)
        copy_notices(source, tmp)
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def copy_notices(source: Path, dest: Path) -> list[str]:
    """Copy the licence notices of ``source`` (a model or adapter folder) into ``dest``; the names copied.

    A merged or exported model is a copy of its base's weights, so the notice its terms require (Gemma's Terms of
    Use say every copy carries the NOTICE) goes with it. An adapter folder's own file wins over its base's.
    """
    folders = [source]
    if (source / ADAPTER_CONFIG).is_file():
        folders.append(Path(adapter_base(source)))
    copied = []
    for name in NOTICE_FILES:
        found = next((folder / name for folder in folders if (folder / name).is_file()), None)
        if found is not None:
            shutil.copy2(found, dest / name)
            copied.append(name)
    return copied


def check_merge_target(out: Path, adapter: Path, base: str, force: bool) -> None:
    """Refuse an ``--out`` whose replacement would lose a model, a run or the merge's own inputs (one line each)."""
    target = out.resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder path for the merged model")
    protected = [("the adapter being merged", adapter.resolve())]
    if Path(base).exists():
        protected.append(("the adapter's base model", Path(base).resolve()))
    for what, folder in protected:
        if target == folder or folder in target.parents or target in folder.parents:
            raise UserError(f"--out {out} is or contains {what} ({folder}); write the merged model to a new folder")
    run = next((p for p in (target, *target.parents) if (p / "run.json").is_file()), None)
    if run is not None:
        raise UserError(f"--out {out} is inside the run folder {run}; write the merged model outside any run")
    if (out / ADAPTER_CONFIG).is_file():
        raise UserError(
            f"--out {out} is an adapter folder; a merged model must not be mixed into it: choose a new folder"
        )
    if out.is_dir() and any(out.iterdir()):
        held = _run_inside(out)
        if held is not None:
            raise UserError(f"--out {out} holds the run folder {held}; write the merged model to a new folder")
        if not force:
            raise UserError(f"--out {out} already holds files; choose a new folder, or pass --force to replace it")


def _run_inside(folder: Path, depth: int = 3) -> Path | None:
    """A run folder (run.json) at most ``depth`` levels below ``folder``, which --force must not delete."""
    for found in folder.glob("run.json"):
        return found.parent
    if depth == 0:
        return None
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            hit = _run_inside(child, depth - 1)
            if hit is not None:
                return hit
    return None
