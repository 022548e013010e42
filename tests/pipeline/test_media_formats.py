"""Real-world shapes of media files: each one decodes (frames by timestamp and upright, audio
at its time) and extracts, or fails with a precise reason.

The files are written here with PyAV, 2-3 s at 64x48: old AVI rips (MPEG-4 Part 2 with and
without packed B-frames, MS-MPEG4 v2/v3, Cinepak; AC-3, MP3, MP2, PCM audio), VP9/Opus WebM,
H.265 MP4, variable frame rate, rotation metadata, odd frame sizes, a timestamp jump, audio
that ends before the video. Frame ``i`` shows its tens and units as the grey levels of its two
halves, so a test can tell which frame came back, and the right way up. A shape whose encoder
this PyAV wheel lacks is skipped, naming the encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline import media
from pipeline.failures import ClipError, Reason

FPS = 25
RATE = 48000
SIZE = (64, 48)  # width, height
SECONDS = 2.0


def _needs(*encoders: str) -> None:
    for name in encoders:
        try:
            av.Codec(name, "w")
        except (av.error.FFmpegError, ValueError):  # unknown codec: ValueError in PyAV
            pytest.skip(f"this PyAV wheel has no {name} encoder")


def _picture(i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    width, height = size
    frame = np.empty((height, width, 3), np.uint8)
    frame[:, :width // 2], frame[:, width // 2:] = 20 * (i // 10), 20 * (i % 10)
    return frame


def _index(frame: np.ndarray) -> int:
    """Which frame this is; the halves must be left and right (the picture upright)."""
    height, width = frame.shape[:2]
    rows = slice(height // 6, height - height // 6)
    tens = frame[rows, 2:width // 2 - 2].mean()
    units = frame[rows, width // 2 + 2:-2].mean()
    return 10 * int(round(float(tens) / 20)) + int(round(float(units) / 20))


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _sweep(seconds: float) -> np.ndarray:
    """A tone rising from 200 Hz by 300 Hz a second: no stretch of it repeats."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (200 * t + 150 * t**2))).astype(np.float32)


def write(path: Path, video: str, audio: str | None = None, *, fmt: str | None = None,
          seconds: float = SECONDS, size: tuple[int, int] = SIZE, pix_fmt: str = "yuv420p",
          options: dict[str, str] | None = None, times: Sequence[float] | None = None,
          audio_seconds: float | None = None, audio_shift: Callable[[float], float] | None = None,
          rotation: int | None = None, sound: Callable[[float], np.ndarray] = _tone) -> Path:
    """A clip of ``seconds`` at 25 fps (frame ``i`` at ``times[i]`` when given) with
    ``audio_seconds`` of ``sound`` (each 1024-sample chunk moved by ``audio_shift`` when
    given)."""
    with av.open(str(path), "w", format=fmt) as container:
        vstream = container.add_stream(video, rate=FPS)
        vstream.width, vstream.height, vstream.pix_fmt = *size, pix_fmt
        vstream.options = options or {}
        if times is not None:
            vstream.time_base = Fraction(1, 1000)
        if rotation is not None:
            vstream.set_display_rotation(rotation)
        astream = container.add_stream(audio, rate=RATE, layout="stereo") if audio else None
        for i in range(round(seconds * FPS)):
            # Stored turned the other way, so that the display matrix turns it upright.
            picture = np.rot90(_picture(i, size), -round((rotation or 0) / 90))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            else:
                frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode())
        if astream is not None:
            _write_audio(container, astream, sound(audio_seconds or seconds), audio_shift)
    return path


def _write_audio(container: Any, stream: Any, wave: np.ndarray,
                 shift: Callable[[float], float] | None) -> None:
    codec = stream.codec_context
    # Timestamps as given need a codec without delay (PCM), so that each packet holds the
    # samples of the chunk whose timestamp it carries.
    assert shift is None or codec.format.name == "s16"
    resampler = None if shift is not None else av.AudioResampler(
        format=codec.format.name, layout="stereo", rate=RATE, frame_size=codec.frame_size or None)
    for start in range(0, len(wave), 1024):
        chunk = wave[start:start + 1024]
        if shift is not None:
            packed = (np.repeat(chunk, 2) * 32767).astype(np.int16)[None]  # L R L R ...
            frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.stack([chunk, chunk])),
                                               format="fltp", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = round(shift(start / RATE) * RATE) if shift is not None else start
        for out in [frame] if resampler is None else resampler.resample(frame):
            container.mux(stream.encode(out))
    for out in [] if resampler is None else resampler.resample(None):
        container.mux(stream.encode(out))
    container.mux(stream.encode())


def _on_screen(path: Path, targets: Sequence[float]) -> list[int]:
    """A reference: decode every frame with plain PyAV, then for each target time the frame
    whose timestamp is the latest not after it (the first frame before the first one)."""
    with av.open(str(path)) as container:
        origin = (container.start_time or 0) / av.time_base
        decoded = [(float(f.pts * f.time_base) - origin, _index(f.to_ndarray(format="rgb24")))
                   for f in container.decode(video=0)]
    times = np.array([t for t, _ in decoded])
    at = np.searchsorted(times, np.asarray(targets) + 1e-6, side="right") - 1
    return [decoded[max(0, i)][1] for i in at]


def _pitch(audio: np.ndarray, sample_rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * sample_rate / len(audio))


# (video encoder, audio encoder, suffix, pixel format, options): files as they are found
CODECS = {
    "avi-mpeg4-ac3": ("mpeg4", "ac3", ".avi", "yuv420p", {"b": "2000000"}),
    "avi-mpeg4-packed-bframes-mp3": ("mpeg4", "libmp3lame", ".avi", "yuv420p",
                                     {"bf": "2", "b": "2000000"}),
    # FFmpeg's msmpeg4 is MS-MPEG4 v3 (DivX 3)
    "avi-msmpeg4v3-mp3": ("msmpeg4", "libmp3lame", ".avi", "yuv420p", {"b": "2000000"}),
    "avi-msmpeg4v2-mp2": ("msmpeg4v2", "mp2", ".avi", "yuv420p", {"b": "2000000"}),
    "avi-cinepak-pcm": ("cinepak", "pcm_s16le", ".avi", "rgb24", {}),
    "webm-vp9-opus": ("libvpx-vp9", "libopus", ".webm", "yuv420p",
                      {"deadline": "realtime", "cpu-used": "8"}),
    "mp4-hevc-aac": ("libx265", "aac", ".mp4", "yuv420p",
                     {"preset": "ultrafast", "x265-params": "log-level=error"}),
    "mp4-odd-size-h264-444": ("libx264", "aac", ".mp4", "yuv444p", {"preset": "ultrafast"}),
    "avi-odd-size-mpeg4-mp2": ("mpeg4", "mp2", ".avi", "yuv420p", {"b": "2000000"}),
}
ODD = (65, 49)


def _codec_file(root: Path, name: str) -> Path:
    video, audio, suffix, pix_fmt, options = CODECS[name]
    _needs(video, audio)
    size = ODD if "odd-size" in name else SIZE
    return write(root / f"{name}{suffix}", video, audio, pix_fmt=pix_fmt, options=options,
                 size=size)


# Frames 20 ms apart, every third held for 100 ms (as phones record in low light).
VFR_TIMES = np.concatenate([[0.0], np.cumsum([0.1 if i % 3 == 0 else 0.02 for i in range(49)])])
X264 = {"preset": "ultrafast"}


def _jump(root: Path, jump_s: float) -> Path:
    """Both streams' timestamps jump forward by ``jump_s`` at 1 s (a cut recording)."""
    times = [i / FPS + (jump_s if i >= FPS else 0.0) for i in range(3 * FPS)]
    return write(root / f"jump{jump_s}.mkv", "libx264", "pcm_s16le", fmt="matroska",
                 seconds=3.0, times=times, options=X264, sound=_sweep,
                 audio_shift=lambda t: t + (jump_s if t >= 1.0 else 0.0))


SHAPES: dict[str, Callable[[Path], Path]] = {
    "vfr": lambda root: write(root / "vfr.mkv", "libx264", "aac", fmt="matroska",
                              times=VFR_TIMES, options=X264),
    **{f"rotated{r}": (lambda root, r=r: write(root / f"rotated{r}.mp4", "libx264", "aac",
                                                rotation=r, options=X264))
       for r in (90, -90, 180)},
    **{f"jump{j}": (lambda root, j=j: _jump(root, j)) for j in (0.0, 0.2, 2.0)},
    "short_audio": lambda root: write(root / "short_audio.mp4", "libx264", "aac", seconds=3.0,
                                      audio_seconds=1.5, options=X264),
    # The stream declares its later start (a camera that starts the sound late).
    "late_audio": lambda root: write(root / "late_audio.mkv", "libx264", "pcm_s16le",
                                     fmt="matroska", times=[i / FPS for i in range(50)],
                                     audio_seconds=1.5, audio_shift=lambda t: t + 0.5,
                                     options=X264),
}


def shape(root: Path, name: str) -> Path:
    """The file of a shape (a codec of :data:`CODECS` or a :data:`SHAPES`), written once."""
    made = next(root.glob(f"{name}.*"), None)
    if made is not None:
        return made
    return _codec_file(root, name) if name in CODECS else SHAPES[name](root)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("formats")


@pytest.mark.parametrize("name", list(CODECS))
def test_codecs_decode_by_timestamp(root: Path, name: str) -> None:
    path = shape(root, name)
    size = ODD if "odd-size" in name else SIZE
    info = media.probe(path)
    assert (info.width, info.height, info.has_audio) == (*size, True)
    report = media.DecodeReport()
    frames = list(media.iter_frames(path, fps=FPS, report=report))
    shown = [_index(f) for _, f in frames]
    assert shown == _on_screen(path, [t for t, _ in frames])
    # Every frame, in order (an AVI muxer may start the video a frame late, or skip a
    # timestamp, after an encoder's delay: a player shows it so too).
    assert sorted(set(shown)) == list(range(round(SECONDS * FPS))) and shown == sorted(shown)
    assert len(frames) <= SECONDS * FPS + 1
    assert frames[0][1].shape == (size[1], size[0], 3)
    assert (report.errors, report.coverage) == (0, 1.0)
    sound = media.DecodeReport()
    audio = media.read_audio(path, report=sound)
    assert abs(len(audio) / 16000 - SECONDS) < 0.1 and (sound.errors, sound.coverage) == (0, 1.0)
    assert _pitch(audio) == pytest.approx(440, abs=5)


def test_variable_frame_rate_gives_the_frame_on_screen(root: Path) -> None:
    report = media.DecodeReport()
    frames = list(media.iter_frames(shape(root, "vfr"), fps=FPS, report=report))
    targets = np.array([t for t, _ in frames])
    on_screen = np.searchsorted(VFR_TIMES, targets + 1e-6, side="right") - 1
    assert [_index(f) for _, f in frames] == on_screen.tolist()
    assert targets[-1] > 2.3 and report.errors == 0  # held frames are not lost time
    assert report.coverage == 1.0


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(root: Path, rotation: int) -> None:
    """A display matrix (a phone held upright) turns the frames as a player shows them;
    probe reports the coded size."""
    path = shape(root, f"rotated{rotation}")
    coded = media.probe(path)
    frames = list(media.iter_frames(path, fps=FPS))
    assert [_index(f) for _, f in frames] == list(range(round(SECONDS * FPS)))
    shown = frames[0][1].shape[1::-1]
    assert shown == (SIZE if rotation == 180 else SIZE[::-1])
    assert (coded.width, coded.height) == shown[::-1] if rotation != 180 else shown


def test_a_long_timestamp_jump_holds_the_picture_and_fails_the_audio(root: Path) -> None:
    path = shape(root, "jump2.0")
    report = media.DecodeReport()
    frames = list(media.iter_frames(path, fps=FPS, report=report))
    shown = [_index(f) for _, f in frames]
    assert shown[FPS - 1:3 * FPS] == [FPS - 1] * (2 * FPS + 1)  # held across the jump
    assert shown[-1] == 3 * FPS - 1 and report.coverage == 1.0
    with pytest.raises(ClipError) as err:
        media.read_audio(path)
    assert err.value.reason == Reason.CORRUPT_MEDIA
    assert "no undecodable packet (the timestamps jump" in err.value.message
    assert "longest gap 2.00 s at 1.00 s (allows 1 s)" in err.value.message


def test_a_short_timestamp_jump_is_filled_with_silence(root: Path) -> None:
    path = shape(root, "jump0.2")
    report = media.DecodeReport()
    audio = media.read_audio(path, report=report)
    assert report.longest_gap_s == pytest.approx(0.2, abs=0.01) and report.errors == 0
    assert report.coverage == pytest.approx(1 - 0.2 / 3.2, abs=0.01)
    assert len(audio) == pytest.approx(3.2 * 16000, abs=400)
    assert np.abs(audio[16200:19000]).max() < 1e-3  # 1.0-1.2 s: silence
    # After the jump the sound goes on where it stopped, 0.2 s later: to the millisecond
    # (Matroska's timestamp unit), so within 16 samples.
    steady = media.read_audio(shape(root, "jump0.0"))
    later = audio[round(1.3 * 16000):round(2.5 * 16000)]
    match = [float(np.dot(later, steady[round(1.3 * 16000) - lag:][:len(later)]))
             for lag in range(2800, 3600)]
    assert abs(2800 + int(np.argmax(match)) - 3200) <= 16


def test_audio_shorter_than_the_video_gives_its_own_length(root: Path) -> None:
    path = shape(root, "short_audio")
    for end in (None, 3.0):
        report = media.DecodeReport()
        audio = media.read_audio(path, end_s=end, report=report)
        assert abs(len(audio) / 16000 - 1.5) < 0.05 and report.coverage == 1.0
    assert len(list(media.iter_frames(path, fps=1))) == 3


def test_audio_that_starts_late_is_preceded_by_silence(root: Path) -> None:
    """The samples stay at their time, and the silence before the stream's declared start
    is not lost time."""
    path = shape(root, "late_audio")
    report = media.DecodeReport()
    audio = media.read_audio(path, report=report)
    assert len(audio) == 2 * 16000 and report.coverage == 1.0
    assert np.abs(audio[:7900]).max() == 0.0 and np.abs(audio[8100:]).max() > 0.25


class Summary:
    """A stand-in encoder: the input's mean (dim 1)."""

    dim = 1

    def encode_batch(self, xs: list[np.ndarray]) -> np.ndarray:
        return np.array([[float(np.mean(x))] for x in xs], np.float32)


def test_every_shape_extracts_or_fails_with_a_precise_reason(root: Path) -> None:
    from pipeline.extract import extract_clips
    from pipeline.extract_config import load_extract_config
    from pipeline.models import Models
    from pipeline.manifest import FacePolicy

    paths = []
    for name in [*CODECS, *SHAPES]:
        try:
            paths.append(shape(root, name))
        except pytest.skip.Exception:  # an encoder this wheel lacks (named by its own test)
            continue
    rows = [{"sample_id": p.name, "split": "train", "media_path": str(p), "start_s": None,
             "end_s": None, "transcript": "words", "label": 0} for p in paths]
    keys = ["frames_2d", "frames_3d", "audio"]
    cfg = load_extract_config(modalities=keys, weights={k: "random" for k in keys})
    kept, _, failures = extract_clips(rows, cfg, Models({k: Summary() for k in keys}, None),
                                      FacePolicy(crop=False))
    assert [(f.sample_id, f.reason) for f in failures] == [("jump2.0.mkv",
                                                            Reason.CORRUPT_MEDIA)]
    assert len(kept) == len(rows) - 1
    assert all(r["decode_errors"] == 0 for r in kept)
    assert [r["sample_id"] for r in kept if r["coverage"] < 1] == ["jump0.2.mkv"]
