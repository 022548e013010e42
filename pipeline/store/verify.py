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

The checks of store.json and the tables are here; those of each shard in
:mod:`~pipeline.store.verify_shards`, of the label texts in
:mod:`~pipeline.store.verify_label_texts`, and the report's types in
:mod:`~pipeline.store.verify_report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.failures import FAILURE_SCHEMA, Reason, Stage
from pipeline.store.errors import MissingFileError, StoreError, UnsafePathError
from pipeline.store.filesystem import COPY_BLOCK_SIZE, Location, read_parquet
from pipeline.store.manifest import (FORMAT, SHARD_DIR, ShardEntry, StoreManifest, parse_manifest,
                                     shard_paths, store_id_of)
from pipeline.store.index_columns import dictionary_codes, group_by_code
from pipeline.store.verify_label_texts import LABEL_TEXTS, check_label_texts
from pipeline.store.verify_report import SHOWN, Findings, Problem, VerifyReport
from pipeline.store.verify_shards import ShardChecks

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


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


class _Verifier(Findings):
    """The store's tables and store.json checked here, each shard by :class:`ShardChecks`; both
    record into one report."""

    def __init__(self, loc: Location, chunk_rows: int) -> None:
        super().__init__(VerifyReport(loc.display))
        self.loc = loc
        self.shards = ShardChecks(loc, chunk_rows, self.report)

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
                self.shards.check_shard(entry, manifest, groups.get(names[entry.path]),
                                        hashed.get(entry.path))
        finally:
            hasher.shutdown(wait=True, cancel_futures=True)
        check_label_texts(self.loc, manifest, self)
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



#: ``Problem`` and ``VerifyReport`` (:mod:`pipeline.store.verify_report`) are named here too:
#: ``store verify`` returns them; ``LABEL_TEXTS`` is the file the label texts check reads.
__all__ = ["LABEL_TEXTS", "Problem", "VerifyReport", "verify_store"]
