"""The training loop the heads of other systems share (:mod:`~heads.evaluation.clef`,
:mod:`~heads.evaluation.avce`): random batches, the evaluation schedule, a score of the
validation split after every epoch, early stopping on its loss and the best epoch kept.

It is :func:`heads.evaluation.fit.fit` with the step and the validation left to the
protocol: CLEF's step is one optimiser step on ``L_fine``, AVCE's two (``L_AV - L_AVCE``, then
``L_dis``), and each protocol selects its epoch on its own validation metric. A protocol may
bring its own batch size and learning-rate schedule (:func:`cosine_schedule`, CLEF's;
:func:`step_schedule`, AVCE's): a schedule is a factor of each parameter group's own rate, so
optimisers with different rates follow one schedule. Test data never enters this loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from heads.config import schedule_of
from heads.eval_config import EvalConfig
from heads.evaluation.fit import FitResult, patience_step, stop_early
from heads.metrics_log import ProgressBar
from heads.runtime import DivergedError, lr_at

log = logging.getLogger(__name__)

#: One training step on the rows ``idx`` of the train split: the named loss parts, the total
#: under ``"loss"``.
Step = Callable[[Tensor], dict[str, float]]
#: The validation split's numbers after an epoch: ``val_loss`` and the selection metric.
Validate = Callable[[], dict[str, float]]
#: The factor of each parameter group's initial learning rate after ``step`` optimiser steps.
Schedule = Callable[[int], float]


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``rows`` rows (at least 1)."""
    return max(1, math.ceil(rows / batch_size))


def cosine_schedule(*, epochs: int, per_epoch: int, warmup_epochs: float, base_lr: float,
                    min_lr: float) -> Schedule:
    """A linear warm-up over ``warmup_epochs``, then one cosine from ``base_lr`` to ``min_lr``
    over the rest of ``epochs`` (CLEF's schedule), as a factor of ``base_lr``."""
    warmup = round(warmup_epochs * per_epoch)
    length = max(epochs - warmup / per_epoch, 1 / per_epoch)

    def factor(step: int) -> float:
        return lr_at(step, base_lr=base_lr, steps_per_epoch=per_epoch, restart_epochs=length,
                     restart_mult=1, min_lr=min(min_lr, base_lr), warmup_steps=warmup) / base_lr
    return factor


def step_schedule(*, total_steps: int, fractions: Sequence[float], gamma: float) -> Schedule:
    """The rate times ``gamma`` at each of the ``fractions`` of ``total_steps`` (AVCE's
    MultiStepLR: x0.8 at 5K, 10K and 20K of 50K iterations are the fractions 0.1, 0.2, 0.4)."""
    milestones = sorted(round(f * total_steps) for f in fractions)

    def factor(step: int) -> float:
        return gamma ** sum(step >= m for m in milestones)
    return factor


def train_epochs(model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], *, rows: int,
                 cfg: EvalConfig, base_lr: float, step: Step, validate: Validate | None,
                 select: str, epochs: int | None = None, min_batch: int = 1, seed: int,
                 batch_size: int | None = None, schedule: Schedule | None = None,
                 progress: bool = False) -> FitResult:
    """Train ``model`` with ``step`` on random batches; keep the weights of the best epoch.

    Args:
        model: every trainable module of the protocol (its whole state is kept and restored).
        optimizers: each group's learning rate is its initial rate times the schedule.
        rows: the train split's size.
        cfg: epochs, patience, batch size and the schedule.
        base_lr: the protocol's learning rate (the history's ``lr`` is it times the schedule).
        step: one optimisation step on a batch of row indices.
        validate: the validation numbers after an epoch (``val_loss`` and ``select``); None:
            every epoch runs and the last one is kept (a stage without model selection).
        select: the validation metric to maximise (ties: the lower ``val_loss``);
            ``"val_loss"`` minimises the loss instead.
        epochs: overrides ``cfg.epochs`` (a protocol's own stage).
        min_batch: batches smaller than this are skipped (a correlation needs 2 rows).
        seed: seeds the batch order.
        batch_size: overrides ``cfg.batch_size`` (a protocol's own).
        schedule: the factor of each group's initial rate per step; None: ``cfg.optim``'s
            warm-up and cosine restarts from ``base_lr``.
        progress: show a progress bar.

    Raises:
        FloatingPointError: a non-finite loss (names the epoch and step).
    """
    epochs = cfg.epochs if epochs is None else epochs
    batch_size = cfg.batch_size if batch_size is None else batch_size
    generator = torch.Generator().manual_seed(seed)
    per_epoch = steps_per_epoch(rows, batch_size)
    factor = schedule if schedule is not None else _evaluation_schedule(cfg, base_lr, per_epoch)
    initial = [[group["lr"] for group in optimizer.param_groups] for optimizer in optimizers]
    best: dict[str, float] | None = None
    best_state: dict[str, Tensor] = {}
    history: list[dict[str, float]] = []
    lowest, stale = math.inf, 0
    bar = ProgressBar(progress, total=per_epoch * epochs)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            model.train()
            record = {"epoch": epoch, "lr": base_lr * factor(epoch * per_epoch),
                      **_epoch(optimizers, initial, step, rows, epoch, per_epoch, factor,
                               batch_size, min_batch, generator, bar)}
            history.append(record)
            if validate is None:
                continue
            model.eval()
            with torch.no_grad():
                record.update(validate())
            if not math.isfinite(record["val_loss"]):  # never choose an epoch on a NaN
                raise DivergedError("validation loss (split val)", epoch=epoch)
            if best is None or _better(record, best, select):
                best = record
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            lowest, stale = patience_step(record["val_loss"], lowest, stale)
            if stop_early(cfg.patience, stale, lowest, epoch):
                break
    finally:
        bar.close()
    if best is None:  # no selection, or no epoch: the model as it is
        model.eval()
        return FitResult(len(history) - 1, history[-1] if history else {}, history,
                         time.perf_counter() - start)
    model.load_state_dict(best_state)
    model.eval()
    log.info("best epoch %d of %d: %s", best["epoch"] + 1, len(history),
             ", ".join(f"{k} {v:.4f}" for k, v in best.items() if k.startswith("val_")))
    return FitResult(int(best["epoch"]), best, history, time.perf_counter() - start)


def _evaluation_schedule(cfg: EvalConfig, base_lr: float, per_epoch: int) -> Schedule:
    """``cfg.optim``'s warm-up and cosine restarts from ``base_lr``, as a factor of it."""
    o = cfg.optim
    schedule: dict[str, Any] = {"base_lr": base_lr,
                                **schedule_of(o, per_epoch, min_lr=min(o.min_lr, base_lr))}
    return lambda step: lr_at(step, **schedule) / base_lr


def _epoch(optimizers: Sequence[torch.optim.Optimizer], initial: list[list[float]], step: Step,
           rows: int, epoch: int, per_epoch: int, factor: Schedule, batch_size: int,
           min_batch: int, generator: torch.Generator, bar: ProgressBar) -> dict[str, float]:
    """One epoch of random batches: the mean of each loss part, as ``train_<part>``."""
    totals: dict[str, float] = {}
    seen, start = 0, time.perf_counter()
    for k, idx in enumerate(torch.randperm(rows, generator=generator).split(batch_size)):
        if len(idx) < min_batch:
            continue
        scale = factor(epoch * per_epoch + k)
        for optimizer, rates in zip(optimizers, initial, strict=True):
            for group, rate in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = rate * scale
        parts = step(idx)
        if not all(math.isfinite(v) for v in parts.values()):
            bad = ", ".join(f"{n}={v}" for n, v in parts.items() if not math.isfinite(v))
            raise DivergedError(f"training loss ({bad})", epoch=epoch,
                                step=epoch * per_epoch + k + 1)
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + value * len(idx)
        seen += len(idx)
        bar.advance(epoch, seen / max(time.perf_counter() - start, 1e-9), parts["loss"])
    return {f"train_{name}": total / max(seen, 1) for name, total in totals.items()}


def _better(record: dict[str, float], best: dict[str, float], select: str) -> bool:
    if select == "val_loss" or record[select] == best[select] or (
            math.isnan(record[select]) and math.isnan(best[select])):
        return record["val_loss"] < best["val_loss"]
    if math.isnan(best[select]):
        return True
    return record[select] > best[select]


__all__ = ["Schedule", "Step", "Validate", "cosine_schedule", "step_schedule", "steps_per_epoch",
           "train_epochs"]
