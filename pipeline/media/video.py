"""Video frames sampled by timestamp (:func:`iter_frames`): the frame on screen at each target
time, in constant memory, turned upright by the display matrix."""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from pathlib import Path

import av
import av.container
import numpy as np

from pipeline import frames_folder
from pipeline.extract_config import DecodeSpec
from pipeline.failures import ClipError, Reason, Stage
from pipeline.media.container import (check_interval, container_duration_s, declared_extent,
                                      frames_of, open_media, origin_s, seek)
from pipeline.media.damage import (DEFAULT_DECODE, TRUNCATION_TOLERANCE_S, Damage,
                                   DecodeReport)

logger = logging.getLogger(__name__)

# Slack when comparing a frame timestamp with a target time: timestamps are exact fractions,
# targets are floats, and a frame stamped at exactly t must count as on screen at t.
_TIME_EPS = 1e-6


def iter_frames(
    path: str | Path,
    *,
    fps: float,
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
    rule: DecodeSpec = DEFAULT_DECODE,
    report: DecodeReport | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream frames sampled at ``fps`` by timestamp from the interval ``[start_s, end_s)``.

    Target times are ``t_k = start_s + k / fps`` (k = 0, 1, ...) while ``t_k < end_s``, the end
    of the stream (last frame's timestamp plus its duration) and ``k < max_frames``. For each
    target the frame on screen is yielded: the latest decoded frame with timestamp ``<= t_k``
    (a target before the first frame of the stream gets the first frame). At most two decoded
    frames are alive at any time, so memory does not grow with the clip length.

    Errors are raised while iterating (this is a generator).

    Args:
        path: the media file.
        fps: sampling rate in frames per second, > 0.
        start_s: interval start in seconds from the container start; None = 0.
        end_s: interval end (exclusive); None = end of the stream.
        max_frames: stop after this many frames; None = no limit.
        rule: how much damage the stream may have (undecodable packets are skipped; a frame
            stays on screen until the next decoded one).
        report: filled in with the skipped packets and the time they cost, when given.

    Yields:
        ``(t_k, frame)``: the target time in seconds and the RGB frame, uint8 ``[H, W, 3]``,
        in the displayed orientation.

    Raises:
        ValueError: ``fps <= 0`` or ``max_frames < 1`` (a caller's mistake, not the clip's).
        ClipError: ``missing_file`` / ``corrupt_media`` (cannot open; damage beyond ``rule``;
            a file cut short), ``no_video_stream``, ``too_short`` (an empty interval, or no
            frame in it).
    """
    if fps <= 0:
        raise ValueError(f"iter_frames: fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"iter_frames: max_frames must be >= 1 or None, got {max_frames}")
    if frames_folder.is_frames_folder(path):  # a clip released as frames (AFEW-VA)
        yield from frames_folder.iter_frames(path, fps=fps, start_s=start_s, end_s=end_s,
                                             max_frames=max_frames)
        return
    start, end = check_interval(path, start_s, end_s)
    with open_media(path) as container:
        if not container.streams.video:
            raise ClipError(Stage.DECODE, Reason.NO_VIDEO_STREAM, f"{path}: no video stream")
        stream = container.streams.video[0]
        declared = container_duration_s(container)
        damage = Damage(path, "video", rule, report)
        n = yield from _sample(container, stream, damage, fps, start, end, max_frames)
    logger.debug("%s: %d frames at %g fps from %.3f s", path, n, fps, start)
    if n == 0 and declared > start + TRUNCATION_TOLERANCE_S:
        # A header that promises frames in the interval but a stream that yields none (a
        # broken AVI opens and "decodes" zero frames without an error) is corrupt, not short.
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: the header declares {declared:.2f} s of video but no frame "
                        f"decodes in [{start:.3f}, {end:.3f}) s")
    if n == 0:
        raise ClipError(Stage.DECODE, Reason.TOO_SHORT,
                        f"{path}: no video frame in [{start:.3f}, {end:.3f}) s")


def _decoded_frames(container: av.container.InputContainer, stream: av.VideoStream,
                    damage: Damage, head: float) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """Decode forward: ``(time_s, duration_s, frame)`` in presentation order.

    The time from the end of a frame to the next decoded one is lost when packets were
    skipped in between (from ``head``, the expected start, for the first frame).
    """
    origin = origin_s(container)
    fallback_duration = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
    errors, end_s = damage.errors, head
    for frame in frames_of(container, stream, damage):
        if frame.pts is not None and frame.time_base is not None:
            time_s = float(frame.pts * frame.time_base) - origin
        else:  # a frame without a timestamp follows the one before it
            time_s = end_s
        duration = float(frame.duration * frame.time_base) if frame.duration else 0.0
        if damage.errors > errors:
            damage.lost(end_s, time_s)
            errors = damage.errors
        end_s = time_s + (duration or fallback_duration)
        yield time_s, duration or fallback_duration, frame


class _OnScreen:
    """The frame currently on screen, converted to RGB (and turned upright) at most once
    however often it is used."""

    def __init__(self, frame: av.VideoFrame) -> None:
        self._frame: av.VideoFrame | None = frame
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            assert self._frame is not None
            rgb = self._frame.to_ndarray(format="rgb24")
            # The display matrix turns the picture counter-clockwise by `rotation` degrees
            # (FFmpeg's convention; its command line applies the same turn).
            turns = round(self._frame.rotation / 90) % 4
            self._rgb = np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
            self._frame = None
        return self._rgb


def _sample(container: av.container.InputContainer, stream: av.VideoStream,
            damage: Damage, fps: float, start: float, end: float,
            max_frames: int | None) -> Generator[tuple[float, np.ndarray], None, int]:
    """Yield the on-screen frame for each target time; return how many were yielded."""
    limit = max_frames if max_frames is not None else math.inf
    k, on_screen, screen_end = 0, None, start
    seek(container, stream, damage.path, start)
    first, declared_end = declared_extent(container, stream)
    errors = damage.errors
    for time_s, duration_s, frame in _decoded_frames(container, stream, damage,
                                                     max(start, first)):
        # Every target before this frame shows the previous frame (or, at the very start of
        # the stream, this first frame).
        current = _OnScreen(frame)
        shown = on_screen or current
        while k < limit and (t := start + k / fps) < end and t < time_s - _TIME_EPS:
            yield t, shown.rgb()
            k += 1
        if k >= limit or start + k / fps >= end:
            damage.judge(start, min(end, time_s))
            return k
        on_screen, screen_end, errors = current, time_s + duration_s, damage.errors
    if on_screen is None:
        damage.nothing_decoded()
    damage.judge(start, damage.tail(max(screen_end, start), end, declared_end, errors))
    # After the last frame: it stays on screen for its duration.
    while (on_screen is not None and k < limit and (t := start + k / fps) < end
           and t < screen_end - _TIME_EPS):
        yield t, on_screen.rgb()
        k += 1
    return k
