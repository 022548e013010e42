"""Opening a media container and walking one of its streams with PyAV: the interval's bounds,
the container's clock (times are seconds from its ``start_time``), seeking to the key frame
before a time, and decoding packet by packet where a damaged packet is skipped and counted."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import av.container
import av.stream

from pipeline.failures import ClipError, Reason, Stage
from pipeline.media.damage import Damage


def open_media(path: str | Path) -> av.container.InputContainer:
    """Open a media file for reading; a missing or unreadable file is the clip's failure."""
    if not Path(path).is_file():
        raise ClipError(Stage.DECODE, Reason.MISSING_FILE, f"{path}: no such file")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as err:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: cannot open: {err}") from err


def check_interval(path: str | Path, start_s: float | None,
                   end_s: float | None) -> tuple[float, float]:
    """Interval bounds as floats; an empty or negative interval is the clip's problem."""
    start = 0.0 if start_s is None else float(start_s)
    end = math.inf if end_s is None else float(end_s)
    if start < 0 or not end > start:
        raise ClipError(Stage.DECODE, Reason.TOO_SHORT,
                        f"{path}: empty or negative interval [{start_s}, {end_s}) s")
    return start, end


def container_duration_s(container: av.container.InputContainer) -> float:
    """The container's duration in seconds (0 when nothing says)."""
    if container.duration is not None:
        return container.duration / av.time_base
    # Some containers (raw streams, some wav) only know their streams' durations.
    durations = [float(s.duration * s.time_base) for s in container.streams
                 if s.duration is not None and s.time_base is not None]
    return max(durations, default=0.0)


def origin_s(container: av.container.InputContainer) -> float:
    """The container start time in seconds: time 0 of every interval."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def seek(container: av.container.InputContainer, stream: av.stream.Stream,
         path: str | Path, t_s: float) -> None:
    """Seek to the key frame at or before ``t_s`` (seconds from the container start)."""
    if t_s <= 0:
        return
    if stream.time_base is None:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA, f"{path}: stream without a time base")
    target = int((t_s + origin_s(container)) / stream.time_base)
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError as err:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: cannot seek to {t_s:.3f} s: {err}") from err


def declared_extent(container: av.container.InputContainer,
                    stream: av.stream.Stream) -> tuple[float, float | None]:
    """The stream's declared start and end in seconds from the container start (end None:
    the header does not say)."""
    origin = origin_s(container)
    if stream.time_base is None:
        return 0.0, None
    first = stream.start_time if stream.start_time is not None else None
    start = float(first * stream.time_base) - origin if first is not None else 0.0
    if stream.duration is None:
        return start, None
    return start, float(((first or 0) + stream.duration) * stream.time_base) - origin


def frames_of(container: av.container.InputContainer, stream: av.stream.Stream,
              damage: Damage) -> Iterator[Any]:
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
            yield from decode_packet(stream, None, damage)  # what the decoder still holds
            return
        yield from decode_packet(stream, packet, damage)


def decode_packet(stream: Any, packet: av.Packet | None, damage: Damage) -> list[Any]:
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
