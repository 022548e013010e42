"""A store's feature space: per store key, what makes two stores' vectors comparable.

Backbone, weights (sha256 of what was loaded, or "random" with its seed), input preprocessing
(sampling rates, windows, image size, mean/std, mel settings, tokenizer, pooling) and the
storage dtype. Dataset, splits, labels, shard size, the sample list, augmented views and the
dataset-level choices the paper itself mixes (face cropping and detection, the no-face and
empty-transcript policies) are not part of it. Heads trained on one store are evaluated on any
store with the same feature space for the keys they use: the paper pretrains on VoxCeleb2 (not
face-cropped) and evaluates on MELD, CAER and CMU-MOSEI (face-cropped), each possibly extracted
by someone else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.store.store_identity import ModalityInfo, StoreIdentity, sha256_json

#: Backbone spec fields that say how a backbone is run or named, not what it computes (``dim``
#: is compared as what the loaded encoder produced).
RUNTIME_SPEC_FIELDS = frozenset({"batch_size", "name", "key", "default_weights",
                                 "checkpoint_hint", "dim"})
#: Encoder provenance fields that do not describe the feature space (where or how fast).
RUNTIME_ENCODER_FIELDS = frozenset({"compute_dtype", "device", "batch_size"})
#: Per store key, the extraction settings that are part of its feature space.
SAMPLING_FIELDS: dict[str, tuple[str, ...]] = {
    "frames_2d": ("fps_2d",), "frames_3d": ("fps_3d",), "audio": ("sample_rate",), "text": ()}


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


__all__ = ["RUNTIME_ENCODER_FIELDS", "RUNTIME_SPEC_FIELDS", "SAMPLING_FIELDS",
           "feature_space_differences", "feature_space_id", "feature_space_of",
           "format_differences"]
