"""``store merge``: stores of one configuration combined into a new store.

Stores extracted apart (say, the splits of one dataset by different teams, or one dataset in
pieces on several clusters) become one store: every source shard copied through its store's
gate and checksum, renumbered in source order; one index and failures table; the sources'
label texts, checked against each source's record; and a ``store.json`` that lists the
sources. Other configurations and overlapping samples are refused before anything is written,
and one merge at a time writes a destination, which a stopped merge never leaves half done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.failures import FAILURE_SCHEMA
from pipeline.store.errors import MissingFileError, StoreError
from pipeline.store.filesystem import (Location, read_parquet, redact_url, storage_errors,
                                       table_to_bytes)
from pipeline.store.lock import StoreLock
from pipeline.store.manifest import (SHARD_DIR, LabelTextsInfo, ShardEntry, StoreManifest,
                                     TranscriptSource, canonical_json, feature_space_differences,
                                     feature_space_id, sha256_json, to_json)
from pipeline.store.ops import EXAMPLES, diff_stores
from pipeline.store.reader import FeatureStore, as_store, dictionary_codes, group_by_code
from pipeline.store.verify import LABEL_TEXTS
from pipeline.store.writer import ShardResult, finalize, shard_name

log = logging.getLogger(__name__)

StoreRef = str | Path | FeatureStore


def _is_arrays(manifest: StoreManifest) -> bool:
    return manifest.identity.content_sha256 is not None


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_stores` wrote."""

    url: str
    store_id: str
    sources: list[str]
    shards: int
    samples: int
    failures: int
    dropped_failures: int
    """Failure rows left out because another source extracted that sample."""


def merge_stores(sources: Sequence[StoreRef], out: str | Path, *,
                 storage_options: dict[str, Any] | None = None) -> MergeResult:
    """Combine stores of one configuration into a new store at ``out`` (any filesystem).

    The new store holds every source shard, copied (checksums checked on the way) and renumbered
    ``shard-00000 ...`` in source order; a new index and failures table (failure rows of a
    sample that another source extracted are dropped, repeated ones kept once); the sources'
    label texts (``label_texts.parquet``, checked against each source's record; they depend
    only on the dataset's classes and the text backbone, which the sources share, so sources
    without them take those of the others); and a store.json with the sources' provenance,
    summed counts and timings and a ``merged_from`` list (redacted URLs, store ids, counts,
    software of each source).

    Args:
        sources: two or more stores (URLs or open stores).
        out: the new store; must not exist or be empty.
        storage_options: fsspec options of ``out``'s filesystem.

    Raises:
        StoreError: fewer than two sources; ``out`` not empty; sources of different
            configurations (the differing fields are named); overlapping sample ids (a few are
            named); a source shard or label-texts file whose bytes do not match its checksum;
            sources that carry different label texts (the differing fields are named).
    """
    stores = [as_store(s) for s in sources]
    if len(stores) < 2:
        raise StoreError(f"merge needs at least two stores, got {len(stores)}")
    dest = Location.parse(out, storage_options)
    _check_mergeable(stores)
    texts = _merged_label_texts(stores)
    plan = canonical_json({"merge_of": [s.store_id for s in stores],
                           "sources": [redact_url(s.url) for s in stores]}).encode()
    # One merge at a time into a destination; a merge that stops (a refused checksum, a full
    # disk, a signal) removes what it wrote, and one killed outright leaves MERGE_MARKER, so
    # that the same command starts it again instead of refusing a non-empty --out.
    with StoreLock(dest, purpose="merge"):
        _claim_destination(dest, plan)
        dest.write_atomic(plan, MERGE_MARKER)
        try:
            result = _merge_into(dest, stores, texts)
        except BaseException:
            _clear_destination(dest)
            raise
        with storage_errors(dest.where(MERGE_MARKER), "write"):
            dest.fs.rm(dest.path(MERGE_MARKER))
        return result


MERGE_MARKER = "merge.partial.json"


def _contents(dest: Location) -> list[str]:
    """What ``dest`` holds, lock markers left out."""
    with storage_errors(dest.display):
        if not dest.exists():
            return []
        names = [posixpath.basename(p.rstrip("/")) for p in dest.fs.ls(dest.root, detail=False)]
    return [n for n in names if not n.startswith("merge.lock.")]


def _claim_destination(dest: Location, plan: bytes) -> None:
    """``dest`` must be new or empty, or hold what a killed merge of the same sources left
    (cleared). Refuses anything else, naming what is there."""
    names = _contents(dest)
    if not names:
        return
    if MERGE_MARKER in names and "store.json" not in names:
        with storage_errors(dest.where(MERGE_MARKER)):
            left = dest.read_bytes(MERGE_MARKER)
        if left == plan:
            log.info("%s: clearing what a stopped merge of the same stores left", dest.display)
            _clear_destination(dest)
            return
        raise StoreError(f"{dest.display} holds a stopped merge of other stores; merge into a "
                         "new location, or remove it")
    raise StoreError(f"{dest.display} exists and is not empty ({', '.join(sorted(names)[:5])}); "
                     "merge into a new location")


def _clear_destination(dest: Location) -> None:
    """Remove everything a merge wrote into ``dest`` (its lock marker stays to the lock)."""
    for name in _contents(dest):
        with storage_errors(dest.where(name), "write"):
            dest.fs.rm(dest.path(name), recursive=True)


def _merge_into(dest: Location, stores: list[FeatureStore],
                texts: tuple[bytes, LabelTextsInfo] | None) -> MergeResult:
    """The merge itself, into a claimed ``dest`` (see :func:`merge_stores`)."""
    shards: list[ShardResult] = []
    for store in stores:
        log.info("merging %s (%d shards)", store.url, len(store.manifest.shards))
        groups = _shard_tables(store)
        names = {path: name for name, path in store.shard_paths.items()}
        for entry in store.manifest.shards:
            part = groups.get(names[entry.path])
            shards.append(_copy_shard(store, entry, part, dest, len(shards)))
    ids = pa.concat_arrays([s.index.column("sample_id").combine_chunks() for s in stores])
    failures, dropped = _merged_failures(stores, ids)
    first = stores[0].manifest
    timings: dict[str, float] = {}
    for store in stores:
        for stage, seconds in store.manifest.timings.items():
            timings[stage] = round(timings.get(stage, 0.0) + float(seconds), 3)
    # Extracted stores: the sources' store_id is kept (the copied shards carry it). Stores
    # written from arrays: new content, so a new content hash and store_id; the copied shards
    # carry their source's id, which merged_from lists.
    identity = first.identity
    store_id: str | None = first.store_id
    if _is_arrays(first):
        identity = dataclasses.replace(identity, content_sha256=sha256_json(
            [s.manifest.identity.content_sha256 for s in stores]))
        store_id = None
    if texts is not None:  # before store.json: a complete store never lacks a file it lists
        dest.write_atomic(texts[0], LABEL_TEXTS)
    config = None if first.choices is None else first.extract_config()
    manifest = finalize(dest, identity=identity, modalities=first.modalities,
                        shards=shards, adapter_failures=failures, config=config,
                        software=first.software, timings=timings, options=first.options,
                        merged_from=[_source_entry(s) for s in stores],
                        store_id=store_id, legacy=first.legacy,
                        label_texts=None if texts is None else texts[1])
    return MergeResult(url=dest.display, store_id=manifest.store_id,
                       sources=[s.url for s in stores], shards=len(shards),
                       samples=manifest.counts.samples, failures=manifest.counts.failures,
                       dropped_failures=dropped)


def _check_mergeable(stores: list[FeatureStore]) -> None:
    first = stores[0]
    for other in stores[1:]:
        diff = diff_stores(first, other)
        if not diff.comparable:
            fields = "; ".join(f"{d.path}: {d.a!r} vs {d.b!r}" for d in diff.blocking[:10])
            raise StoreError(f"cannot merge {other.url} with {first.url}: {diff.reason}"
                             + (f" ({fields})" if fields else ""))
        if diff.differences:
            log.warning("%s and %s differ in %s (kept per source in merged_from)", first.url,
                        other.url, ", ".join(d.path for d in diff.differences))
    ids = pa.chunked_array([s.index.column("sample_id") for s in stores])
    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if len(repeated):
        raise StoreError(f"the stores overlap in {len(repeated)} sample_ids (e.g. "
                         f"{repeated[:EXAMPLES].to_pylist()}); merge stores of disjoint samples")


#: The fields of a label-texts record that say what the texts are (not when they were made).
LABEL_TEXTS_FIELDS = ("rows", "key", "backbone", "weights_sha256", "template", "source_sha256",
                      "coarse")


def _merged_label_texts(stores: Sequence[FeatureStore]
                        ) -> tuple[bytes, LabelTextsInfo] | None:
    """The label texts the merged store carries: the file's bytes and its record (None: no
    source has any), each source's checked before anything is written.

    Raises:
        StoreError: a source's file is not what its store.json records, or two sources carry
            different label texts (the record's fields, or the texts and vectors themselves).
    """
    found = [(s, _label_texts_bytes(s)) for s in stores if s.manifest.label_texts is not None]
    if not found:
        return None
    (first, data), *rest = found
    info = first.manifest.label_texts
    assert info is not None
    for other, other_data in rest:
        why = _label_texts_difference(info, data, other.manifest.label_texts, other_data)
        if why:
            raise StoreError(
                f"cannot merge {other.url} with {first.url}: they carry different label texts "
                f"for dataset {first.dataset!r} ({info.key} backbone {info.backbone}): {why}. "
                f"Embed them again in each source (`cli store add-label-texts`), or merge and "
                "then add them to the merged store")
    return data, dataclasses.replace(info, sha256=hashlib.sha256(data).hexdigest())


def _label_texts_bytes(store: FeatureStore) -> bytes:
    """A source's ``label_texts.parquet``, read through the store's gate and checked against
    the sha256 its store.json records (a record without one is taken as it is)."""
    info = store.manifest.label_texts
    assert info is not None
    data = store.loc.read_bytes(LABEL_TEXTS)
    digest = hashlib.sha256(data).hexdigest()
    if info.sha256 is not None and digest != info.sha256:
        raise StoreError(f"{store.url}/{LABEL_TEXTS}: checksum mismatch (store.json "
                         f"{info.sha256[:12]}, file {digest[:12]}); run `cli store verify`")
    return data


def _label_texts_difference(a: LabelTextsInfo, a_data: bytes, b: LabelTextsInfo | None,
                            b_data: bytes) -> str:
    """What differs between two sources' label texts ('' when they are the same texts: the
    same record, and the same rows and vectors however the files were encoded)."""
    assert b is not None
    fields = [f"{name}: {getattr(a, name)!r} vs {getattr(b, name)!r}"
              for name in LABEL_TEXTS_FIELDS if getattr(a, name) != getattr(b, name)]
    if fields:
        return "; ".join(fields)
    if not pq.read_table(io.BytesIO(a_data)).equals(pq.read_table(io.BytesIO(b_data))):
        return "the texts or their vectors differ"
    return ""


def _shard_tables(store: FeatureStore) -> dict[str, pa.Table]:
    """Per shard name, its index rows in row order, without the ``shard``/``row`` columns."""
    ordered = store.index.sort_by([("shard", "ascending"), ("row", "ascending")])
    rows = ordered.column("row").to_numpy()
    codes, names = dictionary_codes(ordered.column("shard"))
    out = {}
    for code, sel in group_by_code(codes):
        part = ordered.slice(int(sel[0]), len(sel))
        if not np.array_equal(rows[sel], np.arange(len(sel))):
            raise StoreError(f"{store.url}/index.parquet: the rows of {names[code]} are not "
                             f"0..{len(sel) - 1}; run `cli store verify` on it")
        out[names[code]] = part.drop_columns(["shard", "row"])
    return out


def _copy_shard(store: FeatureStore, entry: ShardEntry, part: pa.Table | None,
                dest: Location, k: int) -> ShardResult:
    # Only through the store's gate: a store.json naming a file outside the store (or a
    # symbolic link out of it) must not get that file copied into the merged store.
    src, name = store.loc.member(entry.path), shard_name(k)
    # Plain datasets whose ids match the index: a shard linking to another file would carry
    # that file's data (or, once it is gone, zeros) into the merged store.
    store.check_shard(posixpath.basename(entry.path).removesuffix(".h5"))
    sidecar = entry.path.removesuffix(".h5") + ".failures.parquet"
    index = part if part is not None else store.index.schema.empty_table().drop_columns(
        ["shard", "row"])
    if index.num_rows != entry.rows:
        raise StoreError(f"{store.url}/{entry.path}: store.json says {entry.rows} rows, "
                         f"the index has {index.num_rows}; run `cli store verify` on it")
    try:
        failures = read_parquet(store.loc, sidecar)
    except MissingFileError:
        failures = FAILURE_SCHEMA.empty_table()
    dest.write_atomic(table_to_bytes(index), SHARD_DIR, name + ".index.parquet")
    dest.write_atomic(table_to_bytes(failures), SHARD_DIR, name + ".failures.parquet")
    digest = dest.copy_atomic(store.loc.fs, src, SHARD_DIR, name + ".h5",
                              src_where=store.loc.where(entry.path))
    if digest != entry.sha256:
        dest.fs.rm(dest.path(SHARD_DIR, name + ".h5"))
        raise StoreError(f"{store.url}/{entry.path}: checksum mismatch (store.json "
                         f"{entry.sha256[:12]}, file {digest[:12]}); run `cli store verify`")
    # Failures are merged store-wide (see _merged_failures); the sidecar keeps the shard's own.
    return ShardResult(name, index.num_rows, digest, index, FAILURE_SCHEMA.empty_table())


def _merged_failures(stores: list[FeatureStore], extracted: pa.Array) -> tuple[pa.Table, int]:
    """All sources' failure rows, minus samples extracted by a source, each sample once."""
    table = pa.concat_tables([s.failures.cast(FAILURE_SCHEMA) for s in stores])
    kept = table.filter(pc.invert(pc.is_in(table.column("sample_id"), value_set=extracted)))
    first = (kept.append_column("_pos", pa.array(np.arange(kept.num_rows), pa.int64()))
             .group_by("sample_id").aggregate([("_pos", "min")]).column("_pos_min"))
    unique = kept.take(np.sort(first.to_numpy()))  # the first row of each sample, in order
    dropped = table.num_rows - unique.num_rows
    if dropped:
        log.info("%d failure rows dropped: sample extracted by another source, or repeated",
                 dropped)
    return unique, dropped


def _source_entry(store: FeatureStore) -> dict[str, Any]:
    m = store.manifest
    entry: dict[str, Any] = {"url": store.url, "store_id": store.store_id,
                             "created": m.created, "counts": to_json(m.counts),
                             "shards": len(m.shards), "software": dict(m.software),
                             "options": dict(m.options)}
    if m.merged_from:
        entry["merged_from"] = list(m.merged_from)
    return entry


__all__ = ["MERGE_MARKER", "MergeResult", "merge_stores"]
