"""The training loop shared by pretraining and fine-tuning.

accelerate places the model and wraps it for DDP/FSDP; everything a resume must
reproduce is either saved in the checkpoint or a pure function of it (data order
from (seed, epoch), learning rate from the step). Gradients are token-weighted:
every scored token counts the same whatever the micro-batch, accumulation or
process it lands in.

``train()`` reads top to bottom like litgpt's ``fit()``: set up (optimizer, resume),
then for each optimizer step: run it, guard it, log, evaluate, save, check for a stop.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import torch

from finetune.config.schema import TrainSpec
from finetune.data.mixing import Mixture
from finetune.data.pack import packed_inputs
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


@dataclass
class Progress:
    """Where training stands: what a checkpoint's state.json keeps under "progress", so a resume continues exactly.

    ``pos`` indexes the epoch's plan of optimizer steps (a pure function of seed and epoch), so it is the
    only data position a resume needs. Token counts are this process's own.
    """

    step: int = 0  # optimizer steps done
    epoch: int = 0
    pos: int = 0  # the next step's index in this epoch's plan
    samples: int = 0  # sequences consumed (all processes)
    tokens: int = 0  # non-padding input tokens (this process)
    pad_tokens: int = 0  # padding tokens (this process)
    skipped: int = 0  # non-finite steps whose update was skipped
    # non-finite steps in a row; not saved (checkpoints never held it), so a resumed run starts a fresh streak
    bad_streak: int = field(default=0, metadata={"saved": False})

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("saved", True)}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Progress:
        """A checkpoint's progress; keys an older checkpoint lacks start at 0, keys unknown here are ignored."""
        names = {f.name for f in fields(cls) if f.metadata.get("saved", True)}
        return cls(**{k: int(v) for k, v in saved.items() if k in names})


@dataclass
class _Run:
    """What the parts of one train() call share; set up once, then only the checkpoint and result fields move."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    accelerator: Any
    spec: TrainSpec
    data: TokenizedData
    run_dir: Path
    fingerprint: dict[str, Any]
    total: int
    desc: str
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    choice_ids: torch.Tensor | None = None
    objective: Any = None  # a preference objective (train/preference.py); None: the SFT loss
    probe: Any = None  # model -> numbers logged beside each validation loss (eval.retention's general perplexity)
    terms: list[int] = field(default_factory=list)  # scored terms per example: each step's loss normaliser
    saved_step: int = -1  # the step of the newest checkpoint this call wrote or resumed from
    last_loss: float | None = None  # the last finite training loss
    val_loss: float | None = None
    started: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index


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
    mixture: Mixture | None = None,
    objective: Any = None,
    probe: Any = None,
) -> TrainResult:
    """Train ``model`` in place; checkpoints and metrics.jsonl go to ``run_dir``.

    With a ``mixture`` each epoch trains on its draw of the sources (data.sources[].proportion), not on every example.
    An ``objective`` (train/preference.py) replaces the SFT loss: it collates and scores pairs, one term each.
    """
    run = _set_up(model, data, spec, run_dir, accelerator, fingerprint, forward_kwargs, desc, mixture)
    run.objective = objective
    run.probe = probe  # probe(model) -> {name: number}, measured with every validation loss and logged on its line
    progress = _resume(run) if resume else Progress()
    _prepare(run, progress)
    lengths = [len(e["input_ids"]) for e in data.examples]
    bar = _progress_bar(run.total, progress.step, desc, disable=not run.main)
    with _StopFlag() as stop:
        for pos, step_batches in _steps(progress, lengths, spec, seed, group_by_length, run.world, run.total, mixture):
            loss, lr, norm = _run_step(run, progress, step_batches)
            record = _advance(run, progress, pos, step_batches, loss, lr, norm)
            if run.objective is not None:
                record.update(run.objective.take_stats(run.accelerator))
            _guard(run, progress, record)
            run.history.append(record)
            _log(run, progress, record, bar)
            _maybe_eval(run, progress, val)
            _maybe_save_or_stop(run, progress, stop, bar)
    bar.close()
    _finish(run, progress, val)
    return _result(run, progress)


# ---------------------------------------------------------------- set-up and resume


def _set_up(
    model: torch.nn.Module,
    data: TokenizedData,
    spec: TrainSpec,
    run_dir: Path,
    accelerator: Any,
    fingerprint: dict[str, Any],
    forward_kwargs: dict[str, Any] | None,
    desc: str,
    mixture: Mixture | None = None,
) -> _Run:
    """Plan the steps (refusing too little data), build the optimizer and clear half-written checkpoints."""
    run_dir.mkdir(parents=True, exist_ok=True)
    world = accelerator.num_processes
    _, total = plan_total_steps(mixture.per_epoch if mixture else len(data), spec, world)
    accelerator.print(
        f"{desc}: global batch {spec.batch_size} per process x {spec.grad_accum} grad_accum x "
        f"{world} processes = {spec.batch_size * spec.grad_accum * world} sequences per step; {total} steps"
    )
    params = [p for p in model.parameters() if p.requires_grad]
    # the saved position indexes a plan of batch_size x grad_accum steps; another shape would skip or replay data
    fingerprint = {
        **fingerprint,
        "batch_size": spec.batch_size,
        "grad_accum": spec.grad_accum,
        "optimizer": spec.optimizer,
    }
    run = _Run(
        model=model,
        optimizer=make_optimizer(params, spec),
        params=params,
        accelerator=accelerator,
        spec=spec,
        data=data,
        run_dir=run_dir,
        fingerprint=fingerprint,
        total=total,
        desc=desc,
        forward_kwargs=forward_kwargs or {},
    )
    if run.main:
        ckpt.clean_partial(run_dir)
    accelerator.wait_for_everyone()
    return run


def _resume(run: _Run) -> Progress:
    """Weights, optimizer, progress and RNG states of the latest complete checkpoint, if any and if it fits."""
    latest = ckpt.latest_checkpoint(run.run_dir)
    if latest is None:
        return Progress()
    loaded = ckpt.load_checkpoint(latest, run.rank)
    _check_fingerprint(loaded["state"]["fingerprint"], run.fingerprint, latest)
    _load_trainable(run.model, loaded["weights"])
    run.optimizer.load_state_dict(loaded["optimizer"])
    progress = Progress.from_dict(loaded["state"]["progress"])
    ckpt.set_rng_state(loaded["rng"])
    run.saved_step = progress.step
    run.accelerator.print(f"resumed from {latest} (step {progress.step} of {run.total})")
    return progress


def _prepare(run: _Run, progress: Progress) -> None:
    """Hand model and optimizer to accelerate; cut the log back to the resumed step; tensors the steps reuse."""
    run.model.train()  # from_pretrained returns eval mode: dropout and gradient checkpointing need training mode
    run.model, run.optimizer = run.accelerator.prepare(run.model, run.optimizer)
    if run.main:
        _truncate_metrics(run.metrics_path, progress.step)
    run.choice_ids = _choice_tensor(run.data, run.accelerator.device)
    count = run.objective.terms if run.objective is not None else lambda e: count_label_tokens([e])
    run.terms = [count(e) for e in run.data.examples]
    run.started = time.perf_counter()


def _steps(
    progress: Progress,
    lengths: list[int],
    spec: TrainSpec,
    seed: int,
    group_by_length: bool,
    world: int,
    total: int,
    mixture: Mixture | None = None,
) -> Iterator[tuple[int, list[list[int]]]]:
    """(position, micro-batches) of each optimizer step still to run, from the saved position on.

    An epoch's plan is a pure function of (seed, epoch), so a resumed run rebuilds it and starts at
    ``progress.pos``. The caller moves ``pos`` past each step it runs; the epoch moves on only when the
    next step is asked for, so a checkpoint closing an epoch holds (epoch, end of its plan).
    """
    while progress.step < total:
        pool = mixture.epoch_indices(seed, progress.epoch) if mixture else None
        batches = micro_batches(lengths, spec.batch_size, seed, progress.epoch, group_by_length, pool)
        plan = steps_for_epoch(batches, spec.grad_accum * world)
        for pos in range(progress.pos, len(plan)):
            if progress.step >= total:
                return
            yield pos, plan[pos]
        progress.epoch += 1
        progress.pos = 0


# ---------------------------------------------------------------- one optimizer step


def _run_step(run: _Run, progress: Progress, step_batches: list[list[int]]) -> tuple[float, float, float]:
    """Forward and backward over this process's share of the step, clip, and update if all is finite.

    Returns (mean loss over the step's scored terms on all processes, learning rate, gradient norm).
    """
    n_scored = sum(run.terms[i] for mb in step_batches for i in mb)
    lr = lr_at(progress.step, run.total, run.spec)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    loss_sum = _accumulate(run, progress, step_batches[run.rank :: run.world], n_scored)
    loss = float(run.accelerator.reduce(loss_sum, reduction="sum")) / max(1, n_scored)
    norm = run.accelerator.clip_grad_norm_(run.params, run.spec.max_grad_norm or float("inf"))
    norm = float(norm) if norm is not None else 0.0
    if _finite(loss, norm):
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss, lr, norm


def _accumulate(run: _Run, progress: Progress, mine: list[list[int]], n_scored: int) -> torch.Tensor:
    """Backward over each micro-batch, scaled so the step's gradient is the mean over all its scored terms.

    Gradients are synchronised across processes on the last micro-batch only. Returns the summed loss.
    """
    accelerator = run.accelerator
    loss_sum = torch.zeros((), device=accelerator.device)
    for i, mb in enumerate(mine):
        examples = [run.data.examples[j] for j in mb]
        batch = _to_device(_collate(run.objective, examples, run.data.pad_id), accelerator.device)
        sync = contextlib.nullcontext() if i == len(mine) - 1 else accelerator.no_sync(run.model)
        with sync, accelerator.autocast():
            if run.objective is None:
                s, _ = batch_loss(run.model, batch, run.choice_ids, run.forward_kwargs)
            else:
                s = run.objective.loss(run.model, batch, accelerator.unwrap_model)
            accelerator.backward(s * (run.world / max(1, n_scored)))
        loss_sum += s.detach()
        _count_tokens(progress, batch)
    return loss_sum


def batch_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    choice_ids: torch.Tensor | None,
    forward_kwargs: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, scored weight) of one collated batch: the one place training and evaluation run the model."""
    return scored_loss(
        model,
        _inputs(batch),
        batch["labels"],
        batch.get("choice_index"),
        choice_ids,
        batch.get("loss_weight"),
        forward_kwargs,
    )


def _collate(objective: Any, examples: list[Any], pad_id: int) -> dict[str, torch.Tensor]:
    """The objective's batch (pairs: chosen rows then rejected rows), or the SFT batch."""
    return objective.collate(examples, pad_id) if objective is not None else collate(examples, pad_id)


def _finite(loss: float, norm: float) -> bool:
    """Whether a step may update the weights: a NaN/inf loss or gradient norm would poison them."""
    return math.isfinite(loss) and math.isfinite(norm)


def _count_tokens(progress: Progress, batch: dict[str, torch.Tensor]) -> None:
    real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    progress.tokens += real
    progress.pad_tokens += batch["input_ids"].numel() - real


def _advance(
    run: _Run, progress: Progress, pos: int, step_batches: list[list[int]], loss: float, lr: float, norm: float
) -> dict[str, Any]:
    """Count the step done (a non-finite one as skipped, naming it) and return its metrics record."""
    finite = _finite(loss, norm)
    if finite:
        progress.bad_streak = 0
    else:
        progress.bad_streak += 1
        progress.skipped += 1
        run.accelerator.print(
            f"step {progress.step + 1}: non-finite loss {loss} or grad norm {norm}; update skipped, weights unchanged"
        )
    progress.step += 1
    progress.pos = pos + 1
    progress.samples += sum(len(mb) for mb in step_batches)
    run.last_loss = loss if math.isfinite(loss) else run.last_loss
    record = {"step": progress.step, "epoch": progress.epoch, "loss": loss, "lr": lr, "grad_norm": norm}
    if not finite:
        record["skipped"] = True
    return record


def _guard(run: _Run, progress: Progress, record: dict[str, Any]) -> None:
    """Stop after ``train.max_bad_steps`` non-finite steps in a row, logging the last one; checkpoints stay as they are."""
    if progress.bad_streak < run.spec.max_bad_steps:
        return
    _append(run.metrics_path, record, run.main, run.accelerator, run.desc)
    kept = ckpt.latest_checkpoint(run.run_dir)
    raise NonFiniteError(
        f"{progress.bad_streak} non-finite steps in a row (last at step {progress.step}); stopped. "
        f"The last good checkpoint is kept ({kept or 'none written yet'}); "
        "lower train.learning_rate or check the data"
    )


# ---------------------------------------------------------------- log, evaluate, save, stop


def _log(run: _Run, progress: Progress, record: dict[str, Any], bar: Any) -> None:
    """Every ``log_every`` steps, the last step and every skipped one go to metrics.jsonl with the token rate."""
    if progress.step % run.spec.log_every == 0 or progress.step == run.total or record.get("skipped"):
        elapsed = time.perf_counter() - run.started
        record["tokens_per_s"] = round(progress.tokens * run.world / max(elapsed, 1e-9), 1)
        _append(run.metrics_path, record, run.main, run.accelerator, run.desc)
        bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
    bar.update(1)


def _maybe_eval(run: _Run, progress: Progress, val: TokenizedData | None) -> None:
    """Validation loss every ``eval_every`` steps; the last step's comes after training (``_finish``)."""
    every = run.spec.eval_every
    if val is None or not every or progress.step % every != 0 or progress.step >= run.total:
        return
    run.val_loss = evaluate_loss(run.model, val, run.spec.batch_size, run.accelerator, run.objective)
    _append_val(run, progress.step)


def _maybe_save_or_stop(run: _Run, progress: Progress, stop: Any, bar: Any) -> None:
    """A checkpoint every ``save_every`` steps, and on a stop request from any process, which then ends the run."""
    stop_now = _any_rank(stop.raised, run.accelerator)  # a collective: every process calls it every step
    every = run.spec.save_every
    if (every and progress.step % every == 0) or stop_now:
        _save(run, progress)
    if stop_now:
        bar.close()
        raise StopRequested(f"stopped at step {progress.step}; checkpoint saved in {run.run_dir / 'checkpoints'}")


def _save(run: _Run, progress: Progress) -> None:
    unwrapped = run.accelerator.unwrap_model(run.model)
    weights = {n: p for n, p in unwrapped.named_parameters() if p.requires_grad}
    state = {
        "progress": progress.to_dict(),
        "fingerprint": run.fingerprint,
        "versions": package_versions(),
        "total_steps": run.total,
    }
    ckpt.save_checkpoint(
        run.run_dir,
        progress.step,
        weights,
        run.optimizer.state_dict(),
        state,
        rank=run.rank,
        is_main=run.main,
        barrier=run.accelerator.wait_for_everyone,
        keep=run.spec.save_total_limit,
    )
    run.saved_step = progress.step


def _finish(run: _Run, progress: Progress, val: TokenizedData | None) -> None:
    """Final validation loss and a checkpoint of the last step, unless one is there already."""
    if val is not None:
        run.val_loss = evaluate_loss(run.model, val, run.spec.batch_size, run.accelerator, run.objective)
        if not (run.main and _logged_val(run.metrics_path, progress.step)):  # a finished run resumed logged it already
            _append_val(run, progress.step)
    if run.saved_step != progress.step:  # evaluation changes no state: a checkpoint of this step is already final
        _save(run, progress)


def _result(run: _Run, progress: Progress) -> TrainResult:
    tokens = _sum_over_ranks(progress.tokens, run.accelerator)
    pad = _sum_over_ranks(progress.pad_tokens, run.accelerator)
    return TrainResult(
        steps=progress.step,
        train_loss=run.last_loss,
        val_loss=run.val_loss,
        tokens=tokens,
        padding_fraction=pad / max(1, tokens + pad),
        wall_time=time.perf_counter() - run.started,
        skipped_steps=progress.skipped,
        history=run.history,
    )


def _append_val(run: _Run, step: int) -> None:
    record = {"step": step, "val_loss": run.val_loss, "val_ppl": _ppl(run.val_loss)}
    if run.objective is not None:  # the pair numbers of that validation pass; perplexity means nothing for pairs
        record = {"step": step, "val_loss": run.val_loss, **run.objective.val_stats}
    if run.probe is not None:
        record.update(run.probe(run.model))
    _append(run.metrics_path, record, run.main, run.accelerator, run.desc)


def _sum_over_ranks(value: int, accelerator: Any) -> int:
    return int(accelerator.reduce(torch.tensor(value, device=accelerator.device), reduction="sum"))


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module, data: TokenizedData, batch_size: int, accelerator: Any, objective: Any = None
) -> float:
    """Token-weighted mean loss over ``data``, sharded across processes; with ``objective``, its mean loss per pair
    (its reward accuracy and margins then in ``objective.val_stats``)."""
    if objective is not None:
        return _evaluate_objective(model, data, batch_size, accelerator, objective)
    was_training = model.training
    model.eval()
    choice_ids = _choice_tensor(data, accelerator.device)
    idx = list(range(len(data.examples)))[accelerator.process_index :: accelerator.num_processes]
    total = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    for start in range(0, len(idx), batch_size):
        batch = _to_device(
            collate([data.examples[i] for i in idx[start : start + batch_size]], data.pad_id), accelerator.device
        )
        with accelerator.autocast():
            s, c = batch_loss(model, batch, choice_ids, {"use_cache": False})
        total += s
        count += c
    model.train(was_training)
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(count, reduction="sum")
    return float(total / count.clamp(min=1))


def _evaluate_objective(
    model: torch.nn.Module, data: TokenizedData, batch_size: int, accelerator: Any, objective: Any
) -> float:
    was_training = model.training
    model.eval()
    idx = list(range(len(data.examples)))[accelerator.process_index :: accelerator.num_processes]
    total = torch.zeros((), device=accelerator.device)
    objective.reset_stats()
    for start in range(0, len(idx), batch_size):
        examples = [data.examples[i] for i in idx[start : start + batch_size]]
        batch = _to_device(objective.collate(examples, data.pad_id), accelerator.device)
        with accelerator.autocast():
            total += objective.loss(model, batch, accelerator.unwrap_model)
    model.train(was_training)
    total = accelerator.reduce(total, reduction="sum")
    objective.val_stats = objective.take_stats(accelerator, prefix="val_")
    return float(total) / max(1, len(data.examples))


# ---------------------------------------------------------------- small pieces


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model inputs: a packed batch (it has position_ids) goes in without attention_mask, see data/pack.py."""
    if "position_ids" in batch:
        return packed_inputs(batch)
    return {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}


def _to_device(batch: dict[str, torch.Tensor], device: Any) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _choice_tensor(data: TokenizedData, device: Any) -> torch.Tensor | None:
    """The label sets' first tokens as one [sets, widest] tensor (-1 pads), or None without label sets."""
    if not data.choice_sets:
        return None
    return torch.tensor(_pad_sets(data.choice_sets), dtype=torch.long, device=device)


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
    settings = (
        (
            f"{', '.join(differ)} changed since it was written ("
            + "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
            + ")"
        )
        if differ
        else ""
    )
    raise UserError(
        f"cannot resume from {where}: "
        + "; ".join(x for x in (settings, *files) if x)
        + "; use a new output folder or restore "
        + " and ".join(["the recipe"] * bool(differ) + ["the files"] * bool(files))
    )


def _progress_bar(total: int, initial: int, desc: str, disable: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, leave=False, mininterval=1.0
    )
