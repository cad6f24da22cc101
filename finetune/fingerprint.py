"""Content fingerprints: sha256 of the files a run reads, so a resume or a cache hit can prove they did not change.

Settings alone do not identify data: a CSV rewritten at the same path, or a base
model's weights replaced in place, keep every recipe field equal. Hashing a 10 GB
base on every run would cost minutes, so each digest is remembered in a small
JSON file under the ft cache folder, keyed by the file's real path and its stat
(size, mtime_ns, ctime_ns, inode, device). A file is only re-read when one of
those moved. ctime and inode are in the key because mtime alone can be set back
(``cp -p``, archives, downloads that keep the server's time); ctime cannot.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

CACHE_FILE = "fingerprints.json"
CHUNK = 1 << 20
# A file changed within this many seconds of being hashed may change again without its
# timestamps moving (they tick coarsely); such a digest is used but not remembered.
RACY_SECONDS = 2.0
MODEL_PATTERNS = (
    "*.safetensors",
    "*.bin",
    "*.index.json",
    "config.json",
    "adapter_config.json",
    "*.py",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read once per (path, stat) and remembered in the cache folder."""
    real = os.path.realpath(path)
    started = time.time()
    stat = os.stat(real)
    key = _stat_key(stat)
    entry = _read_cache().get(real)
    if isinstance(entry, dict) and entry.get("stat") == key and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = hash_file(Path(real))
    newest = max(stat.st_mtime_ns, stat.st_ctime_ns) / 1e9
    if newest < started - RACY_SECONDS and _stat_key(os.stat(real)) == key:
        cache = _read_cache()  # re-read: another process may have added digests meanwhile
        cache[real] = {"stat": key, "sha256": digest}
        _write_cache(cache)
    return digest


def hash_file(path: Path) -> str:
    """Read the whole file (the expensive part every cache hit avoids)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def model_files(folder: str | Path) -> list[Path]:
    """The files of a model folder whose bytes shape training: weights, config, tokenizer, remote code.

    Top level only (Hugging Face model folders are flat); checkpoints, logs and
    READMEs beside them do not change what loads.
    """
    root = Path(folder)
    found = {p for pattern in MODEL_PATTERNS for p in root.glob(pattern) if p.is_file()}
    return sorted(found)


def model_digests(path: str | Path | None, role: str) -> dict[str, str]:
    """``{"<role> <folder>/<file>": sha256}`` for a local model folder; {} for a hub id (known by id + revision)."""
    if not path or not Path(path).is_dir():
        return {}
    return {f"{role} {Path(path) / p.name}": file_sha256(p) for p in model_files(path)}


def source_digests(path: str | Path | None, role: str) -> dict[str, str]:
    """``{"<role> <path>": sha256}`` for a local file, or for every file under a local folder; {} otherwise.

    A path that is neither (a hub dataset id, or no path: generated data) is
    identified by its settings, which the caller fingerprints already.
    """
    if not path:
        return {}
    p = Path(path)
    if p.is_file():
        return {f"{role} {path}": file_sha256(p)}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not _hidden(f.relative_to(p)))
        return {f"{role} {p / f.relative_to(p)}": file_sha256(f) for f in files}
    return {}


def describe_changes(saved: dict[str, str], now: dict[str, str], limit: int = 3) -> list[str]:
    """One phrase per file whose content differs, e.g. ``data file my.csv changed since the checkpoint (sha256 ab12… -> cd34…)``."""
    out = []
    for name in sorted(set(saved) | set(now)):
        old, new = saved.get(name), now.get(name)
        if old == new:
            continue
        if old is None:
            out.append(f"{name} is new since the checkpoint")
        elif new is None:
            out.append(f"{name} is gone since the checkpoint")
        else:
            out.append(f"{name} changed since the checkpoint (sha256 {old[:12]}… -> {new[:12]}…)")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more file(s)"]
    return out


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _cache_path() -> Path:
    from finetune.paths import cache_root

    return cache_root() / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    """The remembered digests; an unreadable cache is an empty one (it only saves time)."""
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache: dict[str, Any]) -> None:
    """Atomic replace (a per-process temporary name, so ranks writing at once never mix bytes); entries of
    files that are gone are dropped so the file does not grow forever. Failing to write only costs a re-hash."""
    cache = {k: v for k, v in cache.items() if os.path.exists(k)}
    path = _cache_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache, indent=0, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
