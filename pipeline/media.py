"""Decoding video frames and audio with PyAV, by timestamp, in constant memory.

Times are seconds from the start of the container (its ``start_time``), the clock a player
shows, so that video frames and audio samples of the same interval line up. Every decoding
problem is a :class:`~pipeline.failures.ClipError` at stage ``decode`` whose message names the
file: the per-clip driver records it in ``failures.parquet`` and moves on.

Frames are sampled *by timestamp*: for target times ``start + k / fps`` the frame on screen at
that time (the latest frame whose timestamp is not after it) is returned, so a 25-fps, a 29.97-fps
and a variable-frame-rate file give frames at the same instants. Decoding seeks to the key frame
before the interval first, so a short interval late in a long file costs one group of pictures,
not the whole file. Frames come out as a player shows them: a display matrix that rotates the
picture by a multiple of 90 degrees (phone videos) is applied; its mirroring, if any, is not.

Damaged files are decoded as a player plays them: a packet that cannot be read or decoded is
skipped and counted, and a stream is used when what did decode covers the interval well enough
(:class:`~pipeline.extract_config.DecodeSpec`: by default 90 % of each stream's time, and no
stretch above 1 s lost); past that it is ``corrupt_media``, with the numbers in the message.
A :class:`DecodeReport` passed in says what was skipped and how much time it cost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.container
import av.stream
import numpy as np

from pipeline import frames_folder
from pipeline.extract_config import DecodeSpec
from pipeline.failures import ClipError, Reason, Stage

logger = logging.getLogger(__name__)

MIN_AUDIO_S = 0.1
"""Shortest audio (seconds) :func:`read_audio` accepts; less is ``too_short``."""

TRUNCATION_TOLERANCE_S = 0.5
"""A stream that stops less than this before its declared end, without a decoding error, is
taken at its word: headers round their durations. A larger shortfall is lost time (a cut file)."""

AUDIO_GAP_SLACK_S = 0.01
"""Audio timestamps may jitter by this much (containers round them, to 1 ms in Matroska) before
a jump counts as missing audio; longer gaps are filled with silence and count as lost."""

DEFAULT_DECODE = DecodeSpec()

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


@dataclass
class DecodeReport:
    """What decoding one stream over an interval met. Filled in by :func:`iter_frames` and
    :func:`read_audio` when they finish, also when they raise ``corrupt_media`` for it.

    Attributes:
        stream: ``video`` or ``audio``.
        errors: packets that could not be read or decoded, skipped.
        expected_s: seconds of the stream the interval asks for (the interval cut to what the
            stream declares or decodes).
        lost_s: seconds of ``expected_s`` that decoding left without frames or samples
            (:class:`~pipeline.extract_config.DecodeSpec` says what counts).
        longest_gap_s: the longest stretch of lost time, seconds.
        gap_at_s: where it starts, seconds from the container start.
        first_error: what went wrong with the first skipped packet ("" when none).
    """

    stream: str = ""
    errors: int = 0
    expected_s: float = 0.0
    lost_s: float = 0.0
    longest_gap_s: float = 0.0
    gap_at_s: float = 0.0
    first_error: str = ""

    @property
    def coverage(self) -> float:
        """Fraction of the expected time that decoded (1.0 when nothing was expected)."""
        if self.expected_s <= 0:
            return 1.0
        return max(0.0, 1.0 - self.lost_s / self.expected_s)


def no_audio(path: str | Path) -> ClipError:
    """The ``no_audio_stream`` failure of a file (or folder of frames) without sound."""
    if frames_folder.is_frames_folder(path):
        return frames_folder.no_audio(path)
    return ClipError(Stage.DECODE, Reason.NO_AUDIO_STREAM, f"{path}: no audio stream")


def probe(path: str | Path) -> MediaInfo:
    """Read the container header: streams, duration, frame size and rate. Decodes nothing.

    The frame size is the coded one: a rotated video's frames (:func:`iter_frames`) have it
    with width and height swapped.

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
        if video is not None:
            frames_folder.check_frame_size(path, video.codec_context.width,
                                           video.codec_context.height)
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
    start, end = _check_interval(path, start_s, end_s)
    with _open(path) as container:
        if not container.streams.video:
            raise ClipError(Stage.DECODE, Reason.NO_VIDEO_STREAM, f"{path}: no video stream")
        stream = container.streams.video[0]
        declared = _duration_s(container)
        damage = _Damage(path, "video", rule, report)
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


def read_audio(
    path: str | Path,
    *,
    sample_rate: int = 16000,
    start_s: float | None = None,
    end_s: float | None = None,
    rule: DecodeSpec = DEFAULT_DECODE,
    report: DecodeReport | None = None,
) -> np.ndarray:
    """Decode the first audio stream as mono float samples at ``sample_rate``.

    FFmpeg resamples (``av.AudioResampler``); channels are then averaged. The interval
    is cut by sample count, counted from the timestamp of the first decoded frame, so it is
    exact to one output sample; decoding seeks to ``start_s`` first. Where the timestamps
    jump (an undecodable packet skipped, or a jump in the file) the gap is filled with
    silence, as a player plays it, so every later sample stays at its time; so is the start
    of the interval when the stream begins after it. A stream that ends before the interval
    does (audio shorter than the video) gives fewer samples.

    Args:
        path: the media file.
        sample_rate: output rate in Hz.
        start_s: interval start in seconds from the container start; None = 0.
        end_s: interval end (exclusive); None = end of the stream.
        rule: how much damage the stream may have.
        report: filled in with the skipped packets and the time they cost, when given.

    Returns:
        float32 ``[n]`` in ``[-1, 1]``, ``n ~= (end_s - start_s) * sample_rate``.

    Raises:
        ClipError: ``missing_file`` / ``corrupt_media`` (cannot open; damage beyond ``rule``;
            a file cut short), ``no_audio_stream``, ``too_short`` (fewer than
            :data:`MIN_AUDIO_S` seconds of samples in the interval).
    """
    if frames_folder.is_frames_folder(path):
        raise no_audio(path)
    start, end = _check_interval(path, start_s, end_s)
    with _open(path) as container:
        if not container.streams.audio:
            raise no_audio(path)
        stream = container.streams.audio[0]
        damage = _Damage(path, "audio", rule, report)
        samples = _decode_audio(container, stream, damage, sample_rate, start, end)
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


def _declared_extent(container: av.container.InputContainer,
                     stream: av.stream.Stream) -> tuple[float, float | None]:
    """The stream's declared start and end in seconds from the container start (end None:
    the header does not say)."""
    origin = _origin_s(container)
    if stream.time_base is None:
        return 0.0, None
    first = stream.start_time if stream.start_time is not None else None
    start = float(first * stream.time_base) - origin if first is not None else 0.0
    if stream.duration is None:
        return start, None
    return start, float(((first or 0) + stream.duration) * stream.time_base) - origin


class _Damage:
    """The packets one decoding pass skipped and the stretches of time they (or a cut) left
    empty; :meth:`judge` holds them against the rule and fills the caller's report."""

    def __init__(self, path: str | Path, kind: str, rule: DecodeSpec,
                 report: DecodeReport | None) -> None:
        self.path, self.kind, self.rule = path, kind, rule
        self.report = report if report is not None else DecodeReport()
        self.errors = 0
        self._first = ""
        self._gaps: list[tuple[float, float]] = []

    def skipped(self, err: Exception, what: str) -> None:
        if not self.errors:
            self._first = f"{what}: {err}"
        self.errors += 1
        logger.debug("%s: %s %s skipped: %s", self.path, self.kind, what, err)

    def lost(self, begin: float, end: float) -> None:
        if end > begin:
            self._gaps.append((begin, end))

    def nothing_decoded(self) -> None:
        """Raise ``corrupt_media`` when packets were skipped and none decoded."""
        if self.errors:
            raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                            f"{self.path}: no {self.kind} packet decodes ({self.errors} "
                            f"skipped); first error: {self._first}")

    def tail(self, decoded_end: float, end: float, declared_end: float | None,
             errors_before: int) -> float:
        """Record a stream that stops before it should: after an undecodable packet, or
        more than :data:`TRUNCATION_TOLERANCE_S` before its declared end (a cut file).

        Returns:
            The end of the stretch the stream was expected to cover.
        """
        target = min(end, declared_end if declared_end is not None else decoded_end)
        if target - decoded_end > TRUNCATION_TOLERANCE_S or self.errors > errors_before:
            self.lost(decoded_end, target)
        return min(end, max(target, decoded_end))

    def judge(self, lo: float, hi: float) -> None:
        """Fill the report for ``[lo, hi)``; raise ``corrupt_media`` past the rule."""
        gaps = [(max(a, lo), min(b, hi)) for a, b in self._gaps if min(b, hi) > max(a, lo)]
        longest = max(gaps, key=lambda g: g[1] - g[0], default=(0.0, 0.0))
        r = self.report
        r.stream, r.errors, r.first_error = self.kind, self.errors, self._first
        r.expected_s, r.lost_s = max(0.0, hi - lo), sum(b - a for a, b in gaps)
        r.longest_gap_s, r.gap_at_s = longest[1] - longest[0], longest[0]
        if r.coverage < self.rule.min_coverage or r.longest_gap_s > self.rule.max_gap_s:
            first = f"; first error: {r.first_error}" if r.first_error else ""
            packets = (f"{r.errors} undecodable packet(s)" if r.errors else
                       "no undecodable packet (the timestamps jump, or the file is cut)")
            raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                            f"{self.path}: {self.kind} too damaged to use: {packets}, "
                            f"{r.coverage:.1%} of [{lo:.2f}, {hi:.2f}) s "
                            f"decoded (needs {self.rule.min_coverage:.0%}), longest gap "
                            f"{r.longest_gap_s:.2f} s at {r.gap_at_s:.2f} s (allows "
                            f"{self.rule.max_gap_s:g} s){first}")


def _frames_of(container: av.container.InputContainer, stream: av.stream.Stream,
               damage: _Damage) -> Iterator[Any]:
    """Decoded frames of ``stream`` in order; a packet that cannot be decoded is skipped and
    counted, and a container that cannot be read further ends the stream there."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as err:
            damage.skipped(err, "reading the file")
            yield from _decode(stream, None, damage)  # what the decoder still holds
            return
        yield from _decode(stream, packet, damage)


def _decode(stream: Any, packet: av.Packet | None, damage: _Damage) -> list[Any]:
    """The frames of one packet (None: flush the decoder); an undecodable packet is counted."""
    try:
        return packet.decode() if packet is not None else stream.decode(None)
    except av.error.EOFError:
        return []
    except av.error.FFmpegError as err:
        at = (f" at {float(packet.pts * packet.time_base):.3f} s" if packet is not None
              and packet.pts is not None and packet.time_base is not None else "")
        damage.skipped(err, f"packet{at}")
        return []


def _decoded_frames(container: av.container.InputContainer, stream: av.VideoStream,
                    damage: _Damage, head: float) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """Decode forward: ``(time_s, duration_s, frame)`` in presentation order.

    The time from the end of a frame to the next decoded one is lost when packets were
    skipped in between (from ``head``, the expected start, for the first frame).
    """
    origin = _origin_s(container)
    fallback_duration = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
    errors, end_s = damage.errors, head
    for frame in _frames_of(container, stream, damage):
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
            damage: _Damage, fps: float, start: float, end: float,
            max_frames: int | None) -> Generator[tuple[float, np.ndarray], None, int]:
    """Yield the on-screen frame for each target time; return how many were yielded."""
    limit = max_frames if max_frames is not None else math.inf
    k, on_screen, screen_end = 0, None, start
    _seek(container, stream, damage.path, start)
    first, declared_end = _declared_extent(container, stream)
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


def _decode_audio(container: av.container.InputContainer, stream: av.AudioStream,
                  damage: _Damage, sample_rate: int, start: float, end: float) -> np.ndarray:
    """Mono float32 samples of ``[start, end)``; holds only the interval's samples."""
    _seek(container, stream, damage.path, start - AUDIO_PREROLL_S)
    first, declared_end = _declared_extent(container, stream)
    # Keep the channels and average them afterwards (librosa's to_mono): FFmpeg's own stereo to
    # mono matrix sums L and R at -3 dB, which raises the level and can exceed full scale.
    resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
    n_wanted = math.inf if math.isinf(end) else round((end - start) * sample_rate)
    out: _Trimmed | None = None
    next_s, errors = max(start, first), damage.errors
    for frame in _frames_of(container, stream, damage):
        time_s = _audio_time(container, frame, damage.path)
        if out is None:
            out = _Trimmed(skip=max(0, round((start - time_s) * sample_rate)))
            if time_s - start > AUDIO_GAP_SLACK_S:  # the stream starts after the interval
                out.add(resampler.resample(_silence(frame, time_s - start)))
        elif time_s - next_s > AUDIO_GAP_SLACK_S:
            out.add(resampler.resample(_silence(frame, time_s - next_s)))
        if time_s - next_s > AUDIO_GAP_SLACK_S:
            damage.lost(next_s, time_s)
        next_s, errors = time_s + frame.samples / frame.sample_rate, damage.errors
        _damaged_samples(damage, out.add(resampler.resample(frame)), time_s, sample_rate)
        if out.kept >= n_wanted:
            damage.judge(max(start, first), end)
            break
    else:
        if out is not None:  # flush the resampler's buffer
            _damaged_samples(damage, out.add(resampler.resample(None)), next_s, sample_rate)
        damage.judge(max(start, first), damage.tail(next_s, end, declared_end, errors))
    if out is None:
        damage.nothing_decoded()
        return np.zeros(0, np.float32)
    samples = out.samples()
    return samples if math.isinf(n_wanted) else samples[: int(n_wanted)]


def _damaged_samples(damage: _Damage, count: int, at_s: float, sample_rate: int) -> None:
    """Non-finite samples (a damaged float PCM stream) are kept as silence, and counted as a
    damaged packet whose samples are lost time, so the decode rule judges them."""
    if count:
        damage.skipped(ValueError(f"{count} NaN or Inf sample(s), kept as silence"), "samples")
        damage.lost(at_s, at_s + count / sample_rate)


class _Trimmed:
    """Resampled audio as channel means, dropping the first ``skip`` samples as they come."""

    def __init__(self, skip: int) -> None:
        self.skip, self.kept = skip, 0
        self._chunks: list[np.ndarray] = []

    def add(self, frames: list[av.AudioFrame]) -> int:
        """Keep the frames' samples; returns how many were NaN or Inf (kept as silence)."""
        bad = 0
        for frame in frames:
            data = frame.to_ndarray().mean(axis=0, dtype=np.float32)  # [channels, n] -> [n]
            drop = min(self.skip, len(data))
            self.skip -= drop
            self.kept += len(data) - drop
            kept = data[drop:]
            broken = ~np.isfinite(kept)
            if broken.any():
                bad += int(broken.sum())
                kept = np.where(broken, np.float32(0.0), kept)
            self._chunks.append(kept)
        return bad

    def samples(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)


def _silence(like: av.AudioFrame, seconds: float) -> av.AudioFrame:
    """``seconds`` of silence in the sample format, layout and rate of ``like``."""
    frame = av.AudioFrame(format=like.format.name, layout=like.layout.name,
                          samples=max(1, round(seconds * like.sample_rate)))
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = like.sample_rate
    return frame


def _audio_time(container: av.container.InputContainer, frame: av.AudioFrame,
                path: str | Path) -> float:
    if frame.pts is None or frame.time_base is None:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: audio frame without a timestamp")
    return float(frame.pts * frame.time_base) - _origin_s(container)
