"""Writing a feature store: shards under temporary names, then the index, then ``store.json``.

Layout (a local folder or any fsspec URL: ``s3://``, ``gs://``, ``file://``, ``memory://``)::

    STORE/
      store.json          written last, atomically: its presence means the store is complete
      index.parquet       one row per extracted sample (sample_id, split, shard, row, label(s), ...)
      failures.parquet    one row per sample that could not be extracted
      shards/shard-00000.h5, ...   one float16 dataset [rows, views, dim] per modality key,
                                   plus ``sample_id`` [rows]; row order matches index.parquet

:func:`write_shard` and :func:`completed_shard` are used by the extraction run,
:func:`finalize` by the run and by ``store merge``, :func:`write_arrays` by tests, benchmarks
and conversions. ``store.json`` is a :class:`~pipeline.store.manifest.StoreManifest`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.extract_config import ExtractConfig
from pipeline.failures import FAILURE_SCHEMA
from pipeline.store.errors import MissingFileError, StoreError
from pipeline.store.filesystem import (Location, read_parquet, sha256_file, storage_errors,
                                       table_to_bytes)
from pipeline.store.manifest import (FORMAT, SHARD_DIR, BackboneChoice, Counts, DatasetInfo,
                                     LabelTextsInfo, ModalityInfo, ShardEntry, StoreIdentity,
                                     StoreManifest, build_manifest, publish_manifest,
                                     store_id_of)
from pipeline.store.reader import FeatureStore, h5_errors, open_store

log = logging.getLogger(__name__)


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


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
    where = loc.where(SHARD_DIR, name + ".h5")
    if loc.is_local:
        local_dir = Path(loc.path(SHARD_DIR))
        # A unique temporary name: a task orphaned by a killed driver and the re-run's task
        # for the same shard never write into one file.
        tmp = local_dir / f"{name}.h5.{uuid.uuid4().hex[:12]}.partial"
        try:
            with storage_errors(where, "write"):
                digest = _write_h5(tmp, k, store_id, sample_ids, features, dtype, info or {})
                published = _publish(loc, k, store_id, tmp, local_dir / f"{name}.h5")
        finally:
            tmp.unlink(missing_ok=True)
        if not published:
            existing = completed_shard(loc, k, store_id)
            assert existing is not None
            return existing
    else:
        with tempfile.TemporaryDirectory(dir=scratch) as scratch_dir:
            tmp = Path(scratch_dir) / f"{name}.h5.partial"
            with storage_errors(f"{tmp} (the local copy of {where})", "write"):
                digest = _write_h5(tmp, k, store_id, sample_ids, features, dtype, info or {})
            loc.put_atomic(tmp, SHARD_DIR, name + ".h5")
    return ShardResult(name, rows, digest, index, failures, info or {})


def _publish(loc: Location, k: int, store_id: str, tmp: Path, final: Path) -> bool:
    """Move a written shard into place; False when this configuration's shard ``k`` got there
    first.

    That happens when a task orphaned by a killed driver (on a cluster that outlived it)
    finishes the same shard while the re-run writes it: the first file stays and both runs
    record it, so ``store.json``'s checksum is always the one of the file on disk (the two
    hold the same features; only the recorded timings differ). A shard of another
    configuration is replaced, as before. Without hard links, the last writer wins.
    """
    try:
        os.link(tmp, final)  # atomic, and never replaces an existing file
        return True
    except FileExistsError:
        try:
            same = shard_attributes(loc, k)[0] == store_id
        except StoreError:
            same = False  # unreadable: replace it
        if same:
            return False
    except OSError:
        pass  # a filesystem without hard links
    tmp.replace(final)
    return True


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
            with np.errstate(over="ignore"):  # an overflow is refused just below
                stored = arr.astype(dtype)
            # Checked after the cast: a value beyond float16's range becomes Inf there.
            if not np.isfinite(stored).all():
                raise StoreError(f"shard {k}: {key} holds values that are NaN or Inf as {dtype}")
            chunk = (max(1, min(rows, 256)), arr.shape[1], arr.shape[2]) if rows else None
            h5.create_dataset(key, data=stored, chunks=chunk)
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def completed_shard(loc: Location, k: int, store_id: str) -> ShardResult | None:
    """The shard ``k`` if it was completed by a run of the same ``store_id``, else None.

    Raises:
        StoreError: the shard exists but was written with another configuration.
    """
    name = shard_name(k)
    try:
        path = loc.member(SHARD_DIR, name + ".h5")
    except MissingFileError:
        return None
    where = loc.where(SHARD_DIR, name + ".h5")
    found, rows, info = shard_attributes(loc, k)
    if found != store_id:
        raise StoreError(f"{where} was extracted with another configuration (store_id "
                         f"{found[:12]}, this run {store_id[:12]}); use a new --out or the "
                         "same options as before")
    return ShardResult(name, rows, sha256_file(loc.fs, path, where=where),
                       read_parquet(loc, SHARD_DIR, name + ".index.parquet"),
                       read_parquet(loc, SHARD_DIR, name + ".failures.parquet"), info)


def shard_attributes(loc: Location, k: int) -> tuple[str, int, dict[str, Any]]:
    """``(store_id, rows, info)`` recorded in shard ``k`` (read through the store's gate).

    Raises:
        MissingFileError: no such shard.
        StoreError: not a readable shard.
    """
    rel = f"{SHARD_DIR}/{shard_name(k)}.h5"
    where = loc.where(rel)
    with loc.open_read(rel) as f, h5_errors(where, "read it as an HDF5 shard"), \
            h5py.File(f, "r") as h5:
        found = str(h5.attrs.get("store_id", ""))
        rows = int(h5["sample_id"].shape[0])
        info = json.loads(h5.attrs.get("info", "{}"))
    return found, rows, info


def finalize(loc: Location, *, identity: StoreIdentity, modalities: Mapping[str, ModalityInfo],
             shards: Sequence[ShardResult], adapter_failures: pa.Table,
             config: ExtractConfig | None = None, software: Mapping[str, str] | None = None,
             timings: Mapping[str, float] | None = None,
             options: Mapping[str, Any] | None = None,
             merged_from: Sequence[Mapping[str, Any]] = (), store_id: str | None = None,
             legacy: Mapping[str, Any] | None = None,
             label_texts: LabelTextsInfo | None = None) -> StoreManifest:
    """Write ``index.parquet``, ``failures.parquet`` and, last, ``store.json``.

    Args:
        identity: what determines the feature values; its canonical sha256 is the
            ``store_id`` (unless ``store_id`` is given: a merge of upgraded version-1 stores
            keeps theirs).
        modalities: per key, what the loaded encoder reported (dim, dtype, weights sha256).
        shards: every shard of the store, in order.
        adapter_failures: failures found before extraction (missing files, known-bad clips).
        config: the extraction config (None: written from arrays); its feature settings are
            ``identity.extraction``, its choices and run settings are recorded beside it.
        software, timings, options, merged_from, legacy, label_texts: see
            :class:`~pipeline.store.manifest.StoreManifest`.

    Returns:
        The manifest written as ``store.json``.
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
    manifest = build_manifest(
        identity=identity, modalities=modalities, store_id=store_id, legacy=legacy,
        shards=[ShardEntry(f"{SHARD_DIR}/{s.name}.h5", s.rows, s.sha256) for s in shards],
        counts=Counts(samples=index.num_rows, failures=failures.num_rows,
                      splits={d["values"]: d["counts"]
                              for d in sorted(splits, key=lambda d: d["values"])}),
        created=datetime.now(UTC).isoformat(timespec="seconds"), config=config,
        software=software, timings=timings, options=options, merged_from=merged_from,
        label_texts=label_texts)
    publish_manifest(loc, manifest)
    _remove_dead_partials(loc)
    log.info("%s: store complete, %d samples in %d shards, %d failures", loc.display,
             index.num_rows, len(shards), failures.num_rows)
    return manifest


def _remove_dead_partials(loc: Location) -> None:
    """Remove the half-written shard files (``shards/*.partial``) of tasks that died (a worker
    killed mid-write) from a complete local store.

    Every shard is complete once ``store.json`` is written, so a ``.partial`` file is the
    unfinished copy of a finished shard. A task orphaned by a killed driver could still be
    writing one; it then fails to publish, harmlessly (the shard is in place), and nothing
    waits for it. Best effort: a file that cannot be removed stays (verify notes it).
    """
    if not loc.is_local:
        return  # object stores write shards from a local scratch copy: nothing is left there
    for leftover in Path(loc.path(SHARD_DIR)).glob("*.partial"):
        try:
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink()
                log.info("%s: removed %s, left by a task that died writing it", loc.display,
                         leftover.name)
        except OSError as err:
            log.warning("%s: could not remove %s (%s)", loc.display, leftover.name, err)


def write_arrays(url: str | Path, *, dataset: str, sample_ids: Sequence[str],
                 splits: Sequence[str], features: dict[str, np.ndarray], labels: np.ndarray,
                 label_names: Sequence[str], multilabel: bool = False,
                 shard_size: int = 256, feature_space: str | None = None,
                 storage_options: dict[str, Any] | None = None,
                 targets: np.ndarray | None = None,
                 target_names: Sequence[str] = ()) -> FeatureStore:
    """Write a complete store from in-memory arrays (synthetic stores, tests, conversions).

    Args:
        features: per key [n, views, dim].
        labels: int [n] (-1 unlabeled) or, multi-label, float [n, len(label_names)].
        targets: continuous targets float [n, len(target_names)] (NaN: none), the index's
            ``targets`` column (valence, arousal in [-1, 1]).
        target_names: their names, recorded as the dataset's ``targets``.
        feature_space: a name for the space the vectors live in: array stores written with the
            same name (and dims) are comparable, so heads pretrained on one evaluate on the
            other. Default: the store's own content hash, comparable with itself only.
        storage_options: fsspec options of the store's filesystem (credentials, endpoint).

    The ``store_id`` is a hash of the content (ids, splits, labels, features), so two
    different array stores never share one.
    """
    loc = Location.parse(url, storage_options)
    if (targets is None) != (not target_names) or (
            targets is not None and np.shape(targets) != (len(sample_ids), len(target_names))):
        raise ValueError(f"targets {None if targets is None else np.shape(targets)} must be "
                         f"[{len(sample_ids)}, {len(target_names)}] ({list(target_names)})")
    content = _content_sha256(sample_ids, splits, features, labels, targets)
    identity = StoreIdentity(
        dataset=DatasetInfo(dataset, tuple(label_names), multilabel, None, tuple(target_names)),
        modalities={k: BackboneChoice("arrays", feature_space or "content")
                    for k in sorted(features)},
        views=int(next(iter(features.values())).shape[1]), content_sha256=content)
    sid = store_id_of(identity)
    shards = []
    for k, start in enumerate(range(0, len(sample_ids), shard_size)):
        sl = slice(start, min(len(sample_ids), start + shard_size))
        ids = list(sample_ids[sl])
        shards.append(write_shard(loc, k, store_id=sid, sample_ids=ids,
                                  features={key: v[sl] for key, v in features.items()},
                                  index=_arrays_index(ids, splits[sl], labels[sl], multilabel,
                                                      None if targets is None else targets[sl]),
                                  failures=FAILURE_SCHEMA.empty_table()))
    finalize(loc, identity=identity, shards=shards,
             modalities={k: ModalityInfo(dim=int(v.shape[2])) for k, v in features.items()},
             adapter_failures=FAILURE_SCHEMA.empty_table())
    return open_store(url, storage_options=storage_options)


def _content_sha256(sample_ids: Sequence[str], splits: Sequence[str],
                    features: Mapping[str, np.ndarray], labels: np.ndarray,
                    targets: np.ndarray | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([list(map(str, sample_ids)), list(map(str, splits))]).encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    if targets is not None:
        digest.update(b"targets" + np.ascontiguousarray(targets, dtype=np.float32).tobytes())
    for key in sorted(features):
        arr = np.ascontiguousarray(features[key], dtype=np.float16)
        digest.update(key.encode() + str(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _arrays_index(ids: list[str], splits: Sequence[str], labels: np.ndarray,
                  multilabel: bool, targets: np.ndarray | None = None) -> pa.Table:
    cols: dict[str, Any] = {"sample_id": ids, "split": list(splits)}
    if multilabel:
        cols["labels"] = pa.array([list(map(float, r)) for r in labels], pa.list_(pa.float32()))
    else:
        cols["label"] = pa.array(labels, pa.int64())
    if targets is not None:
        cols["targets"] = pa.array([list(map(float, r)) for r in targets],
                                   pa.list_(pa.float32()))
    cols["duration_s"] = pa.nulls(len(ids), pa.float64())
    cols["face_ratio"] = pa.nulls(len(ids), pa.float64())
    cols["transcript"] = pa.nulls(len(ids), pa.string())
    return pa.table(cols)

__all__ = ["ShardResult", "completed_shard", "finalize", "shard_attributes", "shard_name",
           "write_arrays", "write_shard"]
