"""The labelled splits an evaluation trains, selects and scores on, read from a store."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from heads.data import DataError, read_modality
from heads.evaluation.probe import LabelledSplit
from heads.evaluation.targets import read_targets

if TYPE_CHECKING:
    from pipeline.store import FeatureStore

log = logging.getLogger(__name__)


def load_split(fs: FeatureStore, layout: Mapping[str, Sequence[str]], split: str,
               device: torch.device, *, task: str = "classification",
               views: bool = False) -> LabelledSplit | None:
    """The labelled rows of ``split`` on ``device`` (None if it has none).

    With ``views`` and a store of two or more views, the split also carries its augmented
    views 1..V-1 (:attr:`LabelledSplit.views`) to train on; a store of one view has none, and
    the clean features are trained on (logged).

    Unlabeled rows (label -1) are left out; multi-label targets are 1 where the stored value is
    > 0 (CMU-MOSEI intensities), rows with a non-finite value are left out. With ``task =
    "regression"`` the targets are the store's continuous targets (float32 [n, T]), rows
    without all of them left out.

    Raises:
        DataError: a label outside the store's classes (names the sample).
    """
    pos = fs.positions(split)
    labels = read_targets(fs, pos) if task == "regression" else fs.labels(pos)
    if task == "regression":
        keep = np.isfinite(labels).all(axis=1)
        targets = torch.from_numpy(labels[keep].astype(np.float32))
    elif fs.multilabel:
        keep = np.isfinite(labels).all(axis=1)
        targets = torch.from_numpy((labels[keep] > 0).astype(np.float32))
    else:
        keep = labels >= 0
        bad = np.flatnonzero(labels >= len(fs.label_names))
        if bad.size:
            sid = fs.index.column("sample_id")[int(pos[bad[0]])].as_py()
            raise DataError(f"{fs.url}: sample {sid} has label {int(labels[bad[0]])}, but the "
                            f"store names {len(fs.label_names)} classes")
        targets = torch.from_numpy(labels[keep].astype(np.int64))
    pos = pos[keep]
    if len(pos) == 0:
        return None
    # float16 on a GPU (half the memory), float32 on the CPU (no fast float16 math there).
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    augmented = None
    if views and fs.views >= 2:
        # one read of every view: view 0 is the clean input, views 1.. the augmented ones
        every = {m: torch.from_numpy(read_modality(fs, keys, pos, all_views=True))
                 .to(device=device, dtype=dtype) for m, keys in layout.items()}
        inputs = {m: v[:, 0].contiguous() for m, v in every.items()}
        augmented = {m: v[:, 1:] for m, v in every.items()}
    else:
        if views:
            log.info("%s holds one view per clip: the %s split trains on the clean features",
                     fs.url, split)
        inputs = {m: torch.from_numpy(read_modality(fs, keys, pos, all_views=False))
                  .to(device=device, dtype=dtype) for m, keys in layout.items()}
    ids = fs.index.column("sample_id").take(pos).to_pylist()
    return LabelledSplit(split, inputs, targets.to(device), ids, augmented)


def check_splits(fs: FeatureStore, data: Mapping[str, LabelledSplit]) -> None:
    """Refuse a store without labelled train and val rows; warn when it has no test rows.

    Raises:
        DataError: no labelled rows in train or val (names the store's splits).
    """
    missing = [s for s in ("train", "val") if s not in data]
    if missing:
        raise DataError(f"{fs.url}: no labelled rows in split(s) {missing} (it has "
                        f"{list(fs.splits)}); training needs train, model selection needs val")
    if "test" not in data:
        log.warning("%s: no labelled test split; only train and val are scored", fs.url)


__all__ = ["check_splits", "load_split"]
