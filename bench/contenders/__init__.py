"""The contenders: name -> (group, module, function, arguments), imported only in the child that runs it.

Groups are compared among themselves; a contender's module is imported lazily so a
machine without TRL still runs everything else (``available`` says what runs here).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Contender:
    group: str  # lora | full | pretrain | generate
    module: str  # under bench.contenders
    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # an optional package it cannot run without
    label: str = ""  # what the results table calls it

    def load(self) -> Callable[..., dict[str, Any]]:
        return getattr(importlib.import_module(f"bench.contenders.{self.module}"), self.function)


CONTENDERS: dict[str, Contender] = {
    "ours_lora_grouped": Contender(
        "lora", "ours", "lora", {"packed": False}, label="ft LoRA, length-grouped (default)"
    ),
    "ours_lora_packed": Contender("lora", "ours", "lora", {"packed": True}, label="ft LoRA, packed"),
    "trl_default": Contender("lora", "trl_peers", "sft", {"variant": "default"}, "trl", "TRL SFTTrainer, defaults"),
    "trl_packed_bfd": Contender(
        "lora", "trl_peers", "sft", {"variant": "bfd"}, "trl", "TRL, packing (best-fit, padding-free)"
    ),
    "trl_packed_wrapped": Contender(
        "lora", "trl_peers", "sft", {"variant": "wrapped"}, "trl", "TRL, packing (wrapped)"
    ),
    "bare_lora_grouped": Contender(
        "lora", "bare", "lora", {"packed": False}, label="bare PyTorch+peft, length-grouped"
    ),
    "bare_lora_packed": Contender("lora", "bare", "lora", {"packed": True}, label="bare PyTorch+peft, packed"),
    "ours_full": Contender("full", "ours", "full", label="ft full, length-grouped (default)"),
    "hf_trainer_full": Contender("full", "hf_peers", "trainer_full", label="HF Trainer full, group_by_length"),
    "ours_pretrain": Contender("pretrain", "ours", "pretrain", label="ft pretraining blocks"),
    "bare_pretrain": Contender("pretrain", "bare", "pretrain", label="bare PyTorch loop, same blocks"),
    "ours_generate": Contender("generate", "ours", "generate_batched", label="ft generate(), batched"),
    "hf_generate_one_by_one": Contender(
        "generate", "hf_peers", "generate_one_by_one", label="model.generate() one by one"
    ),
}


# bench.real_speed: LoRA with completion-only loss on a given model folder (Gemma 3 270M), fixed steps.
REAL_SPEED: dict[str, Contender] = {
    "real_ours": Contender(
        "real", "ours", "lora", {"packed": False}, label="ft LoRA (logits at scored positions), length-grouped"
    ),
    "real_ours_checkpointed": Contender(
        "real",
        "ours",
        "lora",
        {"packed": False, "checkpointing": True},
        label="the same + train.gradient_checkpointing",
    ),
    "real_bare_full_logits": Contender(
        "real",
        "bare",
        "lora",
        {"packed": False, "hf_loss": True},
        label="bare PyTorch+peft, model(**batch, labels=labels) (full logits)",
    ),
    "real_trl_completion": Contender(
        "real", "trl_peers", "sft", {"variant": "completion"}, "trl", "TRL SFTTrainer, completion_only_loss"
    ),
    "real_trl_completion_grouped": Contender(
        "real",
        "trl_peers",
        "sft",
        {"variant": "completion_grouped"},
        "trl",
        "TRL, completion_only_loss + group_by_length",
    ),
    "real_trl_completion_padding_free": Contender(
        "real",
        "trl_peers",
        "sft",
        {"variant": "completion_padding_free"},
        "trl",
        "TRL, completion_only_loss + padding_free",
    ),
}


def lookup(name: str) -> Contender:
    """A contender of either registry (the main benchmark's or bench.real_speed's)."""
    return CONTENDERS[name] if name in CONTENDERS else REAL_SPEED[name]


def available(names: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(names that can run here, {name: why not} for the rest)."""
    chosen = list(CONTENDERS) if names is None else names
    unknown = [n for n in chosen if n not in CONTENDERS and n not in REAL_SPEED]
    if unknown:
        raise ValueError(f"unknown contender {unknown[0]!r}; known: {', '.join(CONTENDERS)}")
    runnable, skipped = [], {}
    for name in chosen:
        needs = lookup(name).needs
        if needs and importlib.util.find_spec(needs) is None:
            skipped[name] = f"{needs} is not installed (pip install -e '.[bench]')"
        else:
            runnable.append(name)
    return runnable, skipped


def select(only: str | None) -> list[str]:
    """Contenders matching ``--only``: comma-separated names, groups (lora, full, ...) or name prefixes."""
    if not only:
        return list(CONTENDERS)
    picked: list[str] = []
    for token in (t.strip() for t in only.split(",") if t.strip()):
        hits = [n for n, c in CONTENDERS.items() if n == token or c.group == token or n.startswith(token)]
        if not hits:
            groups = sorted({c.group for c in CONTENDERS.values()})
            raise ValueError(
                f"--only {token!r} matches no contender; use a name ({', '.join(CONTENDERS)}) "
                f"or a group ({', '.join(groups)})"
            )
        picked += [n for n in hits if n not in picked]
    return picked
