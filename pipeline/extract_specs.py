"""The settings of three extraction stages: face detection and cropping, the augmented views,
and how much damage a decoded stream may have. Parts of
:class:`pipeline.extract_config.FeatureSettings` (re-exported there)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError

#: ``FaceSpec.crop_mode`` values: this project's tracked square boxes, the reference's union box.
CROP_MODES = ("square", "union")


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
        crop_mode: ``square`` (the default: the tracked face's smoothed square box with
            ``margin``, per frame, aspect kept) or ``union`` (the reference code's crop: one
            box for the whole clip, the running union of the overlapping detections, cut from
            every frame and stretched to ``size x size``; ``margin`` and ``smoothing`` do not
            apply; :func:`pipeline.faces.union_box`).
    """

    size: int = 180
    margin: float = 0.2
    min_prob: float = 0.7
    detect_max_side: int = 640
    min_face_size: int = 20
    smoothing: float = 0.25
    max_shift: float = 1.5
    min_face_ratio: float = 0.1
    crop_mode: str = "square"

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
            "crop_mode": self.crop_mode in CROP_MODES,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(f"FaceSpec: invalid {values} (size >= 1, margin >= 0, "
                             "0 <= min_prob <= 1, detect_max_side >= 48, min_face_size >= 12, "
                             "smoothing >= 0, max_shift > 0, 0 <= min_face_ratio <= 1, "
                             f"crop_mode one of {'|'.join(CROP_MODES)})")


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


__all__ = ["AugmentSpec", "CROP_MODES", "DecodeSpec", "FaceSpec"]
