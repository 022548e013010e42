"""The online monitor: how good the representation is while it is being pretrained.

Every ``every`` epochs, the heads map a labelled store's features (view 0) to their
representations, concatenated over the run's modalities and L2-normalised, and a weighted
cosine k-NN classifier (solo-learn's online kNN: k = 20, votes weighted by
``exp(similarity / 0.07)``) with the store's train split as the bank labels its val split.
``linear=True`` adds a quick linear probe (full-batch Adam on the frozen representations of the
train split, accuracy on val). The numbers go into the epoch's record of ``metrics.jsonl``
(``monitor/knn_accuracy``, ``monitor/linear_accuracy``, ``monitor/time_s``) and so to
TensorBoard. The monitor store must be in the feature space of the store the run is pretrained
on (the check of evaluation, :func:`heads.checkpoint.check_feature_space`); it never changes
the run: no gradient, no random draw from the run's generators.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from heads.checkpoint import CheckpointError, check_feature_space
from heads.data import read_modality
from heads.models import ConCluGenHeads
from pipeline.errors import UserError
from pipeline.store import FeatureStore

#: solo-learn's defaults for its online kNN (``knn_eval``): neighbours and vote temperature.
KNN_K = 20
KNN_TEMPERATURE = 0.07
#: The quick linear probe: full-batch Adam steps on the frozen representations (unit norm, so
#: a large step size).
LINEAR_STEPS = 100
LINEAR_LR = 0.1


class MonitorError(UserError, ValueError):
    """The monitor store cannot be used (another feature space, no labels, a split missing)."""


@dataclass(frozen=True)
class MonitorSettings:
    """What ``cli pretrain --monitor-store`` asks for.

    Attributes:
        store: a labelled store (folder or fsspec URL) with train and val splits.
        every: evaluate every this many epochs (and after the last one).
        linear: also fit a quick linear probe.
        k: neighbours of the k-NN classifier.
    """

    store: str
    every: int = 5
    linear: bool = False
    k: int = KNN_K

    def __post_init__(self) -> None:
        if self.every < 1:
            raise MonitorError(f"--monitor-every must be >= 1, got {self.every}")
        if self.k < 1:
            raise MonitorError(f"the monitor's k must be >= 1, got {self.k}")

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether the monitor runs after ``epoch`` (0-based) of a run of ``epochs``."""
        return (epoch + 1) % self.every == 0 or epoch + 1 == epochs


@dataclass(frozen=True)
class MonitorSplit:
    """One split of the monitor store: per modality [N, E_m] features, [N] labels."""

    features: dict[str, Tensor]
    labels: Tensor


class Monitor:
    """The monitor store's train and val splits on the device, ready for :meth:`evaluate`."""

    def __init__(self, settings: MonitorSettings, train: MonitorSplit, val: MonitorSplit,
                 classes: int) -> None:
        self.settings, self.train, self.val, self.classes = settings, train, val, classes

    @torch.no_grad()
    def represent(self, model: ConCluGenHeads, split: MonitorSplit) -> Tensor:
        """[N, M*D] L2-normalised concatenated representations of ``split``."""
        was_training = model.training
        model.eval()
        try:
            reps = model.represent(split.features)
        finally:
            model.train(was_training)
        return F.normalize(torch.cat([reps[m].float() for m in model.modalities], dim=1), dim=1)

    def evaluate(self, model: ConCluGenHeads) -> dict[str, float]:
        """k-NN (and linear) val accuracy of ``model``'s representations, and the seconds."""
        start = time.perf_counter()
        bank, queries = self.represent(model, self.train), self.represent(model, self.val)
        predicted = knn_predict(bank, self.train.labels, queries, classes=self.classes,
                                k=self.settings.k)
        out = {"monitor/knn_accuracy": accuracy(predicted, self.val.labels)}
        if self.settings.linear:
            out["monitor/linear_accuracy"] = linear_probe_accuracy(
                bank, self.train.labels, queries, self.val.labels, classes=self.classes)
        out["monitor/time_s"] = time.perf_counter() - start
        return out


def open_monitor(settings: MonitorSettings, store: FeatureStore, *,
                 layout: Mapping[str, Sequence[str]], feature_space: Mapping[str, object],
                 pretrain_store: str, pretrain_store_id: str,
                 device: torch.device) -> Monitor:
    """Check the monitor store and read its train and val splits onto ``device``.

    Args:
        settings: the monitor's settings (``settings.store`` is ``store``'s URL).
        store: the open monitor store.
        layout: per modality the store keys the run reads.
        feature_space: per store key, the pretraining store's feature space.
        pretrain_store: the pretraining store's URL (named in messages).
        pretrain_store_id: its store_id.
        device: where the run's heads are.

    Raises:
        MonitorError: the store is in another feature space (the differing fields are named,
            with both stores), is multi-label or unlabelled, or lacks labelled train or val rows.
    """
    keys = [k for ks in layout.values() for k in ks]
    try:
        check_feature_space(dict(feature_space), pretrain_store_id, keys, store.manifest,
                            checkpoint=f"the run on {pretrain_store}", store=store.url)
    except CheckpointError as err:
        raise MonitorError(f"--monitor-store: {err}") from None
    if store.multilabel or len(store.label_names) < 2:
        raise MonitorError(f"--monitor-store {store.url}: the k-NN monitor needs a single-label "
                           f"store with classes (dataset {store.dataset} has "
                           f"{len(store.label_names)} label(s)"
                           + (", multi-label)" if store.multilabel else ")"))
    splits = {name: _read_split(store, name, layout, device) for name in ("train", "val")}
    return Monitor(settings, splits["train"], splits["val"], len(store.label_names))


def _read_split(store: FeatureStore, split: str, layout: Mapping[str, Sequence[str]],
                device: torch.device) -> MonitorSplit:
    positions = store.positions(split) if split in store.splits else np.empty(0, dtype=np.int64)
    labels = store.labels(positions)
    positions = positions[labels >= 0]
    if len(positions) == 0:
        raise MonitorError(f"--monitor-store {store.url}: no labelled rows in split {split!r} "
                           f"(it has {list(store.splits)}); the monitor's bank is train, its "
                           "queries val")
    features = {m: torch.from_numpy(read_modality(store, keys, positions, all_views=False)
                                    .astype(np.float32)).to(device)
                for m, keys in layout.items()}
    return MonitorSplit(features, torch.from_numpy(labels[labels >= 0]).long().to(device))


def knn_predict(bank: Tensor, bank_labels: Tensor, queries: Tensor, *, classes: int,
                k: int = KNN_K, temperature: float = KNN_TEMPERATURE) -> Tensor:
    """Weighted cosine k-NN (Wu et al. 2018, as solo-learn's online kNN).

    Args:
        bank: [N, D] unit-norm representations with labels ``bank_labels`` [N].
        queries: [Q, D] unit-norm representations.
        classes: the number of classes.
        k: neighbours (at most N are used).
        temperature: each neighbour votes ``exp(similarity / temperature)`` for its class.

    Returns:
        [Q] predicted classes.
    """
    similarity = queries @ bank.T  # [Q, N]
    top, index = similarity.topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(queries), classes, device=queries.device)
    votes.scatter_add_(1, bank_labels[index], (top / temperature).exp())
    return votes.argmax(dim=1)


def accuracy(predicted: Tensor, labels: Tensor) -> float:
    """The fraction of ``predicted`` equal to ``labels``."""
    return float((predicted == labels).float().mean())


def linear_probe_accuracy(train: Tensor, train_labels: Tensor, val: Tensor, val_labels: Tensor,
                          *, classes: int, steps: int = LINEAR_STEPS) -> float:
    """Val accuracy of a linear classifier fitted on frozen ``train`` representations.

    Full-batch Adam with its own seeded generator, so the run's random state is untouched.
    """
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(train.shape[1], classes, generator=generator) * 0.01).to(train.device)
    weight.requires_grad_(True)
    bias = torch.zeros(classes, device=train.device, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=LINEAR_LR)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(train @ weight + bias, train_labels).backward()
            optimizer.step()
    with torch.no_grad():
        return accuracy((val @ weight + bias).argmax(dim=1), val_labels)
