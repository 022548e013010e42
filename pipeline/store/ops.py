"""Operations on whole feature stores, for teams that share them: info, verify, diff, merge.

Each returns plain data (dataclasses of builtins, JSON-able with :func:`dataclasses.asdict`)
that the command line renders; none prints. Stores are given as URLs (any fsspec URL; the
credentials come from the environment or ``storage_options``) or as open
:class:`~pipeline.store.FeatureStore` objects. URLs in results and messages are redacted
(:func:`~pipeline.store.redact_url`).

- :func:`store_info`: what a store holds and how it was made.
- :func:`verify_store`: recompute every checksum and cross-check store.json, index, failures and
  shards, reading features in chunks; a report of precise problems (empty when sound).
- :func:`diff_stores`: provenance differences, a comparability verdict, sample-set overlap.
- ``store merge`` lives in :mod:`pipeline.store.merge`.
- :func:`upgrade_store`: rewrite an older format's ``store.json`` as the current format,
  atomically, keeping the shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from pipeline.store.manifest import (FORMAT, SHARD_DIR, LabelTextsInfo, ShardEntry,
                                     StoreManifest, TranscriptSource, canonical_json,
                                     feature_space_differences,
                                     feature_space_id,
                                     format_version, parse_manifest, publish_manifest, sha256_json,
                                     to_json)
from pipeline.store.reader import FeatureStore, as_store, dictionary_codes, group_by_code
from pipeline.store.verify import LABEL_TEXTS, Problem, VerifyReport, verify_store
from pipeline.store.writer import ShardResult, finalize, shard_name

log = logging.getLogger(__name__)

StoreRef = str | Path | FeatureStore
ABSENT = "<absent>"
"""Stands for a field one store of a diff does not have (None is a value a field can hold)."""
FEATURE_SECTIONS = ("identity", "modalities", "feature_space")
"""Top-level store.json fields that determine feature values: any difference there means the
features of two stores cannot be mixed, even when their store_id agrees (say, "default" weights
that resolved to different checkpoints)."""
NOT_PROVENANCE = ("store_id", "shards", "counts", "created", "timings", "merged_from",
                  "legacy")
MODALITY_FIELDS = ("backbone", "weights", "weights_sha256", "dim", "dtype")
EXAMPLES = 5

__all__ = ["ABSENT", "Difference", "ModalityInfo", "Problem", "StoreDiff", "StoreInfo",
           "UpgradeResult", "VerifyReport", "diff_stores", "store_info", "upgrade_store",
           "verify_store"]



def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    pairs = pc.value_counts(column).to_pylist()
    return {str(p["values"]): int(p["counts"]) for p in sorted(pairs, key=lambda p: -p["counts"])}


# ----------------------------------------------------------------------------------------- info

@dataclass(frozen=True)
class ModalityInfo:
    """One store key: how its features were made."""

    key: str
    backbone: str
    weights: str
    weights_sha256: str | None
    random_weights: bool
    dim: int
    dtype: str
    preprocessing: dict[str, Any]


@dataclass(frozen=True)
class StoreInfo:
    """What :func:`store_info` reports; ``counts[split][label name]`` counts samples (for
    multi-label datasets: samples with that label), ``"unlabeled"`` counts label -1."""

    url: str
    store_id: str
    format: str
    created: str
    dataset: str
    manifest_sha256: str | None
    label_names: list[str]
    multilabel: bool
    views: int
    samples: int
    failures: int
    shards: int
    size_bytes: int
    counts: dict[str, dict[str, int]]
    modalities: list[ModalityInfo]
    failures_by_reason: dict[str, int]
    software: dict[str, str]
    timings: dict[str, float]
    feature_space: str = ""
    """sha256 of the store's feature space over all its keys (equal: comparable vectors)."""
    merged_from: list[dict[str, Any]] = field(default_factory=list)
    transcripts: TranscriptSource | None = None
    """Where the text key's transcripts came from (None: no text key, or an older store)."""
    preset: str | None = None
    """The settings bundle the extraction was asked for (None: none, or written from arrays)."""

    @property
    def random_weights(self) -> list[str]:
        """Keys whose backbone had random weights: such features are for tests only."""
        return [m.key for m in self.modalities if m.random_weights]


def store_info(store: StoreRef, *, storage_options: dict[str, Any] | None = None) -> StoreInfo:
    """Describe a store: dataset, counts per split and label, modalities and how they were
    made, failures by reason, software, size on disk.

    Raises:
        StoreError: not a complete store.
    """
    fs = as_store(store, storage_options=storage_options)
    m = fs.manifest
    return StoreInfo(
        url=fs.url, store_id=fs.store_id,
        format=m.format,
        created=m.created, dataset=fs.dataset, manifest_sha256=m.dataset.manifest_sha256,
        label_names=list(fs.label_names), multilabel=fs.multilabel, views=fs.views,
        samples=fs.index.num_rows, failures=fs.failures.num_rows, shards=len(m.shards),
        size_bytes=fs.loc.size(), counts=_label_counts(fs),
        modalities=[_modality_info(k, m) for k in fs.keys],
        failures_by_reason=_value_counts(fs.failures.column("reason")),
        software=dict(m.software), timings=dict(m.timings),
        feature_space=feature_space_id(m.feature_space), merged_from=list(m.merged_from),
        transcripts=m.dataset.transcripts, preset=m.choices.preset if m.choices else None)


def _modality_info(key: str, m: StoreManifest) -> ModalityInfo:
    choice, info = m.identity.modalities[key], m.modalities[key]
    return ModalityInfo(
        key=key, backbone=choice.backbone, weights=choice.weights,
        weights_sha256=info.weights_sha256, random_weights=choice.weights == "random",
        dim=info.dim, dtype=info.dtype,
        preprocessing={k: v for k, v in sorted(info.encoder.items())
                       if k not in MODALITY_FIELDS})


def _label_counts(fs: FeatureStore) -> dict[str, dict[str, int]]:
    names = fs.label_names
    counts: dict[str, dict[str, int]] = {}
    if fs.multilabel:
        for split in fs.splits:
            positive = (fs.labels(fs.positions(split)) > 0.5).sum(axis=0)
            counts[split] = {name: int(n) for name, n in zip(names, positive, strict=True)}
        return counts
    grouped = pa.table({"split": fs.index.column("split"), "label": fs.index.column("label")})
    for row in grouped.group_by(["split", "label"]).aggregate([("split", "count")]).to_pylist():
        label = row["label"]
        name = "unlabeled" if label == -1 else (
            names[label] if 0 <= label < len(names) else f"<invalid {label}>")
        counts.setdefault(row["split"], {})[name] = int(row["split_count"])
    rank = {name: i for i, name in enumerate([*names, "unlabeled"])}
    return {split: dict(sorted(c.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
            for split, c in sorted(counts.items())}


# ----------------------------------------------------------------------------------------- diff

@dataclass(frozen=True)
class Difference:
    """One provenance field that differs: its dotted path and the two values."""

    path: str
    a: Any
    b: Any


@dataclass(frozen=True)
class StoreDiff:
    """What :func:`diff_stores` reports.

    ``comparable``: same store_id and no difference in the feature-determining fields
    (``blocking``); such stores can be merged and their features mixed. ``differences`` also
    holds the rest (software versions, run options).
    """

    a: str
    b: str
    a_store_id: str
    b_store_id: str
    comparable: bool
    reason: str
    differences: list[Difference]
    blocking: list[Difference]
    samples_only_a: int
    samples_only_b: int
    samples_both: int
    examples_only_a: list[str]
    examples_only_b: list[str]
    examples_both: list[str]
    splits_a: dict[str, int]
    splits_b: dict[str, int]
    feature_space: dict[str, list[str]] = field(default_factory=dict)
    """Per store key both stores hold, the feature-space fields that differ (empty: heads
    trained on one can be evaluated on the other)."""

    @property
    def same_feature_space(self) -> bool:
        return not self.feature_space


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``; lists and empty dicts are leaves."""
    if not isinstance(obj, dict) or not obj:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def provenance_differences(a: StoreManifest, b: StoreManifest) -> list[Difference]:
    """Differences between two manifests, sorted by dotted path (``feature_space`` is derived
    from ``identity`` and ``modalities`` and reported separately by :func:`diff_stores`)."""
    def prov(m: StoreManifest) -> dict[str, Any]:
        data = m.to_json()
        return flatten({k: v for k, v in data.items()
                        if k not in (*NOT_PROVENANCE, "feature_space")})

    fa, fb = prov(a), prov(b)
    return [Difference(p, fa.get(p, ABSENT), fb.get(p, ABSENT))
            for p in sorted(fa.keys() | fb.keys()) if fa.get(p, ABSENT) != fb.get(p, ABSENT)]


def diff_stores(a: StoreRef, b: StoreRef) -> StoreDiff:
    """Compare the provenance and the sample sets of two stores.

    Raises:
        StoreError: either is not a complete store.
    """
    sa, sb = as_store(a), as_store(b)
    diffs = provenance_differences(sa.manifest, sb.manifest)
    # Stores written from arrays differ in their content hash by design: their configuration
    # is the rest of the identity.
    blocking = [d for d in diffs if d.path.split(".")[0] in FEATURE_SECTIONS
                and d.path != "identity.content_sha256"]
    same_config = sa.store_id == sb.store_id or (
        _is_arrays(sa.manifest) and _is_arrays(sb.manifest) and not blocking)
    if not same_config:
        reason = f"different store_id ({sa.store_id[:12]} vs {sb.store_id[:12]})"
    elif blocking:
        reason = "same store_id, but the features were made differently at " + ", ".join(
            d.path for d in blocking)
    else:
        reason = "same store_id and feature provenance"
    ids_a = sa.index.column("sample_id").combine_chunks()
    ids_b = sb.index.column("sample_id").combine_chunks()
    in_b = pc.is_in(ids_a, value_set=ids_b).to_numpy(zero_copy_only=False)
    in_a = pc.is_in(ids_b, value_set=ids_a).to_numpy(zero_copy_only=False)
    return StoreDiff(
        a=sa.url, b=sb.url, a_store_id=sa.store_id, b_store_id=sb.store_id,
        comparable=same_config and not blocking, reason=reason,
        differences=diffs, blocking=blocking, samples_only_a=int((~in_b).sum()),
        samples_only_b=int((~in_a).sum()), samples_both=int(in_b.sum()),
        examples_only_a=_examples(ids_a, ~in_b), examples_only_b=_examples(ids_b, ~in_a),
        examples_both=_examples(ids_a, in_b),
        splits_a=_value_counts(sa.index.column("split")),
        splits_b=_value_counts(sb.index.column("split")),
        feature_space=feature_space_differences(
            sa.manifest.feature_space, sb.manifest.feature_space,
            sorted(set(sa.keys) | set(sb.keys))))


def _is_arrays(manifest: StoreManifest) -> bool:
    return manifest.identity.content_sha256 is not None


def _examples(ids: pa.Array, mask: np.ndarray) -> list[str]:
    return ids.take(pa.array(np.flatnonzero(mask)[:EXAMPLES], pa.int64())).to_pylist()


# -------------------------------------------------------------------------------------- upgrade

@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade_store` did: ``from_format`` -> ``to_format`` (equal: nothing)."""

    url: str
    store_id: str
    from_format: str
    to_format: str

    @property
    def changed(self) -> bool:
        return self.from_format != self.to_format


def upgrade_store(url: str | Path, *,
                  storage_options: dict[str, Any] | None = None) -> UpgradeResult:
    """Rewrite an older store's ``store.json`` in the current format, atomically.

    Only ``store.json`` changes (one atomic replace); the shards, the index and the failures
    table are kept as they are, and so is the ``store_id`` (the shards carry it). A store in
    the current format is left untouched.

    Raises:
        StoreError: not a store, or a format this release cannot read.
    """
    loc = Location.parse(url, storage_options)
    try:
        raw = json.loads(loc.read_bytes("store.json"))
    except MissingFileError:
        raise StoreError(f"{loc.display}: no store.json, not a complete feature store") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{loc.display}/store.json: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise StoreError(f"{loc.display}/store.json: expected a JSON object")
    found = str(raw.get("format"))
    format_version(found, f"{loc.display}/store.json")
    manifest = parse_manifest(raw, f"{loc.display}/store.json")
    if found != FORMAT:
        publish_manifest(loc, manifest)
        log.info("%s: store.json rewritten from %s to %s", loc.display, found, FORMAT)
    return UpgradeResult(loc.display, manifest.store_id, found, FORMAT)
