"""``store verify``'s checks of one shard: its bytes against the sha256 store.json records,
then the HDF5 file: plain datasets only, the store_id attribute, the ``sample_id`` dataset
against the index rows that point into the shard (row order, range, orphans), and each
modality's dataset (shape, dtype, no NaN or Inf, read in chunks of rows). A remote shard is
downloaded once, into a temporary file, while its checksum is computed."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa

from pipeline.store.errors import MissingFileError, UnsafePathError
from pipeline.store.filesystem import COPY_BLOCK_SIZE, Location, storage_errors
from pipeline.store.manifest import ModalityInfo, ShardEntry, StoreManifest
from pipeline.store.shard_checks import H5_ERRORS, nonfinite_rows, plain_dataset_problem
from pipeline.store.verify_report import Findings, VerifyReport


class ShardChecks(Findings):
    """Checks shards of the store at ``loc`` into ``report``, reading datasets ``chunk_rows``
    rows at a time."""

    def __init__(self, loc: Location, chunk_rows: int, report: VerifyReport) -> None:
        super().__init__(report)
        self.loc, self.chunk_rows = loc, chunk_rows

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
