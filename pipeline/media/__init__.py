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

The package, by concept: :mod:`~pipeline.media.header` (the container header),
:mod:`~pipeline.media.video` (frames by timestamp), :mod:`~pipeline.media.audio` (mono samples),
:mod:`~pipeline.media.damage` (what decoding skipped, against the rule) and
:mod:`~pipeline.media.container` (opening, seeking, decoding packet by packet). The names below
are the public API: ``from pipeline import media; media.iter_frames(...)``.
"""

from __future__ import annotations

from pipeline.media.audio import MIN_AUDIO_S, read_audio
from pipeline.media.damage import DEFAULT_DECODE, TRUNCATION_TOLERANCE_S, DecodeReport
from pipeline.media.header import MediaInfo, no_audio, probe
from pipeline.media.video import iter_frames

__all__ = ["DEFAULT_DECODE", "MIN_AUDIO_S", "TRUNCATION_TOLERANCE_S", "DecodeReport", "MediaInfo",
           "iter_frames", "no_audio", "probe", "read_audio"]
