"""Turn a GGUF file (llama.cpp's one-file format) into a Hugging Face model folder, once.

People bring a real pretrained model as a single ``.gguf``. transformers reads it
(``from_pretrained(dir, gguf_file=name)``), but slowly: the tokenizer is rebuilt from the
metadata and every tensor is dequantized, minutes each for a 270M model on two cores. So the
file is converted once into a plain folder (safetensors, config, tokenizer) under
``<ft cache>/gguf/<sha256>/`` and every later load is an ordinary, fast ``from_pretrained``.

The folder is keyed by the file's content (its cached sha256), so a file replaced in place
converts again and two paths to the same bytes share one folder. It is written into a
temporary folder and renamed into place only when complete, under a file lock, so a kill
mid-conversion leaves no half folder and two processes never convert the same file twice.
Where the weights came from (file, hash, licence terms) is written beside them in
``ft_gguf_source.json``, and a run records it in run.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from finetune.errors import UserError

CACHE_DIR = "gguf"
SOURCE_FILE = "ft_gguf_source.json"
NOTICE_FILE = "NOTICE"
GEMMA_TERMS = "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
GEMMA_NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n"
# The general.* keys that say what the file is and under which terms it may be used.
_METADATA_KEYS = (
    "general.architecture",
    "general.name",
    "general.basename",
    "general.size_label",
    "general.license",
    "general.license.name",
    "general.license.link",
    "general.file_type",
)

Say = Callable[[str], Any]


def _note(message: str) -> None:
    """Notes go to stderr when no one says where: `ft generate MODEL.gguf ...` keeps stdout for the completion."""
    print(message, file=sys.stderr)


def is_gguf(path: str | Path | None) -> bool:
    """Whether a model path names a GGUF file (by its suffix: a folder of that name is an error later)."""
    return bool(path) and str(path).lower().endswith(".gguf")


def resolve_model_path(path: str, say: Say = _note) -> str:
    """``path`` as loaders take it: a .gguf file becomes its converted folder (converted now if needed)."""
    if not is_gguf(path):
        return path
    return str(import_gguf(path, say=say))


def resolve_for_run(path: str, run_dir: Path, accelerator: Any) -> Path:
    """A run's base model folder; for a .gguf file its conversion, with where it came from recorded in run.json."""
    if not is_gguf(path):
        return Path(path)
    folder = import_gguf(path, say=accelerator.print)
    if accelerator.is_main_process:
        from finetune.rundir import RUN_FILE, read_run_info, write_json

        this_file = str(Path(path).expanduser().resolve())  # the same bytes may have been converted from elsewhere
        provenance = {**(source_info(folder) or {}), "source_file": this_file, "converted_folder": str(folder)}
        write_json(run_dir / RUN_FILE, {**read_run_info(run_dir), "base_model": provenance})
    return folder


def import_gguf(path: str | Path, out: str | Path | None = None, say: Say = _note) -> Path:
    """The Hugging Face folder of the GGUF file ``path``: the cached one, or ``out`` when given.

    ``out`` (``ft import FILE --out DIR``) must be new or empty, or hold this very file's import already.
    """
    from finetune.fingerprint import file_sha256

    source = _check_file(Path(path).expanduser())
    sha256 = file_sha256(source)  # remembered by (path, stat): a cache hit reads neither weights nor metadata
    cached = cache_dir(sha256)
    target = Path(out).expanduser() if out else cached
    with _locked(sha256):
        if _complete(target, sha256):
            say(f"model {source.name}: converted earlier from GGUF (sha256 {sha256[:12]}…), using {target}")
            return target
        _clear_leftovers(target, ours=out is None)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise UserError(f"--out {target} already holds files; choose a new or empty folder")
        if _complete(cached, sha256):
            _place(lambda tmp: shutil.copytree(cached, tmp, dirs_exist_ok=True), target)
            say(f"model {source.name}: copied its earlier conversion {cached} to {target}")
        else:
            _convert(source, read_info(source, sha256), target, say)
    return target


def cache_dir(sha256: str) -> Path:
    from finetune.paths import cache_root

    return cache_root() / CACHE_DIR / sha256


def source_info(folder: str | Path) -> dict[str, Any] | None:
    """The provenance a converted folder records (``ft_gguf_source.json``), or None for any other folder."""
    try:
        data = json.loads((Path(folder) / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------- reading the file


def _check_file(path: Path) -> Path:
    if path.is_dir():
        raise UserError(f"model path {path} is a folder named .gguf; point it at the .gguf file itself")
    if not path.is_file():
        raise UserError(f"GGUF file {path} does not exist; fix model.path (the .gguf file, or a model folder)")
    return path.resolve()


def read_info(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """What the file says it is (architecture, name, licence, quantization) and its sha256: the run card's source."""
    from finetune.fingerprint import file_sha256

    meta = _read_metadata(path)
    info: dict[str, Any] = {
        "source_file": str(path),
        "sha256": sha256 or file_sha256(path),
        "size_bytes": path.stat().st_size,
        "architecture": meta.get("general.architecture"),
        "name": meta.get("general.name") or meta.get("general.basename"),
        "license": meta.get("general.license") or meta.get("general.license.name"),
        "license_link": meta.get("general.license.link"),
        "quantization": _file_type_name(meta.get("general.file_type")),
    }
    info["terms"] = licence_terms(info)
    return info


def _read_metadata(path: Path) -> dict[str, Any]:
    """The general.* keys; a file that cannot be parsed is a one-line error naming it.

    transformers' reader skips the vocabulary's string arrays (seconds on a 262k-token file, where
    gguf.GGUFReader decodes every entry: two minutes on a busy machine); gguf's is the fallback.
    """
    try:
        fields = _general_keys(path)
    except Exception as exc:  # ValueError, struct.error, IndexError, UnicodeDecodeError, ... on damaged files
        raise UserError(
            f"{path} is not a readable GGUF file ({_first_line(exc)}); re-download or re-export it"
        ) from None
    if not fields.get("general.architecture"):
        raise UserError(f"{path} has no general.architecture in its metadata; it is not a model GGUF file")
    return fields


def _general_keys(path: Path) -> dict[str, Any]:
    try:
        from transformers.integrations.gguf import read_gguf_metadata
    except ImportError:
        import gguf

        reader = gguf.GGUFReader(str(path))
        return {key: reader.fields[key].contents() for key in _METADATA_KEYS if key in reader.fields}
    metadata, _ = read_gguf_metadata(str(path))
    return {key: metadata[key] for key in _METADATA_KEYS if key in metadata}


def _file_type_name(value: Any) -> str | None:
    """llama.cpp's file type (e.g. MOSTLY_Q4_K_M) by name: the quantization the weights were stored in."""
    import gguf

    try:
        return gguf.LlamaFileType(int(value)).name
    except (TypeError, ValueError):
        return None


def licence_terms(info: dict[str, Any]) -> str:
    """The terms the weights come under, in words: Gemma's for Gemma files, else what the file states."""
    said = " ".join(str(info.get(k) or "") for k in ("license", "name", "architecture")).lower()
    if "gemma" in said:
        return GEMMA_TERMS
    if info.get("license"):
        link = f" ({info['license_link']})" if info.get("license_link") else ""
        return f"{info['license']}{link}, as stated in the file's metadata"
    return "not stated in the file; check the terms where you obtained it"


# ---------------------------------------------------------------- converting


def _convert(source: Path, info: dict[str, Any], target: Path, say: Say) -> None:
    """Load once through transformers (tokenizer, dequantized fp32 weights), save as safetensors, rename into place."""
    from tqdm.auto import tqdm

    say(
        f"model {source.name}: converting GGUF ({info['architecture']}, {info['quantization'] or 'unknown type'}, "
        f"{info['size_bytes'] / 1e6:.0f} MB, sha256 {info['sha256'][:12]}…) to a Hugging Face folder, once"
    )
    started = time.monotonic()
    loaded: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        with tqdm(total=3, desc=f"import {source.name}", unit="step") as bar:
            bar.set_postfix_str("tokenizer")
            tokenizer = _load_tokenizer(source)
            bar.update()
            bar.set_postfix_str("weights")
            loaded["model"] = _load_model(source)
            bar.update()
            bar.set_postfix_str("saving")
            _save(loaded["model"], tokenizer, tmp, info)
            bar.update()

    _place(build, target)
    model = loaded["model"]
    params = sum(p.numel() for p in model.parameters())
    say(
        f"model {source.name}: converted in {time.monotonic() - started:.0f}s to {target} "
        f"({info['architecture']} -> {model.config.model_type}, {params / 1e6:.1f}M parameters, fp32); "
        f"licence: {info['terms']}"
    )


def _load_tokenizer(source: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    except (ValueError, KeyError, OSError) as exc:
        raise UserError(f"cannot build a tokenizer from GGUF file {source}: {_first_line(exc)}") from None


def _load_model(source: Path) -> Any:
    """Every tensor dequantized to fp32: a plain dense model that trains and saves like any other."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(source.parent),
            gguf_file=source.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise UserError(f"cannot load the weights of GGUF file {source}: {_first_line(exc)}") from None
    # save_pretrained refuses a model that still carries its quantizer; dequantized, it has nothing left to say
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(source)
    return model


def _save(model: Any, tokenizer: Any, folder: Path, info: dict[str, Any]) -> None:
    from finetune.model.hf import save_model

    save_model(model, tokenizer, folder)
    if info["terms"] == GEMMA_TERMS:  # the terms ask redistributed copies to carry this notice
        (folder / NOTICE_FILE).write_text(GEMMA_NOTICE, encoding="utf-8")
    record = {**info, "converted": time.strftime("%Y-%m-%dT%H:%M:%S"), "model_type": model.config.model_type}
    (folder / SOURCE_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")  # last: marks it complete


def _place(fill: Callable[[Path], Any], target: Path) -> None:
    """Fill a temporary sibling of ``target`` and rename it into place: a kill leaves no half folder."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        if target.is_dir():  # an empty --out folder
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _clear_leftovers(target: Path, ours: bool) -> None:
    """Remove what a killed conversion left (its temporary folder; in the cache, anything incomplete).

    Only called under the lock, so no live process is writing these.
    """
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    if ours and target.exists():
        shutil.rmtree(target)


def _complete(folder: Path, sha256: str) -> bool:
    saved = source_info(folder)
    return bool(saved) and saved.get("sha256") == sha256 and any(folder.glob("*.safetensors"))


@contextlib.contextmanager
def _locked(sha256: str) -> Iterator[None]:
    """One converter per file content at a time (ranks of a launched run, two runs on one file); the OS frees
    the lock when its holder dies, so a killed conversion never blocks the next."""
    import fcntl

    lock = cache_dir(sha256).with_name(f".{sha256}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
