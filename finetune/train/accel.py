"""One place that turns the recipe's precision and distributed sections into an Accelerator."""
from __future__ import annotations

import os
from typing import Any

from finetune.config.schema import DistributedSpec, TrainSpec
from finetune.errors import UserError


def resolve_precision(precision: str) -> str:
    """auto -> bf16 on GPUs that support it, fp32 elsewhere (bf16 matmul on CPUs without it is ~100x slower)."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and not (cuda and torch.cuda.is_bf16_supported()):
        raise UserError("train.precision bf16 needs a GPU with bf16 support; use precision: auto or fp32")
    if precision == "fp16" and not cuda:
        raise UserError("train.precision fp16 needs a CUDA GPU; use precision: auto or fp32")
    return precision


def start_trackers(accelerator: Any, recipe: Any, run_dir: Any) -> None:
    """Experiment trackers named in train.log_with (offline by default); the resolved recipe as hyperparameters."""
    if recipe.train.log_with:
        accelerator.project_configuration.set_directories(str(run_dir))
        accelerator.init_trackers(recipe.name, config=_flat(recipe.model_dump(mode="json")))


def end_trackers(accelerator: Any) -> None:
    if getattr(accelerator, "trackers", None):
        accelerator.end_training()


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def make_accelerator(train: TrainSpec, distributed: DistributedSpec) -> Any:
    """An Accelerator for this process; under torchrun/accelerate launch on CPU it joins the gloo world."""
    import torch
    from accelerate import Accelerator

    if train.threads:
        torch.set_num_threads(train.threads)
    precision = resolve_precision(train.precision)
    multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # Without cpu=True, accelerate on a CPU-only machine under torchrun sees a world of one
    # per process and trains them independently (seen with accelerate 1.15).
    cpu = not torch.cuda.is_available()
    kwargs: dict[str, Any] = {"cpu": cpu, "mixed_precision": {"fp32": "no"}.get(precision, precision)}
    if train.log_with:
        kwargs["log_with"] = list(train.log_with)
    kwargs.update(strategy_plugins(distributed, multi_process))
    return Accelerator(**kwargs)


def strategy_plugins(distributed: DistributedSpec, multi_process: bool) -> dict[str, Any]:
    """accelerate plugins for fsdp / deepspeed; ddp and auto need none."""
    if distributed.strategy == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        return {"fsdp_plugin": FullyShardedDataParallelPlugin(
            sharding_strategy=distributed.fsdp_sharding.upper(),
            auto_wrap_policy="transformer_based_wrap" if distributed.fsdp_wrap == "transformer_block" else "size_based_wrap",
            cpu_offload=distributed.cpu_offload,
        )}
    if distributed.strategy == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise UserError("distributed.strategy deepspeed needs the deepspeed package: pip install deepspeed")
        from accelerate.utils import DeepSpeedPlugin

        return {"deepspeed_plugin": DeepSpeedPlugin(
            zero_stage=distributed.zero_stage,
            offload_optimizer_device="cpu" if distributed.cpu_offload else "none",
        )}
    return {}
