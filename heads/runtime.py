"""Small runtime helpers every training loop of the heads shares: the device, mixed precision
and the learning-rate schedule."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch

from pipeline.devices import resolve_device
from pipeline.errors import UserError


#: The heads' autocast type on CUDA (``docs/CHOICES.md``: mixed precision).
AUTOCAST_DTYPE = "bfloat16"


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; float32 everywhere else."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, AUTOCAST_DTYPE))
    return nullcontext()


def full_precision(device: torch.device) -> torch.autocast:
    """Autocast off for the losses and k-means: in bfloat16 (8 bits of mantissa) a logit near 1
    moves in steps of 0.008, so the 0.001 margins would vanish. The heads themselves stay under
    the caller's autocast."""
    return torch.autocast(device.type, enabled=False)


def lr_at(step: int, *, base_lr: float, steps_per_epoch: int, restart_epochs: float,
          restart_mult: int, min_lr: float, warmup_steps: int = 0,
          schedule: str = "cosine_restarts", decay: float = 0.75) -> float:
    """Learning rate after ``step`` optimizer steps: linear warm-up, then either cosine
    annealing with warm restarts (``cosine_restarts``, Loshchilov & Hutter 2017: the first
    period ``restart_epochs`` long and each next one ``restart_mult`` times longer, periods in
    epochs measured in fractional steps) or ``exponential``: ``decay`` times less after each
    whole epoch (the reference code's pretraining ``ExponentialLR``, stepped per epoch, no
    floor).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / steps_per_epoch
    if schedule == "exponential":
        return base_lr * decay ** math.floor(t)
    period = restart_epochs
    while t >= period:
        t -= period
        period *= restart_mult
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t / period)) / 2


__all__ = ["autocast", "full_precision", "lr_at", "resolve_device"]


class DivergedError(UserError, FloatingPointError):
    """A training loss (or a validation loss) became NaN or infinite: the classifier diverged.
    The command stops with this message (exit 2) instead of choosing an epoch on a NaN."""

    def __init__(self, what: str, *, epoch: int, step: int | None = None) -> None:
        where = f"epoch {epoch + 1}" + (f", step {step}" if step is not None else "")
        super().__init__(f"non-finite {what} at {where}: the training diverged (the input "
                         "features are checked finite when read); lower the learning rate "
                         "(--set optim.lr=...)")
