"""Face detection for a batch of clips: the ``detect_fps`` frames of several clips decoded and
detected in shared MTCNN calls, then one face track per clip (or the no-face policy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline import faces as faces_mod
from pipeline import media
from pipeline.extract_config import ExtractConfig
from pipeline.failures import ClipError, Reason, Stage
from pipeline.manifest import FacePolicy
from pipeline.timer import Timer


def clip_interval(row: dict[str, Any]) -> tuple[float | None, float | None]:
    return row.get("start_s"), row.get("end_s")


DETECT_BATCH = 32
"""Frames per MTCNN call: detection streams, so memory does not grow with the clips. The
frames of a batch's clips share calls (a 3-second clip has 3 frames at 1 fps; batched across
clips a GPU gets full calls)."""


@dataclass
class Detected:
    """One clip's face detections at ``detect_fps`` (before tracking), or why there are none.

    ``error`` is the :class:`ClipError` the detection pass raised; tracking raises it, so a
    batch fails its clips exactly as one by one.
    """

    times: list[float] = field(default_factory=list)
    detections: list[np.ndarray | None] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)
    report: media.DecodeReport = field(default_factory=media.DecodeReport)
    error: ClipError | None = None


def detect_clips(rows: Sequence[dict[str, Any] | None], cfg: ExtractConfig,
                 detector: faces_mod.FaceDetector, timer: Timer) -> list[Detected | None]:
    """Decode the ``detect_fps`` frames of several clips and detect faces in shared calls.

    Frames are decoded one clip after another and detected :data:`DETECT_BATCH` at a time
    across clip boundaries, so at most that many frames are held and a GPU detector gets full
    batches even for 3-second clips. A clip whose decoding fails gets the error (its frames
    already queued are detected and dropped); the others are unaffected.

    Args:
        rows: sample-table rows; None skips a row (its result is None).
    """
    out: list[Detected | None] = [None if row is None else Detected() for row in rows]
    pending: list[tuple[int, float, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        with timer("faces"):
            found = detector.detect([frame for _, _, frame in pending])
        for (i, t, frame), boxes in zip(pending, found, strict=True):
            clip = out[i]
            assert clip is not None
            clip.times.append(t)
            clip.detections.append(boxes)
            clip.frame_size = frame.shape[1::-1]  # as decoded: a rotated video's turned frame
        pending.clear()

    for i, row in enumerate(rows):
        clip = out[i]
        if row is None or clip is None:
            continue
        start, end = clip_interval(row)
        frames = media.iter_frames(row["media_path"], fps=cfg.features.detect_fps, start_s=start,
                                   end_s=end, rule=cfg.features.decode, report=clip.report)
        try:
            while True:
                with timer("decode"):
                    pair = next(frames, None)
                if pair is None:
                    break
                pending.append((i, *pair))
                if len(pending) >= DETECT_BATCH:
                    flush()
        except ClipError as err:
            clip.error = err
    flush()
    for clip in out:
        if clip is not None and clip.error is not None:
            clip.times, clip.detections = [], []
    return out


def track_face(cfg: ExtractConfig, detected: Detected, policy: FacePolicy,
                timer: Timer) -> tuple[faces_mod.FaceTrack | None, float]:
    """Follow one face through the clip's detections.

    A track whose face is found in fewer than ``faces.min_face_ratio`` of the frames counts
    as no face: the policy decides (``fail``: a ``no_face`` failure naming the ratio).

    Returns:
        The track (None: no usable face and the ``full_frame`` policy) and the clip's face
        ratio (0 when the policy applied).
    """
    if detected.error is not None:
        raise detected.error
    times = detected.times
    with timer("faces"):
        track = faces_mod.track(times, detected.detections, cfg.features.faces, detected.frame_size)
    if track is not None and track.face_ratio >= cfg.features.faces.min_face_ratio:
        return track, track.face_ratio
    if policy.no_face == "fail":
        where = f"{len(times)} frames sampled at {cfg.features.detect_fps:g} fps"
        if track is None:
            message = f"no face with p >= {cfg.features.faces.min_prob} in {where}"
        else:
            message = (f"a face in only {int(track.found.sum())} of {where} (face_ratio "
                       f"{track.face_ratio:.3f} < min_face_ratio "
                       f"{cfg.features.faces.min_face_ratio:g})")
        raise ClipError(Stage.FACES, Reason.NO_FACE, message)
    return None, 0.0


__all__ = ["DETECT_BATCH", "Detected", "clip_interval", "detect_clips", "track_face"]
