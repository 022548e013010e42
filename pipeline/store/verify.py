"""``store verify``: is a feature store exactly what its ``store.json`` says it is?

Recomputes every shard's sha256 and cross-checks store.json, ``index.parquet``,
``failures.parquet`` and each shard: the store_id is the sha256 of the identity; counts agree;
sample ids are unique and each shard's ``sample_id`` dataset matches its index rows in row order;
every index row points to an existing shard row; datasets have the declared shape and dtype; no
NaN or Inf (read in chunks of rows, so a store of any size fits in memory); the failures table
has its schema and closed sets; no sample is both extracted and failed; the label texts
(``label_texts.parquet``) are the ones ``store.json`` records (sha256, rows, classes, width) and
were embedded by the store's own text backbone.

A remote shard is downloaded once, into a temporary file, while its checksum is computed. A
local store's shards are hashed on a second thread, ahead of the checks of their contents, so
verifying costs little more than hashing the store's bytes (``benchmarks/scale.py`` measures the
two).

The files checked are the files readers open: an index row's ``shard`` is looked up in
``store.json``'s list (:func:`~pipeline.store.manifest.shard_paths`) and every file goes
through :meth:`~pipeline.store.filesystem.Location.member`, so a ``store.json`` or an index
that names a file outside the store (an absolute path, ``..``, a symbolic link out, a device
such as ``/dev/zero``, a FIFO) is reported as a problem and never read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import posixpath
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.failures import FAILURE_SCHEMA, Reason, Stage
from pipeline.store.errors import MissingFileError, StoreError, UnsafePathError
from pipeline.store.filesystem import COPY_BLOCK_SIZE, Location, read_parquet, storage_errors
from pipeline.store.manifest import (FORMAT, SHARD_DIR, LabelTextsInfo, ModalityInfo,
                                     ShardEntry, StoreManifest, parse_manifest, shard_paths,
                                     store_id_of)
from pipeline.store.reader import (H5_ERRORS, dictionary_codes, group_by_code, nonfinite_rows,
                                   plain_dataset_problem)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SHOWN = 5
"""Problems of one kind listed one by one; the rest are counted in one more line."""
LABEL_TEXTS = "label_texts.parquet"
"""The store's embedded label texts (:mod:`pipeline.label_texts`), recorded in store.json."""


@dataclass(frozen=True)
class Problem:
    """One way the store differs from what it declares.

    ``file`` is relative to the store root; ``where`` the row, dataset or field.
    """

    file: str
    where: str
    message: str
    expected: Any = None
    found: Any = None

    def __str__(self) -> str:
        place = f"{self.file} [{self.where}]" if self.where else self.file
        detail = (f" (expected {self.expected}, found {self.found})"
                  if self.expected is not None or self.found is not None else "")
        return f"{place}: {self.message}{detail}"


@dataclass
class VerifyReport:
    """What :func:`verify_store` found; the store is sound when ``problems`` is empty.

    ``notes`` are harmless findings (leftover temporary files, undeclared datasets).
    """

    url: str
    store_id: str | None = None
    shards: int = 0
    rows: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(url: str | Path, *, storage_options: dict[str, Any] | None = None,
                 chunk_rows: int = 4096) -> VerifyReport:
    """Check a store against its own declarations (see the module docstring).

    Args:
        url: the store (folder or fsspec URL); it need not be complete to be reported on.
        storage_options: fsspec options (credentials, endpoint).
        chunk_rows: rows of one dataset read at a time when scanning for NaN and Inf.

    Returns:
        The report; the CLI exits 1 when it holds problems.
    """
    loc = Location.parse(url, storage_options)
    verifier = _Verifier(loc, chunk_rows)
    verifier.run()
    report = verifier.report
    log.info("%s: %d shards, %d rows, %.1f MB hashed, %d problems", report.url, report.shards,
             report.rows, report.bytes_hashed / 1e6, len(report.problems))
    return report


class _Verifier:
    def __init__(self, loc: Location, chunk_rows: int) -> None:
        self.loc, self.chunk_rows = loc, chunk_rows
        self.report = VerifyReport(loc.display)

    def problem(self, file: str, where: str, message: str, expected: Any = None,
                found: Any = None) -> None:
        self.report.problems.append(Problem(file, where, message, expected, found))

    def problems(self, file: str, items: list[tuple[str, str]], kind: str,
                 total: int | None = None) -> None:
        """One problem per ``(where, message)`` for the first few, then a count of the rest."""
        for where, message in items[:SHOWN]:
            self.problem(file, where, message)
        rest = (len(items) if total is None else total) - SHOWN
        if rest > 0:
            self.problem(file, "", f"{rest} more {kind}")

    def run(self) -> None:
        manifest = self.manifest()
        if manifest is None:
            return
        index, failures = self.table("index.parquet"), self.table("failures.parquet")
        groups: dict[str, pa.Table] = {}
        if index is not None and self.check_index(index, manifest):
            groups = self.index_by_shard(index, manifest)
        if failures is not None:
            self.check_failures(failures, index)
        self.check_counts(manifest, index, failures)
        names = {path: name for name, path in shard_paths(manifest).items()}
        hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-sha256")
        try:
            hashed = self.hash_ahead(hasher, manifest.shards)
            for entry in manifest.shards:
                self.check_shard(entry, manifest, groups.get(names[entry.path]),
                                 hashed.get(entry.path))
        finally:
            hasher.shutdown(wait=True, cancel_futures=True)
        self.check_label_texts(manifest)
        self.note_leftovers(manifest)

    # ------------------------------------------------------------------- store.json and tables

    def manifest(self) -> StoreManifest | None:
        """The parsed store.json, or None (with a problem). A store that cannot be reached at
        all (credentials, connection) raises: that is not a finding about the store."""
        try:
            text = self.loc.read_bytes("store.json")
        except MissingFileError:
            self.problem("store.json", "", "missing: the store is incomplete or not a store")
            return None
        except UnsafePathError as err:
            self.problem("store.json", "", str(err))
            return None
        try:
            raw = json.loads(text)
        except ValueError as err:
            self.problem("store.json", "", f"not valid JSON: {err}")
            return None
        try:
            manifest = parse_manifest(raw, "store.json")
        except StoreError as err:
            self.problem("store.json", "", str(err).removeprefix("store.json: "))
            return None
        self.report.store_id = manifest.store_id
        if raw.get("feature_space") not in (None, manifest.feature_space):
            self.report.notes.append("store.json: the recorded feature_space differs from the "
                                     "one this release derives (comparisons use the derived one)")
        if raw.get("format") != FORMAT:
            self.report.notes.append(f"store.json: format {raw.get('format')}; "
                                     "`cli store upgrade` rewrites it as " + FORMAT)
        # The identity exactly as recorded: a later release may add fields (with defaults)
        # to the typed identity, and must not make older stores fail their own check.
        identity = (manifest.legacy or {}).get("identity") if manifest.legacy else None
        recorded = identity if identity is not None else raw.get("identity")
        expected = store_id_of(recorded if isinstance(recorded, dict) else manifest.identity)
        if expected != manifest.store_id:
            self.problem("store.json", "store_id", "is not the sha256 of the identity",
                         expected, manifest.store_id)
        return manifest

    def table(self, name: str) -> pa.Table | None:
        try:
            return read_parquet(self.loc, name)
        except MissingFileError:
            self.problem(name, "", "missing")
        except StoreError as err:
            self.problem(name, "", str(err).removeprefix(self.loc.where(name) + ": "))
        return None

    def check_index(self, index: pa.Table, manifest: StoreManifest) -> bool:
        """Columns, types, unique ids, splits, labels; True when shard/row can be used."""
        label = ("labels", pa.types.is_list) if manifest.dataset.multilabel else (
            "label", pa.types.is_integer)
        usable = True
        for name, is_type in [("sample_id", pa.types.is_string), ("split", pa.types.is_string),
                              ("shard", pa.types.is_string), ("row", pa.types.is_integer), label]:
            if name not in index.column_names:
                self.problem("index.parquet", f"column {name}", "missing")
                usable = False
            elif not is_type(index.schema.field(name).type):
                self.problem("index.parquet", f"column {name}", "wrong type",
                             is_type.__name__.removeprefix("is_"), index.schema.field(name).type)
                usable = False
            elif index.column(name).null_count:
                self.problem("index.parquet", f"column {name}",
                             f"{index.column(name).null_count} null values")
                usable = False
        if not usable:
            return False
        self.check_unique(index)
        splits = pc.value_counts(index.column("split")).to_pylist()
        for other in [s for s in splits if s["values"] not in SPLITS]:
            self.problem("index.parquet", "column split", f"{other['counts']} rows of an unknown "
                         "split", f"one of {list(SPLITS)}", repr(other["values"]))
        n_labels = len(manifest.dataset.labels)
        if manifest.dataset.multilabel:
            lengths = pc.list_value_length(index.column("labels")).to_numpy()
            bad = np.flatnonzero(lengths != n_labels)
            if len(bad):
                self.problem("index.parquet", f"column labels, row {bad[0]}",
                             f"{len(bad)} rows with another number of labels", n_labels,
                             int(lengths[bad[0]]))
        else:
            self.check_labels(index.column("label"), n_labels)
        return True

    def check_unique(self, index: pa.Table) -> None:
        ids = index.column("sample_id")
        counts = pc.value_counts(ids)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1))
        items = []
        for value, n in zip(repeated.field("values").to_pylist()[:SHOWN],
                            repeated.field("counts").to_pylist(), strict=False):
            rows = np.flatnonzero(pc.equal(ids, value).to_numpy(zero_copy_only=False))
            items.append((f"sample_id {value!r}", f"appears {n} times (rows {rows.tolist()})"))
        self.problems("index.parquet", items, "repeated sample_ids", total=len(repeated))

    def check_labels(self, labels: pa.ChunkedArray, n_labels: int) -> None:
        values = labels.to_numpy()
        bad = np.flatnonzero((values < -1) | (values >= n_labels))
        if len(bad):
            self.problem("index.parquet", f"column label, row {bad[0]}",
                         f"{len(bad)} labels out of range", f"-1..{n_labels - 1}",
                         int(values[bad[0]]))

    def check_failures(self, failures: pa.Table, index: pa.Table | None) -> None:
        found = {f.name: f.type for f in failures.schema}
        for f in FAILURE_SCHEMA:
            if found.get(f.name) != f.type:
                self.problem("failures.parquet", f"column {f.name}", "schema", f.type,
                             found.get(f.name, "missing"))
        for extra in sorted(set(found) - set(FAILURE_SCHEMA.names)):
            self.problem("failures.parquet", f"column {extra}", "not in the schema")
        if set(FAILURE_SCHEMA.names) - set(found):
            return
        for column, closed in (("reason", Reason), ("stage", Stage)):
            for v in pc.unique(failures.column(column)).to_pylist():
                if v not in {str(c) for c in closed}:
                    self.problem("failures.parquet", f"column {column}", f"unknown {column}",
                                 f"one of {[str(c) for c in closed]}", repr(v))
        ids = failures.column("sample_id")
        counts = pc.value_counts(ids)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
        if len(repeated):
            self.problem("failures.parquet", "column sample_id", f"{len(repeated)} samples "
                         f"failed more than once, e.g. {repeated[:SHOWN].to_pylist()}")
        if index is not None and "sample_id" in index.column_names:
            both = pc.filter(ids, pc.is_in(ids, value_set=index.column("sample_id")
                                           .combine_chunks()))
            if len(both):
                self.problem("failures.parquet", "column sample_id", f"{len(both)} samples are "
                             f"also in index.parquet, e.g. {both[:SHOWN].to_pylist()}")

    def check_counts(self, manifest: StoreManifest, index: pa.Table | None,
                     failures: pa.Table | None) -> None:
        counts = manifest.counts
        declared = sum(e.rows for e in manifest.shards)
        if index is not None:
            if counts.samples != index.num_rows:
                self.problem("store.json", "counts.samples", "does not match index.parquet",
                             index.num_rows, counts.samples)
            if declared != index.num_rows:
                self.problem("store.json", "shards[].rows", "sum does not match index.parquet",
                             index.num_rows, declared)
            if "split" in index.column_names:
                splits = {d["values"]: d["counts"]
                          for d in pc.value_counts(index.column("split")).to_pylist()}
                if counts.splits != splits:
                    self.problem("store.json", "counts.splits", "do not match index.parquet",
                                 splits, counts.splits)
        if failures is not None and counts.failures != failures.num_rows:
            self.problem("store.json", "counts.failures", "does not match failures.parquet",
                         failures.num_rows, counts.failures)

    def index_by_shard(self, index: pa.Table, manifest: StoreManifest) -> dict[str, pa.Table]:
        """Per shard, its index rows sorted by ``row``, with their ``position`` in the index."""
        listed = set(shard_paths(manifest))
        table = index.select(["sample_id", "shard", "row"]).append_column(
            "position", pa.array(np.arange(index.num_rows), pa.int64()))
        ordered = table.sort_by([("shard", "ascending"), ("row", "ascending")])
        codes, names = dictionary_codes(ordered.column("shard"))
        groups = {}
        for code, sel in group_by_code(codes):
            part = ordered.slice(int(sel[0]), len(sel))
            if names[code] in listed:
                groups[names[code]] = part
            else:
                self.problem("index.parquet", f"row {part.column('position')[0]}",
                             f"{len(sel)} rows point to shard {names[code]!r}, which store.json "
                             "does not list")
        return groups

    # ------------------------------------------------------------------------------- shards

    def hash_ahead(self, hasher: ThreadPoolExecutor, entries: Sequence[ShardEntry]
                   ) -> dict[str, Future[tuple[str, int]]]:
        """Per shard path of a local store, its ``(sha256, bytes)`` computed on ``hasher``'s
        thread while this one checks the shards' contents (hashing releases the GIL). A remote
        store's shards are hashed while downloaded instead; a path that does not resolve is
        left to :meth:`check_shard` to report."""
        if not self.loc.is_local:
            return {}
        hashed = {}
        for entry in entries:
            try:
                resolved = self.loc.member(entry.path)
            except (MissingFileError, UnsafePathError):
                continue
            hashed[entry.path] = hasher.submit(_sha256_and_size, self.loc, resolved)
        return hashed

    def check_shard(self, entry: ShardEntry, manifest: StoreManifest,
                    part: pa.Table | None,
                    hashed: Future[tuple[str, int]] | None = None) -> None:
        rel = entry.path
        pointing = f"; {part.num_rows} index rows point to it" if part is not None else ""
        try:
            resolved = self.loc.member(rel)
        except MissingFileError:
            self.problem(rel, "", f"missing{pointing}", f"a shard of {entry.rows} rows",
                         "no file")
            return
        except UnsafePathError as err:
            self.problem(rel, "", str(err).removeprefix(self.loc.where(rel) + ": ") + pointing)
            return
        self.report.shards += 1
        with self.local_copy(rel, resolved, hashed) as (path, digest, size):
            self.report.bytes_hashed += size
            if digest != entry.sha256:
                self.problem(rel, "", "checksum mismatch: the file changed after it was written",
                             entry.sha256, digest)
            try:
                with h5py.File(path, "r") as h5:
                    self.check_h5(rel, h5, entry, manifest, part)
            except H5_ERRORS as err:
                self.problem(rel, "", f"not a readable HDF5 shard: {err}")

    @contextlib.contextmanager
    def local_copy(self, rel: str, resolved: str, hashed: Future[tuple[str, int]] | None
                   ) -> Iterator[tuple[str, str, int]]:
        """``(local path, sha256, bytes)`` of the file :meth:`Location.member` resolved ``rel``
        to; a remote file is downloaded once while hashed, a local one's hash is ``hashed``'s
        when given."""
        if hashed is not None:
            with storage_errors(self.loc.where(rel)):
                found, length = hashed.result()
            yield resolved, found, length
            return
        digest, size = hashlib.sha256(), 0
        with contextlib.ExitStack() as stack:
            with storage_errors(self.loc.where(rel)):
                src = stack.enter_context(self.loc.fs.open(resolved, "rb"))
            dst = None
            if not self.loc.is_local:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "shard.h5"
                dst = stack.enter_context(tmp.open("wb"))
            while True:
                with storage_errors(self.loc.where(rel)):
                    chunk = src.read(COPY_BLOCK_SIZE)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                if dst is not None:
                    dst.write(chunk)
            if dst is not None:
                dst.close()
            yield (resolved if dst is None else str(tmp)), digest.hexdigest(), size

    def check_h5(self, rel: str, h5: h5py.File, entry: ShardEntry,
                 manifest: StoreManifest, part: pa.Table | None) -> None:
        linked = [(f"dataset {name}", problem) for name in sorted(h5)
                  if (problem := plain_dataset_problem(h5, name))]
        if linked:  # nothing is read through a link: that would read another file
            self.problems(rel, linked, "datasets that are not plain data")
            return
        rows = entry.rows
        # A merged store's shards carry the store_id of the source they were copied from.
        allowed = {manifest.store_id, *(str(m.get("store_id")) for m in manifest.merged_from)}
        if h5.attrs.get("store_id") not in allowed:
            self.problem(rel, "attribute store_id", "another configuration's shard",
                         manifest.store_id, h5.attrs.get("store_id"))
        if "sample_id" not in h5:
            self.problem(rel, "dataset sample_id", "missing")
            return
        ids = h5["sample_id"].asstr()[:]
        if len(ids) != rows:
            self.problem(rel, "dataset sample_id", "row count differs from store.json", rows,
                         len(ids))
        self.check_shard_ids(rel, ids, part)
        for key, meta in sorted(manifest.modalities.items()):
            self.check_dataset(rel, h5, key, meta, (len(ids), manifest.views), ids)
        for extra in sorted(set(h5) - set(manifest.modalities) - {"sample_id"}):
            self.report.notes.append(f"{rel}: dataset {extra!r} is not declared in store.json")
        self.report.rows += len(ids)

    def check_shard_ids(self, rel: str, ids: np.ndarray, part: pa.Table | None) -> None:
        """The shard's ids in row order against the index rows that point into it."""
        rows = part.column("row").to_numpy() if part is not None else np.empty(0, np.int64)
        if len(rows) == len(ids) and np.array_equal(rows, np.arange(len(ids))) and (
                part is None or np.array_equal(
                    part.column("sample_id").to_numpy(zero_copy_only=False), ids)):
            return  # the usual case, in array operations: index rows 0..n-1, ids as stored
        index_ids = part.column("sample_id").to_pylist() if part is not None else []
        positions = part.column("position").to_numpy() if part is not None else rows
        out_of_range = [(f"row {p}", f"sample_id {i!r} points to {rel} row {r}, which has "
                         f"{len(ids)} rows")
                        for p, i, r in zip(positions, index_ids, rows, strict=True)
                        if not 0 <= r < len(ids)]
        self.problems("index.parquet", out_of_range, "index rows out of range")
        seen: dict[int, int] = {}
        twice, mismatched = [], []
        for p, i, r in zip(positions, index_ids, rows, strict=True):
            if not 0 <= r < len(ids):
                continue
            if r in seen:
                twice.append((f"rows {seen[r]}, {p}", f"both point to {rel} row {r}"))
            seen[int(r)] = int(p)
            if ids[r] != i:
                mismatched.append((f"row {p}", f"sample_id {i!r} points to {rel} row {r}, "
                                   f"which holds {ids[r]!r}"))
        self.problems("index.parquet", twice, "shard rows with several index rows")
        self.problems("index.parquet", mismatched, "sample_id mismatches")
        orphans = [(f"row {r}", f"sample_id {ids[r]!r} has no index row")
                   for r in range(len(ids)) if r not in seen]
        self.problems(rel, orphans, "shard rows without an index row")

    def check_dataset(self, rel: str, h5: h5py.File, key: str, meta: ModalityInfo,
                      lead: tuple[int, int], ids: np.ndarray) -> None:
        if key not in h5:
            self.problem(rel, f"dataset {key}", "missing")
            return
        ds = h5[key]
        shape = (*lead, meta.dim)
        if ds.shape != shape:
            self.problem(rel, f"dataset {key}", "shape differs from store.json", shape, ds.shape)
        if ds.dtype != np.dtype(meta.dtype):
            self.problem(rel, f"dataset {key}", "dtype differs from store.json", meta.dtype,
                         str(ds.dtype))
        bad: list[int] = []
        for lo in range(0, ds.shape[0], self.chunk_rows):
            bad.extend((lo + nonfinite_rows(ds[lo:lo + self.chunk_rows])).tolist())
        if bad:
            sample = repr(ids[bad[0]]) if bad[0] < len(ids) else "?"
            self.problem(rel, f"dataset {key}, row {bad[0]} (sample_id {sample})",
                         f"{len(bad)} rows hold NaN or Inf values")

    # -------------------------------------------------------------------------- label texts

    def check_label_texts(self, manifest: StoreManifest) -> None:
        """``label_texts.parquet`` against its record in store.json (readers trust both: CLEF's
        prototypes are read from it without a backbone to embed them again)."""
        info = manifest.label_texts
        if info is None:
            if self.loc.exists(LABEL_TEXTS):
                self.report.notes.append(f"{LABEL_TEXTS}: store.json records no label texts, "
                                         "so no reader uses this file")
            return
        try:
            data = self.loc.read_bytes(LABEL_TEXTS)
        except MissingFileError:
            self.problem(LABEL_TEXTS, "", "missing: store.json records label texts",
                         f"{info.rows} rows", "no file")
            return
        except UnsafePathError as err:
            self.problem(LABEL_TEXTS, "", str(err).removeprefix(self.loc.where(LABEL_TEXTS)
                                                                + ": "))
            return
        self.report.bytes_hashed += len(data)
        digest = hashlib.sha256(data).hexdigest()
        if info.sha256 is None:
            self.report.notes.append(f"{LABEL_TEXTS}: not hashed (store.json records no "
                                     "sha256 for it); `cli store add-label-texts` writes them "
                                     "again with one")
        elif digest != info.sha256:
            self.problem(LABEL_TEXTS, "", "checksum mismatch: the file changed after it was "
                         "written", info.sha256, digest)
        try:
            table = pq.read_table(io.BytesIO(data))
        except pa.ArrowException as err:
            self.problem(LABEL_TEXTS, "", f"not a readable Parquet file ({err})")
            return
        for where, message, expected, found in label_texts_mismatches(table, info, manifest):
            self.problem(LABEL_TEXTS, where, message, expected, found)

    def note_leftovers(self, manifest: StoreManifest) -> None:
        if not self.loc.exists(SHARD_DIR):
            return
        expected = set()
        for entry in manifest.shards:
            stem = posixpath.basename(entry.path).removesuffix(".h5")
            expected |= {stem + ".h5", stem + ".index.parquet", stem + ".failures.parquet"}
        for path in sorted(self.loc.fs.ls(self.loc.path(SHARD_DIR), detail=False)):
            if posixpath.basename(path) not in expected:
                self.report.notes.append(f"{SHARD_DIR}/{posixpath.basename(path)}: not part of "
                                         "the store (a leftover of an interrupted run?)")


def _sha256_and_size(loc: Location, path: str) -> tuple[str, int]:
    """sha256 and length of a local store file (a path :meth:`Location.member` returned)."""
    digest, size = hashlib.sha256(), 0
    with loc.fs.open(path, "rb") as f:
        while chunk := f.read(COPY_BLOCK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def label_texts_mismatches(table: pa.Table, info: LabelTextsInfo, manifest: StoreManifest
                           ) -> list[tuple[str, str, Any, Any]]:
    """Where a label-texts table differs from its record and from the store: ``(where,
    message, expected, found)`` each; empty when it is the store's.

    The rows are the recorded count, the classes the dataset's labels in order, the vectors as
    wide as the text key's features, and the backbone and weights that embedded them the
    store's own for that key (the prototypes must lie in the space of its text features).
    """
    found: list[tuple[str, str, Any, Any]] = []
    needed = {"kind", "index", "label", "prompt_vector", "description_vector"}
    missing = sorted(needed - set(table.column_names))
    if missing:
        return [(f"columns {missing}", "missing", None, None)]
    if table.num_rows != info.rows:
        found.append(("rows", "row count differs from store.json", info.rows, table.num_rows))
    rows = table.select(["kind", "index", "label"]).to_pylist()
    classes = [r["label"] for r in sorted((r for r in rows if r["kind"] == "class"),
                                          key=lambda r: r["index"])]
    if classes != list(manifest.dataset.labels):
        found.append(("classes", "are not the dataset's labels, in order",
                      list(manifest.dataset.labels), classes))
    modality = manifest.modalities.get(info.key)
    if modality is None:
        return [*found, (f"key {info.key}", "the store has no such features", None, None)]
    for column in ("prompt_vector", "description_vector"):
        width = _list_width(table.schema.field(column).type)
        if width != modality.dim:
            found.append((f"column {column}", f"width differs from the {info.key} features'",
                          modality.dim, width))
        elif table.num_rows:
            values = pc.list_flatten(table.column(column)).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(~np.isfinite(np.asarray(values, np.float64).reshape(
                table.num_rows, width)).all(axis=1))
            if bad.size:
                found.append((f"column {column}, row {int(bad[0])}",
                              f"{bad.size} rows hold NaN or Inf values", None, None))
    space = manifest.feature_space.get(info.key) or {}
    recorded = (info.backbone, info.weights_sha256)
    store = (space.get("backbone"), space.get("weights_sha256"))
    if recorded != store:
        found.append(("backbone", f"embedded by another backbone than the store's {info.key} "
                      "features", store, recorded))
    return found


def _list_width(kind: pa.DataType) -> int | None:
    return int(kind.list_size) if pa.types.is_fixed_size_list(kind) else None
