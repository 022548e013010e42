"""The extraction settings: what a store's features are made with, as frozen dataclasses.

Kept apart from :mod:`pipeline.extract` (which decodes media) so that the store's typed manifest
(:mod:`pipeline.store.manifest`) and the heads can read a store's settings without importing
PyAV, torch or the face detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import ConfigError

@dataclass(frozen=True)
class FaceSpec:
    """Face detection, tracking and cropping settings (recorded in the store's provenance).

    Attributes:
        size: side of the output crop in pixels.
        margin: context added around the face: the crop's side is the detected box's longer side
            times ``1 + margin`` (``margin / 2`` of the side on each edge), centred on the box.
        min_prob: detections with a lower MTCNN probability are ignored.
        detect_max_side: frames whose longer side exceeds this are downscaled for detection only
            (the boxes are scaled back); MTCNN cost grows with the pixel count.
        min_face_size: smallest face MTCNN looks for, in pixels of the (downscaled) detection
            frame; a larger value drops the finest image-pyramid levels, which cost the most
            (on one CPU thread at 640x360: ~80 ms per frame at 20, ~45 ms at 40).
        smoothing: standard deviation in seconds of the Gaussian weights with which box
            coordinates are averaged over the detection times (a centred, time-based moving
            average: no lag, and the same meaning at any detection rate); 0 disables it. It only
            takes out jitter: at 1-fps detection 0.25 s leaves neighbours almost unweighted,
            while 0.5 s already damps real head motion (``benchmarks/faces_detect.py``).
        max_shift: a detection continues the track when its centre is within ``max_shift``
            times the track's box side (per second since the last match, at least one) of the
            previous box's centre; farther faces are taken to be someone else.
    """

    size: int = 180
    margin: float = 0.2
    min_prob: float = 0.9
    detect_max_side: int = 640
    min_face_size: int = 40
    smoothing: float = 0.25
    max_shift: float = 1.5

    def __post_init__(self) -> None:
        checks = {
            "size": self.size >= 1,
            "margin": self.margin >= 0,
            "min_prob": 0 <= self.min_prob <= 1,
            "detect_max_side": self.detect_max_side >= 48,
            "min_face_size": self.min_face_size >= 12,
            "smoothing": self.smoothing >= 0,
            "max_shift": self.max_shift > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(f"FaceSpec: invalid {values} (size >= 1, margin >= 0, "
                             "0 <= min_prob <= 1, detect_max_side >= 48, min_face_size >= 12, "
                             "smoothing >= 0, max_shift > 0)")


MODALITIES = ("frames_2d", "frames_3d", "audio", "text")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that determines the extracted features (and a few run settings).

    Loaded from ``manifests/extract.yaml`` plus command-line overrides; written into the
    store's provenance.
    """

    modalities: tuple[str, ...] = MODALITIES
    backbones: dict[str, str] = field(default_factory=lambda: {
        "frames_2d": "resnet152", "frames_3d": "resnet3d101", "audio": "davenet",
        "text": "distilbert-sst2"})
    weights: dict[str, str] = field(default_factory=dict)
    views: int = 1
    fps_2d: float = 1.0
    fps_3d: float = 16.0
    detect_fps: float = 1.0
    sample_rate: int = 16000
    faces: FaceSpec = field(default_factory=FaceSpec)
    empty_text: Literal["fail", "skip_text"] = "fail"
    dtype: Literal["float16", "float32"] = "float16"
    batch_clips: int = 8
    seed: int = 0

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
        for name in ("fps_2d", "fps_3d", "detect_fps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.batch_clips < 1:
            raise ConfigError(f"batch_clips must be at least 1, got {self.batch_clips}")

    @property
    def needs_video(self) -> bool:
        return "frames_2d" in self.modalities or "frames_3d" in self.modalities


__all__ = ["MODALITIES", "ExtractConfig", "FaceSpec"]
