"""Decoding video frames and audio with PyAV, by timestamp, in constant memory.

Times are seconds from the start of the container (its ``start_time``), the clock a player
shows, so that video frames and audio samples of the same interval line up. Every decoding
problem is a :class:`~pipeline.failures.ClipError` at stage ``decode`` whose message names the
file: the per-clip driver records it in ``failures.parquet`` and moves on.

Frames are sampled *by timestamp*: for target times ``start + k / fps`` the frame on screen at
that time (the latest frame whose timestamp is not after it) is returned, so a 25-fps, a 29.97-fps
and a variable-frame-rate file give frames at the same instants. Decoding seeks to the key frame
before the interval first, so a short interval late in a long file costs one group of pictures,
not the whole file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.stream
import numpy as np

from pipeline import frames_folder
from pipeline.failures import ClipError, Reason, Stage

logger = logging.getLogger(__name__)

MIN_AUDIO_S = 0.1
"""Shortest audio (seconds) :func:`read_audio` accepts; less is ``too_short``."""

TRUNCATION_TOLERANCE_S = 0.5
"""A stream that ends this much earlier than its header declares is truncated (corrupt)."""

AUDIO_PREROLL_S = 0.25
"""Audio decoding starts this long before an interval: after a seek, transform codecs (AAC,
MP3, Opus) need earlier packets to rebuild the first frame, and the resampler's filter warms up.
The extra samples are decoded and dropped."""

# Slack when comparing a frame timestamp with a target time: timestamps are exact fractions,
# targets are floats, and a frame stamped at exactly t must count as on screen at t.
_TIME_EPS = 1e-6


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` finds in a media file.

    ``width``, ``height`` and ``fps`` are 0 when there is no video stream; ``fps`` is the
    stream's average frame rate.
    """

    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float


def probe(path: str | Path) -> MediaInfo:
    """Read the container header: streams, duration, frame size and rate. Decodes nothing.

    Args:
        path: a media file (mp4, mkv, avi, m4a, wav, ...).

    Returns:
        The file's :class:`MediaInfo`.

    Raises:
        ClipError: ``missing_file`` when the path is not a file, ``corrupt_media`` when the
            container cannot be read (empty, truncated index, not a media file).
    """
    if frames_folder.is_frames_folder(path):  # a clip released as frames (AFEW-VA)
        return MediaInfo(**frames_folder.probe(path))
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        return MediaInfo(
            path=str(path),
            duration_s=_duration_s(container),
            has_video=video is not None,
            has_audio=bool(container.streams.audio),
            width=video.codec_context.width if video is not None else 0,
            height=video.codec_context.height if video is not None else 0,
            fps=float(video.average_rate or 0) if video is not None else 0.0,
        )


def iter_frames(
    path: str | Path,
    *,
    fps: float,
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
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

    Yields:
        ``(t_k, frame)``: the target time in seconds and the RGB frame, uint8 ``[H, W, 3]``.

    Raises:
        ValueError: ``fps <= 0`` or ``max_frames < 1`` (a caller's mistake, not the clip's).
        ClipError: ``missing_file`` / ``corrupt_media`` (cannot open, or a decode error),
            ``no_video_stream``, ``too_short`` (an empty interval, or no frame in it).
    """
    if fps <= 0:
        raise ValueError(f"iter_frames: fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"iter_frames: max_frames must be >= 1 or None, got {max_frames}")
    if frames_folder.is_frames_folder(path):  # a clip released as frames (AFEW-VA)
        yield from frames_folder.iter_frames(path, fps=fps, start_s=start_s, end_s=end_s,
                                             max_frames=max_frames)
        return
    start, end = _check_interval(path, start_s, end_s)
    with _open(path) as container:
        if not container.streams.video:
            raise ClipError(Stage.DECODE, Reason.NO_VIDEO_STREAM, f"{path}: no video stream")
        stream = container.streams.video[0]
        declared = _duration_s(container)
        n = yield from _sample(container, stream, path, fps, start, end, max_frames)
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


def read_audio(
    path: str | Path,
    *,
    sample_rate: int = 16000,
    start_s: float | None = None,
    end_s: float | None = None,
) -> np.ndarray:
    """Decode the first audio stream as mono float samples at ``sample_rate``.

    FFmpeg resamples (``av.AudioResampler``); channels are then averaged. The interval
    is cut by sample count, counted from the timestamp of the first decoded frame, so it is
    exact to one output sample; decoding seeks to ``start_s`` first.

    Args:
        path: the media file.
        sample_rate: output rate in Hz.
        start_s: interval start in seconds from the container start; None = 0.
        end_s: interval end (exclusive); None = end of the stream.

    Returns:
        float32 ``[n]`` in ``[-1, 1]``, ``n ~= (end_s - start_s) * sample_rate``.

    Raises:
        ClipError: ``missing_file`` / ``corrupt_media``, ``no_audio_stream``, ``too_short``
            (fewer than :data:`MIN_AUDIO_S` seconds of samples in the interval).
    """
    if frames_folder.is_frames_folder(path):
        raise frames_folder.no_audio(path)
    start, end = _check_interval(path, start_s, end_s)
    with _open(path) as container:
        if not container.streams.audio:
            raise ClipError(Stage.DECODE, Reason.NO_AUDIO_STREAM, f"{path}: no audio stream")
        stream = container.streams.audio[0]
        samples = _decode_audio(container, stream, path, sample_rate, start, end)
    if len(samples) < MIN_AUDIO_S * sample_rate:
        raise ClipError(Stage.DECODE, Reason.TOO_SHORT,
                        f"{path}: {len(samples) / sample_rate:.3f} s of audio in "
                        f"[{start:.3f}, {end:.3f}) s, need at least {MIN_AUDIO_S} s")
    return np.clip(samples, -1.0, 1.0)


def _open(path: str | Path) -> av.container.InputContainer:
    if not Path(path).is_file():
        raise ClipError(Stage.DECODE, Reason.MISSING_FILE, f"{path}: no such file")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as err:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: cannot open: {err}") from err


def _check_interval(path: str | Path, start_s: float | None,
                    end_s: float | None) -> tuple[float, float]:
    """Interval bounds as floats; an empty or negative interval is the clip's problem."""
    start = 0.0 if start_s is None else float(start_s)
    end = math.inf if end_s is None else float(end_s)
    if start < 0 or not end > start:
        raise ClipError(Stage.DECODE, Reason.TOO_SHORT,
                        f"{path}: empty or negative interval [{start_s}, {end_s}) s")
    return start, end


def _duration_s(container: av.container.InputContainer) -> float:
    if container.duration is not None:
        return container.duration / av.time_base
    # Some containers (raw streams, some wav) only know their streams' durations.
    durations = [float(s.duration * s.time_base) for s in container.streams
                 if s.duration is not None and s.time_base is not None]
    return max(durations, default=0.0)


def _origin_s(container: av.container.InputContainer) -> float:
    """The container start time in seconds: time 0 of every interval."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _seek(container: av.container.InputContainer, stream: av.stream.Stream,
          path: str | Path, t_s: float) -> None:
    """Seek to the key frame at or before ``t_s`` (seconds from the container start)."""
    if t_s <= 0:
        return
    if stream.time_base is None:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA, f"{path}: stream without a time base")
    target = int((t_s + _origin_s(container)) / stream.time_base)
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError as err:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: cannot seek to {t_s:.3f} s: {err}") from err


def _decoded_frames(container: av.container.InputContainer, stream: av.VideoStream,
                    path: str | Path) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """Decode forward: ``(time_s, duration_s, frame)`` in presentation order."""
    origin = _origin_s(container)
    fallback_duration = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
    try:
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                                f"{path}: video frame without a timestamp")
            duration = float(frame.duration * frame.time_base) if frame.duration else 0.0
            yield float(frame.pts * frame.time_base) - origin, duration or fallback_duration, frame
    except av.error.FFmpegError as err:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: video decoding failed: {err}") from err


class _OnScreen:
    """The frame currently on screen, converted to RGB at most once however often it is used."""

    def __init__(self, frame: av.VideoFrame) -> None:
        self._frame: av.VideoFrame | None = frame
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            assert self._frame is not None
            self._rgb = self._frame.to_ndarray(format="rgb24")
            self._frame = None
        return self._rgb


def _sample(container: av.container.InputContainer, stream: av.VideoStream,
            path: str | Path, fps: float, start: float, end: float,
            max_frames: int | None) -> Generator[tuple[float, np.ndarray], None, int]:
    """Yield the on-screen frame for each target time; return how many were yielded."""
    limit = max_frames if max_frames is not None else math.inf
    k, on_screen, screen_end = 0, None, -math.inf
    _seek(container, stream, path, start)
    for time_s, duration_s, frame in _decoded_frames(container, stream, path):
        # Every target before this frame shows the previous frame (or, at the very start of
        # the stream, this first frame).
        current = _OnScreen(frame)
        shown = on_screen or current
        while k < limit and (t := start + k / fps) < end and t < time_s - _TIME_EPS:
            yield t, shown.rgb()
            k += 1
        if k >= limit or start + k / fps >= end:
            return k
        on_screen, screen_end = current, time_s + duration_s
    _check_complete(container, stream, path, max(screen_end, start), end)
    # After the last frame: it stays on screen for its duration.
    while (on_screen is not None and k < limit and (t := start + k / fps) < end
           and t < screen_end - _TIME_EPS):
        yield t, on_screen.rgb()
        k += 1
    return k


def _check_complete(container: av.container.InputContainer, stream: av.stream.Stream,
                    path: str | Path, decoded_end: float, end: float) -> None:
    """Raise ``corrupt_media`` when decoding stopped well before the stream's declared end.

    A file cut short (an interrupted download or copy) still decodes without an error up to
    the cut; without this check it would silently give a shorter clip.
    """
    if stream.duration is None or stream.time_base is None:
        return
    stream_start = stream.start_time if stream.start_time is not None else 0
    declared_end = float((stream_start + stream.duration) * stream.time_base)
    declared_end -= _origin_s(container)
    if decoded_end < min(end, declared_end) - TRUNCATION_TOLERANCE_S:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: {stream.type} decoding stops at {decoded_end:.3f} s, "
                        f"its header declares {declared_end:.3f} s (truncated file?)")


def _decode_audio(container: av.container.InputContainer, stream: av.AudioStream,
                  path: str | Path, sample_rate: int, start: float, end: float) -> np.ndarray:
    """Mono float32 samples of ``[start, end)``; holds only the interval's samples."""
    _seek(container, stream, path, start - AUDIO_PREROLL_S)
    # Keep the channels and average them afterwards (librosa's to_mono): FFmpeg's own stereo to
    # mono matrix sums L and R at -3 dB, which raises the level and can exceed full scale.
    resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
    n_wanted = math.inf if math.isinf(end) else round((end - start) * sample_rate)
    first_s: float | None = None
    out: _Trimmed | None = None
    try:
        for frame in container.decode(stream):
            if out is None:
                first_s = _audio_time(container, frame, path)
                out = _Trimmed(skip=max(0, round((start - first_s) * sample_rate)))
            out.add(resampler.resample(frame))
            if out.kept >= n_wanted:
                break
        else:
            if out is not None:
                out.add(resampler.resample(None))  # flush the resampler's buffer
    except av.error.FFmpegError as err:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: audio decoding failed: {err}") from err
    if out is None or first_s is None:
        _check_complete(container, stream, path, start, end)
        return np.zeros(0, np.float32)
    _check_complete(container, stream, path, first_s + out.decoded / sample_rate, end)
    samples = out.samples()
    return samples if math.isinf(n_wanted) else samples[: int(n_wanted)]


class _Trimmed:
    """Resampled audio as channel means, dropping the first ``skip`` samples as they come."""

    def __init__(self, skip: int) -> None:
        self.skip, self.decoded, self.kept = skip, 0, 0
        self._chunks: list[np.ndarray] = []

    def add(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            data = frame.to_ndarray().mean(axis=0, dtype=np.float32)  # [channels, n] -> [n]
            drop = min(self.skip, len(data))
            self.skip -= drop
            self.decoded += len(data)
            self.kept += len(data) - drop
            self._chunks.append(data[drop:])

    def samples(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)


def _audio_time(container: av.container.InputContainer, frame: av.AudioFrame,
                path: str | Path) -> float:
    if frame.pts is None or frame.time_base is None:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: audio frame without a timestamp")
    return float(frame.pts * frame.time_base) - _origin_s(container)
