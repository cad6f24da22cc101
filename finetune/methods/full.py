"""Full fine-tuning, optionally with the lower blocks and/or the token embeddings frozen.

Freezing is architecture-agnostic: the transformer blocks are the model's largest
`nn.ModuleList`, and "above the blocks" means the siblings registered after that list
(the final norm) plus the output head.
"""

from __future__ import annotations

import logging

from torch import nn

from finetune.config.schema import MethodSpec
from finetune.errors import UserError

log = logging.getLogger(__name__)


def prepare_full(model: nn.Module, spec: MethodSpec) -> nn.Module:
    """Make every parameter trainable, then apply ``spec.freeze``."""
    model.requires_grad_(True)
    if spec.freeze.train_top_blocks is not None:
        train_only_top_blocks(model, spec.freeze.train_top_blocks)
    if spec.freeze.embeddings:
        freeze_input_embeddings(model)
    return model


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The largest ModuleList (by length, then parameters): the stack of transformer blocks."""
    lists = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.ModuleList)]
    if not lists:
        raise UserError(
            f"{type(model).__name__} has no list of transformer blocks (nn.ModuleList); "
            "method.freeze.train_top_blocks needs one, remove it to train all parameters"
        )
    return max(lists, key=lambda item: (len(item[1]), sum(p.numel() for p in item[1].parameters())))


def top_block_indices(model: nn.Module, k: int) -> tuple[str, list[int]]:
    """The block list's name and the indices of its top ``k`` blocks (method.freeze.train_top_blocks)."""
    name, blocks = find_blocks(model)
    if k > len(blocks):
        raise UserError(
            f"method.freeze.train_top_blocks={k} but the model has {len(blocks)} blocks; use at most {len(blocks)}"
        )
    return name, list(range(len(blocks) - k, len(blocks)))


def train_only_top_blocks(model: nn.Module, k: int) -> None:
    """Train the top ``k`` blocks, the modules after the block stack (final norm) and the LM head."""
    name, top = top_block_indices(model, k)
    blocks = model.get_submodule(name)
    model.requires_grad_(False)
    for i in top:
        blocks[i].requires_grad_(True)
    for module in _modules_after(model, name):
        module.requires_grad_(True)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        head.requires_grad_(True)
        if _is_tied(model):
            log.warning("the output head is tied to the input embeddings, so the embeddings train too")


def freeze_input_embeddings(model: nn.Module) -> None:
    """Freeze the token embedding table; a tied output head shares it and freezes with it."""
    embeddings = model.get_input_embeddings()
    embeddings.requires_grad_(False)
    if _is_tied(model):
        log.warning("freeze.embeddings: the output head is tied to the input embeddings, so it is frozen too")


def _modules_after(model: nn.Module, blocks_name: str) -> list[nn.Module]:
    """Siblings registered after the block list in its parent, e.g. the final norm."""
    parent_name, _, leaf = blocks_name.rpartition(".")
    parent = model.get_submodule(parent_name)
    children = list(parent.named_children())
    index = [child for child, _ in children].index(leaf)
    return [module for _, module in children[index + 1 :]]


def _is_tied(model: nn.Module) -> bool:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return head is not None and head.weight is model.get_input_embeddings().weight
