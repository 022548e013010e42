"""The training loop the heads of other systems share (:mod:`~heads.evaluation.clef`,
:mod:`~heads.evaluation.avce`): random batches, the evaluation schedule, a score of the
validation split after every epoch, early stopping on its loss and the best epoch kept.

It is :func:`heads.evaluation.fit.fit` with the step and the validation left to the
protocol: CLEF's step is one optimiser step on ``L_fine``, AVCE's two (``L_AV - L_AVCE``, then
``L_dis``), and each protocol selects its epoch on its own validation metric. Test data never
enters this loop.
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


def train_epochs(model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], *, rows: int,
                 cfg: EvalConfig, base_lr: float, step: Step, validate: Validate | None,
                 select: str, epochs: int | None = None, min_batch: int = 1, seed: int,
                 progress: bool = False) -> FitResult:
    """Train ``model`` with ``step`` on random batches; keep the weights of the best epoch.

    Args:
        model: every trainable module of the protocol (its whole state is kept and restored).
        optimizers: their learning rates follow the schedule of ``cfg.optim`` from ``base_lr``.
        rows: the train split's size.
        cfg: epochs, patience, batch size and the schedule.
        base_lr: the protocol's learning rate.
        step: one optimisation step on a batch of row indices.
        validate: the validation numbers after an epoch (``val_loss`` and ``select``); None:
            every epoch runs and the last one is kept (a stage without model selection).
        select: the validation metric to maximise (ties: the lower ``val_loss``);
            ``"val_loss"`` minimises the loss instead.
        epochs: overrides ``cfg.epochs`` (a protocol's own stage).
        min_batch: batches smaller than this are skipped (a correlation needs 2 rows).
        seed: seeds the batch order.
        progress: show a progress bar.

    Raises:
        FloatingPointError: a non-finite loss (names the epoch and step).
    """
    epochs = cfg.epochs if epochs is None else epochs
    generator = torch.Generator().manual_seed(seed)
    per_epoch = max(1, math.ceil(rows / cfg.batch_size))
    o = cfg.optim
    schedule: dict[str, Any] = {"base_lr": base_lr,
                                **schedule_of(o, per_epoch, min_lr=min(o.min_lr, base_lr))}
    best: dict[str, float] | None = None
    best_state: dict[str, Tensor] = {}
    history: list[dict[str, float]] = []
    lowest, stale = math.inf, 0
    bar = ProgressBar(progress, total=per_epoch * epochs)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            model.train()
            record = {"epoch": epoch, "lr": lr_at(epoch * per_epoch, **schedule),
                      **_epoch(optimizers, step, rows, epoch, per_epoch, schedule, cfg.batch_size,
                               min_batch, generator, bar)}
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


def _epoch(optimizers: Sequence[torch.optim.Optimizer], step: Step, rows: int, epoch: int,
           per_epoch: int, schedule: dict[str, Any], batch_size: int, min_batch: int,
           generator: torch.Generator, bar: ProgressBar) -> dict[str, float]:
    """One epoch of random batches: the mean of each loss part, as ``train_<part>``."""
    totals: dict[str, float] = {}
    seen, start = 0, time.perf_counter()
    for k, idx in enumerate(torch.randperm(rows, generator=generator).split(batch_size)):
        if len(idx) < min_batch:
            continue
        lr = lr_at(epoch * per_epoch + k, **schedule)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
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


__all__ = ["Step", "Validate", "train_epochs"]
