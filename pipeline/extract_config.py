"""The extraction settings: what a store's features are made with, as frozen dataclasses.

Kept apart from :mod:`pipeline.extract` (which decodes media) so that the store's typed manifest
(:mod:`pipeline.store.manifest`) and the heads can read a store's settings without importing
PyAV, torch or the face detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from pipeline.config import ConfigError
from pipeline.extract_specs import AugmentSpec, DecodeSpec, FaceSpec

MODALITIES = ("frames_2d", "frames_3d", "audio", "text")

DEFAULT_BACKBONES = {"frames_2d": "resnet152", "frames_3d": "resnet3d101",
                     "audio": "resdavenet", "text": "distilbert-sst2"}
"""The default backbone per store key: the paper's, with the reference code's audio model
(ResDAVEnet-VQ, whose release is published; plain DAVEnet has none). The one place it is set:
:mod:`pipeline.backbones` re-exports it, ``manifests/extract.yaml`` names none."""

BATCH_CLIPS = {"cpu": 8, "cuda": 64}
"""Clips per backbone batch by device. On a CPU the backbones' own batch sizes are reached
with a few clips; a GPU needs many clips' units per call to fill it (64 clips of 3-4 s are
about 250 frames at 1 fps and 400 16-frame windows), and with prefetching two batches of
short clips' crops are held (about 1 GB at 64 clips of 4 s, 16 fps, 180 px, 3 views)."""

GPU_UNITS_PER_CALL = {"frames_2d": 256, "frames_3d": 32, "audio": 64, "text": 256}
"""Units per backbone call on a GPU, where a key's ``units_per_call`` is not given: calls big
enough to keep an H100-class GPU's tensor cores busy in bf16 and small enough for a 16 GB one
(ResNet-152 at 224 px, 256 frames; the 3D ResNet-101, 32 windows of 16 frames)."""


@dataclass(frozen=True)
class FeatureSettings:
    """The extraction settings that determine the feature values of every key.

    Embedded as they are in the store's identity (``identity.extraction``), so its sha256, the
    ``store_id``, changes exactly when one of them does (``augment`` only counts with more than
    one view: with one, the identity records the default transforms,
    :func:`pipeline.identity.feature_identity`).

    Attributes:
        fps_2d: frame rate of the 2D frames.
        fps_3d: frame rate of the 3D windows.
        detect_fps: rate at which faces are detected (boxes are interpolated between).
        sample_rate: audio sample rate.
        faces: face detection, tracking and cropping (:class:`FaceSpec`).
        augment: the augmented views' transforms (:class:`AugmentSpec`).
        decode: how much damage a stream may have and still be used (:class:`DecodeSpec`).
        empty_text: what a clip whose transcript is empty becomes: ``keep`` (the default; the
            paper kept every clip) encodes the empty transcript and flags the clip in the
            index (``empty_transcript``), ``fail`` records an ``empty_transcript`` failure,
            ``skip_text`` keeps the clip with a zero text vector.
        dtype: storage dtype of the vectors.
        seed: seed of the augmented views.
    """

    fps_2d: float = 1.0
    fps_3d: float = 16.0
    detect_fps: float = 1.0
    sample_rate: int = 16000
    faces: FaceSpec = field(default_factory=FaceSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    empty_text: Literal["keep", "fail", "skip_text"] = "keep"
    dtype: Literal["float16", "float32"] = "float16"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fps_2d", "fps_3d", "detect_fps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class RunSettings:
    """How an extraction runs: settings that leave the features as they are (never in the
    store's identity; recorded under ``run`` in ``store.json``).

    Attributes:
        batch_clips: clips per backbone batch; None: :data:`BATCH_CLIPS` for the device.
        units_per_call: key -> frames, windows or clips per backbone call; a key not given:
            the backbone's own on a CPU, :data:`GPU_UNITS_PER_CALL` on a GPU.
        prefetch: decode, detect and crop the next batch on a second thread while the
            backbones encode the current one.
    """

    batch_clips: int | None = None
    units_per_call: dict[str, int] = field(default_factory=dict)
    prefetch: bool = True

    def __post_init__(self) -> None:
        if self.batch_clips is not None and self.batch_clips < 1:
            raise ConfigError(f"batch_clips must be at least 1 (or null: by device), got "
                              f"{self.batch_clips}")
        bad_units = {k: v for k, v in self.units_per_call.items()
                     if k not in MODALITIES or not isinstance(v, int) or v < 1}
        if bad_units:
            raise ConfigError(f"units_per_call: invalid {bad_units} (keys among "
                              f"{list(MODALITIES)}, values >= 1)")

    def clips_per_batch(self, device: str) -> int:
        """``batch_clips``, or the device's default when it is None."""
        if self.batch_clips is not None:
            return self.batch_clips
        return BATCH_CLIPS["cuda" if device.startswith("cuda") else "cpu"]

    def units(self, key: str, device: str) -> int | None:
        """Units per backbone call for ``key`` on ``device`` (None: the backbone's own)."""
        if key in self.units_per_call:
            return self.units_per_call[key]
        return GPU_UNITS_PER_CALL.get(key) if device.startswith("cuda") else None


@dataclass(frozen=True)
class ExtractChoices:
    """What is extracted: the keys, their backbones and weights, the number of views.

    Recorded as given under ``choices`` in ``store.json`` (a weights path stays a path there;
    the identity records the file by name and sha256).

    Attributes:
        modalities: the store keys to extract.
        backbones: key -> backbone (registry name, Hugging Face id or model folder).
        weights: key -> weights identifier, local path, URL or ``random`` (a key not given:
            the backbone's default weights).
        views: vectors per clip: 1 is the clean clip; more are augmented views after it.
        preset: the name of the settings bundle the extraction was asked for (None: none).
    """

    modalities: tuple[str, ...] = MODALITIES
    backbones: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_BACKBONES))
    weights: dict[str, str] = field(default_factory=dict)
    views: int = 1
    preset: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or not self.modalities:
            raise ConfigError(f"modalities: unknown {unknown or 'none given'}; "
                              f"valid: {list(MODALITIES)}")
        missing = [m for m in self.modalities if m not in self.backbones]
        if missing:
            raise ConfigError(f"backbones: no backbone named for {missing}")
        stray = sorted(set(self.weights) - set(self.modalities))
        if stray:
            raise ConfigError(f"weights given for {stray}, which are not extracted "
                              f"(modalities: {list(self.modalities)})")
        if self.views < 1:
            raise ConfigError(f"views must be at least 1, got {self.views}")

    @property
    def needs_video(self) -> bool:
        return "frames_2d" in self.modalities or "frames_3d" in self.modalities


@dataclass(frozen=True)
class ExtractConfig:
    """An extraction's settings, each in one of three parts.

    Loaded from ``manifests/extract.yaml`` plus command-line overrides (one flat mapping: each
    key belongs to exactly one part, :func:`load_extract_config`).

    Attributes:
        choices: what is extracted (:class:`ExtractChoices`).
        features: the settings that determine the feature values (:class:`FeatureSettings`).
        run: how the extraction runs (:class:`RunSettings`).
    """

    choices: ExtractChoices = field(default_factory=ExtractChoices)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    run: RunSettings = field(default_factory=RunSettings)


#: The part of :class:`ExtractConfig` each part's dataclass fills.
PARTS: dict[str, type[ExtractChoices] | type[FeatureSettings] | type[RunSettings]] = {
    "choices": ExtractChoices, "features": FeatureSettings, "run": RunSettings}


@dataclass(frozen=True)
class ClipInputs:
    """One clip, decoded and cropped: what the backbones consume.

    A long clip's frames are not held: extraction streams them into the frame backbones as
    they are cropped (:data:`SEGMENT_FRAMES`), and ``encoded`` holds the result instead.
    """

    sample_id: str
    frames_2d: np.ndarray | None     # uint8 [T2, S, S, 3] at fps_2d
    frames_3d: np.ndarray | None     # uint8 [T3, S, S, 3] at fps_3d
    audio: np.ndarray | None         # float32 [n] at sample_rate
    text: str | None
    duration_s: float
    face_ratio: float | None         # None: dataset not cropped
    decode_errors: int = 0           # packets decoding skipped (media.DecodeReport.errors)
    coverage: float | None = None    # the least covered stream's decoded fraction; None: no media
    encoded: dict[str, np.ndarray] = field(default_factory=dict)  # key -> float32 [views, dim]


DEFAULT_CONFIG = "extract.yaml"


def load_extract_config(path: str | None = None, **overrides: Any) -> ExtractConfig:
    """The extraction config: ``manifests/extract.yaml`` (or ``path``), then ``overrides``.

    Both are flat mappings of setting names; each name belongs to one part of
    :class:`ExtractConfig`.

    Raises:
        ConfigError: an unknown key, a wrong type or an invalid value, naming the file.
    """
    import manifests
    from pipeline.config import load_yaml

    source = path or str(manifests.path(DEFAULT_CONFIG))
    data = load_yaml(source)
    if isinstance(data.get("backbones", {}), dict):  # keys named override the default map
        data["backbones"] = {**DEFAULT_BACKBONES, **data.get("backbones", {})}
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return config_from_flat(data, source)


def config_from_flat(data: dict[str, Any], where: str) -> ExtractConfig:
    """An :class:`ExtractConfig` from one flat mapping of setting names (a config file).

    Raises:
        ConfigError: a key of no part, a wrong type or an invalid value, naming ``where``.
    """
    from pipeline.config import from_dict

    names = {part: {f.name for f in fields(cls)} for part, cls in PARTS.items()}
    known = set().union(*names.values())
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    parts = {part: from_dict(cls, {k: v for k, v in data.items() if k in names[part]}, where)
             for part, cls in PARTS.items()}
    return ExtractConfig(**parts)  # type: ignore[arg-type]


__all__ = ["BATCH_CLIPS", "DEFAULT_BACKBONES", "GPU_UNITS_PER_CALL", "MODALITIES", "AugmentSpec",
           "ClipInputs", "DecodeSpec", "ExtractChoices", "ExtractConfig", "FaceSpec",
           "FeatureSettings", "RunSettings", "config_from_flat", "load_extract_config"]
