"""The feature store: HDF5 shards + Parquet index + ``store.json`` provenance.

Layout (a local folder or any fsspec URL)::

    STORE/
      store.json          written last, atomically: its presence means the store is complete
      index.parquet       one row per extracted sample (sample_id, split, shard, row, label(s), ...)
      failures.parquet    one row per sample that could not be extracted
      shards/shard-00000.h5, ...   one float16 dataset [rows, views, dim] per modality key,
                                   plus ``sample_id`` [rows]; row order matches index.parquet

A store is readable with plain ``h5py`` + ``pyarrow``; nothing is pickled. The writer side
(:func:`write_shard`, :func:`finalize`) is used by :mod:`pipeline.run`; :func:`open_store` is the
one reader the trainer uses.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import fsspec
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.failures import FAILURE_SCHEMA

log = logging.getLogger(__name__)

FORMAT = "conclugen-store/1"
SHARD_DIR = "shards"
INDEX_META_COLUMNS = ("duration_s", "face_ratio", "transcript")


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


# ----------------------------------------------------------------------------------- filesystem

@dataclass
class Location:
    """A store's filesystem and root path; local folders and fsspec URLs alike."""

    url: str
    fs: fsspec.AbstractFileSystem = field(repr=False)
    root: str

    @classmethod
    def parse(cls, url: str | Path, storage_options: dict[str, Any] | None = None) -> Location:
        fs, root = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
        return cls(str(url), fs, root.rstrip("/"))

    @property
    def is_local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                          else (self.fs.protocol,))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.path(*parts)))

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open(self.path(*parts), "rb") as f:
            return f.read()

    def write_atomic(self, data: bytes, *parts: str) -> None:
        """Write to a temporary name, then move into place: readers never see half a file."""
        final = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = final + ".tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, final)

    def put_atomic(self, local_file: str | Path, *parts: str) -> None:
        final = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = final + ".tmp"
        self.fs.put_file(str(local_file), tmp)
        self.fs.mv(tmp, final)


def sha256_file(fs: fsspec.AbstractFileSystem, path: str, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def table_to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def read_parquet(loc: Location, *parts: str) -> pa.Table:
    with loc.fs.open(loc.path(*parts), "rb") as f:
        return pq.read_table(f)


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
    killed mid-shard leaves nothing that a resumed run would mistake for finished work.

    Args:
        loc: the store location.
        k: shard number.
        store_id: written into the shard's attributes; resume refuses shards of another id.
        sample_ids: [rows] ids, in row order.
        features: per modality key an array [rows, views, dim].
        index: [rows] index rows (sample_id, split, label(s), duration_s, face_ratio, transcript).
        failures: failure rows of this shard's clips.
        dtype: storage dtype of the features.
        scratch: local folder for the temporary file when the store is remote.
        info: JSON-able facts about how the shard was made (kept in its ``info`` attribute).
    """
    rows = len(sample_ids)
    if index.num_rows != rows or index.column("sample_id").to_pylist() != list(sample_ids):
        raise StoreError(f"shard {k}: index rows do not match the feature rows")
    name = shard_name(k)
    loc.write_atomic(table_to_bytes(index), SHARD_DIR, name + ".index.parquet")
    loc.write_atomic(table_to_bytes(failures), SHARD_DIR, name + ".failures.parquet")
    local_dir = Path(loc.path(SHARD_DIR)) if loc.is_local else Path(scratch or ".")
    local_dir.mkdir(parents=True, exist_ok=True)
    tmp = local_dir / f"{name}.h5.partial"
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["store_id"] = store_id
        h5.attrs["info"] = json.dumps(info or {}, sort_keys=True)
        h5.create_dataset("sample_id", data=np.array(list(sample_ids), dtype=object),
                          dtype=h5py.string_dtype())
        for key, arr in features.items():
            if arr.shape[0] != rows or arr.ndim != 3:
                raise StoreError(f"shard {k}: {key} has shape {arr.shape}, expected [{rows}, V, D]")
            if not np.isfinite(arr).all():
                raise StoreError(f"shard {k}: {key} holds NaN or Inf values")
            chunk = (max(1, min(rows, 256)), arr.shape[1], arr.shape[2]) if rows else None
            h5.create_dataset(key, data=arr.astype(dtype), chunks=chunk)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    if loc.is_local:
        tmp.replace(Path(loc.path(SHARD_DIR, name + ".h5")))
    else:
        loc.put_atomic(tmp, SHARD_DIR, name + ".h5")
        tmp.unlink()
    return ShardResult(name, rows, digest, index, failures, info or {})


def completed_shard(loc: Location, k: int, store_id: str) -> ShardResult | None:
    """The shard ``k`` if it was completed by a run of the same ``store_id``, else None.

    Raises:
        StoreError: the shard exists but was written with another configuration.
    """
    name = shard_name(k)
    if not loc.exists(SHARD_DIR, name + ".h5"):
        return None
    with loc.fs.open(loc.path(SHARD_DIR, name + ".h5"), "rb") as f, h5py.File(f, "r") as h5:
        found = str(h5.attrs.get("store_id", ""))
        rows = int(h5["sample_id"].shape[0])
        info = json.loads(h5.attrs.get("info", "{}"))
    if found != store_id:
        raise StoreError(f"{loc.path(SHARD_DIR, name + '.h5')} was extracted with another "
                         f"configuration (store_id {found[:12]}, this run {store_id[:12]}); "
                         "use a new --out or the same options as before")
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
    parts = []
    for shard in shards:
        t = shard.index
        t = t.append_column("shard", pa.array([shard.name] * t.num_rows, pa.string()))
        t = t.append_column("row", pa.array(np.arange(t.num_rows), pa.int64()))
        parts.append(t)
    index = pa.concat_tables(parts) if parts else None
    if index is None:
        raise StoreError("no shards to finalize")
    order = ["sample_id", "split", "shard", "row"]
    index = index.select(order + [c for c in index.column_names if c not in order])
    failures = pa.concat_tables([adapter_failures.cast(FAILURE_SCHEMA),
                                 *(s.failures.cast(FAILURE_SCHEMA) for s in shards)])
    loc.write_atomic(table_to_bytes(index), "index.parquet")
    loc.write_atomic(table_to_bytes(failures), "failures.parquet")
    splits = index.column("split").to_pylist()
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
            "splits": {s: splits.count(s) for s in sorted(set(splits))},
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    loc.write_atomic(json.dumps(manifest, indent=2, sort_keys=True).encode(), "store.json")
    return manifest


def write_arrays(url: str | Path, *, dataset: str, sample_ids: Sequence[str],
                 splits: Sequence[str], features: dict[str, np.ndarray], labels: np.ndarray,
                 label_names: Sequence[str], multilabel: bool = False,
                 shard_size: int = 256) -> FeatureStore:
    """Write a complete store from in-memory arrays (synthetic stores, tests, conversions).

    Args:
        features: per key [n, views, dim].
        labels: int [n] (-1 unlabeled) or, multi-label, float [n, len(label_names)].
    """
    loc = Location.parse(url)
    n = len(sample_ids)
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
    for k, start in enumerate(range(0, n, shard_size)):
        sl = slice(start, min(n, start + shard_size))
        ids = list(sample_ids[sl])
        cols: dict[str, Any] = {"sample_id": ids, "split": list(splits[sl])}
        if multilabel:
            cols["labels"] = pa.array([list(map(float, r)) for r in labels[sl]],
                                      pa.list_(pa.float32()))
        else:
            cols["label"] = pa.array(labels[sl], pa.int64())
        cols["duration_s"] = pa.array([None] * len(ids), pa.float64())
        cols["face_ratio"] = pa.array([None] * len(ids), pa.float64())
        cols["transcript"] = pa.array([None] * len(ids), pa.string())
        shards.append(write_shard(loc, k, store_id=store_id, sample_ids=ids,
                                  features={key: v[sl] for key, v in features.items()},
                                  index=pa.table(cols), failures=FAILURE_SCHEMA.empty_table()))
    finalize(loc, identity=provenance, provenance=provenance, shards=shards,
             adapter_failures=FAILURE_SCHEMA.empty_table())
    return open_store(url)


# ----------------------------------------------------------------------------------------- read

class FeatureStore:
    """A complete store opened for reading (see :func:`open_store`)."""

    def __init__(self, loc: Location, manifest: dict[str, Any], index: pa.Table) -> None:
        self.loc = loc
        self.url = loc.url
        self.manifest = manifest
        self.index = index
        self._files: dict[str, h5py.File] = {}

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

    def dim(self, key: str) -> int:
        self._check_key(key)
        return int(self.manifest["modalities"][key]["dim"])

    def _check_key(self, key: str) -> None:
        if key not in self.manifest["modalities"]:
            raise KeyError(f"{self.url} has no modality {key!r}; it has {list(self.keys)}")

    @cached_property
    def _shard_codes(self) -> tuple[np.ndarray, list[str]]:
        col = self.index.column("shard").dictionary_encode().combine_chunks()
        return col.indices.to_numpy(zero_copy_only=False), col.dictionary.to_pylist()

    @cached_property
    def _rows(self) -> np.ndarray:
        return self.index.column("row").to_numpy()

    def positions(self, splits: str | Sequence[str] | None = None) -> np.ndarray:
        """Row positions into :attr:`index` of the given split(s), in index order."""
        if splits is None:
            return np.arange(self.index.num_rows, dtype=np.int64)
        wanted = [splits] if isinstance(splits, str) else list(splits)
        col = self.index.column("split").to_numpy(zero_copy_only=False)
        return np.flatnonzero(np.isin(col, wanted)).astype(np.int64)

    def labels(self, positions: np.ndarray | None = None) -> np.ndarray:
        """int64 [n] (-1 unlabeled) or, multi-label, float32 [n, L]."""
        pos = self.positions() if positions is None else np.asarray(positions)
        if self.multilabel:
            col = self.index.column("labels").combine_chunks()
            flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            return flat.reshape(len(col), -1)[pos]
        return self.index.column("label").to_numpy()[pos]

    def _file(self, shard: str) -> h5py.File:
        if shard not in self._files:
            path = self.loc.path(SHARD_DIR, shard + ".h5")
            source: Any = path if self.loc.is_local else self.loc.fs.open(path, "rb")
            self._files[shard] = h5py.File(source, "r")
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
        for code in np.unique(pos_codes):
            sel = np.flatnonzero(pos_codes == code)
            rows = pos_rows[sel]
            lo, hi = int(rows.min()), int(rows.max()) + 1
            # One contiguous slice per shard, then a gather in memory: far faster than h5py's
            # point selection, and the slice is what a sequential reader wants anyway.
            block = self._file(names[code])[key][lo:hi] if view is None else \
                self._file(names[code])[key][lo:hi, view:view + 1]
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
        self._files.clear()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str | Path, *, storage_options: dict[str, Any] | None = None) -> FeatureStore:
    """Open a complete store (a folder or fsspec URL) for reading.

    Raises:
        StoreError: no ``store.json`` (missing or incomplete store) or an unknown format.
    """
    loc = Location.parse(url, storage_options)
    if not loc.exists("store.json"):
        hint = (" (extraction has not finished: run the same `cli extract` again to resume)"
                if loc.exists(SHARD_DIR) else "")
        raise StoreError(f"{url}: no store.json, not a complete feature store{hint}")
    manifest = json.loads(loc.read_bytes("store.json"))
    if not str(manifest.get("format", "")).startswith("conclugen-store/"):
        raise StoreError(f"{url}: unknown store format {manifest.get('format')!r}")
    return FeatureStore(loc, manifest, read_parquet(loc, "index.parquet"))
