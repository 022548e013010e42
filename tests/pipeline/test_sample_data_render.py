"""The rendering core of the sample dataset: emotion signals, speech, and clips read back with PyAV.

Clips are decoded the way the pipeline reads them, and each class signal is measured in the
decoded output: the tint in the mean colour, the zoom and pan in MTCNN's face boxes, the voice
in the fundamental frequency and the speech length.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest
import torch

from pipeline.sample_data import render, speech
from pipeline.sample_data.render import ClipRequest, render_clip, write_corrupt
from pipeline.sample_data.signals import EMOTIONS, SIGNALS, canonical, signal_for, transcript_for
from pipeline.sample_data.speech import speak, synthetic_voice

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

WORDS = "Table window today report."


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mtcnn() -> MTCNN:
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device="cpu")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render")


def _render(out: Path, name: str, emotions: tuple[str, ...] = ("joy",), **kw: object) -> Path:
    args: dict = {"transcript": WORDS, "duration_s": 2.0, "size": (320, 240), "seed": 3} | kw
    path = out / name
    render_clip(ClipRequest(path, emotions, **args))
    return path


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples and rate of the first audio stream."""
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].sample_rate
        planes = [f.to_ndarray() for f in container.decode(audio=0)]
    return np.concatenate(planes, axis=1).mean(axis=0), rate


def _f0(x: np.ndarray, rate: int) -> float:
    """Median fundamental frequency (Hz) of the voiced 40-ms windows, by autocorrelation."""
    n = int(0.04 * rate)
    lo, hi = rate // 400, rate // 60
    estimates = []
    for start in range(0, x.size - n, n // 2):
        window = x[start : start + n] * np.hanning(n)
        if np.sqrt(np.mean(window**2)) < 0.02:
            continue
        ac = np.correlate(window, window, "full")[n - 1 :]
        estimates.append(rate / (lo + np.argmax(ac[lo:hi])))
    return float(np.median(estimates))


def _voiced_s(x: np.ndarray, rate: int) -> float:
    """Seconds from the first to the last sample louder than -40 dB."""
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return (loud[-1] - loud[0]) / rate


def _faces(mtcnn: MTCNN, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MTCNN boxes ``[n, 4]`` and probabilities ``[n]`` (empty when it finds nothing)."""
    boxes, probs = mtcnn.detect(frame)
    if boxes is None:
        return np.zeros((0, 4)), np.zeros(0)
    return np.asarray(boxes, dtype=float), np.asarray(probs, dtype=float)


def _best_face(mtcnn: MTCNN, frame: np.ndarray) -> tuple[np.ndarray, float]:
    boxes, probs = _faces(mtcnn, frame)
    assert probs.size, "MTCNN found no face"
    return boxes[probs.argmax()], float(probs.max())


# ---- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("happy", "joy"), ("Happy", "joy"), ("JOY", "joy"), ("sad", "sadness"), ("Sad", "sadness"),
     ("Anger", "anger"), ("angry", "anger"), ("Neutral", "neutral"), ("Surprise", "surprise"),
     ("Fear", "fear"), ("Disgust", "disgust"), (" sadness ", "sadness")],
)
def test_canonical_maps_dataset_labels(name: str, expected: str) -> None:
    assert canonical(name) == expected


def test_canonical_rejects_unknown_names_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'contempt'.*joy.*happy"):
        canonical("contempt")


def test_every_class_has_its_own_signal_in_every_modality() -> None:
    assert tuple(SIGNALS) == EMOTIONS
    tints = np.array([s.tint for s in SIGNALS.values()])
    gaps = np.linalg.norm(tints[:, None] - tints[None], axis=-1)[np.triu_indices(len(tints), 1)]
    assert gaps.min() > 0.3
    assert len({s.pitch for s in SIGNALS.values()}) == len(EMOTIONS)
    assert len({s.speed for s in SIGNALS.values()}) == len(EMOTIONS)
    assert len({(s.scale, s.motion) for s in SIGNALS.values()}) == len(EMOTIONS)
    vocabularies = [set(s.words) for s in SIGNALS.values()]
    assert sum(map(len, vocabularies)) == len(set().union(*vocabularies)), "shared words"


def test_signal_for_blends_several_emotions_and_defaults_to_neutral() -> None:
    assert signal_for(()) == SIGNALS["neutral"]
    assert signal_for(["Happy"]) == SIGNALS["joy"]
    mixed = signal_for(("joy", "sad"))
    joy, sad = SIGNALS["joy"], SIGNALS["sadness"]
    assert mixed.tint == pytest.approx([(a + b) / 2 for a, b in zip(joy.tint, sad.tint)])
    assert mixed.scale == pytest.approx((joy.scale * sad.scale) ** 0.5)
    assert mixed.pitch == round((joy.pitch + sad.pitch) / 2)
    assert set(mixed.words) == set(joy.words) | set(sad.words)


def test_transcript_speaks_the_classes_words_reproducibly() -> None:
    text = transcript_for(["happy"], random.Random(1), n_words=5)
    words = text.rstrip(".").lower().split()
    assert len(words) == 5 and text[0].isupper() and text.endswith(".")
    assert set(words) <= set(SIGNALS["joy"].words)
    assert transcript_for(["happy"], random.Random(1), n_words=5) == text
    mixed = set(transcript_for(["anger", "fear"], random.Random(2)).rstrip(".").lower().split())
    assert mixed & set(SIGNALS["anger"].words) and mixed & set(SIGNALS["fear"].words)
    neutral = transcript_for([], random.Random(3)).rstrip(".").lower().split()
    assert set(neutral) <= set(SIGNALS["neutral"].words)
    with pytest.raises(ValueError, match="n_words"):
        transcript_for(["joy"], random.Random(0), n_words=0)


# ---- speech -------------------------------------------------------------------------------


def test_speak_returns_reproducible_speech_of_plausible_length() -> None:
    voice = speak("Happy wonderful great love smile glad.", pitch=50, speed=160)
    assert voice.dtype == np.float32 and voice.ndim == 1
    assert 1.0 < voice.size / 16000 < 5.0
    assert np.abs(voice).max() <= 1.0 and np.sqrt(np.mean(voice**2)) > 0.02
    again = speak("Happy wonderful great love smile glad.", pitch=50, speed=160)
    np.testing.assert_array_equal(voice, again)
    high_rate = speak("Happy wonderful great love smile glad.", pitch=50, speed=160,
                      sample_rate=48000)
    assert high_rate.size == pytest.approx(3 * voice.size, rel=0.01)


def test_speak_follows_pitch_and_speed() -> None:
    low, high = speak(WORDS, pitch=0, speed=160), speak(WORDS, pitch=90, speed=160)
    assert _f0(high, 16000) > _f0(low, 16000) + 40
    slow, fast = speak(WORDS, pitch=45, speed=100), speak(WORDS, pitch=45, speed=220)
    assert _voiced_s(slow, 16000) > 1.5 * _voiced_s(fast, 16000)


def test_speak_blank_text_and_bad_options() -> None:
    assert speak("  ", pitch=50, speed=160).size == 0
    with pytest.raises(ValueError, match="pitch"):
        speak("hello", pitch=120, speed=160)
    with pytest.raises(ValueError, match="speed"):
        speak("hello", pitch=50, speed=10)


def test_speak_without_espeak_warns_once_and_uses_a_synthetic_voice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    speech._warn_missing.cache_clear()
    with caplog.at_level(logging.WARNING, logger=speech.__name__):
        low = speak(WORDS, pitch=0, speed=160)
        high = speak(WORDS, pitch=90, speed=160)
    speech._warn_missing.cache_clear()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "espeak-ng" in caplog.records[0].getMessage()
    np.testing.assert_array_equal(low, synthetic_voice(WORDS, pitch=0, speed=160))
    assert low.size == pytest.approx(4 * 16000 * 60 / 160, rel=0.01)  # one tone per word
    assert _f0(high, 16000) > _f0(low, 16000) + 100


def test_speak_reports_an_espeak_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: "/bin/false")
    with pytest.raises(RuntimeError, match="espeak-ng failed"):
        speak("hello", pitch=50, speed=160)


# ---- clip requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"path": Path("a.mkv")}, "suffix"), ({"size": (321, 240)}, "even"),
     ({"emotions": ("contempt",)}, "contempt"), ({"duration_s": 0.0}, "one frame")],
)
def test_clip_request_rejects_bad_values(kw: dict, message: str) -> None:
    args: dict = {"path": Path("a.mp4"), "emotions": ("joy",), "transcript": "hi",
                  "duration_s": 2.0, "size": (320, 240)} | kw
    with pytest.raises(ValueError, match=message):
        ClipRequest(**args)


def test_clip_request_normalises_sequences() -> None:
    req = ClipRequest("a.mp4", ["Happy"], "hi", 2.0, [320, 240])  # type: ignore[arg-type]
    assert req == ClipRequest(Path("a.mp4"), ("Happy",), "hi", 2.0, (320, 240))


# ---- rendered clips -----------------------------------------------------------------------


def test_mp4_is_h264_at_25_fps_with_aac_audio(out: Path) -> None:
    path = _render(out, "joy.mp4", duration_s=2.4, size=(480, 360))
    with av.open(str(path)) as container:
        assert "mp4" in container.format.name
        assert container.duration / 1e6 == pytest.approx(2.4, abs=0.05)
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.average_rate == 25
        assert (video.codec_context.width, video.codec_context.height) == (480, 360)
        assert audio.codec_context.name == "aac" and audio.sample_rate == render.AUDIO_RATE
    frames = _frames(path)
    assert len(frames) == 60 and frames[0].shape == (360, 480, 3)
    sound, rate = _audio(path)
    assert sound.size / rate == pytest.approx(2.4, abs=0.05)
    assert np.sqrt(np.mean(sound**2)) > 0.02


def test_avi_is_mpeg4_with_audio(out: Path) -> None:
    path = _render(out, "joy.avi")
    with av.open(str(path)) as container:
        assert container.format.name == "avi"
        video = container.streams.video[0]
        assert video.codec_context.name == "mpeg4" and video.average_rate == 25
        assert len(container.streams.audio) == 1
    assert len(_frames(path)) == 50
    sound, _ = _audio(path)
    assert np.sqrt(np.mean(sound**2)) > 0.02


def test_no_audio_request_writes_no_audio_stream(out: Path) -> None:
    path = _render(out, "mute.mp4", audio=False)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0 and len(container.streams.video) == 1


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_same_request_gives_the_same_bytes(out: Path, suffix: str) -> None:
    first = _render(out, f"det-a{suffix}", ("anger", "fear"), seed=11)
    second = _render(out, f"det-b{suffix}", ("anger", "fear"), seed=11)
    other_seed = _render(out, f"det-c{suffix}", ("anger", "fear"), seed=12)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other_seed.read_bytes()


def test_tint_shows_in_the_mean_colour_of_each_class(out: Path) -> None:
    # same seed: same photos and placement, so colour differences come from the class
    means = {
        e: np.mean(_frames(_render(out, f"tint-{e}.mp4", (e,), duration_s=0.4,
                                   size=(160, 120), audio=False)), axis=(0, 1, 2))
        for e in EMOTIONS
    }
    shifts = {e: means[e] / means["neutral"] - 1 for e in EMOTIONS if e != "neutral"}
    for emotion, shift in shifts.items():
        similarity = {
            other: np.dot(shift, np.subtract(SIGNALS[other].tint, 1))
            / np.linalg.norm(shift) / np.linalg.norm(np.subtract(SIGNALS[other].tint, 1))
            for other in shifts
        }
        assert max(similarity, key=similarity.get) == emotion, similarity


def test_voice_pitch_and_speed_differ_between_classes(out: Path) -> None:
    joy, rate = _audio(_render(out, "voice-joy.mp4", ("joy",), duration_s=3.0))
    sad, _ = _audio(_render(out, "voice-sad.mp4", ("sadness",), duration_s=3.0))
    assert _f0(joy, rate) > _f0(sad, rate) + 25  # espeak-ng -p 75 vs 15
    assert _voiced_s(sad, rate) > 1.3 * _voiced_s(joy, rate)  # 115 vs 185 words per minute


def test_corrupt_files_look_like_media_but_do_not_decode(out: Path) -> None:
    mp4, avi = out / "bad.mp4", out / "bad.avi"
    write_corrupt(mp4, seed=1)
    write_corrupt(avi, seed=1)
    assert mp4.read_bytes()[4:8] == b"ftyp" and avi.read_bytes()[:4] == b"RIFF"
    with pytest.raises(av.InvalidDataError):
        av.open(str(mp4))
    assert _frames(avi) == []


# ---- faces (MTCNN on decoded frames) --------------------------------------------------------


@pytest.mark.parametrize("portrait", range(len(render._PORTRAITS)))
def test_each_portrait_is_found_by_mtcnn_at_the_smallest_size(
    out: Path, mtcnn: MTCNN, portrait: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "_PORTRAITS", (render._PORTRAITS[portrait],))
    # sadness zooms out: the smallest face the sample data shows, in its smallest frames
    frames = _frames(_render(out, f"face-{portrait}.mp4", ("sadness",), audio=False))
    for frame in (frames[0], frames[-1]):
        box, prob = _best_face(mtcnn, frame)
        assert prob > 0.95
        assert box[3] - box[1] >= 55
        # off-centre: the face centre is away from the frame centre
        assert abs((box[0] + box[2]) / 2 - 160) > 20 or abs((box[1] + box[3]) / 2 - 120) > 20


@pytest.mark.parametrize("photo", range(len(render._OBJECTS)))
def test_no_face_clips_show_no_face(
    out: Path, mtcnn: MTCNN, photo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "_OBJECTS", (render._OBJECTS[photo],))
    frames = _frames(_render(out, f"noface-{photo}.mp4", ("anger",), face=False, audio=False))
    for frame in (frames[0], frames[len(frames) // 2], frames[-1]):
        _, probs = _faces(mtcnn, frame)
        assert probs.size == 0 or probs.max() < 0.9


def test_face_size_and_pan_follow_the_class(out: Path, mtcnn: MTCNN) -> None:
    boxes = {}
    for emotion in ("anger", "sadness", "surprise"):
        frames = _frames(_render(out, f"move-{emotion}.mp4", (emotion,), audio=False, seed=5))
        boxes[emotion] = [_best_face(mtcnn, frames[i])[0] for i in (0, len(frames) - 1)]
    height = {e: (b[1][3] - b[1][1] + b[0][3] - b[0][1]) / 2 for e, b in boxes.items()}
    assert height["anger"] > 1.2 * height["sadness"]  # scale 1.2 vs 0.85
    first, last = boxes["anger"]
    assert last[3] - last[1] > first[3] - first[1]  # zooms in over the clip
    shift = {e: (b[1][:2] + b[1][2:]) / 2 - (b[0][:2] + b[0][2:]) / 2 for e, b in boxes.items()}
    assert shift["anger"][0] > 15  # pans right
    assert shift["surprise"][1] < -10  # pans up
    assert shift["sadness"][1] > 5  # sinks
