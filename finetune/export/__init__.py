"""`ft export`: a trained model as one GGUF file (llama.cpp, Ollama) or a standalone safetensors folder (vLLM, SGLang).

Both start the same way: the adapter, if any, is merged into its base with peft (the load `ft merge`
uses), and our core becomes the Llama it is equivalent to (core_to_llama), so the output needs neither
ft nor peft to run. Outputs are written under a temporary name and renamed into place: a crash leaves
no half-written file where a user expects a model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from finetune.data.format import TEMPLATE_FILE
from finetune.errors import UserError

FORMATS = ("gguf", "safetensors")
GGUF_DTYPES = ("f32", "f16", "q8_0")
SAFETENSORS_DTYPES = ("f32", "f16", "bf16")
DEFAULT_GGUF_DTYPE = "f16"
KEPT_FILES = (TEMPLATE_FILE,)  # ft's own prompt templates, so `ft generate` renders exported models the same way


def export_model(
    model_dir: str | Path, fmt: str, out: str | Path, dtype: str | None = None, force: bool = False
) -> Path:
    """Export the model or adapter folder ``model_dir`` (a run's ``model/``) to ``out``; returns ``out``."""
    source, out = Path(model_dir), Path(out)
    _check_options(fmt, dtype)
    if fmt == "gguf":
        _check_gguf_target(out, source, force)
    else:
        _check_folder_target(out, source, force)
    model, tokenizer = load_standalone(source)
    if fmt == "gguf":
        from finetune.export.gguf_writer import describe, write_gguf

        described = describe(model, str(source))
        return write_gguf(described, tokenizer, dtype or DEFAULT_GGUF_DTYPE, out, _name(source), str(source))
    return write_folder(model, tokenizer, source, out, dtype)


def _check_options(fmt: str, dtype: str | None) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not an export format; use one of {', '.join(FORMATS)}")
    allowed = GGUF_DTYPES if fmt == "gguf" else SAFETENSORS_DTYPES
    if dtype is not None and dtype not in allowed:
        raise UserError(f"--dtype {dtype!r} does not apply to --format {fmt}; use one of {', '.join(allowed)}")


def load_standalone(source: Path) -> tuple[Any, Any]:
    """(model, tokenizer) with any adapter merged and our core turned into a Llama, in eval mode."""
    from peft import PeftModel

    from finetune.export.core_to_llama import core_to_llama
    from finetune.methods import load_trained

    model, tokenizer = load_trained(source)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    if model.config.model_type == "ft_core":
        model = core_to_llama(model, str(source))
    return model.eval(), tokenizer


def _name(source: Path) -> str:
    """general.name: the run's name when the source is a run's model folder, else the folder's."""
    resolved = source.resolve()
    return (
        resolved.parent.name if resolved.name == "model" and (resolved.parent / "run.json").is_file() else resolved.name
    )


def _check_gguf_target(out: Path, source: Path, force: bool) -> None:
    """A file path outside any run and outside the source; an existing file only with --force."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path such as {out / 'model.gguf'}")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist; create it first")
    target = out.resolve()
    protected = source.resolve()
    if protected in target.parents:
        raise UserError(f"--out {out} lies inside the model folder {source}; write the GGUF file elsewhere")
    run = next((p for p in target.parents if (p / "run.json").is_file()), None)
    if run is not None:
        raise UserError(f"--out {out} is inside the run folder {run}; write the GGUF file outside any run")
    if out.exists() and not force:
        raise UserError(f"--out {out} already exists; choose a new file name, or pass --force to replace it")


def _check_folder_target(out: Path, source: Path, force: bool) -> None:
    """The rules `ft merge` applies to its --out (never a run, the source or an adapter's base)."""
    from finetune.methods import ADAPTER_CONFIG, adapter_base, check_merge_target

    base = adapter_base(source) if (source / ADAPTER_CONFIG).is_file() else str(source)
    check_merge_target(out, source, base, force)


def write_folder(model: Any, tokenizer: Any, source: Path, out: Path, dtype: str | None) -> Path:
    """A plain Hugging Face folder (config, safetensors, tokenizer) that vLLM/SGLang load without ft."""
    import torch

    from finetune.methods import copy_notices
    from finetune.model import hf
    from finetune.rundir import replace_folder

    if dtype is not None:
        model = model.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype])
    tmp = out.parent / f".{out.name}.exporting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf.save_model(model, tokenizer, tmp)
        for name in KEPT_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        copy_notices(source, tmp)  # the base's licence notice (Gemma's NOTICE) travels with its weights
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
