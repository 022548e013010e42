"""Argument checks the losses share: hyper-parameters (``ValueError`` naming the value) and
batch shapes (the message prints them)."""

from __future__ import annotations

import math

from torch import Tensor


def check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_margin(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_pair(a: Tensor, b: Tensor, what: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{what}: expected two [N, D] tensors of the same shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1:
        raise ValueError(f"{what}: empty batch {tuple(a.shape)}")
