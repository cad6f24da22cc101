"""The training loop shared by pretraining and fine-tuning.

accelerate places the model and wraps it for DDP/FSDP; everything a resume must
reproduce is either saved in the checkpoint or a pure function of it (data order
from (seed, epoch), learning rate from the step). Gradients are token-weighted:
every scored token counts the same whatever the micro-batch, accumulation or
process it lands in.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from finetune.config.schema import TrainSpec
from finetune.data.tokenized import TokenizedData, count_label_tokens
from finetune.errors import StopRequested, UserError
from finetune.fingerprint import describe_changes
from finetune.model.loss import scored_loss
from finetune.rundir import package_versions
from finetune.train import checkpoint as ckpt
from finetune.train.batching import collate, micro_batches, steps_for_epoch
from finetune.train.schedule import lr_at


class NonFiniteError(RuntimeError):
    """Too many non-finite steps in a row; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    steps: int
    train_loss: float | None
    val_loss: float | None
    tokens: int  # non-padding input tokens processed (all processes)
    padding_fraction: float
    wall_time: float
    skipped_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        return d


@contextlib.contextmanager
def _StopFlag() -> Iterator[Any]:
    """SIGTERM / Ctrl-C only set a flag while training; the loop acts on it at the next step boundary.

    Within a run this is the run's own handler (finetune.stopping, installed by pipeline.run), so a
    signal that arrived during setup is still seen here; a bare call to train() gets a handler of its
    own. A second signal means the user will not wait: KeyboardInterrupt stops the run now (the last
    complete checkpoint stays usable).
    """
    from finetune.stopping import StopSignals, active

    run_wide = active()
    with contextlib.nullcontext(run_wide) if run_wide is not None else StopSignals() as stop, stop.deferred():
        yield stop


def make_optimizer(params: list[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.learning_rate, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.learning_rate, betas=spec.betas, weight_decay=spec.weight_decay)


def plan_total_steps(n_examples: int, spec: TrainSpec, world: int) -> tuple[int, int]:
    """(steps per epoch, total steps); too little data for one step is a user error."""
    per_step = spec.grad_accum * world
    steps_per_epoch = (n_examples // spec.batch_size) // per_step
    if steps_per_epoch == 0:
        raise UserError(
            f"{n_examples} training examples are fewer than one optimizer step needs "
            f"(batch_size {spec.batch_size} x grad_accum {spec.grad_accum} x processes {world}); "
            "lower train.batch_size or add data"
        )
    total = spec.max_steps or max(1, int(spec.epochs * steps_per_epoch))
    return steps_per_epoch, total


def train(
    model: torch.nn.Module,
    data: TokenizedData,
    val: TokenizedData | None,
    spec: TrainSpec,
    run_dir: Path,
    accelerator: Any,
    *,
    seed: int,
    fingerprint: dict[str, Any],
    resume: bool,
    group_by_length: bool = True,
    forward_kwargs: dict[str, Any] | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` in place; checkpoints and metrics.jsonl go to ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    steps_per_epoch, total = plan_total_steps(len(data), spec, world)
    accelerator.print(f"{desc}: global batch {spec.batch_size} per process x {spec.grad_accum} grad_accum x "
                      f"{world} processes = {spec.batch_size * spec.grad_accum * world} sequences per step; {total} steps")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, spec)
    # the saved position indexes a plan of batch_size x grad_accum steps; another shape would skip or replay data
    fingerprint = {**fingerprint, "batch_size": spec.batch_size, "grad_accum": spec.grad_accum,
                   "optimizer": spec.optimizer}
    state = {"step": 0, "epoch": 0, "pos": 0, "samples": 0, "tokens": 0, "pad_tokens": 0, "skipped": 0}
    if main:
        ckpt.clean_partial(run_dir)
    accelerator.wait_for_everyone()
    latest = ckpt.latest_checkpoint(run_dir) if resume else None
    saved_step = -1
    if latest is not None:
        loaded = ckpt.load_checkpoint(latest, rank)
        _check_fingerprint(loaded["state"]["fingerprint"], fingerprint, latest)
        _load_trainable(model, loaded["weights"])
        optimizer.load_state_dict(loaded["optimizer"])
        state.update(loaded["state"]["progress"])
        ckpt.set_rng_state(loaded["rng"])
        saved_step = state["step"]
        accelerator.print(f"resumed from {latest} (step {state['step']} of {total})")
    model.train()  # from_pretrained returns eval mode: dropout and gradient checkpointing need training mode
    model, optimizer = accelerator.prepare(model, optimizer)
    metrics_path = run_dir / "metrics.jsonl"
    if main:
        _truncate_metrics(metrics_path, state["step"])
    choice_ids = torch.tensor(_pad_sets(data.choice_sets), dtype=torch.long, device=accelerator.device) if data.choice_sets else None
    lengths = [len(e["input_ids"]) for e in data.examples]
    terms = [count_label_tokens([e]) for e in data.examples]  # each step's normaliser, summed from these
    per_step = spec.grad_accum * world
    history: list[dict[str, Any]] = []
    last_loss, val_loss, bad_streak = None, None, 0
    started = time.perf_counter()
    progress = _progress(total, state["step"], desc, disable=not main)

    def save() -> None:
        nonlocal saved_step
        unwrapped = accelerator.unwrap_model(model)
        weights = {n: p for n, p in unwrapped.named_parameters() if p.requires_grad}
        ckpt.save_checkpoint(
            run_dir, state["step"], weights, optimizer.state_dict(),
            {"progress": state, "fingerprint": fingerprint, "versions": package_versions(), "total_steps": total},
            rank=rank, is_main=main, barrier=accelerator.wait_for_everyone, keep=spec.save_total_limit,
        )
        saved_step = state["step"]

    with _StopFlag() as stop:
        while state["step"] < total:
            plan = steps_for_epoch(micro_batches(lengths, spec.batch_size, seed, state["epoch"], group_by_length), per_step)
            for pos in range(state["pos"], len(plan)):
                if state["step"] >= total:
                    break
                step_batches = plan[pos]
                n_scored = sum(terms[i] for mb in step_batches for i in mb)
                lr = lr_at(state["step"], total, spec)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                mine = step_batches[rank::world]
                loss_sum = torch.zeros((), device=accelerator.device)
                for i, mb in enumerate(mine):
                    batch = collate([data.examples[j] for j in mb], data.pad_id)
                    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                    sync = contextlib.nullcontext() if i == len(mine) - 1 else accelerator.no_sync(model)
                    with sync, accelerator.autocast():
                        s, _ = scored_loss(model, _inputs(batch), batch["labels"], batch.get("choice_index"), choice_ids,
                                           batch.get("loss_weight"), forward_kwargs)
                        accelerator.backward(s * (world / max(1, n_scored)))
                    loss_sum += s.detach()
                    real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
                    state["tokens"] += real
                    state["pad_tokens"] += batch["input_ids"].numel() - real
                step_loss = float(accelerator.reduce(loss_sum, reduction="sum")) / max(1, n_scored)
                norm = accelerator.clip_grad_norm_(params, spec.max_grad_norm or float("inf"))
                norm = float(norm) if norm is not None else 0.0
                finite = math.isfinite(step_loss) and math.isfinite(norm)
                if finite:
                    optimizer.step()
                    bad_streak = 0
                else:
                    bad_streak += 1
                    state["skipped"] += 1
                    accelerator.print(f"step {state['step'] + 1}: non-finite loss {step_loss} or grad norm {norm}; "
                                      "update skipped, weights unchanged")
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                state["pos"] = pos + 1
                state["samples"] += sum(len(mb) for mb in step_batches)
                last_loss = step_loss if math.isfinite(step_loss) else last_loss
                record = {"step": state["step"], "epoch": state["epoch"], "loss": step_loss, "lr": lr, "grad_norm": norm}
                if not finite:
                    record["skipped"] = True
                if bad_streak >= spec.max_bad_steps:
                    _append(metrics_path, record, main, accelerator, desc)
                    kept = ckpt.latest_checkpoint(run_dir)
                    raise NonFiniteError(
                        f"{bad_streak} non-finite steps in a row (last at step {state['step']}); stopped. "
                        f"The last good checkpoint is kept ({kept or 'none written yet'}); "
                        "lower train.learning_rate or check the data"
                    )
                history.append(record)
                if state["step"] % spec.log_every == 0 or state["step"] == total or not finite:
                    elapsed = time.perf_counter() - started
                    record["tokens_per_s"] = round(state["tokens"] * world / max(elapsed, 1e-9), 1)
                    _append(metrics_path, record, main, accelerator, desc)
                    progress.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                progress.update(1)
                if val is not None and spec.eval_every and state["step"] % spec.eval_every == 0 and state["step"] < total:
                    val_loss = evaluate_loss(model, val, spec.batch_size, accelerator)
                    _append(metrics_path, {"step": state["step"], "val_loss": val_loss, "val_ppl": _ppl(val_loss)}, main, accelerator, desc)
                stop_now = _any_rank(stop.raised, accelerator)
                if (spec.save_every and state["step"] % spec.save_every == 0) or stop_now:
                    save()
                if stop_now:
                    progress.close()
                    raise StopRequested(f"stopped at step {state['step']}; checkpoint saved in {run_dir / 'checkpoints'}")
            else:
                state["epoch"] += 1
                state["pos"] = 0
    progress.close()
    if val is not None:
        val_loss = evaluate_loss(model, val, spec.batch_size, accelerator)
        if not (main and _logged_val(metrics_path, state["step"])):  # a finished run resumed logged it already
            _append(metrics_path, {"step": state["step"], "val_loss": val_loss, "val_ppl": _ppl(val_loss)}, main, accelerator, desc)
    if saved_step != state["step"]:  # evaluation changes no state: a checkpoint of this step is already final
        save()
    total_tokens = int(accelerator.reduce(torch.tensor(state["tokens"], device=accelerator.device), reduction="sum"))
    total_pad = int(accelerator.reduce(torch.tensor(state["pad_tokens"], device=accelerator.device), reduction="sum"))
    return TrainResult(
        steps=state["step"], train_loss=last_loss, val_loss=val_loss, tokens=total_tokens,
        padding_fraction=total_pad / max(1, total_tokens + total_pad), wall_time=time.perf_counter() - started,
        skipped_steps=state["skipped"], history=history,
    )


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, data: TokenizedData, batch_size: int, accelerator: Any) -> float:
    """Token-weighted mean loss over ``data``, sharded across processes."""
    was_training = model.training
    model.eval()
    choice_ids = torch.tensor(_pad_sets(data.choice_sets), dtype=torch.long, device=accelerator.device) if data.choice_sets else None
    idx = list(range(len(data.examples)))[accelerator.process_index::accelerator.num_processes]
    total = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    for start in range(0, len(idx), batch_size):
        batch = collate([data.examples[i] for i in idx[start:start + batch_size]], data.pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            s, c = scored_loss(model, _inputs(batch), batch["labels"], batch.get("choice_index"), choice_ids,
                               batch.get("loss_weight"), {"use_cache": False})
        total += s
        count += c
    model.train(was_training)
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(count, reduction="sum")
    return float(total / count.clamp(min=1))


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model inputs; packed batches go without attention_mask, since Hugging Face models (transformers 5.24)
    keep packed examples apart only from position_ids alone. Pads sit at the right, so causal attention never sees them."""
    keys = ("input_ids", "position_ids") if "position_ids" in batch else ("input_ids", "attention_mask")
    return {k: batch[k] for k in keys if k in batch}


def _pad_sets(sets: list[list[int]]) -> list[list[int]]:
    width = max(len(s) for s in sets)
    return [s + [-1] * (width - len(s)) for s in sets]


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def _any_rank(flag: bool, accelerator: Any) -> bool:
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor(1.0 if flag else 0.0, device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum") > 0)


def _append(path: Path, record: dict[str, Any], main: bool, accelerator: Any = None, prefix: str = "train") -> None:
    """metrics.jsonl (main process only) and the same scalars to any configured trackers."""
    if main:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    if accelerator is not None and getattr(accelerator, "trackers", None):
        accelerator.log({f"{prefix}/{k}": v for k, v in record.items() if k != "step"}, step=record["step"])


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines past the checkpoint so the log equals an uninterrupted run's.

    A run killed while appending leaves half a line; it is dropped with the rest.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines() if step > 0 else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def _logged_val(path: Path, step: int) -> bool:
    """Whether metrics.jsonl already holds the validation line of ``step`` (written before that step's checkpoint)."""
    if not path.exists():
        return False
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step") == step and "val_loss" in record:
            return True
    return False


def _load_trainable(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    named = dict(model.named_parameters())
    missing = [n for n, p in named.items() if p.requires_grad and n not in weights]
    unknown = [n for n in weights if n not in named]
    if missing or unknown:
        raise ckpt.CheckpointError(
            f"checkpoint does not match the model: missing {missing[:3]}, unexpected {unknown[:3]}"
        )
    with torch.no_grad():
        for n, w in weights.items():
            named[n].copy_(w)


def _check_fingerprint(saved: dict[str, Any], now: dict[str, Any], where: Path) -> None:
    """Refuse a resume whose settings or file contents differ from the checkpoint's, naming each one.

    ``content`` maps "data file my.csv" (etc.) to sha256; a checkpoint written before
    content was recorded has none, and its files are then taken as they are.
    """
    if "content" not in saved:
        now = {k: v for k, v in now.items() if k != "content"}
    differ = sorted(k for k in set(saved) | set(now) if k != "content" and saved.get(k) != now.get(k))
    files = describe_changes(saved.get("content") or {}, now.get("content") or {})
    if not differ and not files:
        return
    settings = (f"{', '.join(differ)} changed since it was written ("
                + "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ) + ")") if differ else ""
    raise UserError(
        f"cannot resume from {where}: " + "; ".join(x for x in (settings, *files) if x)
        + "; use a new output folder or restore " + " and ".join(["the recipe"] * bool(differ) + ["the files"] * bool(files))
    )


def _progress(total: int, initial: int, desc: str, disable: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, leave=False, mininterval=1.0)
