"""The cropped frames of a clip's pass, streamed into the frame backbones: a long clip is
encoded segment by segment as it is cropped, so it costs time, not memory."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline import faces as faces_mod
from pipeline import media
from pipeline.augment import augment_clip
from pipeline.detect import clip_interval
from pipeline.extract_config import ClipInputs, ExtractConfig
from pipeline.failures import ClipError, Reason, Stage
from pipeline.timer import Timer


SEGMENT_FRAMES = 256
"""A clip with more 16-fps frames than this (16 s) is encoded segment by segment as it is
cropped: at most this many frames plus one 3D window (about 26 MB of 180-px crops, and their
float copies inside an augmentation or a backbone batch) are held, whatever the clip's
length. A clip's frame features are the mean over its units (frames, 16-frame windows), so the
segments' means weighted by their unit counts give the same vector, up to float rounding."""


class Segments:
    """The cropped frames of one pass for its frame keys: held whole while the clip is short
    (the arrays today's backbones get), encoded :data:`SEGMENT_FRAMES` at a time with every
    view once it is long, when encoders are given.

    Args:
        keys: the frame keys this pass feeds (``frames_3d`` and/or ``frames_2d``).
        step: ``frames_2d`` is every ``step``-th frame of the pass (1: all of them).
        encoders: key -> encoder; None holds every frame (memory grows with the clip).
        sample_id, cfg, timer: for the views and the timings.
    """

    def __init__(self, keys: list[str], step: int, encoders: dict[str, Any] | None,
                 sample_id: str, cfg: ExtractConfig, timer: Timer) -> None:
        self.keys, self.step, self.encoders = keys, step, encoders
        self.sample_id, self.cfg, self.timer = sample_id, cfg, timer
        self.window = window_rule(cfg)[0] if "frames_3d" in keys else 1
        # Segments start on a window and on a 2D frame, so both see the units of the whole.
        unit = math.lcm(self.window, step)
        self.size = unit * math.ceil(SEGMENT_FRAMES / unit)
        self._held: list[np.ndarray] = []
        self._sums: dict[str, np.ndarray] = {}
        self._units: dict[str, int] = defaultdict(int)

    def add(self, crop: np.ndarray) -> None:
        self._held.append(crop)
        # A window is kept back, so the last segment has one full window at least and the
        # 3D windowing rule (a short tail is dropped) sees the clip's own tail.
        if self.encoders is not None and len(self._held) >= self.size + self.window:
            self._encode(np.stack(self._held[:self.size]))
            del self._held[:self.size]

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(frames, encoded)``: key -> uint8 frames (short clip) or float32 [views, dim]."""
        frames = np.stack(self._held)
        self._held = []
        if not self._sums:
            out = {"frames_3d": frames} if "frames_3d" in self.keys else {}
            if "frames_2d" in self.keys:
                out["frames_2d"] = (frames if self.step == 1
                                    else np.ascontiguousarray(frames[::self.step]))
            return out, {}
        self._encode(frames)
        return {}, {k: (v / self._units[k]).astype(np.float32) for k, v in self._sums.items()}

    def _encode(self, frames: np.ndarray) -> None:
        assert self.encoders is not None
        part = ClipInputs(self.sample_id, None, None, None, None, 0.0, None)
        if "frames_3d" in self.keys:
            part = replace(part, frames_3d=frames)
        if "frames_2d" in self.keys:
            part = replace(part, frames_2d=np.ascontiguousarray(frames[::self.step]))
        for key in self.keys:
            units = unit_count(self.cfg, key, len(getattr(part, key)))
            vectors = []
            for v in range(self.cfg.choices.views):
                features = self.cfg.features
                view = augment_clip(part, v, seed=features.seed,
                                    sample_rate=features.sample_rate, spec=features.augment)
                with self.timer(f"backbone:{key}"):
                    vectors.append(encode_segment(self.encoders[key], key, getattr(view, key)))
            total = np.stack(vectors).astype(np.float64) * units
            self._sums[key] = self._sums.get(key, 0) + total
            self._units[key] += units


def window_rule(cfg: ExtractConfig) -> tuple[int, int]:
    """``(window, min_tail)`` of the 3D backbone (its spec's windowing rule)."""
    from pipeline.backbones import get_spec

    spec = get_spec(cfg.choices.backbones["frames_3d"])
    return int(getattr(spec, "window")), int(getattr(spec, "min_tail"))


def unit_count(cfg: ExtractConfig, key: str, n_frames: int) -> int:
    """How many units the backbone of ``key`` averages over in ``n_frames`` frames."""
    if key == "frames_2d":
        return n_frames
    from pipeline.backbones.resnet3d import window_bounds

    return len(window_bounds(n_frames, *window_rule(cfg)))


def encode_segment(encoder: Any, key: str, frames: np.ndarray) -> np.ndarray:
    """One segment's frames -> float32 [dim]; a backbone failure is the clip's."""
    try:
        return np.asarray(encoder.encode_batch([frames])[0], np.float32)
    except (RuntimeError, ValueError) as err:
        raise ClipError(Stage.BACKBONE, Reason.BACKBONE_ERROR, f"{key}: {str(err)[:500]}") from err


def crop_pass(row: dict[str, Any], fps: float, track: faces_mod.FaceTrack | None, size: int,
               sink: Segments, cfg: ExtractConfig, timer: Timer,
               report: media.DecodeReport) -> None:
    """Frames at ``fps`` cropped as they are decoded (the track's box, or the centred square)
    into ``sink``."""
    start, end = clip_interval(row)
    frames = media.iter_frames(row["media_path"], fps=fps, start_s=start, end_s=end,
                               rule=cfg.features.decode, report=report)
    centre: np.ndarray | None = None
    stretch = cfg.features.faces.crop_mode == "union"  # the reference's box, any aspect ratio
    while True:
        with timer("decode"):
            pair = next(frames, None)
        if pair is None:
            return
        t, frame = pair
        with timer("faces"):
            if track is not None:
                box = track.box_at(t)
            else:
                centre = centre if centre is not None else faces_mod.centre_box(
                    frame.shape[1::-1])
                box = centre
            crop = faces_mod.crop(frame, box, size, stretch=stretch)
        sink.add(crop)


__all__ = ["SEGMENT_FRAMES", "Segments", "crop_pass", "encode_segment", "unit_count",
           "window_rule"]
