"""LoRA and DoRA adapters through peft.

Target names are checked against the model before peft sees them: peft's own error for a
typo is a long traceback, ours names the typo and lists the names that would work.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from finetune.config.schema import MethodSpec
from finetune.errors import UserError
from finetune.methods.full import top_block_indices
from finetune.methods.targets import default_targets

ADAPTABLE = (nn.Linear, Conv1D)


def prepare_lora(model: nn.Module, spec: MethodSpec) -> PeftModel:
    """Wrap ``model`` with a LoRA (or, for kind "dora", weight-decomposed LoRA) adapter.

    With ``freeze.train_top_blocks: k`` the adapter sits in the top k blocks only: nothing below them needs a
    gradient, so autograd stops there and a step skips the backward of the lower blocks.
    """
    targets, layers = resolve_targets(model, spec.targets), {}
    if spec.freeze.train_top_blocks is not None:
        name, top = top_block_indices(model, spec.freeze.train_top_blocks)
        layers = {"layers_to_transform": top, "layers_pattern": name.rsplit(".")[-1]}
        if isinstance(targets, str):  # peft takes a layer range only with named targets: the blocks' Linear layers
            targets = leaf_names([n for n, m in model.get_submodule(name).named_modules() if isinstance(m, ADAPTABLE)])
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets,
        use_dora=spec.kind == "dora",
        task_type="CAUSAL_LM",
        **layers,
    )
    with quiet_checkpointing_alias():
        return get_peft_model(model, config)


@contextmanager
def quiet_checkpointing_alias() -> Iterator[None]:
    """peft reads ``model.is_gradient_checkpointing`` whenever it wraps or loads an adapter; transformers 5 made
    that a deprecated alias that warns on every read, so every LoRA run on a Hugging Face model printed a
    FutureWarning nobody can act on (our core answers under the old name itself)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def resolve_targets(model: nn.Module, targets: list[str] | str) -> list[str] | str:
    """ "default" -> the architecture's table entry; "all-linear" as is; a list after checking it."""
    where = "method.targets"
    if targets == "default":
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        targets = default_targets(model_type)
        where = f"the default targets for model_type {model_type!r} (finetune/methods/targets.py)"
    if isinstance(targets, str):
        return targets
    check_targets(model, targets, where)
    return list(targets)


def check_targets(model: nn.Module, targets: list[str], where: str = "method.targets") -> None:
    """Each target must name (or end a dotted name of) a Linear/Conv1D module, as peft matches them."""
    names = [name for name, module in model.named_modules() if isinstance(module, ADAPTABLE)]
    if not targets:
        raise UserError(f"{where} is empty; list module names such as {', '.join(leaf_names(names))}")
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in names):
            raise UserError(
                f"{where}: {target!r} matches no Linear/Conv1D module of this model; "
                f"available names: {', '.join(leaf_names(names))}"
            )


def leaf_names(names: list[str]) -> list[str]:
    """Last dotted component of each name, deduplicated, in model order."""
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in names))
