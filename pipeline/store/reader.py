"""Reading a feature store: :func:`open_store` and :class:`FeatureStore`.

A store is readable with plain ``h5py`` + ``pyarrow``; nothing is pickled. This module is the
reader the trainer, evaluation and prediction use; ``store.json`` is parsed into a typed
:class:`~pipeline.store.manifest.StoreManifest` (any readable format version).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store.filesystem import READ_BLOCK_SIZE, Location, read_parquet
from pipeline.store.manifest import SHARD_DIR, StoreError, StoreManifest, parse_manifest

log = logging.getLogger(__name__)


def dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A string column as integer codes [n] and the distinct values they index (columnar)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    encoded = column.combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def group_by_code(codes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(code, positions)`` for each distinct code, positions in their original order.

    One stable sort instead of one full scan per code: a million rows in a few thousand
    shards cost one pass.
    """
    order = np.argsort(codes, kind="stable")
    distinct, starts = np.unique(codes[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for code, lo, hi in zip(distinct, starts, ends, strict=True):
        yield int(code), order[lo:hi]


class FeatureStore:
    """A complete store opened for reading (see :func:`open_store`).

    The index stays a pyarrow Table; the columns the hot paths need (split, shard, row, labels)
    are turned into numpy arrays once, so :meth:`positions`, :meth:`labels` and :meth:`read`
    cost array operations, not a Python loop over rows, on stores of a million clips.
    """

    def __init__(self, loc: Location, manifest: StoreManifest, index: pa.Table, *,
                 block_size: int = READ_BLOCK_SIZE) -> None:
        self.loc = loc
        self.url = loc.display
        self.manifest = manifest
        self.index = index
        self.block_size = block_size
        self._files: dict[str, h5py.File] = {}
        self._handles: list[Any] = []

    def __repr__(self) -> str:
        return (f"FeatureStore({self.url!r}, dataset={self.dataset!r}, "
                f"samples={self.index.num_rows}, keys={self.keys})")

    @property
    def store_id(self) -> str:
        return self.manifest.store_id

    @property
    def dataset(self) -> str:
        return self.manifest.dataset.name

    @property
    def keys(self) -> tuple[str, ...]:
        return self.manifest.keys

    @property
    def views(self) -> int:
        return self.manifest.views

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.manifest.dataset.labels

    @property
    def multilabel(self) -> bool:
        return self.manifest.dataset.multilabel

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the index holds, sorted."""
        return tuple(sorted(self._split_codes[1]))

    def dim(self, key: str) -> int:
        self._check_key(key)
        return self.manifest.modalities[key].dim

    def _check_key(self, key: str) -> None:
        if key not in self.manifest.modalities:
            raise KeyError(f"{self.url} has no modality {key!r}; it has {list(self.keys)}")

    @cached_property
    def failures(self) -> pa.Table:
        """The rows of ``failures.parquet``."""
        return read_parquet(self.loc, "failures.parquet")

    @cached_property
    def _shard_codes(self) -> tuple[np.ndarray, list[str]]:
        return dictionary_codes(self.index.column("shard"))

    @cached_property
    def _split_codes(self) -> tuple[np.ndarray, list[str]]:
        return dictionary_codes(self.index.column("split"))

    @cached_property
    def _rows(self) -> np.ndarray:
        return self.index.column("row").to_numpy()

    @cached_property
    def _labels(self) -> np.ndarray:
        if not self.multilabel:
            return self.index.column("label").to_numpy()
        col = self.index.column("labels").combine_chunks()
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if len(col) and (lengths != len(self.label_names)).any():
            bad = int(np.flatnonzero(lengths != len(self.label_names))[0])
            raise StoreError(f"{self.url}/index.parquet row {bad}: {lengths[bad]} labels, "
                             f"expected {len(self.label_names)} ({list(self.label_names)})")
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32)
        return flat.reshape(len(col), len(self.label_names))

    def positions(self, splits: str | Sequence[str] | None = None) -> np.ndarray:
        """Row positions into :attr:`index` of the given split(s), in index order: int64 [n]."""
        if splits is None:
            return np.arange(self.index.num_rows, dtype=np.int64)
        wanted = {splits} if isinstance(splits, str) else set(splits)
        codes, names = self._split_codes
        hit = [i for i, name in enumerate(names) if name in wanted]
        return np.flatnonzero(np.isin(codes, hit)).astype(np.int64)

    def labels(self, positions: np.ndarray | None = None) -> np.ndarray:
        """int64 [n] (-1 unlabeled) or, multi-label, float32 [n, L]."""
        return self._labels if positions is None else self._labels[np.asarray(positions)]

    def _file(self, shard: str) -> h5py.File:
        if shard not in self._files:
            parts = (SHARD_DIR, shard + ".h5")
            if self.loc.is_local:
                self._files[shard] = h5py.File(self.loc.path(*parts), "r")
            else:
                handle = self.loc.open_read(*parts, block_size=self.block_size)
                self._handles.append(handle)
                self._files[shard] = h5py.File(handle, "r")
        return self._files[shard]

    def read(self, key: str, positions: np.ndarray | None = None, *,
             view: int | None = None) -> np.ndarray:
        """Features of ``key`` for index positions, in the order given.

        Returns:
            float16 (the stored dtype) [n, views, dim], or [n, dim] when ``view`` is given.
        """
        self._check_key(key)
        pos = self.positions() if positions is None else np.asarray(positions, dtype=np.int64)
        codes, names = self._shard_codes
        views = self.views if view is None else 1
        out = np.empty((len(pos), views, self.dim(key)), dtype=self._dtype(key))
        pos_codes, pos_rows = codes[pos], self._rows[pos]
        for code, sel in group_by_code(pos_codes):
            rows = pos_rows[sel]
            lo, hi = int(rows.min()), int(rows.max()) + 1
            # One contiguous slice per shard, then a gather in memory: far faster than h5py's
            # point selection, and a slice is a few large remote reads instead of many small.
            dataset = self._file(names[code])[key]
            block = dataset[lo:hi] if view is None else dataset[lo:hi, view:view + 1]
            out[sel] = block[rows - lo]
        return out[:, 0] if view is not None else out

    def _dtype(self, key: str) -> np.dtype:
        return np.dtype(self.manifest.modalities[key].dtype)

    def iter_chunks(self, key: str, positions: np.ndarray,
                    chunk_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, features)`` in chunks of ``chunk_rows`` (streaming reads)."""
        positions = np.asarray(positions, dtype=np.int64)
        for start in range(0, len(positions), chunk_rows):
            pos = positions[start:start + chunk_rows]
            yield pos, self.read(key, pos)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        for handle in self._handles:
            handle.close()
        self._files.clear()
        self._handles.clear()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_manifest(loc: Location) -> StoreManifest:
    """The typed ``store.json`` of a complete store.

    Raises:
        StoreError: no ``store.json`` (missing or incomplete store), not JSON, an unknown or
            newer format, or a field that does not fit the contract.
    """
    if not loc.exists("store.json"):
        hint = (" (extraction has not finished: run the same `cli extract` again to resume)"
                if loc.exists(SHARD_DIR) else "")
        raise StoreError(f"{loc.display}: no store.json, not a complete feature store{hint}")
    try:
        data = json.loads(loc.read_bytes("store.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{loc.display}/store.json: not valid JSON ({err})") from None
    return parse_manifest(data, f"{loc.display}/store.json")


def open_store(url: str | Path, *, storage_options: dict[str, Any] | None = None,
               block_size: int = READ_BLOCK_SIZE) -> FeatureStore:
    """Open a complete store (a folder or fsspec URL) for reading.

    Args:
        url: the store.
        storage_options: fsspec options (credentials, endpoint); default: the environment's.
        block_size: bytes per remote read of a shard.

    Raises:
        StoreError: no ``store.json`` (missing or incomplete store) or an unknown format.
    """
    loc = Location.parse(url, storage_options)
    manifest = load_manifest(loc)
    return FeatureStore(loc, manifest, read_parquet(loc, "index.parquet"), block_size=block_size)


__all__ = ["FeatureStore", "dictionary_codes", "group_by_code", "load_manifest", "open_store"]
