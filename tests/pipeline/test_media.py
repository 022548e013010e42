"""Decoding with PyAV: timestamps, intervals, seeking, memory, audio, and every failure type.

The media files are written here with PyAV (libx264 + AAC): each video frame encodes its own
index in two flat grey halves, so a test can tell exactly which frame came back.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import media
from pipeline.media import video as media_video
from pipeline.failures import ClipError, Reason, Stage
from pipeline.media import MediaInfo, iter_frames, probe, read_audio

FPS = 25
SIZE = (64, 48)  # width, height
TONE_HZ = 440.0
AMPLITUDE = 0.5


def _index_frame(i: int) -> np.ndarray:
    """A frame whose halves encode ``i``: left grey = 8 * (i // 50), right = 5 * (i % 50)."""
    frame = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
    frame[:, : SIZE[0] // 2] = 8 * (i // 50)
    frame[:, SIZE[0] // 2:] = 5 * (i % 50)
    return frame


def _frame_index(frame: np.ndarray) -> int:
    left = frame[8:-8, 4:SIZE[0] // 2 - 4].mean()
    right = frame[8:-8, SIZE[0] // 2 + 4:-4].mean()
    return int(round(left / 8)) * 50 + int(round(right / 5))


def _tone(n: int, sample_rate: int, channels: int) -> np.ndarray:
    wave = AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / sample_rate)
    return np.repeat(wave[None].astype(np.float32), channels, axis=0)  # [channels, n]


def _write(path: Path, *, seconds: float, video: bool = True, audio: bool = True,
           audio_codec: str = "aac", sample_rate: int = 44100, channels: int = 1,
           faststart: bool = False) -> Path:
    options = {"movflags": "faststart"} if faststart else {}
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", options=options) as container:
        # Every stream must exist before the first packet is muxed (the header is written then).
        vstream = container.add_stream("libx264", rate=FPS) if video else None
        astream = (container.add_stream(audio_codec, rate=sample_rate, layout=layout)
                   if audio else None)
        if vstream is not None:
            vstream.width, vstream.height, vstream.pix_fmt = *SIZE, "yuv420p"
            vstream.options = {"g": str(FPS), "preset": "ultrafast", "crf": "10"}
            for i in range(round(seconds * FPS)):
                frame = av.VideoFrame.from_ndarray(_index_frame(i), format="rgb24")
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode())
        if astream is not None:
            astream.time_base = Fraction(1, sample_rate)
            for frame in _audio_frames(seconds, audio_codec, sample_rate, layout, channels):
                container.mux(astream.encode(frame))
            container.mux(astream.encode())
    return path


def _audio_frames(seconds: float, codec: str, sample_rate: int, layout: str,
                  channels: int) -> Iterator[av.AudioFrame]:
    wave = _tone(round(seconds * sample_rate), sample_rate, channels)  # [channels, n]
    for start in range(0, wave.shape[1], 1024):
        chunk = wave[:, start:start + 1024]
        if codec == "aac":  # planar float
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                               layout=layout)
        else:  # PCM: packed (interleaved) int16
            packed = (chunk.T * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        frame.sample_rate, frame.pts = sample_rate, start
        yield frame


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    out = {
        "clip": _write(root / "clip.mp4", seconds=3.0),
        "no_audio": _write(root / "no_audio.mp4", seconds=3.0, audio=False),
        "audio_only": _write(root / "audio_only.m4a", seconds=3.0, video=False),
        "stereo_wav": _write(root / "stereo.wav", seconds=2.0, video=False,
                             audio_codec="pcm_s16le", sample_rate=48000, channels=2),
        "long": _write(root / "long.mp4", seconds=60.0, audio=False),
        "faststart": _write(root / "faststart.mp4", seconds=3.0, faststart=True),
    }
    for name in ("clip", "faststart"):
        data = out[name].read_bytes()
        out[f"{name}_cut"] = root / f"{name}_cut.mp4"
        out[f"{name}_cut"].write_bytes(data[: len(data) // 2])
    out["random"] = root / "random.mp4"
    out["random"].write_bytes(np.random.default_rng(0).bytes(20_000))
    out["empty"] = root / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["missing"] = root / "missing.mp4"
    return out


def test_probe(files: dict[str, Path]) -> None:
    assert probe(files["clip"]) == MediaInfo(str(files["clip"]), 3.0, True, True, 64, 48, 25.0)
    audio = probe(files["audio_only"])
    assert (audio.has_video, audio.has_audio, audio.width, audio.fps) == (False, True, 0, 0.0)
    assert audio.duration_s == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("fps", [1, 16])
def test_frames_sampled_by_timestamp(files: dict[str, Path], fps: int) -> None:
    frames = list(iter_frames(files["clip"], fps=fps))
    assert len(frames) == 3 * fps
    times = np.array([t for t, _ in frames])
    np.testing.assert_allclose(times, np.arange(3 * fps) / fps)
    # The frame on screen at t is the latest with timestamp <= t: index floor(t * 25).
    assert [_frame_index(f) for _, f in frames] == [int(k * FPS // fps) for k in range(3 * fps)]
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in frames)


def test_sampling_faster_than_the_source_repeats_frames(files: dict[str, Path]) -> None:
    frames = list(iter_frames(files["clip"], fps=50, max_frames=6))
    assert [_frame_index(f) for _, f in frames] == [0, 0, 1, 1, 2, 2]


def test_interval_and_max_frames(files: dict[str, Path]) -> None:
    frames = list(iter_frames(files["long"], fps=FPS, start_s=54.0, end_s=57.0))
    assert [_frame_index(f) for _, f in frames] == list(range(1350, 1425))
    assert frames[0][0] == pytest.approx(54.0) and frames[-1][0] == pytest.approx(56.96)
    capped = list(iter_frames(files["long"], fps=2, start_s=10.25, max_frames=4))
    assert [_frame_index(f) for _, f in capped] == [256, 268, 281, 293]


def test_interval_past_the_end_stops_at_the_last_frame(files: dict[str, Path]) -> None:
    frames = list(iter_frames(files["clip"], fps=FPS, start_s=2.5, end_s=10.0))
    assert [_frame_index(f) for _, f in frames] == list(range(62, 75))


def test_seek_decodes_only_the_interval(files: dict[str, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = []
    original = media_video._decoded_frames

    def counting(*args: object) -> Iterator[tuple[float, float, av.VideoFrame]]:
        for item in original(*args):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(media_video, "_decoded_frames", counting)
    assert len(list(iter_frames(files["long"], fps=1, start_s=54.0, end_s=57.0))) == 3
    # One group of pictures (1 s, key frames every 25 frames) plus the interval, not 54 s.
    assert len(decoded) <= 2 * FPS + 3 * FPS
    assert min(decoded) >= 53.0


def test_memory_is_constant_in_the_clip_length(files: dict[str, Path]) -> None:
    frame_bytes = 64 * 48 * 3
    tracemalloc.start()
    try:
        n = sum(1 for _ in iter_frames(files["long"], fps=FPS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 60 * FPS
    # Holding every frame would need ~14 MB; a constant-memory stream holds a handful.
    assert peak < 50 * frame_bytes


def test_audio_length_and_content(files: dict[str, Path]) -> None:
    audio = read_audio(files["clip"])
    assert audio.dtype == np.float32 and audio.ndim == 1
    # AAC pads the last packet: the length is right within one AAC frame (1024 source samples).
    assert abs(len(audio) - 3 * 16000) <= 1024 * 16000 / 44100 + 1
    assert np.abs(audio).max() <= 1.0
    expected = _tone(len(audio), 16000, 1)[0]
    np.testing.assert_allclose(audio[1000:40000], expected[1000:40000], atol=0.05)  # AAC is lossy


def test_audio_interval_is_sample_exact(files: dict[str, Path]) -> None:
    full = read_audio(files["stereo_wav"])
    part = read_audio(files["stereo_wav"], start_s=1.3, end_s=1.8)
    assert len(full) == 32000 and len(part) == 8000
    np.testing.assert_allclose(part[8:], full[20808:28800], atol=2e-3)
    # Stereo is averaged, not summed at -3 dB: the level is the source's.
    assert np.abs(full).max() == pytest.approx(AMPLITUDE, abs=0.01)


def test_audio_interval_in_compressed_audio(files: dict[str, Path]) -> None:
    part = read_audio(files["clip"], start_s=1.0, end_s=2.5)
    assert len(part) == 24000
    expected = _tone(40000, 16000, 1)[0][16000:]
    np.testing.assert_allclose(part[100:], expected[100:], atol=0.05)


@pytest.mark.parametrize(("name", "reason"), [
    ("missing", Reason.MISSING_FILE),
    ("empty", Reason.CORRUPT_MEDIA),
    ("random", Reason.CORRUPT_MEDIA),
    ("clip_cut", Reason.CORRUPT_MEDIA),  # index (moov) at the end: cannot open
])
def test_unreadable_files(files: dict[str, Path], name: str, reason: Reason) -> None:
    calls = [lambda p: probe(p), lambda p: list(iter_frames(p, fps=1)), lambda p: read_audio(p)]
    for call in calls:
        with pytest.raises(ClipError) as err:
            call(files[name])
        assert (err.value.stage, err.value.reason) == (Stage.DECODE, reason)
        assert str(files[name]) in err.value.message


def test_truncated_file_with_index_first_is_corrupt(files: dict[str, Path]) -> None:
    path = files["faststart_cut"]
    assert probe(path).duration_s == pytest.approx(3.0)  # the header still claims 3 s
    for call in (lambda: list(iter_frames(path, fps=16)), lambda: read_audio(path)):
        with pytest.raises(ClipError) as err:
            call()
        assert err.value.reason == Reason.CORRUPT_MEDIA


@pytest.mark.parametrize(("call", "reason"), [
    (lambda f: list(iter_frames(f["audio_only"], fps=1)), Reason.NO_VIDEO_STREAM),
    (lambda f: read_audio(f["no_audio"]), Reason.NO_AUDIO_STREAM),
    (lambda f: list(iter_frames(f["clip"], fps=1, start_s=10.0)), Reason.TOO_SHORT),
    (lambda f: list(iter_frames(f["clip"], fps=1, start_s=2.0, end_s=2.0)), Reason.TOO_SHORT),
    (lambda f: read_audio(f["clip"], start_s=2.98), Reason.TOO_SHORT),
    (lambda f: read_audio(f["clip"], start_s=1.0, end_s=1.05), Reason.TOO_SHORT),
])
def test_unusable_clips(files: dict[str, Path], call: Callable[[dict[str, Path]], object],
                        reason: Reason) -> None:
    with pytest.raises(ClipError) as err:
        call(files)
    assert (err.value.stage, err.value.reason) == (Stage.DECODE, reason)


def test_caller_mistakes_are_value_errors(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="fps"):
        next(iter_frames(files["clip"], fps=0))
    with pytest.raises(ValueError, match="max_frames"):
        next(iter_frames(files["clip"], fps=1, max_frames=0))


def test_container_that_opens_but_yields_no_frame_is_corrupt(tmp_path: Path) -> None:
    """A broken AVI opens and lists a video stream, then decodes nothing without an error."""
    from pipeline.sample_data.render import write_corrupt

    path = tmp_path / "broken.avi"
    write_corrupt(path, seed=0)
    with pytest.raises(ClipError) as err:
        list(media.iter_frames(path, fps=1.0))
    assert err.value.reason in (Reason.CORRUPT_MEDIA,)
    assert str(path) in err.value.message
