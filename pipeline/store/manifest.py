"""``store.json`` as typed, frozen dataclasses: the one owner of the store's contract.

Every writer builds a :class:`StoreManifest` (:func:`build_manifest`) and publishes it with
:func:`publish_manifest`; every reader gets one from :func:`parse_manifest` (the strict loader
of :mod:`pipeline.config`: an unknown key or a wrong type names the field). Nothing else in
the project parses or writes ``store.json``.

Three identities, from strict to loose:

- ``store_id``: the sha256 of :class:`~pipeline.store.store_identity.StoreIdentity`: the
  dataset, the extraction's feature settings and every backbone spec
  (:mod:`pipeline.store.store_identity`). Two stores with the same ``store_id`` hold the same
  features for the same clips; resuming an extraction or a pretraining run requires it.
- ``feature_space``: per store key, what makes the vectors of two stores *comparable*
  (:mod:`pipeline.store.feature_space`).
- ``format``: ``conclugen-store/3``. Stores of versions 1 and 2 are read by converting them in
  memory (:mod:`pipeline.store.upgrade`); ``cli store upgrade`` rewrites their ``store.json``
  in place. Their recorded ``store_id`` is kept (their shards carry it, and stores shared
  between people must still compare equal) and their original identity is kept under
  ``legacy`` so that ``store verify`` can still recompute it.

Each extraction setting is stored once: the feature settings in ``identity.extraction``, the
choices (keys, backbones, weights as given, views, preset) in ``choices``, the run settings
(batching, prefetch) in ``run``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigError, from_dict
from pipeline.extract_config import ExtractChoices, ExtractConfig, RunSettings
from pipeline.store.errors import StoreError
from pipeline.store.feature_space import (feature_space_differences, feature_space_id,
                                          feature_space_of, format_differences)
from pipeline.store.filesystem import Location, check_relative
from pipeline.store.store_identity import (BackboneChoice, DatasetInfo, ModalityInfo,
                                           StoreIdentity, TranscriptSource, canonical_identity,
                                           canonical_json, sha256_json,
                                           store_id_of, to_json)
from pipeline.store.upgrade import LATEST, upgrade, upgrade_v1, upgrade_v2

FORMAT_PREFIX = "conclugen-store/"
VERSION = LATEST
FORMAT = f"{FORMAT_PREFIX}{VERSION}"
READABLE = (1, 2, 3)
SHARD_DIR = "shards"
STORE_JSON = "store.json"
#: Bounds on the sizes store.json declares (far above any real store: the largest backbone
#: output is a few thousand wide, views are a handful, shards hold hundreds of rows).
MAX_DIM = 1 << 16
MAX_VIEWS = 1024
MAX_SHARD_ROWS = 1 << 24


@dataclass(frozen=True)
class ShardEntry:
    """One shard file: its path relative to the store root, rows and sha256."""

    path: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Counts:
    samples: int
    failures: int
    splits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelTextsInfo:
    """The label texts of a store, embedded by its own text backbone (``label_texts.parquet``
    in the store root; :mod:`pipeline.label_texts`): CLEF-style text prototypes live in the
    store's text space and need no backbone at evaluation.

    Attributes:
        rows: its rows (one per class, and per class of each coarse group).
        key: the store key whose backbone embedded them (``text``).
        backbone: that backbone (as ``identity.modalities[key].backbone``).
        weights_sha256: of the weights that embedded them (the key's ``weights_sha256``).
        template: the prompt made of each class name (``a photo of a person with {label}``).
        source_sha256: of the label-texts file the prompts and descriptions came from.
        coarse: coarse group -> the continuous target whose sign makes its classes
            (CMU-MOSEI: ``sentiment`` -> ``valence``).
        created: when they were embedded.
        sha256: of ``label_texts.parquet``; ``store verify`` and the readers check the file
            against it. None: a record written without it, read as it is (``store verify``
            reports it as not hashed; ``cli store add-label-texts`` writes it again with one).
    """

    rows: int
    key: str
    backbone: str
    weights_sha256: str | None
    template: str
    source_sha256: str
    coarse: dict[str, str] = field(default_factory=dict)
    created: str = ""
    sha256: str | None = None


@dataclass(frozen=True)
class StoreManifest:
    """The parsed ``store.json`` (see the module docstring for the three identities).

    Attributes:
        format: the format ``store.json`` was read in (an earlier one is upgraded in memory;
            :func:`publish_manifest` writes ``conclugen-store/3``).
        store_id: sha256 of :attr:`identity` (:func:`store_id_of`; for an upgraded store of
            an earlier format: of ``legacy["identity"]``).
        identity: what determines the feature values.
        modalities: per store key, what the loaded encoder reported.
        feature_space: per store key, the comparable part (:func:`feature_space_of`), written
            out for readers without this project; derived again on read (``store verify``
            notes a recorded one that differs).
        shards, counts, created: the store's content.
        choices: what was extracted, as given: keys, backbones, weights (a path as a path),
            views and the preset asked for (None: written from arrays). Its keys, backbones
            and views are those of :attr:`identity` (checked on read).
        run: the extraction's run settings (batching, prefetch; None: written from arrays).
        software: package versions and the git commit of the extraction.
        timings: seconds per stage, summed over workers.
        options: run settings (shard size, limit, device).
        merged_from: the stores a ``store merge`` combined.
        legacy: for a store upgraded from an earlier format, that format and the identity
            its ``store_id`` was computed from.
        label_texts: the store's embedded label texts (None: none yet; ``cli store
            add-label-texts`` adds them).
    """

    store_id: str
    identity: StoreIdentity
    modalities: dict[str, ModalityInfo]
    shards: tuple[ShardEntry, ...]
    counts: Counts
    created: str
    format: str = FORMAT
    feature_space: dict[str, dict[str, Any]] = field(default_factory=dict)
    choices: ExtractChoices | None = None
    run: RunSettings | None = None
    software: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    merged_from: tuple[dict[str, Any], ...] = ()
    legacy: dict[str, Any] | None = None
    label_texts: LabelTextsInfo | None = None

    # ---- conveniences every reader uses
    @property
    def dataset(self) -> DatasetInfo:
        return self.identity.dataset

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self.modalities))

    @property
    def views(self) -> int:
        return self.identity.views

    @property
    def random_weights(self) -> list[str]:
        """Keys whose backbone had random weights: such features are for tests only."""
        return [k for k, c in sorted(self.identity.modalities.items()) if c.weights == "random"]

    def extract_config(self) -> ExtractConfig:
        """The extraction config the store was made with (for ``predict``: extract a new
        video exactly as the store did).

        Raises:
            StoreError: the store was written from arrays, not extracted.
        """
        if self.choices is None or self.identity.extraction is None:
            raise StoreError(f"store {self.store_id[:12]} was written from arrays "
                             f"({self.dataset.name}), not extracted: it has no extraction "
                             "config")
        return ExtractConfig(choices=self.choices, features=self.identity.extraction,
                             run=self.run or RunSettings())

    def to_json(self) -> dict[str, Any]:
        data = to_json(self)
        return {k: v for k, v in data.items() if v is not None or k in ("choices", "run")}


# ------------------------------------------------------------------------------- read/write

def parse_manifest(data: Any, where: str = "store.json") -> StoreManifest:
    """A ``store.json`` mapping (any readable version) as a :class:`StoreManifest`.

    Raises:
        StoreError: an unknown or newer format, or a field that does not fit the contract
            (names the field).
    """
    if not isinstance(data, dict):
        raise StoreError(f"{where}: expected a JSON object, got {type(data).__name__}")
    version = format_version(data.get("format"), where)
    if version < VERSION:
        data = upgrade(data, version, where)
    try:
        manifest = from_dict(StoreManifest, data, where)
    except ConfigError as err:
        raise StoreError(f"{err} (store.json does not fit the store contract)") from None
    check_manifest(manifest, where)
    # The recorded feature space is for readers without this project; comparisons use the one
    # this release derives, so two stores are always compared by the same rule.
    derived = json.loads(json.dumps(feature_space_of(manifest.identity, manifest.modalities)))
    return dataclasses.replace(manifest, feature_space=derived, format=f"{FORMAT_PREFIX}{version}")


def check_manifest(manifest: StoreManifest, where: str = "store.json") -> None:
    """What the types alone do not say: at least one modality, the same keys in ``identity``
    and ``modalities``, and a shard list :func:`shard_paths` accepts.

    Raises:
        StoreError: naming the field.
    """
    if not manifest.modalities:
        raise StoreError(f"{where}: modalities is empty; a store holds the features of at "
                         "least one key (store.json does not fit the store contract)")
    planned, loaded = sorted(manifest.identity.modalities), sorted(manifest.modalities)
    if planned != loaded:
        raise StoreError(f"{where}: identity.modalities {planned} and modalities {loaded} name "
                         "different keys (store.json does not fit the store contract)")
    _check_choices(manifest, where)
    sizes = [(f"modalities.{key}.dim", info.dim, MAX_DIM)
             for key, info in sorted(manifest.modalities.items())]
    sizes += [("identity.views", manifest.views, MAX_VIEWS)]
    sizes += [(f"shards[{i}].rows", e.rows, MAX_SHARD_ROWS) for i, e in enumerate(manifest.shards)]
    for field_name, value, limit in sizes:
        # Readers allocate [rows, views, dim] from these numbers before reading a byte: a
        # hostile store.json must not make them ask for terabytes.
        if not 1 <= value <= limit and not (field_name.endswith(".rows") and value == 0):
            raise StoreError(f"{where}: {field_name} is {value}, outside 1..{limit:,} (store.json "
                             "does not fit the store contract)")
    shard_paths(manifest, where)


def _check_choices(manifest: StoreManifest, where: str) -> None:
    """``choices`` names the keys, backbones and views that ``identity`` records."""
    choices, ident = manifest.choices, manifest.identity
    if choices is None:
        return
    planned = {k: c.backbone for k, c in ident.modalities.items()}
    chosen = {k: choices.backbones.get(k) for k in choices.modalities}
    for name, ours, theirs in (("modalities", sorted(chosen), sorted(planned)),
                               ("backbones", chosen, planned),
                               ("views", choices.views, ident.views)):
        if ours != theirs:
            raise StoreError(f"{where}: choices.{name} is {ours}, but identity records "
                             f"{theirs} (store.json does not fit the store contract)")


def shard_paths(manifest: StoreManifest, where: str = "store.json") -> dict[str, str]:
    """Shard name (a value of the index's ``shard`` column) -> its path in ``store.json``.

    The one mapping between the index and ``store.json``: readers open, ``store verify``
    hashes and ``store merge`` copies exactly these paths, so what is verified is what is read.
    Every path is ``shards/<name>.h5`` (the layout every writer uses), which also keeps a
    ``store.json`` from naming files elsewhere.

    Raises:
        UnsafePathError: a path that would leave the store (absolute, ``..``, a URL).
        StoreError: another layout, a negative row count or a shard listed twice.
    """
    out: dict[str, str] = {}
    for i, entry in enumerate(manifest.shards):
        at = f"{where}: shards[{i}].path"
        check_relative(entry.path, at)
        folder, _, file = entry.path.rpartition("/")
        name = file.removesuffix(".h5")
        if folder != SHARD_DIR or not file.endswith(".h5") or not name:
            raise StoreError(f"{at}: {entry.path!r} is not {SHARD_DIR}/<name>.h5, where the "
                             "shards of a store lie")
        if name in out:
            raise StoreError(f"{at}: shard {name!r} is listed twice")
        if entry.rows < 0:
            raise StoreError(f"{where}: shards[{i}].rows is {entry.rows}")
        out[name] = entry.path
    return out


def format_version(found: Any, where: str) -> int:
    """The version number of a ``format`` string; refuses unknown and newer formats."""
    text = str(found)
    if not text.startswith(FORMAT_PREFIX) or not text[len(FORMAT_PREFIX):].isdigit():
        raise StoreError(f"{where}: unknown store format {found!r} (expected "
                         f"{FORMAT_PREFIX}<version>)")
    version = int(text[len(FORMAT_PREFIX):])
    if version not in READABLE:
        newer = " written by a newer release; update this tool" if version > VERSION else ""
        raise StoreError(f"{where}: store format {text}{newer}; this release reads versions "
                         f"{', '.join(map(str, READABLE))}")
    return version


def manifest_json(manifest: StoreManifest) -> bytes:
    """The bytes of ``store.json`` (indented, sorted keys: diffable)."""
    return json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode()


def publish_manifest(loc: Location, manifest: StoreManifest) -> None:
    """Write ``store.json``: the one way every writer (extraction, merge, upgrade, label texts)
    publishes a store. One atomic replace, in the current format: its presence means the store
    is complete, so it is written after every file it lists."""
    loc.write_atomic(manifest_json(dataclasses.replace(manifest, format=FORMAT)), STORE_JSON)


def build_manifest(*, identity: StoreIdentity, modalities: Mapping[str, ModalityInfo],
                   shards: Sequence[ShardEntry], counts: Counts, created: str,
                   config: ExtractConfig | None = None,
                   software: Mapping[str, str] | None = None,
                   timings: Mapping[str, float] | None = None,
                   options: Mapping[str, Any] | None = None,
                   merged_from: Sequence[Mapping[str, Any]] = (),
                   store_id: str | None = None,
                   legacy: Mapping[str, Any] | None = None,
                   label_texts: LabelTextsInfo | None = None) -> StoreManifest:
    """The one constructor writers use: fills ``store_id`` and ``feature_space``.

    ``config``: the extraction's config (None: written from arrays); its feature settings are
    ``identity.extraction``, its choices and run settings are recorded beside the identity.
    """
    return StoreManifest(
        store_id=store_id or store_id_of(identity), identity=identity,
        modalities=dict(modalities), shards=tuple(shards), counts=counts, created=created,
        feature_space=json.loads(json.dumps(feature_space_of(identity, modalities))),
        choices=config.choices if config else None, run=config.run if config else None,
        software=dict(software or {}), timings=dict(timings or {}),
        options=dict(options or {}), merged_from=tuple(dict(m) for m in merged_from),
        legacy=dict(legacy) if legacy is not None else None, label_texts=label_texts)


__all__ = ["FORMAT", "READABLE", "SHARD_DIR", "STORE_JSON", "VERSION", "BackboneChoice", "Counts",
           "DatasetInfo", "LabelTextsInfo", "ModalityInfo", "ShardEntry",
           "StoreError", "StoreIdentity", "StoreManifest", "TranscriptSource", "build_manifest",
           "canonical_identity", "canonical_json", "check_manifest", "feature_space_differences",
           "feature_space_id", "feature_space_of", "format_differences", "format_version",
           "manifest_json", "parse_manifest", "publish_manifest",
           "sha256_json", "shard_paths", "store_id_of", "to_json", "upgrade_v1", "upgrade_v2"]
