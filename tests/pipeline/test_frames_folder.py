"""Clips released as folders of frames (AFEW-VA): probed and sampled by timestamp like video
files, through the media layer's own functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import frames_folder, media
from pipeline.failures import ClipError, Reason


def _folder(path: Path, n: int = 10, size: tuple[int, int] = (8, 6)) -> Path:
    path.mkdir(parents=True)
    for k in range(n):  # frame k is filled with the value 10 k: its index is readable
        Image.fromarray(np.full((size[1], size[0], 3), 10 * k, np.uint8)).save(
            path / f"{k:05d}.png")
    (path / "clip.json").write_text("{}")  # other files are not frames
    return path


def test_probe_reports_a_silent_video_of_the_frames(tmp_path: Path) -> None:
    info = media.probe(_folder(tmp_path / "c"))
    assert info.has_video and not info.has_audio
    assert (info.width, info.height) == (8, 6)
    assert info.duration_s == pytest.approx(10 / frames_folder.FPS)
    assert info.fps == frames_folder.FPS


def test_frames_are_sampled_by_timestamp(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "c")
    got = [(t, int(f[0, 0, 0]) // 10) for t, f in media.iter_frames(folder, fps=10.0)]
    # targets 0, .1, .2, .3 s before the end (0.4 s): frames floor(t * 25) = 0, 2, 5, 7
    assert [t for t, _ in got] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [k for _, k in got] == [0, 2, 5, 7]
    window = list(media.iter_frames(folder, fps=25.0, start_s=0.12, end_s=0.24, max_frames=2))
    assert [int(f[0, 0, 0]) // 10 for _, f in window] == [3, 4]


def test_natural_order_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "n"
    folder.mkdir()
    for k in (2, 10, 1):
        Image.fromarray(np.full((4, 4, 3), k, np.uint8)).save(folder / f"{k}.png")
    assert [p.name for p in frames_folder.frame_files(folder)] == ["1.png", "2.png", "10.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClipError) as err:
        media.probe(empty)
    assert err.value.reason == Reason.NO_VIDEO_STREAM
    with pytest.raises(ClipError) as err:
        media.read_audio(folder)
    assert err.value.reason == Reason.NO_AUDIO_STREAM
    (folder / "3.png").write_bytes(b"not a png")
    with pytest.raises(ClipError) as err:
        list(media.iter_frames(folder, fps=25.0))
    assert err.value.reason == Reason.CORRUPT_MEDIA
    with pytest.raises(ClipError) as err:
        list(media.iter_frames(_folder(tmp_path / "c"), fps=1.0, start_s=5.0))
    assert err.value.reason == Reason.TOO_SHORT
