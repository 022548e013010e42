"""The interface every evaluation protocol implements, and what it is given.

:func:`heads.evaluation.run.run_eval` loads the labelled splits once, builds an
:class:`EvalSetup` and calls the protocol's :meth:`Protocol.run_seed` once per seed; it then
writes the figures, the classifier and ``metrics.json`` the same way for every protocol. A new
protocol is one new module exposing a ``PROTOCOL`` object with this interface, listed in
:data:`heads.evaluation.PROTOCOLS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from typing import Protocol as _Interface

import numpy as np
import torch

from heads.config import EvalConfig
from heads.evaluation.probe import LabelledSplit, ProbeModel, ProbeSpec
from heads.models import ConCluGenHeads


@dataclass
class EvalSetup:
    """What one evaluation works with, shared by its seeds.

    Attributes:
        protocol: the protocol's name.
        cfg: the resolved evaluation config.
        spec: the classifier's modalities, fusion and sizes.
        input_dims: per modality, the width of its store features.
        layout: per modality, the store keys concatenated into its input.
        label_names: class names in label order.
        pretrained: the run's heads (None for protocols without a run).
        payload: the run's checkpoint payload (None without a run).
        checkpoint: the run's checkpoint file (None without a run).
        device: where training runs.
    """

    protocol: str
    cfg: EvalConfig
    spec: ProbeSpec
    input_dims: dict[str, int]
    layout: dict[str, tuple[str, ...]]
    label_names: tuple[str, ...]
    pretrained: ConCluGenHeads | None
    payload: dict[str, Any] | None
    checkpoint: Path | None
    device: torch.device


@dataclass
class SeedResult:
    """One seed's trained classifier and its scores.

    Attributes:
        seed: the seed.
        model: the trained classifier (per modality features -> logits).
        scored: per split, the metrics and the fused representations [n, F] (for the maps).
        best_epoch: the epoch kept (1-based).
        seconds: training time.
        history: per epoch, the numbers model selection saw.
        class_weights: the loss's class (or pos_) weights.
    """

    seed: int
    model: ProbeModel
    scored: dict[str, tuple[dict[str, Any], np.ndarray]]
    best_epoch: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    class_weights: list[float] = field(default_factory=list)


class Protocol(_Interface):
    """An evaluation protocol: its name, whether it needs a pretraining run, and one seed
    (read-only attributes: protocols are frozen dataclasses)."""

    @property
    def name(self) -> str: ...

    @property
    def needs_run(self) -> bool: ...

    @property
    def summary(self) -> str: ...

    def run_seed(self, setup: EvalSetup, data: Mapping[str, LabelledSplit], seed: int, *,
                 progress: bool) -> SeedResult:
        """Train on ``data["train"]``, select on ``data["val"]``, score every split."""
        ...


__all__ = ["EvalSetup", "Protocol", "SeedResult"]
