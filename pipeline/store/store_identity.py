"""What a store's vectors are: the identity dataclasses of ``store.json`` and the ``store_id``.

:class:`StoreIdentity` holds everything that determines the feature values: the dataset (with
its labels, manifest sha256, transcript source and face policy), per store key the backbone
choice, the number of views and the extraction's :class:`~pipeline.extract_config.FeatureSettings`
as they are. The sha256 of its canonical JSON (:func:`store_id_of`) is the ``store_id``: two stores with the same
``store_id`` hold the same features for the same clips.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.extract_config import FeatureSettings
from pipeline.manifest import FacePolicy


def canonical_json(obj: Any) -> str:
    """The JSON text whose sha256 identifies a provenance (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def to_json(obj: Any) -> Any:
    """A manifest dataclass (or nested value) as plain JSON data: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def store_id_of(identity: StoreIdentity | Mapping[str, Any]) -> str:
    """sha256 of the canonical identity (what determines the feature values): of this
    format's :class:`StoreIdentity` or of its JSON mapping alike, and of an earlier format's
    identity mapping (``legacy.identity`` of an upgraded store)."""
    data = to_json(identity) if isinstance(identity, StoreIdentity) else identity
    return sha256_json(canonical_identity(data))


#: Face settings added after the store format was released, at the value every store written
#: before them has: left out of the ``store_id`` at that value.
LATER_FACE_DEFAULTS: dict[str, Any] = {"crop_mode": "square"}


def canonical_identity(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The identity mapping whose hash is the ``store_id``: fields added to the identity after
    its format was released are left out at their default (``dataset.targets`` empty,
    ``dataset.transcripts`` None, ``extraction.faces.crop_mode`` square), so the stores written
    before them keep their ``store_id``."""
    dataset = data.get("dataset")
    if not isinstance(dataset, Mapping):
        return data
    # ``targets`` empty and ``transcripts`` None are the values of stores written before them.
    unset = {k for k in ("targets", "transcripts") if k in dataset and not dataset[k]}
    if unset:
        data = {**data, "dataset": {k: v for k, v in dataset.items() if k not in unset}}
    return _without_later_face_defaults(data)


def _without_later_face_defaults(data: Mapping[str, Any]) -> Mapping[str, Any]:
    extraction = data.get("extraction")
    faces = extraction.get("faces") if isinstance(extraction, Mapping) else None
    if not isinstance(extraction, Mapping) or not isinstance(faces, Mapping):
        return data
    kept = {k: v for k, v in faces.items() if LATER_FACE_DEFAULTS.get(k, object()) != v}
    if len(kept) == len(faces):
        return data
    return {**data, "extraction": {**extraction, "faces": kept}}


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
        faces: the dataset's face policy (its manifest's ``faces``: crop or not, and what a
            clip without a face becomes); None for a store written from arrays.
    """

    name: str
    labels: tuple[str, ...] = ()
    multilabel: bool = False
    manifest_sha256: str | None = None
    targets: tuple[str, ...] = ()
    transcripts: TranscriptSource | None = None
    faces: FacePolicy | None = None


@dataclass(frozen=True)
class BackboneChoice:
    """How one store key was made, as planned before loading.

    Attributes:
        backbone: registry name, Hugging Face id or model folder (``arrays`` for stores written
            from arrays).
        weights: the weights identifier: a named checkpoint, a local file or folder by name
            (``file:<name>``, ``folder:<name>``), a URL, ``random`` or (arrays) the feature
            space's name given by the writer.
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
        extraction: the extraction's feature settings, as they were (None for a store written
            from arrays).
        content_sha256: for a store written from arrays, the sha256 of its ids, splits,
            labels and features, so two different array stores never share a ``store_id``.
    """

    dataset: DatasetInfo
    modalities: dict[str, BackboneChoice]
    views: int
    extraction: FeatureSettings | None = None
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


__all__ = ["BackboneChoice", "DatasetInfo", "ModalityInfo", "StoreIdentity", "TranscriptSource",
           "canonical_identity", "canonical_json", "sha256_json", "store_id_of",
           "to_json"]
