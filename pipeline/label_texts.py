"""Label texts embedded with a store's own text backbone: the prototypes of CLEF-style heads.

CLEF (Zhang et al., ICCV 2023) classifies a sample by its similarity to text embeddings of the
label names ("a photo of a person with {label}") and trains them against short descriptions of
each label. On fixed features the texts must be embedded by the backbone that made the store's
text features, so that prototypes and transcripts share one space: this module embeds the
prompts and descriptions of ``manifests/label_texts.yaml`` with the store's text backbone,
loaded exactly as the store recorded it (its weights' sha256 checked, as
:mod:`pipeline.one_video` does for a new video), and keeps them in the store:

- ``STORE/label_texts.parquet``: one row per class (``kind = class``, in label order) and per
  class of each coarse group (``kind = coarse``): ``group``, ``index``, ``label``,
  ``prompt``, ``description``, ``prompt_vector``, ``description_vector`` (float32, rounded
  through the store's dtype like the features);
- ``store.json``: ``label_texts`` (:class:`~pipeline.store.manifest.LabelTextsInfo`: the
  file's sha256, the backbone and weights that embedded them, the template, the source file's
  sha256, the coarse groups' targets).

Extraction adds them after the store is complete (:func:`add_label_texts` from
:func:`pipeline.run.run_extract`); a store extracted before gets them from ``cli store
add-label-texts STORE``. Evaluation reads them with :func:`read_label_texts`, no backbone
needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import manifests
from pipeline.config import file_sha256, load_yaml
from pipeline.errors import UserError
from pipeline.store.manifest import LabelTextsInfo, StoreManifest, publish_manifest
from pipeline.store.verify import LABEL_TEXTS

if TYPE_CHECKING:
    from pipeline.store import FeatureStore, Location

log = logging.getLogger(__name__)

FILE = LABEL_TEXTS
SOURCE = manifests.path("label_texts.yaml")
KEY = "text"


class LabelTextsError(UserError, ValueError):
    """Label texts cannot be made or read for a store; the message says why."""


@dataclass(frozen=True)
class LabelText:
    """One class's texts: ``kind`` ``class`` (``group`` empty) or ``coarse``."""

    kind: str
    group: str
    index: int
    label: str
    prompt: str
    description: str


@dataclass(frozen=True)
class LabelTextSet:
    """What :func:`texts_for` finds for a dataset in the label-texts file."""

    texts: tuple[LabelText, ...]
    template: str
    coarse: dict[str, str]
    source_sha256: str


@dataclass(frozen=True)
class LabelTexts:
    """A store's embedded label texts, as the heads use them.

    Attributes:
        names: float32 [C, E] the prompts' vectors, in label order.
        descriptions: float32 [C, E] the descriptions' vectors, in label order.
        prompts: the C prompts.
        coarse: group -> (the target whose sign makes it, its class names, their prompt
            vectors [K, E]); index 0 is the negative sign.
        info: the record in ``store.json``.
    """

    names: np.ndarray
    descriptions: np.ndarray
    prompts: tuple[str, ...]
    coarse: dict[str, tuple[str, tuple[str, ...], np.ndarray]] = field(default_factory=dict)
    info: LabelTextsInfo | None = None


def texts_for(dataset: str, labels: Sequence[str], targets: Sequence[str] = (), *,
              source: str | Path | None = None) -> LabelTextSet:
    """The prompts and descriptions of a dataset's classes (and of its coarse groups whose
    target the store has).

    Raises:
        LabelTextsError: the file has no entry for the dataset, or misses one of its labels.
    """
    path = Path(source) if source is not None else SOURCE
    data = load_yaml(path)
    template, emotions = str(data["template"]), data.get("emotions") or {}
    entry = (data.get("datasets") or {}).get(dataset)
    if entry is None:
        raise LabelTextsError(f"{path}: no label texts for dataset {dataset!r} (it has "
                              f"{sorted(data.get('datasets') or {})})")
    classes = entry.get("classes") or {}
    missing = [label for label in labels if label not in classes]
    if missing or not labels:
        raise LabelTextsError(f"{path}: dataset {dataset!r}: no texts for label(s) "
                              f"{missing or list(labels)}")
    texts = [_text("class", "", i, label, emotions[classes[label]], template)
             for i, label in enumerate(labels)]
    coarse = {}
    for group, spec in (entry.get("coarse") or {}).items():
        if spec["target"] not in targets:
            continue
        coarse[group] = str(spec["target"])
        texts += [_text("coarse", group, i, name, text, template)
                  for i, (name, text) in enumerate(spec["classes"].items())]
    return LabelTextSet(tuple(texts), template, coarse, file_sha256(path))


def _text(kind: str, group: str, index: int, label: str, words: dict[str, str],
          template: str) -> LabelText:
    return LabelText(kind, group, index, label, template.format(label=words["phrase"]),
                     str(words["description"]))


def available(manifest: StoreManifest, *, source: str | Path | None = None) -> str | None:
    """Why label texts cannot be made for the store (None: they can)."""
    if KEY not in manifest.modalities:
        return f"the store has no {KEY!r} features, so no text backbone to embed label texts"
    if manifest.choices is None or manifest.identity.extraction is None:
        return ("the store was written from arrays, not extracted: there is no text backbone "
                "to load")
    if not manifest.dataset.labels:
        return f"dataset {manifest.dataset.name!r} has no classes"
    try:
        texts_for(manifest.dataset.name, manifest.dataset.labels, manifest.dataset.targets,
                  source=source)
    except LabelTextsError as err:
        return str(err)
    return None


# ------------------------------------------------------------------------- making them

def add_label_texts(store: str | Path, *, device: str = "cpu",
                    source: str | Path | None = None) -> StoreManifest:
    """Embed the dataset's label texts with the store's text backbone and keep them in it.

    Loads the backbone the store recorded for ``text`` (refusing weights that cannot be
    loaded here, and weights whose sha256 differs from those that made the store), embeds
    every prompt and description, writes ``label_texts.parquet`` and rewrites ``store.json``
    with its record (both atomically; replaces earlier label texts).

    Returns:
        the store's new manifest.

    Raises:
        LabelTextsError: no text features, a store written from arrays, a dataset or label
            without texts, or weights that cannot be loaded or differ from the store's.
    """
    from pipeline.backbones import load_encoder
    from pipeline.backbones.registry import weights_problem
    from pipeline.one_video import extraction_settings
    from pipeline.store import Location, load_manifest

    loc = Location.parse(store)
    manifest = load_manifest(loc)
    problem = available(manifest, source=source)
    if problem:
        raise LabelTextsError(f"{loc.display}: {problem}")
    texts = texts_for(manifest.dataset.name, manifest.dataset.labels,
                      manifest.dataset.targets, source=source)
    cfg, _ = extraction_settings(manifest, [KEY])
    backbone, weights = cfg.choices.backbones[KEY], cfg.choices.weights[KEY]
    why = weights_problem(backbone, weights)
    if why:
        raise LabelTextsError(f"{loc.display}: the store's {KEY} features were extracted with "
                              f"{why}")
    encoder = load_encoder(backbone, weights=weights, device=device)
    loaded = encoder.provenance().get("weights_sha256")
    recorded = manifest.modalities[KEY].weights_sha256
    if loaded != recorded:
        raise LabelTextsError(f"{loc.display}: the {KEY} weights loaded now (sha256 "
                              f"{str(loaded)[:16]}...) are not those that made the store "
                              f"({str(recorded)[:16]}...)")
    dtype = np.dtype(manifest.modalities[KEY].dtype)
    prompts = _rounded(encoder.encode_batch([t.prompt for t in texts.texts]), dtype)
    descriptions = _rounded(encoder.encode_batch([t.description for t in texts.texts]), dtype)
    return write_label_texts(loc, manifest, texts, prompts, descriptions,
                             backbone=manifest.identity.modalities[KEY].backbone,
                             weights_sha256=recorded)


def _rounded(vectors: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Through the store's dtype, as a transcript's features are stored."""
    return np.asarray(vectors).astype(dtype).astype(np.float32)


def write_label_texts(loc: Location, manifest: StoreManifest, texts: LabelTextSet,
                      prompts: np.ndarray, descriptions: np.ndarray, *, backbone: str,
                      weights_sha256: str | None) -> StoreManifest:
    """Write ``label_texts.parquet`` and the ``store.json`` that records it (atomically).

    Args:
        loc: the store.
        manifest: its current manifest.
        texts: the texts, one per row of ``prompts`` and ``descriptions``.
        prompts: float32 [len(texts), E] the prompts' vectors.
        descriptions: float32 [len(texts), E] the descriptions' vectors.
        backbone: the backbone that embedded them.
        weights_sha256: its weights' sha256.
    """
    n, dim = len(texts.texts), manifest.modalities[KEY].dim
    for name, vectors in (("prompts", prompts), ("descriptions", descriptions)):
        if np.shape(vectors) != (n, dim):
            raise ValueError(f"{name}: expected [{n}, {dim}] vectors, got {np.shape(vectors)}")
        with np.errstate(over="ignore"):  # an overflow is what is refused here
            finite = bool(np.isfinite(np.asarray(vectors, np.float32)).all())
        if not finite:
            raise ValueError(f"{name}: NaN or Inf in the vectors (as float32); nothing written")
    vector = pa.list_(pa.float32(), dim)
    table = pa.table({
        "kind": [t.kind for t in texts.texts], "group": [t.group for t in texts.texts],
        "index": pa.array([t.index for t in texts.texts], pa.int64()),
        "label": [t.label for t in texts.texts], "prompt": [t.prompt for t in texts.texts],
        "description": [t.description for t in texts.texts],
        "prompt_vector": pa.array(list(np.asarray(prompts, np.float32)), vector),
        "description_vector": pa.array(list(np.asarray(descriptions, np.float32)), vector)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()
    info = LabelTextsInfo(sha256=hashlib.sha256(data).hexdigest(), rows=n, key=KEY,
                          backbone=backbone, weights_sha256=weights_sha256,
                          template=texts.template, source_sha256=texts.source_sha256,
                          coarse=dict(texts.coarse),
                          created=datetime.now(UTC).isoformat(timespec="seconds"))
    loc.write_atomic(data, FILE)
    updated = dataclasses.replace(manifest, label_texts=info)
    publish_manifest(loc, updated)
    log.info("%s: %d label texts embedded with %s", loc.display, n, backbone)
    return updated


# ------------------------------------------------------------------------- reading them

def read_label_texts(fs: FeatureStore) -> LabelTexts:
    """The store's label texts (no backbone needed).

    Raises:
        LabelTextsError: the store has none (says how to add them), the file's sha256 is not
            the recorded one, they were embedded by another text backbone than the store's,
            or their classes are not the store's.
    """
    info = fs.manifest.label_texts
    if info is None:
        raise LabelTextsError(f"{fs.url}: no label texts in this store; embed them with its "
                              f"text backbone: `cli store add-label-texts {fs.url}`")
    data = fs.loc.read_bytes(FILE)
    if info.sha256 is None:
        log.warning("%s/%s: store.json records no sha256 for the label texts; read unchecked "
                    "(`cli store add-label-texts %s` writes them again with one)", fs.url, FILE,
                    fs.url)
    elif hashlib.sha256(data).hexdigest() != info.sha256:
        raise LabelTextsError(f"{fs.url}/{FILE}: sha256 differs from store.json's record; "
                              f"run `cli store add-label-texts {fs.url}` again")
    space = fs.manifest.feature_space.get(info.key) or {}
    if (info.backbone, info.weights_sha256) != (space.get("backbone"),
                                                space.get("weights_sha256")):
        raise LabelTextsError(f"{fs.url}: the label texts were embedded by {info.backbone} "
                              f"({str(info.weights_sha256)[:16]}...), not by the store's "
                              f"{info.key} backbone; run `cli store add-label-texts` again")
    return _parse(pq.read_table(io.BytesIO(data)), fs.label_names, info, fs.url)


def _parse(table: pa.Table, labels: Sequence[str], info: LabelTextsInfo,
           where: str) -> LabelTexts:
    rows: list[dict[str, Any]] = table.to_pylist()
    classes = sorted((r for r in rows if r["kind"] == "class"), key=lambda r: r["index"])
    if [r["label"] for r in classes] != list(labels):
        raise LabelTextsError(f"{where}/{FILE}: classes {[r['label'] for r in classes]} are "
                              f"not the store's {list(labels)}")
    coarse = {}
    for group, target in info.coarse.items():
        members = sorted((r for r in rows if r["kind"] == "coarse" and r["group"] == group),
                         key=lambda r: r["index"])
        coarse[group] = (target, tuple(r["label"] for r in members),
                         np.asarray([r["prompt_vector"] for r in members], np.float32))
    texts = LabelTexts(np.asarray([r["prompt_vector"] for r in classes], np.float32),
                       np.asarray([r["description_vector"] for r in classes], np.float32),
                       tuple(r["prompt"] for r in classes), coarse, info)
    vectors = [texts.names, texts.descriptions, *(v for _, _, v in coarse.values())]
    if not all(np.isfinite(v).all() for v in vectors):
        raise LabelTextsError(f"{where}/{FILE}: vectors hold NaN or Inf values; run `cli store "
                              "verify` on the store, and `cli store add-label-texts` to embed "
                              "them again")
    return texts


__all__ = ["FILE", "LabelText", "LabelTextSet", "LabelTexts", "LabelTextsError",
           "add_label_texts", "available", "read_label_texts", "texts_for",
           "write_label_texts"]
