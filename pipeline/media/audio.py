"""Audio decoded as mono float samples at a chosen rate (:func:`read_audio`), cut to an interval
by sample count, with gaps in the timestamps filled with silence as a player plays them."""

from __future__ import annotations

import math
from pathlib import Path

import av
import av.container
import numpy as np

from pipeline import frames_folder
from pipeline.extract_config import DecodeSpec
from pipeline.failures import ClipError, Reason, Stage
from pipeline.media.container import (check_interval, declared_extent, frames_of, open_media,
                                      origin_s, seek)
from pipeline.media.damage import DEFAULT_DECODE, Damage, DecodeReport
from pipeline.media.header import no_audio

MIN_AUDIO_S = 0.1
"""Shortest audio (seconds) :func:`read_audio` accepts; less is ``too_short``."""

AUDIO_GAP_SLACK_S = 0.01
"""Audio timestamps may jitter by this much (containers round them, to 1 ms in Matroska) before
a jump counts as missing audio; longer gaps are filled with silence and count as lost."""

AUDIO_PREROLL_S = 0.25
"""Audio decoding starts this long before an interval: after a seek, transform codecs (AAC,
MP3, Opus) need earlier packets to rebuild the first frame, and the resampler's filter warms up.
The extra samples are decoded and dropped."""


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
    start, end = check_interval(path, start_s, end_s)
    with open_media(path) as container:
        if not container.streams.audio:
            raise no_audio(path)
        stream = container.streams.audio[0]
        damage = Damage(path, "audio", rule, report)
        samples = _decode_audio(container, stream, damage, sample_rate, start, end)
    if len(samples) < MIN_AUDIO_S * sample_rate:
        raise ClipError(Stage.DECODE, Reason.TOO_SHORT,
                        f"{path}: {len(samples) / sample_rate:.3f} s of audio in "
                        f"[{start:.3f}, {end:.3f}) s, need at least {MIN_AUDIO_S} s")
    return np.clip(samples, -1.0, 1.0)


def _decode_audio(container: av.container.InputContainer, stream: av.AudioStream,
                  damage: Damage, sample_rate: int, start: float, end: float) -> np.ndarray:
    """Mono float32 samples of ``[start, end)``; holds only the interval's samples."""
    seek(container, stream, damage.path, start - AUDIO_PREROLL_S)
    first, declared_end = declared_extent(container, stream)
    # Keep the channels and average them afterwards (librosa's to_mono): FFmpeg's own stereo to
    # mono matrix sums L and R at -3 dB, which raises the level and can exceed full scale.
    resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
    n_wanted = math.inf if math.isinf(end) else round((end - start) * sample_rate)
    out: _Trimmed | None = None
    next_s, errors = max(start, first), damage.errors
    for frame in frames_of(container, stream, damage):
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


def _damaged_samples(damage: Damage, count: int, at_s: float, sample_rate: int) -> None:
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
    return float(frame.pts * frame.time_base) - origin_s(container)
