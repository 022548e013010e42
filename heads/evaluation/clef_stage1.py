"""What CLEF's weakly supervised stage 1 trains on (:mod:`heads.evaluation.clef`): coarse
labels, their texts and the clips that carry them.

The paper pretrains stage 1 on another dataset's activity labels, a text per label; so the
source it should have is a second store (``clef.stage1_store``) whose classes are activity-like
labels other than the downstream ones: its train split, in the downstream store's feature space
(the same store keys, and the same text backbone, since one projection embeds both stores'
texts), with its label texts embedded. Without one, the downstream train split's sentiment sign
(CMU-MOSEI's, annotated apart from its emotions) is the fallback, and :data:`FALLBACK` says so
in ``metrics.json`` and in the study's table. MELD's Sentiment column is refused: it follows
from the emotion label, so it would be supervision by the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from heads.evaluation.probe import LabelledSplit
from heads.evaluation.splits import load_split
from heads.evaluation.targets import read_targets
from pipeline.config import ConfigError
from pipeline.label_texts import LabelTexts, read_label_texts
from pipeline.store import open_store
from pipeline.store.errors import StoreError
from pipeline.store.manifest import feature_space_differences, format_differences

if TYPE_CHECKING:
    from heads.evaluation.protocol import EvalSetup
    from pipeline.store import FeatureStore

MELD_SENTIMENT = ("MELD's Sentiment column follows from the emotion label on almost every row "
                  "(joy is positive, sadness, anger, fear and disgust negative, neutral "
                  "neutral): as coarse labels it would be supervision by the target")
#: How ``metrics.json`` and the study's table name the fallback source.
FALLBACK = ("fallback: the downstream train split's sentiment sign (the paper's stage 1 uses "
            "another dataset's activity labels; give one with clef.stage1_store)")
#: The store key whose backbone embedded the label texts.
TEXT_KEY = "text"


@dataclass(frozen=True)
class WeakLabels:
    """Stage 1's training data.

    Attributes:
        source: ``stage1_store`` or ``sentiment_fallback``.
        group: the labels' name (the stage-1 store's dataset, or ``sentiment``).
        inputs: per modality, the features of the labelled clips [n, E_m].
        labels: int64 [n] their coarse labels.
        texts: float32 [K, E_t] the text vector of each coarse class (a clip's text is its
            class's).
        store: the stage-1 store's URL (None for the fallback).
    """

    source: str
    group: str
    inputs: dict[str, Tensor]
    labels: Tensor
    texts: Tensor
    store: str | None = None

    def describe(self) -> dict[str, object]:
        """What ``metrics.json`` records of the source (``details.weak``)."""
        note = (FALLBACK if self.source == "sentiment_fallback"
                else f"stage 1 on {self.group}'s labels ({self.store})")
        return {"source": self.source, "group": self.group, "store": self.store, "note": note,
                "classes": int(self.texts.shape[0])}


def weak_labels(setup: EvalSetup, train: LabelledSplit, texts: LabelTexts) -> WeakLabels | None:
    """The source of stage 1, by ``clef.weak`` (None: no stage 1).

    Raises:
        ConfigError: ``weak: sentiment`` on MELD (supervision by the target) or on a store
            without coarse labels.
        StoreError: a stage-1 store that cannot serve (see :func:`store_labels`).
    """
    clef = setup.cfg.clef
    if clef.weak == "none" or clef.weak_epochs == 0:
        return None
    if clef.stage1_store and clef.weak in ("auto", "store"):
        return store_labels(setup, clef.stage1_store)
    fs = setup.store
    assert fs is not None
    if clef.weak == "sentiment" and fs.dataset == "meld":
        raise ConfigError(f"clef.weak=sentiment is refused on MELD: {MELD_SENTIMENT}")
    if "sentiment" not in texts.coarse:
        if clef.weak == "sentiment":
            raise ConfigError(f"clef.weak=sentiment: the store has no coarse sentiment labels "
                              f"(CMU-MOSEI's sentiment as the target 'valence', with its label "
                              f"texts); it has {sorted(texts.coarse) or 'none'}")
        return None
    return sentiment_labels(fs, train, texts)


def sentiment_labels(fs: FeatureStore, train: LabelledSplit, texts: LabelTexts) -> WeakLabels:
    """The fallback: the sign of the train split's sentiment (index 0 negative, < 0; 1
    non-negative); clips without a value are left out."""
    target, _, vectors = texts.coarse["sentiment"]
    names = list(fs.manifest.dataset.targets)
    where = {sid: i for i, sid in enumerate(fs.index.column("sample_id").to_pylist())}
    values = read_targets(fs, np.array([where[s] for s in train.sample_ids], np.int64))
    column = values[:, names.index(target)]
    keep = torch.from_numpy(np.flatnonzero(~np.isnan(column))).to(train.targets.device)
    labels = torch.from_numpy((column >= 0).astype(np.int64)).to(train.targets.device)
    return WeakLabels("sentiment_fallback", "sentiment",
                      {m: x[keep] for m, x in train.inputs.items()}, labels[keep],
                      torch.from_numpy(vectors).to(train.targets.device))


def store_labels(setup: EvalSetup, url: str) -> WeakLabels:
    """The train split of the stage-1 store at ``url``: its classes and their prompt texts.

    Raises:
        StoreError: it is not a store, or is in another feature space than the evaluated one
            (the differing fields named).
        ConfigError: it is the evaluated store or of its dataset (its labels would be the
            target), multi-label, without label texts or a labelled train split.
    """
    fs = setup.store
    assert fs is not None
    with open_store(url) as other:
        _check_stage1_store(fs, other, [k for keys in setup.layout.values() for k in keys])
        try:
            texts = read_label_texts(other)
        except ValueError as err:
            raise ConfigError(f"clef.stage1_store {url}: {err}") from None
        split = load_split(other, setup.layout, "train", setup.device)
        if split is None:
            raise ConfigError(f"clef.stage1_store {url}: no labelled train rows")
        return WeakLabels("stage1_store", other.dataset, split.inputs, split.targets,
                          torch.from_numpy(texts.names).to(setup.device), other.url)


def _check_stage1_store(fs: FeatureStore, other: FeatureStore, keys: Sequence[str]) -> None:
    where = f"clef.stage1_store {other.url}"
    if other.store_id == fs.store_id or other.dataset == fs.dataset:
        raise ConfigError(f"{where}: the evaluated dataset ({fs.dataset}) itself: stage 1 "
                          "needs labels other than the downstream ones")
    if other.multilabel or not other.label_names:
        raise ConfigError(f"{where}: stage 1 needs single-label classes (activity-like "
                          "labels); this store has " + ("multi-label labels" if other.multilabel
                                                        else "no classes"))
    shared = sorted({*keys, TEXT_KEY})
    diffs = feature_space_differences(fs.manifest.feature_space, other.manifest.feature_space,
                                      shared)
    if diffs:
        raise StoreError(f"{where}: not in the feature space of {fs.url} (one projection "
                         f"serves both): {format_differences(diffs)}")


__all__ = ["FALLBACK", "MELD_SENTIMENT", "WeakLabels", "sentiment_labels",
           "store_labels", "weak_labels"]
