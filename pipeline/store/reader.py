"""Reading a feature store: :func:`open_store` and :class:`FeatureStore`.

A store is readable with plain ``h5py`` + ``pyarrow``; nothing is pickled. This module is the
reader the trainer, evaluation and prediction use; ``store.json`` is parsed into a typed
:class:`~pipeline.store.manifest.StoreManifest` (any readable format version).

What is read is what ``store verify`` checks: an index row's ``shard`` names a shard that
``store.json`` lists, and the file opened is that entry's path
(:func:`~pipeline.store.manifest.shard_paths`), through the one gate that keeps every read
inside the store (:meth:`~pipeline.store.filesystem.Location.member`). Opening a store checks,
cheaply, that the index and ``store.json`` agree (:meth:`FeatureStore.check_index`: columns,
listed shards, rows per shard, every row in range and used once); a shard's datasets are
checked against the declared shape and dtype when first read. Checksums are not recomputed on
open (that reads every byte): ``cli store verify`` does that.
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

from pipeline.store.errors import MissingFileError, StoreError
from pipeline.store.filesystem import READ_BLOCK_SIZE, Location, read_parquet
from pipeline.store.index_columns import dictionary_codes, group_by_code
from pipeline.store.manifest import SHARD_DIR, StoreManifest, parse_manifest, shard_paths
from pipeline.store.shard_checks import (VERIFY_HINT, check_finite, h5_errors,
                                         plain_dataset_problem)
from pipeline.store.shard_files import MAX_OPEN_SHARDS, ShardFiles
from pipeline.store.split import StoreSplit, split_of

log = logging.getLogger(__name__)

def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and _is_text(t.value_type)))


class FeatureStore:
    """A complete store opened for reading (see :func:`open_store`).

    The index stays a pyarrow Table; the columns the hot paths need (split, shard, row, labels)
    are turned into numpy arrays once, so :meth:`positions`, :meth:`labels` and :meth:`read`
    cost array operations, not a Python loop over rows, on stores of a million clips. At most
    ``max_open_shards`` shard files are open at a time (:mod:`~pipeline.store.shard_files`).
    """

    def __init__(self, loc: Location, manifest: StoreManifest, index: pa.Table, *,
                 block_size: int = READ_BLOCK_SIZE,
                 max_open_shards: int = MAX_OPEN_SHARDS) -> None:
        self.loc = loc
        self.url = loc.display
        self.manifest = manifest
        self.index = index
        self.shard_paths = shard_paths(manifest, f"{self.url}/store.json")
        self._rows_declared = {e.path: e.rows for e in manifest.shards}
        self._shards = ShardFiles(loc, self.shard_paths, self._rows_declared, self._check_shard,
                                  block_size=block_size, max_open=max_open_shards)

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

    def check_index(self) -> None:
        """Refuse an index that disagrees with ``store.json`` (cheap: no shard is opened).

        Checks the columns and their types, the sample count, that every ``shard`` value is a
        shard ``store.json`` lists, that each shard has as many index rows as ``store.json``
        declares, and that every ``row`` is in range and used once (so the index rows of a
        shard are exactly its rows). Array operations over the index: a million rows cost a
        fraction of a second. Checksums and the shards' own ids are ``store verify``'s job.

        Raises:
            StoreError: naming the column, or the index row, sample id, shard and row.
        """
        where = f"{self.url}/index.parquet"
        label = ("labels", pa.types.is_list) if self.multilabel else ("label",
                                                                      pa.types.is_integer)
        for name, is_type in (("sample_id", _is_text), ("split", _is_text), ("shard", _is_text),
                              ("row", pa.types.is_integer), label):
            if name not in self.index.column_names:
                raise StoreError(f"{where}: column {name!r} missing (it has "
                                 f"{self.index.column_names}){VERIFY_HINT}")
            column = self.index.column(name)
            if not is_type(column.type):
                raise StoreError(f"{where}: column {name!r} is {column.type}, expected "
                                 f"{is_type.__name__.removeprefix('is_').strip('_')}"
                                 f"{VERIFY_HINT}")
            if name != label[0] and column.null_count:
                raise StoreError(f"{where}: column {name!r} has {column.null_count} null "
                                 f"values{VERIFY_HINT}")
        counts = self.manifest.counts
        if self.index.num_rows != counts.samples:
            raise StoreError(f"{where}: {self.index.num_rows} rows, store.json counts "
                             f"{counts.samples} samples{VERIFY_HINT}")
        self._check_rows(where)

    def _check_rows(self, where: str) -> None:
        codes, names = self._shard_codes
        unknown = [i for i, name in enumerate(names) if name not in self.shard_paths]
        if unknown:
            pos = int(np.flatnonzero(np.isin(codes, unknown))[0])
            raise StoreError(f"{where} row {pos} ({self._describe(pos)}): shard "
                             f"{names[codes[pos]]!r} is not listed in store.json{VERIFY_HINT}")
        declared = {name: self._rows_declared[path] for name, path in self.shard_paths.items()}
        found = np.bincount(codes, minlength=len(names))
        per_shard = dict(zip(names, found.tolist(), strict=True))
        for name, count in declared.items():
            if per_shard.get(name, 0) != count:
                raise StoreError(f"{where}: {per_shard.get(name, 0)} rows point to shard "
                                 f"{name!r}, store.json declares {count}{VERIFY_HINT}")
        limit = np.array([declared[name] for name in names], dtype=np.int64)[codes]
        rows = self._rows
        bad = np.flatnonzero((rows < 0) | (rows >= limit))
        if len(bad):
            pos = int(bad[0])
            raise StoreError(f"{where} row {pos} ({self._describe(pos)}): row {rows[pos]} is "
                             f"out of range (0..{limit[pos] - 1}){VERIFY_HINT}")
        sizes = np.array([declared[n] for n in names], dtype=np.int64)
        offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(sizes)])[:-1]
        slots = offsets[codes] + rows
        order = np.argsort(slots, kind="stable")
        repeated = np.flatnonzero(np.diff(slots[order]) == 0)
        if len(repeated):
            first, second = sorted(order[repeated[0]:repeated[0] + 2].tolist())
            raise StoreError(f"{where} rows {first} and {second}: both point to shard "
                             f"{names[codes[first]]!r} row {rows[first]}{VERIFY_HINT}")

    def _describe(self, pos: int) -> str:
        codes, names = self._shard_codes
        return (f"sample_id {self.index.column('sample_id')[pos].as_py()!r}, shard "
                f"{names[codes[pos]]!r}, row {self._rows[pos]}")

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

    def split(self, *names: str) -> StoreSplit:
        """The rows of the splits ``names`` (all rows when none is named) as arrays or a
        PyTorch dataset (:class:`~pipeline.store.split.StoreSplit`): ``split("train")``.

        Raises:
            StoreError: a split the store does not hold (its splits are named).
        """
        return split_of(self, names)

    def labels(self, positions: np.ndarray | None = None) -> np.ndarray:
        """int64 [n] (-1 unlabeled) or, multi-label, float32 [n, L]."""
        return self._labels if positions is None else self._labels[np.asarray(positions)]

    def _check_shard(self, shard: str, h5: h5py.File, where: str) -> None:
        """When a shard is first opened: plain datasets only, and its ``sample_id`` rows are
        the clips the index says they are (one small dataset: a store whose shards were
        swapped or edited is refused before a single feature is read)."""
        with h5_errors(where, "read it"):
            for name in h5:
                problem = plain_dataset_problem(h5, name)
                if problem:
                    raise StoreError(f"{where} dataset {name!r}: {problem}{VERIFY_HINT}")
            if "sample_id" not in h5:
                raise StoreError(f"{where}: no sample_id dataset{VERIFY_HINT}")
            ids = h5["sample_id"].asstr()[:]
        positions = self._positions_by_shard.get(shard, np.empty(0, np.int64))
        rows = self._rows[positions]
        if len(ids) != self._rows_declared[self.shard_paths[shard]] or (
                len(rows) and rows.max() >= len(ids)):
            raise StoreError(f"{where}: {len(ids)} sample_id rows, store.json declares "
                             f"{self._rows_declared[self.shard_paths[shard]]}{VERIFY_HINT}")
        expected = self.index.column("sample_id").take(pa.array(positions)).to_numpy(
            zero_copy_only=False)
        wrong = np.flatnonzero(ids[rows] != expected)
        if wrong.size:
            p = int(positions[wrong[0]])
            raise StoreError(f"{where}: row {int(rows[wrong[0]])} holds sample_id "
                             f"{ids[rows[wrong[0]]]!r}, the index (row {p}) says "
                             f"{expected[wrong[0]]!r}: the shard does not hold the clips the "
                             f"index names ({wrong.size} rows differ){VERIFY_HINT}")

    @cached_property
    def _positions_by_shard(self) -> dict[str, np.ndarray]:
        codes, names = self._shard_codes
        return {names[code]: positions for code, positions in group_by_code(codes)}

    def check_shard(self, shard: str) -> None:
        """Open shard ``shard`` (an index ``shard`` value) and run the checks reads run:
        plain datasets only, sample ids matching the index.

        Raises:
            StoreError: naming the shard and what is wrong.
        """
        self._shards.file(shard)

    def _dataset(self, shard: str, key: str) -> h5py.Dataset:
        """Dataset ``key`` of a shard, checked once against what ``store.json`` declares."""
        return self._shards.dataset(shard, key, views=self.views, dim=self.dim(key),
                                    dtype=self._dtype(key))

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
            dataset = self._dataset(names[code], key)
            where = f"{self.loc.where(self.shard_paths[names[code]])} dataset {key!r}"
            with h5_errors(where, f"read rows {lo}..{hi - 1}"):
                block = dataset[lo:hi] if view is None else dataset[lo:hi, view:view + 1]
            picked = block[rows - lo]
            check_finite(picked, where, rows)
            out[sel] = picked
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
        """Close the open shard files."""
        self._shards.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_manifest(loc: Location) -> StoreManifest:
    """The typed ``store.json`` of a complete store.

    Raises:
        StoreError: no ``store.json`` (missing or incomplete store), not JSON, an unknown or
            newer format, a field that does not fit the contract, or a storage failure
            (credentials, connection), each naming the file.
    """
    try:
        raw = loc.read_bytes("store.json")
    except MissingFileError:
        hint = (" (extraction has not finished: run the same `cli extract` again to resume)"
                if loc.exists(SHARD_DIR) else "")
        raise StoreError(f"{loc.display}: no store.json, not a complete feature store{hint}") \
            from None
    try:
        data = json.loads(raw)
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
        StoreError: no ``store.json`` (missing or incomplete store), an unknown format, an
            index that disagrees with ``store.json`` (:meth:`FeatureStore.check_index`), or a
            storage failure, each naming the file.
    """
    loc = Location.parse(url, storage_options)
    manifest = load_manifest(loc)
    store = FeatureStore(loc, manifest, read_parquet(loc, "index.parquet"),
                         block_size=block_size)
    store.check_index()
    return store


#: ``h5_errors`` (:mod:`pipeline.store.shard_checks`), ``dictionary_codes`` and ``group_by_code``
#: (:mod:`pipeline.store.index_columns`) too: store modules import them from here.
__all__ = ["FeatureStore", "as_store", "dictionary_codes", "group_by_code", "h5_errors",
           "load_manifest", "open_store"]


def as_store(ref: str | Path | FeatureStore, *,
             storage_options: dict[str, Any] | None = None) -> FeatureStore:
    """An open store as it is, or :func:`open_store` of a URL or path."""
    return ref if isinstance(ref, FeatureStore) else open_store(
        ref, storage_options=storage_options)
