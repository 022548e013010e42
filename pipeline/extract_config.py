"""The extraction settings: what a store's features are made with, as frozen dataclasses.

Kept apart from :mod:`pipeline.extract` (which decodes media) so that the store's typed manifest
(:mod:`pipeline.store.manifest`) and the heads can read a store's settings without importing
PyAV, torch or the face detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipeline.config import ConfigError

@dataclass(frozen=True)
class FaceSpec:
    """Face detection, tracking and cropping settings (recorded in the store's provenance).

    Attributes:
        size: side of the output crop in pixels.
        margin: context added around the face: the crop's side is the detected box's longer side
            times ``1 + margin`` (``margin / 2`` of the side on each edge), centred on the box.
        min_prob: detections with a lower MTCNN probability are ignored. The default equals
            the last stage threshold of MTCNN's defaults (P/R/O-net 0.6, 0.7, 0.7, which the
            detector uses), so it removes nothing MTCNN keeps.
        detect_max_side: frames whose longer side exceeds this are downscaled for detection only
            (the boxes are scaled back); MTCNN cost grows with the pixel count.
        min_face_size: smallest face MTCNN looks for, in pixels of the ORIGINAL frame (MTCNN's
            default, 20). Detection on a downscaled frame looks for ``min_face_size`` times the
            scale, but for no less than MTCNN's 12-pixel window: on a 1280x720 frame detected
            at 640x360 the smallest face found is 24 px, on 1920x1080 36 px
            (:func:`pipeline.faces.detection_size`; ``docs/CHOICES.md`` has the measurements;
            a ``detect_max_side`` above the frame size gives MTCNN's defaults exactly).
        smoothing: standard deviation in seconds of the Gaussian weights with which box
            coordinates are averaged over the detection times (a centred, time-based moving
            average: no lag, and the same meaning at any detection rate); 0 disables it. It only
            takes out jitter: at 1-fps detection 0.25 s leaves neighbours almost unweighted,
            while 0.5 s already damps real head motion (``benchmarks/faces_detect.py``).
        max_shift: a detection continues the track when its centre is within ``max_shift``
            times the track's box side (per second since the last match, at least one) of the
            previous box's centre; farther faces are taken to be someone else.
        min_face_ratio: a track whose face was found in fewer than this fraction of the
            detection frames is no face track: the dataset's no-face policy applies (a
            pedestrian glimpsed in 1 frame of 80 would otherwise give 79 crops of wherever
            that one box was). 0.1: at 1-fps detection a clip shorter than 10 s with one
            detection always passes (the paper kept every clip with a face), a face missing
            from 9 of every 10 frames does not; 0 keeps any track.
    """

    size: int = 180
    margin: float = 0.2
    min_prob: float = 0.7
    detect_max_side: int = 640
    min_face_size: int = 20
    smoothing: float = 0.25
    max_shift: float = 1.5
    min_face_ratio: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "size": self.size >= 1,
            "margin": self.margin >= 0,
            "min_prob": 0 <= self.min_prob <= 1,
            "detect_max_side": self.detect_max_side >= 48,
            "min_face_size": self.min_face_size >= 12,
            "smoothing": self.smoothing >= 0,
            "max_shift": self.max_shift > 0,
            "min_face_ratio": 0 <= self.min_face_ratio <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(f"FaceSpec: invalid {values} (size >= 1, margin >= 0, "
                             "0 <= min_prob <= 1, detect_max_side >= 48, min_face_size >= 12, "
                             "smoothing >= 0, max_shift > 0, 0 <= min_face_ratio <= 1)")


@dataclass(frozen=True)
class AugmentSpec:
    """The augmented views' image transforms (views 1.. of a store; view 0 is the clean clip).

    One draw per clip and view, applied to every frame (temporally consistent). The defaults
    are the reference code's SimCLR-strength video augmentation, with its inverted
    probabilities corrected (it applied the colour jitter with probability 0.2 and the
    grayscale with 0.16 where it asked for 0.8 and 0.2; ``docs/CHOICES.md``).

    Attributes:
        crop_scale: area fraction range of the random resized crop.
        crop_ratio: aspect ratio range of the crop (drawn log-uniformly).
        flip_p: probability of a horizontal flip.
        jitter_p: probability of the colour jitter.
        brightness: brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: contrast factor drawn from ``[1 - c, 1 + c]``.
        saturation: saturation factor drawn from ``[1 - s, 1 + s]``.
        hue: hue shift drawn from ``[-h, h]`` (fractions of a full turn).
        grayscale_p: probability of converting to grayscale.
        blur_p: probability of a Gaussian blur.
        blur_sigma: range of the blur's standard deviation in pixels.
        blur_kernel: kernel side as a fraction of the crop side (made odd).
    """

    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (0.5, 2.0)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: float = 0.1

    def __post_init__(self) -> None:
        probs = {n: getattr(self, n) for n in ("flip_p", "jitter_p", "grayscale_p", "blur_p")}
        bad = [n for n, p in probs.items() if not 0 <= p <= 1]
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            bad.append("crop_scale")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            bad.append("crop_ratio")
        if min(self.brightness, self.contrast, self.saturation) < 0:
            bad.append("brightness/contrast/saturation")
        if not 0 <= self.hue <= 0.5:
            bad.append("hue")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1] or not 0 <= self.blur_kernel < 1:
            bad.append("blur_sigma/blur_kernel")
        if bad:
            raise ConfigError(f"AugmentSpec: invalid {bad} (probabilities in [0, 1], "
                              "0 < crop_scale <= 1 increasing, 0 < crop_ratio increasing, "
                              "jitter strengths >= 0, hue in [0, 0.5], blur_sigma > 0 "
                              "increasing, blur_kernel in [0, 1))")


@dataclass(frozen=True)
class DecodeSpec:
    """When a damaged stream is still usable: decoding tolerates what a player tolerates.

    Packets that cannot be decoded are skipped and counted (a player skips them too); the
    stretch of time they leave without frames or samples is *lost*. A stream of a clip is
    kept when what decoded covers it well enough, and is ``corrupt_media`` otherwise, with
    the numbers in the message (:func:`pipeline.media.iter_frames`,
    :func:`pipeline.media.read_audio`). Lost time is, within the clip's interval cut to the
    stream's declared extent: for video, the time from the end of the last frame before an
    undecodable packet to the next decoded frame (a timestamp gap *without* a decoding error
    is how variable frame rates are stored: the frame stays on screen); for audio, every
    stretch without samples (undecodable packets or a timestamp jump: it is filled with
    silence, so later samples stay at their time); for both, a stream that stops more than
    ``pipeline.media.TRUNCATION_TOLERANCE_S`` before its declared end (a cut file).

    Attributes:
        min_coverage: the smallest fraction of each stream's expected time that must be
            decoded (0.9: a clip may lose a tenth of its time to damage).
        max_gap_s: the longest stretch of lost time allowed, in seconds (1.0: a second of
            missing picture or sound is more than a glitch: the content is gone).
    """

    min_coverage: float = 0.9
    max_gap_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_coverage <= 1 or not self.max_gap_s >= 0:
            raise ConfigError(f"DecodeSpec: invalid min_coverage={self.min_coverage!r} or "
                              f"max_gap_s={self.max_gap_s!r} (0 <= min_coverage <= 1, "
                              "max_gap_s >= 0)")


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
class ExtractConfig:
    """Everything that determines the extracted features (and a few run settings).

    Loaded from ``manifests/extract.yaml`` plus command-line overrides; written into the
    store's provenance.

    ``empty_text``: what a clip whose transcript is empty becomes: ``keep`` (the default; the
    paper kept every clip) encodes the empty transcript and flags the clip in the index
    (``empty_transcript``), ``fail`` records an ``empty_transcript`` failure, ``skip_text``
    keeps the clip with a zero text vector.

    ``decode``: how much damage a stream may have and still be used (:class:`DecodeSpec`).

    Run settings that leave the features as they are (not in the store's identity):
    ``batch_clips`` (clips per backbone batch; None: :data:`BATCH_CLIPS` for the device),
    ``units_per_call`` (key -> frames, windows or clips per backbone call; a key not given:
    the backbone's own on a CPU, :data:`GPU_UNITS_PER_CALL` on a GPU) and ``prefetch``
    (decode, detect and crop the next batch on a second thread while the backbones encode
    the current one).
    """

    modalities: tuple[str, ...] = MODALITIES
    backbones: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_BACKBONES))
    weights: dict[str, str] = field(default_factory=dict)
    views: int = 1
    fps_2d: float = 1.0
    fps_3d: float = 16.0
    detect_fps: float = 1.0
    sample_rate: int = 16000
    faces: FaceSpec = field(default_factory=FaceSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    empty_text: Literal["keep", "fail", "skip_text"] = "keep"
    dtype: Literal["float16", "float32"] = "float16"
    batch_clips: int | None = None
    units_per_call: dict[str, int] = field(default_factory=dict)
    prefetch: bool = True
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

    @property
    def needs_video(self) -> bool:
        return "frames_2d" in self.modalities or "frames_3d" in self.modalities


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

    Raises:
        ConfigError: an unknown key, a wrong type or an invalid value, naming the file.
    """
    import manifests
    from pipeline.config import from_dict, load_yaml

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
    return from_dict(ExtractConfig, data, source)


__all__ = ["BATCH_CLIPS", "DEFAULT_BACKBONES", "GPU_UNITS_PER_CALL", "MODALITIES", "AugmentSpec",
           "ClipInputs", "DecodeSpec", "ExtractConfig", "FaceSpec", "load_extract_config"]
