"""What a media file holds, read from its container header without decoding: :func:`probe`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline import frames_folder
from pipeline.failures import ClipError, Reason, Stage
from pipeline.media.container import container_duration_s, open_media


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
    with open_media(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        if video is not None:
            frames_folder.check_frame_size(path, video.codec_context.width,
                                           video.codec_context.height)
        return MediaInfo(
            path=str(path),
            duration_s=container_duration_s(container),
            has_video=video is not None,
            has_audio=bool(container.streams.audio),
            width=video.codec_context.width if video is not None else 0,
            height=video.codec_context.height if video is not None else 0,
            fps=float(video.average_rate or 0) if video is not None else 0.0,
        )
