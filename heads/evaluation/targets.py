"""The continuous targets of a store (valence, arousal), read from its index.

A store records their names in ``store.json`` (``identity.dataset.targets``) and their values
in the index column ``targets``: one list of floats per clip in that order, each scaled to
[-1, 1], NaN where a clip has none (CMU-MOSEI's sentiment as valence, AFEW-VA's valence and
arousal). The regression protocol (:mod:`heads.evaluation.avce`) trains on them; CLEF's weak
supervision takes its coarse labels from them (:mod:`heads.evaluation.clef`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc

from heads.data import DataError

if TYPE_CHECKING:
    from pipeline.store import FeatureStore

COLUMN = "targets"


def target_names(fs: FeatureStore) -> tuple[str, ...]:
    """The names of the store's continuous targets (empty: it has none)."""
    return tuple(fs.manifest.dataset.targets)


def read_targets(fs: FeatureStore, positions: np.ndarray) -> np.ndarray:
    """float32 [n, T] targets of the index rows ``positions`` (NaN: none).

    Raises:
        DataError: the store names targets but its index has no ``targets`` column, or a row
            holds another number of values (names the row).
    """
    names = target_names(fs)
    if not names:
        raise DataError(f"{fs.url}: the store has no continuous targets")
    if COLUMN not in fs.index.column_names:
        raise DataError(f"{fs.url}/index.parquet: store.json names targets {list(names)}, but "
                        f"the index has no {COLUMN!r} column")
    column = fs.index.column(COLUMN).take(np.asarray(positions, dtype=np.int64))
    column = column.combine_chunks()
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    bad = np.flatnonzero((lengths != len(names)) & valid)
    if len(bad):
        raise DataError(f"{fs.url}/index.parquet row {int(positions[bad[0]])}: "
                        f"{int(lengths[bad[0]])} targets, expected {len(names)} {list(names)}")
    out = np.full((len(column), len(names)), np.nan, dtype=np.float32)
    present = np.flatnonzero(lengths == len(names))
    if len(present):
        flat = pc.list_flatten(column.take(present)).to_numpy(zero_copy_only=False)
        out[present] = np.asarray(flat, dtype=np.float32).reshape(len(present), len(names))
    return out


__all__ = ["COLUMN", "read_targets", "target_names"]
