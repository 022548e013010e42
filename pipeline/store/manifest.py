"""``store.json`` as typed, frozen dataclasses: the one owner of the store's contract.

Every writer builds a :class:`StoreManifest` and writes it with :func:`write_manifest`; every
reader gets one from :func:`read_manifest` (the strict loader of :mod:`pipeline.config`: an
unknown key or a wrong type names the field). Nothing else in the project parses ``store.json``.

Three identities, from strict to loose:

- ``store_id``: the sha256 of the canonical JSON of :class:`StoreIdentity`: the dataset, the
  extraction settings and every backbone spec. Two stores with the same ``store_id`` hold the
  same features for the same clips; resuming an extraction or a pretraining run requires it.
- ``feature_space`` (:func:`feature_space_of`): per store key, what makes the vectors of two
  stores *comparable*: backbone, weights (sha256 of what was loaded, or "random" with its
  seed), input preprocessing (sampling rates, windows, image size, mean/std, mel settings,
  tokenizer, pooling) and the storage dtype. Dataset, splits, labels, shard size, the sample
  list, augmented views and the dataset-level choices the paper itself mixes (face cropping
  and detection, the no-face and empty-transcript policies) are not part of it. Heads trained
  on one store are evaluated on any store with the same feature space for the keys they use:
  the paper pretrains on VoxCeleb2 (not face-cropped) and evaluates on MELD, CAER and
  CMU-MOSEI (face-cropped), each possibly extracted by someone else.
- ``format``: ``conclugen-store/2``. Version 1 stores (the first release) are read by
  converting them in memory (:func:`upgrade_v1`); ``cli store upgrade`` rewrites their
  ``store.json`` in place. Their recorded ``store_id`` is kept (their shards carry it) and their
  original identity is kept under ``legacy`` so that ``store verify`` can still recompute it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigError, from_dict
from pipeline.extract_config import AugmentSpec, DecodeSpec, ExtractConfig, FaceSpec
from pipeline.store.errors import StoreError
from pipeline.store.filesystem import check_relative

FORMAT_PREFIX = "conclugen-store/"
VERSION = 2
FORMAT = f"{FORMAT_PREFIX}{VERSION}"
READABLE = (1, 2)
SHARD_DIR = "shards"
#: Bounds on the sizes store.json declares (far above any real store: the largest backbone
#: output is a few thousand wide, views are a handful, shards hold hundreds of rows).
MAX_DIM = 1 << 16
MAX_VIEWS = 1024
MAX_SHARD_ROWS = 1 << 24

#: Backbone spec fields that say how a backbone is run or named, not what it computes (``dim``
#: is compared as what the loaded encoder produced).
RUNTIME_SPEC_FIELDS = frozenset({"batch_size", "name", "key", "default_weights",
                                 "checkpoint_hint", "dim"})
#: Encoder provenance fields that do not describe the feature space (where or how fast).
RUNTIME_ENCODER_FIELDS = frozenset({"compute_dtype", "device", "batch_size"})
#: Per store key, the extraction settings that are part of its feature space.
SAMPLING_FIELDS: dict[str, tuple[str, ...]] = {
    "frames_2d": ("fps_2d",), "frames_3d": ("fps_3d",), "audio": ("sample_rate",), "text": ()}


def canonical_json(obj: Any) -> str:
    """The JSON text whose sha256 identifies a provenance (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def store_id_of(identity: StoreIdentity | Mapping[str, Any]) -> str:
    """sha256 of the canonical identity (what determines the feature values)."""
    data = to_json(identity) if isinstance(identity, StoreIdentity) else identity
    return sha256_json(canonical_identity(data))


def canonical_identity(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The identity mapping whose hash is the ``store_id``: fields added to the identity after
    its format was released are left out at their default (``dataset.targets`` empty,
    ``dataset.transcripts`` None), so the stores written before them keep their ``store_id``."""
    dataset = data.get("dataset")
    if not isinstance(dataset, Mapping):
        return data
    # ``targets`` empty and ``transcripts`` None are the values of stores written before them.
    unset = {k for k in ("targets", "transcripts") if k in dataset and not dataset[k]}
    if unset:
        return {**data, "dataset": {k: v for k, v in dataset.items() if k not in unset}}
    return data


def to_json(obj: Any) -> Any:
    """A manifest dataclass (or nested value) as plain JSON data: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------ schema

@dataclass(frozen=True)
class TranscriptSource:
    """Where the transcripts a store's text features encode came from (dataset level: two
    stores of one dataset with other transcripts hold other text features, yet their vectors
    share a feature space).

    Attributes:
        kind: ``annotations`` (the dataset ships its own text: MELD, CMU-MOSEI) or ``sidecar``
            (a transcript sidecar CSV, made by ``cli transcribe`` or by hand).
        file: the sidecar's file name (not its path: the same file elsewhere is the same
            source); None for ``annotations``.
        sha256: of the sidecar's bytes; None for ``annotations``.
        provenance: how the sidecar was made, from the provenance file ``cli transcribe``
            writes beside it (speech-recognition model, weights sha256, language, settings,
            software); empty for ``annotations``, a sidecar made by hand, or one changed after
            it was transcribed.
    """

    kind: str
    file: str | None = None
    sha256: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetInfo:
    """The dataset a store was extracted from.

    Attributes:
        name: dataset name (``meld``, ``voxceleb2``, ... or the name given to an array store).
        labels: class names in label order (empty for unlabelled datasets).
        multilabel: the index holds ``labels`` (a list per clip) instead of ``label``.
        manifest_sha256: sha256 of the dataset manifest the adapter read (None: arrays).
        targets: names of the continuous targets the index holds in its ``targets`` column (a
            list of floats per clip in this order, NaN where a clip has none; ``valence``,
            ``arousal``, each scaled to [-1, 1]); empty when there are none.
        transcripts: where the text features' transcripts came from (None: the store has no
            text key, or it was written before transcript sources were recorded).
    """

    name: str
    labels: tuple[str, ...] = ()
    multilabel: bool = False
    manifest_sha256: str | None = None
    targets: tuple[str, ...] = ()
    transcripts: TranscriptSource | None = None


@dataclass(frozen=True)
class FacePolicyInfo:
    """The dataset's face policy (from its manifest): crop or not, and what a clip without a
    face becomes."""

    crop: bool = True
    no_face: str = "fail"


@dataclass(frozen=True)
class ExtractionInfo:
    """The extraction settings that determine feature values (run settings such as
    ``batch_clips`` are in :attr:`StoreManifest.config`). ``augment`` is the augmented views'
    transforms (None for one view, or a store of the first release). ``decode`` is how much
    damage a stream could have and still be used (None: a store of a release before damaged
    streams were decoded: any decoding error failed the clip)."""

    fps_2d: float
    fps_3d: float
    detect_fps: float
    sample_rate: int
    faces: FaceSpec
    face_policy: FacePolicyInfo
    empty_text: str
    dtype: str
    augment_seed: int
    augment: AugmentSpec | None = None
    decode: DecodeSpec | None = None


@dataclass(frozen=True)
class BackboneChoice:
    """How one store key was made, as planned before loading.

    Attributes:
        backbone: registry name, Hugging Face id or model folder (``arrays`` for stores written
            from arrays).
        weights: the weights identifier: a named checkpoint, a path, a URL, ``random`` or
            (arrays) the feature space's name given by the writer.
        spec: the backbone's whole spec (every preprocessing constant).
        weights_file_sha256: sha256 of a local weights file (a changed file is another store).
    """

    backbone: str
    weights: str
    spec: dict[str, Any] = field(default_factory=dict)
    weights_file_sha256: str | None = None


@dataclass(frozen=True)
class StoreIdentity:
    """Everything that determines a store's feature values; its sha256 is the ``store_id``.

    Attributes:
        dataset: the dataset.
        modalities: per store key, the backbone and weights.
        views: vectors per clip (1: the clean clip; more: augmented views after it).
        extraction: the extraction settings (None for a store written from arrays).
        content_sha256: for a store written from arrays, the sha256 of its ids, splits,
            labels and features, so two different array stores never share a ``store_id``.
    """

    dataset: DatasetInfo
    modalities: dict[str, BackboneChoice]
    views: int
    extraction: ExtractionInfo | None = None
    content_sha256: str | None = None


@dataclass(frozen=True)
class ModalityInfo:
    """What the loaded encoder of one store key reported.

    Attributes:
        dim: vector size.
        dtype: storage dtype of the shard datasets.
        weights_sha256: sha256 of the weights actually loaded (for random weights, of the
            seeded initialisation; ``random`` in stores of the first release; None for arrays).
        encoder: the encoder's own description (architecture, every preprocessing parameter,
            random seed and init scheme for random weights).
    """

    dim: int
    dtype: str = "float16"
    weights_sha256: str | None = None
    encoder: dict[str, Any] = field(default_factory=dict)


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
        format: ``conclugen-store/2``.
        store_id: sha256 of :attr:`identity` (for an upgraded version-1 store: of
            ``legacy["identity"]``).
        identity: what determines the feature values.
        modalities: per store key, what the loaded encoder reported.
        feature_space: per store key, the comparable part (:func:`feature_space_of`), written
            out for readers without this project; derived again on read (``store verify``
            notes a recorded one that differs).
        shards, counts, created: the store's content.
        config: the extraction config exactly as given (None: written from arrays).
        software: package versions and the git commit of the extraction.
        timings: seconds per stage, summed over workers.
        options: run settings (shard size, limit, device).
        merged_from: the stores a ``store merge`` combined.
        legacy: for an upgraded version-1 store, its format and original identity.
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
    config: ExtractConfig | None = None
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
        if self.config is None:
            raise StoreError(f"store {self.store_id[:12]} was written from arrays "
                             f"({self.dataset.name}), not extracted: it has no extraction "
                             "config")
        return self.config

    def to_json(self) -> dict[str, Any]:
        data = to_json(self)
        return {k: v for k, v in data.items() if v is not None or k in ("config",)}


# ------------------------------------------------------------------------------ feature space

def feature_space_of(identity: StoreIdentity,
                     modalities: Mapping[str, ModalityInfo]) -> dict[str, dict[str, Any]]:
    """Per store key: what makes two stores' vectors comparable (see the module docstring).

    Returns:
        ``{key: {"backbone", "weights", "weights_sha256", "preprocessing", "sampling", "dim",
        "dtype"}}``; for random weights ``weights`` is "random", ``weights_sha256`` the sha256 of
        the seeded initialisation, and the encoder's seed and init scheme are under
        ``preprocessing``.
    """
    out = {}
    for key, choice in sorted(identity.modalities.items()):
        info = modalities.get(key)
        encoder = dict(info.encoder) if info else {}
        spec = {k: v for k, v in choice.spec.items() if k not in RUNTIME_SPEC_FIELDS}
        reported = {k: v for k, v in encoder.items()
                    if k not in RUNTIME_ENCODER_FIELDS | {"backbone", "weights",
                                                          "weights_sha256", "dim", "dtype"}}
        sampling = ({name: getattr(identity.extraction, name) for name in SAMPLING_FIELDS.get(
            key, ())} if identity.extraction is not None else {})
        weights_sha = (info.weights_sha256 if info and info.weights_sha256 is not None
                       else choice.weights_file_sha256)
        out[key] = {"backbone": choice.backbone,
                    "weights": "random" if choice.weights == "random" else (
                        choice.weights if weights_sha is None else "sha256"),
                    "weights_sha256": weights_sha,
                    "preprocessing": {**spec, **reported},
                    "sampling": sampling,
                    "dim": info.dim if info else None,
                    "dtype": info.dtype if info else None}
        if choice.backbone == "arrays":
            out[key]["content_sha256"] = (None if choice.weights != "content"
                                          else identity.content_sha256)
    return out


def feature_space_id(space: Mapping[str, Mapping[str, Any]],
                     keys: Sequence[str] | None = None) -> str:
    """sha256 of the feature space of ``keys`` (default: all)."""
    keys = sorted(space) if keys is None else sorted(keys)
    return sha256_json({k: space[k] for k in keys})


def feature_space_differences(ours: Mapping[str, Mapping[str, Any]],
                              theirs: Mapping[str, Mapping[str, Any]],
                              keys: Sequence[str]) -> dict[str, list[str]]:
    """Per key of ``keys``, the feature-space fields that differ (``field: a -> b``).

    A key missing on either side is reported as such. Empty when the two are comparable.
    """
    out: dict[str, list[str]] = {}
    for key in keys:
        a, b = ours.get(key), theirs.get(key)
        if a is None or b is None:
            out[key] = [f"modality {key!r} {'absent from the first' if a is None else 'absent'}"
                        f"{'' if a is None else ' from the second'}"]
            continue
        found = _diff(a, b)
        if found:
            out[key] = found
    return out


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {_short(a)} -> {_short(b)}"]


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 70 else text[:67] + "..."


def format_differences(diffs: Mapping[str, Sequence[str]]) -> str:
    """``frames_2d: weights_sha256: ab12... -> cd34...; audio: ...`` for messages."""
    return "; ".join(f"{key}: " + ", ".join(items) for key, items in diffs.items())


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
    if version == 1:
        data = upgrade_v1(data)
    try:
        manifest = from_dict(StoreManifest, data, where)
    except ConfigError as err:
        raise StoreError(f"{err} (store.json does not fit the store contract)") from None
    check_manifest(manifest, where)
    # The recorded feature space is for readers without this project; comparisons use the one
    # this release derives, so two stores are always compared by the same rule.
    derived = json.loads(json.dumps(feature_space_of(manifest.identity, manifest.modalities)))
    return dataclasses.replace(manifest, feature_space=derived)


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


def build_manifest(*, identity: StoreIdentity, modalities: Mapping[str, ModalityInfo],
                   shards: Sequence[ShardEntry], counts: Counts, created: str,
                   config: ExtractConfig | None = None, software: Mapping[str, str] | None = None,
                   timings: Mapping[str, float] | None = None,
                   options: Mapping[str, Any] | None = None,
                   merged_from: Sequence[Mapping[str, Any]] = (),
                   store_id: str | None = None,
                   legacy: Mapping[str, Any] | None = None) -> StoreManifest:
    """The one constructor writers use: fills ``store_id`` and ``feature_space``."""
    return StoreManifest(
        store_id=store_id or store_id_of(identity), identity=identity,
        modalities=dict(modalities), shards=tuple(shards), counts=counts, created=created,
        feature_space=json.loads(json.dumps(feature_space_of(identity, modalities))),
        config=config, software=dict(software or {}), timings=dict(timings or {}),
        options=dict(options or {}), merged_from=tuple(dict(m) for m in merged_from),
        legacy=dict(legacy) if legacy is not None else None)


# ------------------------------------------------------------------------------ version 1

def upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 ``store.json`` mapping converted to version 2 (nothing is lost).

    Version 1 held the dataset, views and extraction settings twice (in ``identity`` and at
    the top level) and merged the planned backbone with the loaded encoder's report per key.
    """
    old = dict(data)
    ident = old.get("identity") or {}
    modalities = old.get("modalities") or {}
    extraction = ident.get("extraction")
    new_ident: dict[str, Any] = {
        "dataset": ident.get("dataset", old.get("dataset")),
        "modalities": {k: _v1_choice(v) for k, v in (ident.get("modalities") or {}).items()},
        "views": ident.get("views", old.get("views", 1)),
        "extraction": _v1_extraction(extraction) if extraction else None,
    }
    infos = {k: _v1_modality(v) for k, v in modalities.items()}
    out: dict[str, Any] = {
        "format": FORMAT, "store_id": old.get("store_id"), "identity": new_ident,
        "modalities": infos, "shards": old.get("shards", []), "counts": old.get("counts"),
        "created": old.get("created", ""), "config": None,
        "software": old.get("software", {}), "timings": old.get("timings", {}),
        "options": old.get("options", {}), "merged_from": old.get("merged_from", []),
        "legacy": {"format": old.get("format"), "identity": ident},
    }
    if extraction:
        out["config"] = _v1_config(new_ident, old.get("options") or {})
    ident_obj = from_dict(StoreIdentity, new_ident, "store.json (version 1): identity")
    info_objs = {k: from_dict(ModalityInfo, v, f"store.json (version 1): modalities.{k}")
                 for k, v in infos.items()}
    out["feature_space"] = json.loads(json.dumps(feature_space_of(ident_obj, info_objs)))
    return out


def _v1_choice(entry: Mapping[str, Any]) -> dict[str, Any]:
    choice = {"backbone": entry.get("backbone"), "weights": entry.get("weights"),
              "spec": dict(entry.get("spec") or {})}
    if entry.get("weights_file_sha256"):
        choice["weights_file_sha256"] = entry["weights_file_sha256"]
    if choice["backbone"] == "arrays":
        choice["spec"] = {k: entry[k] for k in ("dim", "dtype") if k in entry}
    return choice


def _v1_extraction(ext: Mapping[str, Any]) -> dict[str, Any]:
    # The first release kept a face track however rarely the face was found.
    faces = {"min_face_ratio": 0.0, **dict(ext.get("faces") or {})}
    policy = {"crop": faces.pop("crop", True), "no_face": faces.pop("no_face", "fail")}
    return {"fps_2d": ext["fps_2d"], "fps_3d": ext["fps_3d"],
            "detect_fps": ext.get("detect_fps", 1.0), "sample_rate": ext["sample_rate"],
            "faces": faces, "face_policy": policy, "empty_text": ext["empty_text"],
            "dtype": ext["dtype"], "augment_seed": ext.get("augment_seed", 0)}


def _v1_modality(entry: Mapping[str, Any]) -> dict[str, Any]:
    encoder = {k: v for k, v in entry.items()
               if k not in ("dim", "dtype", "weights_sha256", "backbone", "weights")}
    return {"dim": entry["dim"], "dtype": entry.get("dtype", "float16"),
            "weights_sha256": entry.get("weights_sha256"), "encoder": encoder}


def _v1_config(ident: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The ExtractConfig a version-1 store was made with, as far as it recorded it (the
    weights as resolved, ``batch_clips`` at its default)."""
    ext = ident["extraction"]
    order = [m for m in ("frames_2d", "frames_3d", "audio", "text") if m in ident["modalities"]]
    return {"modalities": order,
            "backbones": {m: ident["modalities"][m]["backbone"] for m in order},
            "weights": {m: ident["modalities"][m]["weights"] for m in order},
            "views": ident["views"], "fps_2d": ext["fps_2d"], "fps_3d": ext["fps_3d"],
            "detect_fps": ext["detect_fps"], "sample_rate": ext["sample_rate"],
            "faces": ext["faces"], "empty_text": ext["empty_text"], "dtype": ext["dtype"],
            "seed": ext["augment_seed"]}


__all__ = ["FORMAT", "READABLE", "SHARD_DIR", "VERSION", "BackboneChoice", "Counts",
           "DatasetInfo", "ExtractionInfo", "FacePolicyInfo", "LabelTextsInfo", "ModalityInfo",
           "ShardEntry",
           "StoreError", "StoreIdentity", "TranscriptSource",
           "StoreManifest", "build_manifest", "canonical_json",
           "check_manifest", "shard_paths",
           "feature_space_differences", "feature_space_id", "feature_space_of",
           "format_differences", "format_version", "manifest_json", "parse_manifest",
           "sha256_json", "canonical_identity", "store_id_of", "to_json", "upgrade_v1"]
