"""Clips released as a folder of frames (AFEW-VA): the media layer's functions for them.

A frames folder holds one image per frame (``00000.png``, ``00001.png``, ...; PNG or JPEG),
in natural name order, shown at :data:`FPS`; it has no audio. :mod:`pipeline.media` hands a
folder to :func:`probe` and :func:`iter_frames` here, so extraction samples its frames by
timestamp exactly as it samples a video file's: for a target time ``t`` the frame on screen is
frame ``floor(t * FPS)``. One image is decoded at a time (memory does not grow with the clip).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.failures import ClipError, Reason, Stage

#: The frame rate of a frames folder: AFEW-VA's frames are those of AFEW's clips, cut from
#: feature films at 25 frames per second (the release does not state a rate).
FPS = 25.0
SUFFIXES = (".png", ".jpg", ".jpeg")
#: The largest frame decoded (8192 x 8192, above 8K video): a header claiming more is a damaged
#: or hostile file, and decoding it would take gigabytes. Such a frame fails its clip
#: (``corrupt_media``, naming the size), in a folder of frames and in a video file alike.
MAX_FRAME_PIXELS = 8192 * 8192
_EPS = 1e-6


def is_frames_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder (a clip released as frames) rather than a media file."""
    return Path(path).is_dir()


def frame_files(path: str | Path) -> list[Path]:
    """The frames of a folder, in natural name order (``2.png`` before ``10.png``).

    Raises:
        ClipError: ``missing_file`` (no such folder), ``no_video_stream`` (no image in it).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ClipError(Stage.DECODE, Reason.MISSING_FILE, f"{folder}: no such folder")
    with os.scandir(folder) as entries:
        names = [e.name for e in entries
                 if e.is_file() and e.name.lower().endswith(SUFFIXES)]
    if not names:
        raise ClipError(Stage.DECODE, Reason.NO_VIDEO_STREAM,
                        f"{folder}: no frames ({', '.join(SUFFIXES)} files)")
    return [folder / name for name in sorted(names, key=_natural)]


def _natural(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def read_frame(path: Path) -> np.ndarray:
    """One frame as RGB uint8 ``[H, W, 3]``.

    Raises:
        ClipError: ``corrupt_media`` when the image cannot be decoded, or when its header
            claims more than :data:`MAX_FRAME_PIXELS` (checked before anything is decoded).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            check_frame_size(path, *image.size)
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: cannot decode the frame ({err})") from None


def check_frame_size(path: str | Path, width: int, height: int) -> None:
    """Refuse a frame larger than :data:`MAX_FRAME_PIXELS` before decoding it.

    Raises:
        ClipError: ``corrupt_media``, naming the size.
    """
    if width * height > MAX_FRAME_PIXELS:
        raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                        f"{path}: frames of {width}x{height} pixels are over the limit of "
                        f"{MAX_FRAME_PIXELS:,} pixels (a damaged header, or not a video clip)")


def probe(path: str | Path) -> dict[str, Any]:
    """What :func:`pipeline.media.probe` reports for a folder: duration (frames / FPS), a
    video stream of the first frame's size at :data:`FPS`, no audio (the fields of
    :class:`pipeline.media.MediaInfo`).

    Raises:
        ClipError: see :func:`frame_files` and :func:`read_frame`.
    """
    files = frame_files(path)
    height, width = read_frame(files[0]).shape[:2]
    return {"path": str(path), "duration_s": len(files) / FPS, "has_video": True,
            "has_audio": False, "width": int(width), "height": int(height), "fps": FPS}


def iter_frames(path: str | Path, *, fps: float, start_s: float | None = None,
                end_s: float | None = None, max_frames: int | None = None,
                ) -> Iterator[tuple[float, np.ndarray]]:
    """Frames sampled at ``fps`` by timestamp from ``[start_s, end_s)``, as
    :func:`pipeline.media.iter_frames` samples a video file: targets ``start + k / fps`` before
    the end of the interval and of the clip (``len(frames) / FPS``), the frame on screen at
    each.

    Raises:
        ValueError: ``fps <= 0`` or ``max_frames < 1``.
        ClipError: ``missing_file``, ``no_video_stream``, ``corrupt_media`` (a frame that does
            not decode), ``too_short`` (no frame in the interval).
    """
    if fps <= 0:
        raise ValueError(f"iter_frames: fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"iter_frames: max_frames must be >= 1 or None, got {max_frames}")
    files = frame_files(path)
    start = start_s or 0.0
    end = min(end_s if end_s is not None else math.inf, len(files) / FPS)
    k = 0
    while (t := start + k / fps) < end - _EPS and (max_frames is None or k < max_frames):
        index = min(len(files) - 1, int(math.floor(t * FPS + _EPS)))
        yield t, read_frame(files[index])
        k += 1
    if k == 0:
        raise ClipError(Stage.DECODE, Reason.TOO_SHORT,
                        f"{path}: no frame in [{start:.3f}, {end:.3f}) s "
                        f"({len(files)} frames at {FPS:g} fps)")


def no_audio(path: str | Path) -> ClipError:
    """The error :func:`pipeline.media.read_audio` raises for a folder: frames have no sound."""
    return ClipError(Stage.DECODE, Reason.NO_AUDIO_STREAM,
                     f"{path}: a folder of frames has no audio stream")


__all__ = ["FPS", "SUFFIXES", "frame_files", "is_frames_folder", "iter_frames", "no_audio",
           "probe", "read_frame"]
