"""The feature store: HDF5 shards + Parquet index + ``store.json`` provenance.

Layout (a local folder or any fsspec URL: ``s3://``, ``gs://``, ``file://``, ``memory://``)::

    STORE/
      store.json          written last, atomically: its presence means the store is complete
      index.parquet       one row per extracted sample (sample_id, split, shard, row, label(s), ...)
      failures.parquet    one row per sample that could not be extracted
      shards/shard-00000.h5, ...   one float16 dataset [rows, views, dim] per modality key,
                                   plus ``sample_id`` [rows]; row order matches index.parquet

A store is readable with plain ``h5py`` + ``pyarrow``; nothing is pickled. The writer side
(:func:`write_shard`, :func:`finalize`) is used by :mod:`pipeline.run`; :func:`open_store` is the
one reader the trainer uses. Where the files live and how they are moved is
:mod:`pipeline.storage` (re-exported here); whole-store operations (info, verify, diff, merge)
are :mod:`pipeline.store_ops`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.failures import FAILURE_SCHEMA
from pipeline.storage import (COPY_BLOCK_SIZE, READ_BLOCK_SIZE, READ_CACHE_TYPE, Location,
                              read_parquet, redact_url, sha256_file, table_to_bytes)

log = logging.getLogger(__name__)

FORMAT = "conclugen-store/1"
SHARD_DIR = "shards"
INDEX_META_COLUMNS = ("duration_s", "face_ratio", "transcript")

__all__ = ["COPY_BLOCK_SIZE", "FORMAT", "READ_BLOCK_SIZE", "READ_CACHE_TYPE", "SHARD_DIR",
           "FeatureStore", "Location", "ShardResult", "StoreError", "canonical_json",
           "completed_shard", "dictionary_codes", "finalize", "group_by_code", "load_manifest",
           "open_store", "read_parquet", "redact_url", "sha256_file", "shard_name",
           "store_id_of", "table_to_bytes", "write_arrays", "write_shard"]


class StoreError(ValueError):
    """A store is missing, incomplete, inconsistent or of another configuration."""


def canonical_json(obj: Any) -> str:
    """The JSON text whose sha256 identifies a provenance (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def store_id_of(provenance: dict[str, Any]) -> str:
    """sha256 of the canonical feature provenance (what determines the feature values)."""
    return hashlib.sha256(canonical_json(provenance).encode()).hexdigest()


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


# ---------------------------------------------------------------------------------------- write

@dataclass(frozen=True)
class ShardResult:
    """What a written shard reports back to the driver."""

    name: str
    rows: int
    sha256: str
    index: pa.Table       # index rows of this shard (without ``shard``/``row``; added at finalize)
    failures: pa.Table
    info: dict[str, Any] = field(default_factory=dict)  # e.g. encoder provenance, timings


def write_shard(loc: Location, k: int, *, store_id: str, sample_ids: Sequence[str],
                features: dict[str, np.ndarray], index: pa.Table, failures: pa.Table,
                dtype: str = "float16", scratch: str | Path | None = None,
                info: dict[str, Any] | None = None) -> ShardResult:
    """Write shard ``k`` (features + its index and failure rows) under a temporary name.

    The two Parquet sidecars (``shard-k.index.parquet``, ``shard-k.failures.parquet``) land
    first, the ``.h5`` last: a shard counts as complete when its ``.h5`` exists, so a worker
    killed mid-shard leaves nothing that a resumed run would mistake for finished work. A remote
    shard is built in a local folder and uploaded whole.

    Args:
        loc: the store location.
        k: shard number.
        store_id: written into the shard's attributes; resume refuses shards of another id.
        sample_ids: [rows] ids, in row order.
        features: per modality key an array [rows, views, dim].
        index: [rows] index rows (sample_id, split, label(s), duration_s, face_ratio, transcript).
        failures: failure rows of this shard's clips.
        dtype: storage dtype of the features.
        scratch: local folder for the temporary file when the store is remote (default: a new
            temporary folder).
        info: JSON-able facts about how the shard was made (kept in its ``info`` attribute).
    """
    rows = len(sample_ids)
    if index.num_rows != rows or index.column("sample_id").to_pylist() != list(sample_ids):
        raise StoreError(f"shard {k}: index rows do not match the feature rows")
    name = shard_name(k)
    loc.write_atomic(table_to_bytes(index), SHARD_DIR, name + ".index.parquet")
    loc.write_atomic(table_to_bytes(failures), SHARD_DIR, name + ".failures.parquet")
    if loc.is_local:
        local_dir = Path(loc.path(SHARD_DIR))
        tmp = local_dir / f"{name}.h5.partial"
        digest = _write_h5(tmp, k, store_id, sample_ids, features, dtype, info or {})
        tmp.replace(local_dir / f"{name}.h5")
    else:
        with tempfile.TemporaryDirectory(dir=scratch) as local_dir:
            tmp = Path(local_dir) / f"{name}.h5.partial"
            digest = _write_h5(tmp, k, store_id, sample_ids, features, dtype, info or {})
            loc.put_atomic(tmp, SHARD_DIR, name + ".h5")
    return ShardResult(name, rows, digest, index, failures, info or {})


def _write_h5(path: Path, k: int, store_id: str, sample_ids: Sequence[str],
              features: dict[str, np.ndarray], dtype: str, info: dict[str, Any]) -> str:
    """Write one shard file; returns its sha256."""
    rows = len(sample_ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["store_id"] = store_id
        h5.attrs["info"] = json.dumps(info, sort_keys=True)
        h5.create_dataset("sample_id", data=np.array(list(sample_ids), dtype=object),
                          dtype=h5py.string_dtype())
        for key, arr in features.items():
            if arr.shape[0] != rows or arr.ndim != 3:
                raise StoreError(f"shard {k}: {key} has shape {arr.shape}, expected [{rows}, V, D]")
            if not np.isfinite(arr).all():
                raise StoreError(f"shard {k}: {key} holds NaN or Inf values")
            chunk = (max(1, min(rows, 256)), arr.shape[1], arr.shape[2]) if rows else None
            h5.create_dataset(key, data=arr.astype(dtype), chunks=chunk)
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def completed_shard(loc: Location, k: int, store_id: str) -> ShardResult | None:
    """The shard ``k`` if it was completed by a run of the same ``store_id``, else None.

    Raises:
        StoreError: the shard exists but was written with another configuration.
    """
    name = shard_name(k)
    if not loc.exists(SHARD_DIR, name + ".h5"):
        return None
    with loc.open_read(SHARD_DIR, name + ".h5") as f, h5py.File(f, "r") as h5:
        found = str(h5.attrs.get("store_id", ""))
        rows = int(h5["sample_id"].shape[0])
        info = json.loads(h5.attrs.get("info", "{}"))
    if found != store_id:
        raise StoreError(f"{redact_url(loc.path(SHARD_DIR, name + '.h5'))} was extracted with "
                         f"another configuration (store_id {found[:12]}, this run "
                         f"{store_id[:12]}); use a new --out or the same options as before")
    return ShardResult(name, rows, sha256_file(loc.fs, loc.path(SHARD_DIR, name + ".h5")),
                       read_parquet(loc, SHARD_DIR, name + ".index.parquet"),
                       read_parquet(loc, SHARD_DIR, name + ".failures.parquet"), info)


def finalize(loc: Location, *, identity: dict[str, Any], provenance: dict[str, Any],
             shards: Sequence[ShardResult], adapter_failures: pa.Table) -> dict[str, Any]:
    """Write ``index.parquet``, ``failures.parquet`` and, last, ``store.json``.

    Args:
        identity: what determines the feature values (dataset and manifest hash, backbones and
            weights, views, extraction settings). Stored under ``identity``; its canonical
            sha256 is the ``store_id``, so anyone can recompute it.
        provenance: everything else ``store.json`` records: ``dataset``, ``modalities`` (with
            ``dim`` and ``dtype`` per key), ``views``, software versions, timings, options.
        shards: every shard of the store, in order.
        adapter_failures: failures found before extraction (missing files, known-bad clips).

    Returns:
        The ``store.json`` content.
    """
    if not shards:
        raise StoreError("no shards to finalize")
    parts = []
    for shard in shards:
        t = shard.index
        t = t.append_column("shard", pa.array([shard.name] * t.num_rows, pa.string()))
        t = t.append_column("row", pa.array(np.arange(t.num_rows), pa.int64()))
        parts.append(t)
    # Shards that hold only nulls in a column (no transcripts, say) infer a null type: promote.
    index = pa.concat_tables(parts, promote_options="default")
    order = ["sample_id", "split", "shard", "row"]
    index = index.select(order + [c for c in index.column_names if c not in order])
    failures = pa.concat_tables([adapter_failures.cast(FAILURE_SCHEMA),
                                 *(s.failures.cast(FAILURE_SCHEMA) for s in shards)])
    loc.write_atomic(table_to_bytes(index), "index.parquet")
    loc.write_atomic(table_to_bytes(failures), "failures.parquet")
    splits = pc.value_counts(index.column("split")).to_pylist()
    manifest = {
        "format": FORMAT,
        "store_id": store_id_of(identity),
        "identity": identity,
        **provenance,
        "shards": [{"path": f"{SHARD_DIR}/{s.name}.h5", "rows": s.rows, "sha256": s.sha256}
                   for s in shards],
        "counts": {
            "samples": index.num_rows,
            "failures": failures.num_rows,
            "splits": {d["values"]: d["counts"] for d in sorted(splits, key=lambda d: d["values"])},
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    loc.write_atomic(json.dumps(manifest, indent=2, sort_keys=True).encode(), "store.json")
    log.info("%s: store complete, %d samples in %d shards, %d failures", loc.display,
             index.num_rows, len(shards), failures.num_rows)
    return manifest


def write_arrays(url: str | Path, *, dataset: str, sample_ids: Sequence[str],
                 splits: Sequence[str], features: dict[str, np.ndarray], labels: np.ndarray,
                 label_names: Sequence[str], multilabel: bool = False,
                 shard_size: int = 256,
                 storage_options: dict[str, Any] | None = None) -> FeatureStore:
    """Write a complete store from in-memory arrays (synthetic stores, tests, conversions).

    Args:
        features: per key [n, views, dim].
        labels: int [n] (-1 unlabeled) or, multi-label, float [n, len(label_names)].
        storage_options: fsspec options of the store's filesystem (credentials, endpoint).
    """
    loc = Location.parse(url, storage_options)
    provenance = {
        "dataset": {"name": dataset, "labels": list(label_names), "multilabel": multilabel,
                    "manifest_sha256": None},
        "modalities": {k: {"backbone": "arrays", "weights": "none", "weights_sha256": None,
                           "dim": int(v.shape[2]), "dtype": "float16"}
                       for k, v in sorted(features.items())},
        "views": int(next(iter(features.values())).shape[1]),
    }
    store_id = store_id_of(provenance)
    shards = []
    for k, start in enumerate(range(0, len(sample_ids), shard_size)):
        sl = slice(start, min(len(sample_ids), start + shard_size))
        ids = list(sample_ids[sl])
        shards.append(write_shard(loc, k, store_id=store_id, sample_ids=ids,
                                  features={key: v[sl] for key, v in features.items()},
                                  index=_arrays_index(ids, splits[sl], labels[sl], multilabel),
                                  failures=FAILURE_SCHEMA.empty_table()))
    finalize(loc, identity=provenance, provenance=provenance, shards=shards,
             adapter_failures=FAILURE_SCHEMA.empty_table())
    return open_store(url, storage_options=storage_options)


def _arrays_index(ids: list[str], splits: Sequence[str], labels: np.ndarray,
                  multilabel: bool) -> pa.Table:
    cols: dict[str, Any] = {"sample_id": ids, "split": list(splits)}
    if multilabel:
        cols["labels"] = pa.array([list(map(float, r)) for r in labels], pa.list_(pa.float32()))
    else:
        cols["label"] = pa.array(labels, pa.int64())
    cols["duration_s"] = pa.nulls(len(ids), pa.float64())
    cols["face_ratio"] = pa.nulls(len(ids), pa.float64())
    cols["transcript"] = pa.nulls(len(ids), pa.string())
    return pa.table(cols)


# ----------------------------------------------------------------------------------------- read

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

    def __init__(self, loc: Location, manifest: dict[str, Any], index: pa.Table, *,
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
        return str(self.manifest["store_id"])

    @property
    def dataset(self) -> str:
        return str(self.manifest["dataset"]["name"])

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self.manifest["modalities"]))

    @property
    def views(self) -> int:
        return int(self.manifest["views"])

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["dataset"]["labels"])

    @property
    def multilabel(self) -> bool:
        return bool(self.manifest["dataset"]["multilabel"])

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the index holds, sorted."""
        return tuple(sorted(self._split_codes[1]))

    def dim(self, key: str) -> int:
        self._check_key(key)
        return int(self.manifest["modalities"][key]["dim"])

    def _check_key(self, key: str) -> None:
        if key not in self.manifest["modalities"]:
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
        return np.dtype(self.manifest["modalities"][key].get("dtype", "float16"))

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


def load_manifest(loc: Location) -> dict[str, Any]:
    """The parsed ``store.json`` of a complete store.

    Raises:
        StoreError: no ``store.json`` (missing or incomplete store) or an unknown format.
    """
    if not loc.exists("store.json"):
        hint = (" (extraction has not finished: run the same `cli extract` again to resume)"
                if loc.exists(SHARD_DIR) else "")
        raise StoreError(f"{loc.display}: no store.json, not a complete feature store{hint}")
    manifest = json.loads(loc.read_bytes("store.json"))
    if not str(manifest.get("format", "")).startswith("conclugen-store/"):
        raise StoreError(f"{loc.display}: unknown store format {manifest.get('format')!r}")
    return manifest


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
