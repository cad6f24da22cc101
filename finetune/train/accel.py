"""One place that turns the recipe's precision, distributed and tracker sections into an Accelerator.

Everything that accelerate would silently ignore or only fail on mid-run (bf16 on
a CPU, FSDP or DeepSpeed without GPUs, a tracker whose package is missing) is
checked here first and raised as a one-line ``UserError``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import Any

from finetune.config.schema import DistributedSpec, Recipe, TrainSpec
from finetune.errors import UserError

# train.log_with name -> the module it needs and how to get it
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


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


def validate_distributed(recipe: Recipe, processes: int) -> None:
    """Refuse, before any process starts, combinations that cannot run on this machine.

    ``processes`` is the number of processes on this machine (torchrun's nproc_per_node).
    """
    validate_train(recipe.train)  # precision and trackers are the run's; pretrain.train has neither
    validate_strategy(recipe.distributed, processes)


def validate_train(train: TrainSpec) -> None:
    resolve_precision(train.precision)
    for name in train.log_with:
        package = TRACKER_PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise UserError(f"train.log_with {name} needs the {package} package: pip install {package}")


def validate_strategy(distributed: DistributedSpec, processes: int) -> None:
    import torch

    cuda = torch.cuda.is_available()
    if distributed.config_file and not Path(distributed.config_file).is_file():
        raise UserError(
            f"distributed.config_file {distributed.config_file} does not exist; "
            "write one with `accelerate config` or remove the key"
        )
    if distributed.strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise UserError("distributed.strategy deepspeed needs the deepspeed package: pip install deepspeed")
    if distributed.strategy in ("fsdp", "deepspeed") and not cuda:
        # accelerate only shards on GPUs; on CPU it would quietly fall back to plain DDP.
        raise UserError(
            f"distributed.strategy {distributed.strategy} needs CUDA GPUs (accelerate ignores it on CPU); "
            "use strategy: ddp or auto on this machine"
        )
    if cuda and processes > torch.cuda.device_count():
        raise UserError(
            f"--processes {processes} is more than the {torch.cuda.device_count()} GPU(s) on this machine; "
            "use at most one process per GPU"
        )


def start_trackers(accelerator: Any, recipe: Any, run_dir: Any) -> None:
    """Experiment trackers named in train.log_with, writing under the run folder; the resolved recipe as hyperparameters."""
    if not recipe.train.log_with:
        return
    from accelerate.tracking import filter_trackers

    run_dir = Path(run_dir).resolve()
    tracker_env(list(recipe.train.log_with), run_dir)
    accelerator.project_configuration.set_directories(str(run_dir))
    accelerator.project_configuration.logging_dir = str(run_dir / "trackers")
    accelerator.log_with = filter_trackers(list(recipe.train.log_with), accelerator.logging_dir)
    accelerator.init_trackers(recipe.name, config=_flat(recipe.model_dump(mode="json")))


def tracker_env(names: list[str], run_dir: Path) -> None:
    """Keep trackers local: mlflow into a file store in the run folder, wandb offline (unless the user chose otherwise)."""
    if "mlflow" in names:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / "mlruns").as_uri())
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(run_dir))


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

    validate_train(train)
    validate_strategy(distributed, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if train.threads:
        torch.set_num_threads(train.threads)
    precision = resolve_precision(train.precision)
    if distributed.strategy in ("fsdp", "deepspeed") and "LOCAL_RANK" not in os.environ:
        _single_process_world()
    # Without cpu=True, accelerate on a CPU-only machine under torchrun sees a world of one
    # per process and trains them independently (seen with accelerate 1.15).
    cpu = not torch.cuda.is_available()
    kwargs: dict[str, Any] = {"cpu": cpu, "mixed_precision": {"fp32": "no"}.get(precision, precision)}
    kwargs.update(strategy_plugins(distributed))
    return Accelerator(**kwargs)


def leave_world() -> None:
    """Close this process's distributed group before exit.

    A gloo group left to interpreter teardown can abort the process ("terminate called
    without an active exception", exit 134) when another rank exits first, turning a
    clean exit 2 into a crash; seen in CI on a batch-size error raised by both ranks.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        from accelerate.state import AcceleratorState

        dist.destroy_process_group()
        AcceleratorState._reset_state(reset_partial_state=True)  # the next Accelerator here starts fresh


def _single_process_world() -> None:
    """accelerate applies FSDP/DeepSpeed only inside a launched world; `ft run` on one GPU makes a world of one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_WORLD_SIZE": "1",
    }.items():
        os.environ.setdefault(key, value)


def strategy_plugins(distributed: DistributedSpec) -> dict[str, Any]:
    """accelerate plugins for fsdp / deepspeed; ddp and auto need none, and a config file brings its own."""
    if distributed.config_file:
        return {}
    if distributed.strategy == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        return {
            "fsdp_plugin": FullyShardedDataParallelPlugin(
                sharding_strategy=distributed.fsdp_sharding.upper(),
                auto_wrap_policy="transformer_based_wrap"
                if distributed.fsdp_wrap == "transformer_block"
                else "size_based_wrap",
                cpu_offload=distributed.cpu_offload,
                use_orig_params=True,  # LoRA: frozen and trainable weights share a wrapped block
            )
        }
    if distributed.strategy == "deepspeed":
        from accelerate.utils import DeepSpeedPlugin

        return {
            "deepspeed_plugin": DeepSpeedPlugin(
                zero_stage=distributed.zero_stage,
                offload_optimizer_device="cpu" if distributed.cpu_offload else "none",
            )
        }
    return {}
