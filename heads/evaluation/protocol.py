"""The interface every evaluation protocol implements, and what it is given.

:func:`heads.evaluation.run.run_eval` loads the labelled splits once, builds an
:class:`EvalSetup` and calls the protocol's :meth:`Protocol.run_seed` once per seed; it then
writes the figures, the classifier and ``metrics.json`` the same way for every protocol. A new
protocol is one new module exposing a ``PROTOCOL`` object with this interface, listed in
:data:`heads.evaluation.PROTOCOLS`.

Besides its name and whether it needs a pretraining run, a protocol says its ``task``,
``classification`` (the store's labels) or ``regression`` (its continuous targets,
:mod:`heads.evaluation.targets`), and whether it ``accepts_run`` that it does not need (CLEF's
zero-shot row from a run's MMS text head). A protocol may also choose its inputs when the user
names none: ``default_modalities(cfg, present) -> list[str]`` (AVCE leaves out the store's
text), which :func:`heads.evaluation.run.run_eval` calls when the protocol has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from typing import Protocol as _Interface

import numpy as np
import torch
from torch import nn

from heads.checkpoint import HeadsCheckpoint
from heads.classifier_file import ClassifierFile, Kind
from heads.eval_config import EvalConfig
from heads.evaluation.probe import LabelledSplit, ProbeSpec
from heads.files import CheckpointError
from heads.models import ConCluGenHeads
from pipeline.config import ConfigError, from_dict

if TYPE_CHECKING:
    from pipeline.store import FeatureStore

Task = Literal["classification", "regression"]
S = TypeVar("S")


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
        payload: the run's checkpoint (None without a run).
        checkpoint: the run's checkpoint file (None without a run).
        device: where training runs.
        task: ``classification`` (targets are the labels) or ``regression`` (the store's
            continuous targets, named in ``target_names``; ``label_names`` repeats them).
        target_names: the continuous targets' names (regression).
        store: the open store, for what a protocol reads beside the splits (CLEF: the label
            texts and the coarse labels).
    """

    protocol: str
    cfg: EvalConfig
    spec: ProbeSpec
    input_dims: dict[str, int]
    layout: dict[str, tuple[str, ...]]
    label_names: tuple[str, ...]
    pretrained: ConCluGenHeads | None
    payload: HeadsCheckpoint | None
    checkpoint: Path | None
    device: torch.device
    task: Task = "classification"
    target_names: tuple[str, ...] = ()
    store: FeatureStore | None = None


@dataclass(frozen=True)
class SavedModel:
    """A trained model as a classifier file keeps it
    (:class:`heads.classifier_file.ClassifierFile`).

    Attributes:
        kind: which protocol module rebuilds it (``probe``, ``clef``, ``avce``).
        spec: its sizes as plain data, what that module rebuilds it from.
        state: its state dict on the CPU (a linear probe's without the frozen heads).
    """

    kind: Kind
    spec: dict[str, Any]
    state: dict[str, torch.Tensor]


def state_of(model: nn.Module, *, without: str | None = None) -> dict[str, torch.Tensor]:
    """``model``'s state dict, detached on the CPU; ``without`` leaves out the entries under
    that prefix (``"heads."``)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()
            if without is None or not k.startswith(without)}


def parse_spec(cls: type[S], classifier: ClassifierFile) -> S:
    """A classifier file's ``spec`` as the dataclass ``cls`` of its protocol.

    Raises:
        CheckpointError: a size missing, unknown or of the wrong type (named).
    """
    try:
        return from_dict(cls, dict(classifier.spec), f"classifier ({classifier.kind}) spec")
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


@dataclass
class SeedResult:
    """One seed's trained classifier and its scores.

    Attributes:
        seed: the seed.
        model: the trained classifier (per modality features -> logits or targets); a
            :class:`~heads.evaluation.probe.ProbeModel` for the paper's protocols.
        saved: what the classifier file keeps of it: its kind, spec and state.
        scored: per split, the metrics and the fused representations [n, F] (for the maps).
        best_epoch: the epoch kept (1-based).
        seconds: training time.
        history: per epoch, the numbers model selection saw.
        class_weights: the loss's class (or pos_) weights.
        predictions: regression: per split, the predictions and targets [n, T] (the scatter
            plots).
        details: what the protocol adds to ``metrics.json`` (its epoch selection, constants,
            extra rows such as CLEF's zero-shot scores).
    """

    seed: int
    model: nn.Module
    saved: SavedModel
    scored: dict[str, tuple[dict[str, Any], np.ndarray]]
    best_epoch: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    class_weights: list[float] = field(default_factory=list)
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Protocol(_Interface):
    """An evaluation protocol: its name, whether it needs (or uses) a pretraining run, its
    task, and one seed (read-only attributes: protocols are frozen dataclasses)."""

    @property
    def name(self) -> str: ...

    @property
    def needs_run(self) -> bool: ...

    @property
    def accepts_run(self) -> bool: ...

    @property
    def task(self) -> Task: ...

    @property
    def summary(self) -> str: ...

    def run_seed(self, setup: EvalSetup, data: Mapping[str, LabelledSplit], seed: int, *,
                 progress: bool) -> SeedResult:
        """Train on ``data["train"]``, select on ``data["val"]``, score every split."""
        ...


def accepts_run(protocol: Protocol) -> bool:
    """Whether a pretraining run given with the protocol is used (always when it needs one)."""
    return protocol.needs_run or protocol.accepts_run


__all__ = ["EvalSetup", "Protocol", "SavedModel", "SeedResult", "Task", "accepts_run",
           "parse_spec", "state_of"]
