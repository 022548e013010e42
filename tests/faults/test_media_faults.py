"""Damaged media decoded as a player plays it: an undecodable packet is skipped and counted,
the clip is kept while what decoded covers it (``DecodeSpec``: 90 % of each stream, no gap
above 1 s), and fails as ``corrupt_media`` with the numbers past that.

The files are written here with PyAV as an old movie rip is made (AVI, MPEG-4 Part 2 video,
AC-3 audio at 48 kHz: one packet is 1536 samples, 32 ms) and then damaged in place: the payload
bytes of chosen packets are overwritten where the container stores them, so the decoder
rejects those packets (FFmpeg's AC-3 parser merges a run of them into one) and the file still
opens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline import media
from pipeline.extract_config import DecodeSpec
from pipeline.failures import ClipError, Reason, Stage

SECONDS = 4.0
FPS = 25
RATE = 48000
SIZE = (64, 48)  # width, height
AC3_PACKET_S = 1536 / RATE


def _grey(i: int) -> np.ndarray:
    """Frame ``i`` shows its tens and units as the grey levels of its halves (steps of 20, so
    the lossy encoder keeps them apart): a test can tell which frame it got."""
    frame = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
    frame[:, :SIZE[0] // 2], frame[:, SIZE[0] // 2:] = 20 * (i // 10), 20 * (i % 10)
    return frame


def _index(frame: np.ndarray) -> int:
    half = SIZE[0] // 2
    tens, units = frame[8:-8, 4:half - 4].mean(), frame[8:-8, half + 4:-4].mean()
    return 10 * int(round(float(tens) / 20)) + int(round(float(units) / 20))


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def write_rip(path: Path, seconds: float = SECONDS) -> Path:
    """An AVI with MPEG-4 Part 2 video (key frame every 12) and AC-3 stereo audio."""
    wave = _tone(seconds)
    per_frame = RATE // FPS
    with av.open(str(path), "w", format="avi") as container:
        video = container.add_stream("mpeg4", rate=FPS)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.options = {"g": "12", "b": "2000000"}
        audio = container.add_stream("ac3", rate=RATE, layout="stereo")
        for i in range(round(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(_grey(i), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            chunk = wave[i * per_frame:(i + 1) * per_frame]
            sound = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.stack([chunk, chunk])),
                                               format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = RATE, i * per_frame
            container.mux(audio.encode(sound))
        container.mux(video.encode())
        container.mux(audio.encode())
    return path


def damage(source: Path, target: Path, kind: str, packets: Sequence[int]) -> list[float]:
    """Copy ``source`` to ``target`` with the payload of the given packets (by index among the
    ``kind`` stream's non-empty packets) overwritten; returns their times in seconds."""
    with av.open(str(source)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        found = [p for p in container.demux(stream) if p.size]
        chosen = [(bytes(found[i]), found[i].pos, float(found[i].pts * found[i].time_base))
                  for i in packets]
    data = bytearray(source.read_bytes())
    for payload, pos, _ in chosen:
        at = data.find(payload, pos)  # the payload follows its chunk header at pos
        assert 0 <= at - pos < 64, (pos, at)
        data[at:at + len(payload)] = b"\xff" * len(payload)
    target.write_bytes(bytes(data))
    return [t for _, _, t in chosen]


@pytest.fixture(scope="module")
def rips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("rips")
    clean = write_rip(root / "clean.avi")
    out: dict[str, Any] = {"clean": clean, "root": root}
    out["audio_t"] = damage(clean, root / "one_audio.avi", "audio", [60])
    out["video_t"] = damage(clean, root / "one_video.avi", "video", [30])
    damage(clean, root / "one_each.avi", "audio", [60])
    damage(root / "one_each.avi", root / "one_each.avi", "video", [30])
    damage(clean, root / "long_gap.avi", "audio", range(40, 80))  # 1.28 s lost
    damage(clean, root / "thin.avi", "audio", range(5, 120, 4))    # every 4th: ~25 % lost
    for name in ("one_audio", "one_video", "one_each", "long_gap", "thin"):
        out[name] = root / f"{name}.avi"
    return out


def test_the_old_behaviour_rejected_the_damaged_file(rips: dict[str, Any]) -> None:
    """FFmpeg itself refuses the packet: without skipping it, the whole clip is lost."""
    with av.open(str(rips["one_audio"])) as container, pytest.raises(av.error.FFmpegError):
        for _ in container.decode(audio=0):
            pass


def test_one_undecodable_audio_packet_is_skipped_and_counted(rips: dict[str, Any]) -> None:
    clean = media.read_audio(rips["clean"])
    report = media.DecodeReport()
    audio = media.read_audio(rips["one_audio"], report=report)
    assert report.stream == "audio" and report.errors == 1
    assert "packet at" in report.first_error
    # What the packet held (and the decoder's overlap with it) is lost, nothing more.
    assert AC3_PACKET_S <= report.lost_s <= 3 * AC3_PACKET_S
    assert 0.97 < report.coverage < 1.0
    assert report.gap_at_s == pytest.approx(rips["audio_t"][0], abs=2 * AC3_PACKET_S)
    # The gap is filled with silence, so every later sample stays at its time.
    assert len(audio) == len(clean)
    gap = slice(round(report.gap_at_s * 16000) + 16, round((report.gap_at_s + report.lost_s)
                                                           * 16000) - 16)
    assert np.abs(audio[gap]).max() < 1e-3
    after = round((report.gap_at_s + report.lost_s + 2 * AC3_PACKET_S) * 16000)
    np.testing.assert_allclose(audio[after:], clean[after:], atol=1e-3)


def test_one_undecodable_video_packet_is_skipped_and_counted(rips: dict[str, Any]) -> None:
    report = media.DecodeReport()
    frames = list(media.iter_frames(rips["one_video"], fps=FPS, report=report))
    assert report.stream == "video" and report.errors == 1 and report.coverage < 1.0
    assert len(frames) == SECONDS * FPS  # every instant still gets the frame on screen
    shown = [_index(f) for _, f in frames]
    lost = round(rips["video_t"][0] * FPS)
    assert shown[lost] == lost - 1  # the frame before stays on screen
    assert shown[:lost] == list(range(lost))
    assert shown[-1] == SECONDS * FPS - 1


@pytest.mark.parametrize(("name", "stream", "numbers"), [
    ("long_gap", "audio", r"longest gap 1\.\d\d s at 1\.\d\d s \(allows 1 s\)"),
    ("thin", "audio", r"[5-8]\d\.\d% of \[0\.00, 4\.00\) s decoded \(needs 90%\), "
                      r"longest gap 0\.\d\d s"),
])
def test_badly_damaged_streams_fail_with_the_numbers(rips: dict[str, Any], name: str,
                                                     stream: str, numbers: str) -> None:
    report = media.DecodeReport()
    with pytest.raises(ClipError) as err:
        media.read_audio(rips[name], report=report)
    assert (err.value.stage, err.value.reason) == (Stage.DECODE, Reason.CORRUPT_MEDIA)
    message = err.value.message
    assert str(rips[name]) in message and f"{stream} too damaged to use" in message
    assert re.search(r"\d+ undecodable packet\(s\)", message), message
    assert re.search(numbers, message), message
    assert report.errors >= 1 and report.coverage < 0.9  # filled in for the failure too


@pytest.mark.parametrize("rule", [DecodeSpec(max_gap_s=0.01), DecodeSpec(min_coverage=1.0)])
def test_the_rule_is_a_setting(rips: dict[str, Any], rule: DecodeSpec) -> None:
    for call in (lambda p: media.read_audio(p, rule=rule),
                 lambda p: list(media.iter_frames(p, fps=1, rule=rule))):
        call(rips["clean"])  # an undamaged file passes any rule
        with pytest.raises(ClipError) as err:
            call(rips["one_each"])
        assert err.value.reason == Reason.CORRUPT_MEDIA


def test_an_interval_away_from_the_damage_is_untouched(rips: dict[str, Any]) -> None:
    report = media.DecodeReport()
    media.read_audio(rips["long_gap"], start_s=3.0, end_s=4.0, report=report)
    assert report.lost_s == 0.0 and report.coverage == 1.0


# ------------------------------------------------------------------------ through extraction

class MeanColour:
    """A stand-in frame encoder: the mean RGB of the units (dim 3)."""

    dim = 3

    def encode_batch(self, xs: list[np.ndarray]) -> np.ndarray:
        return np.stack([x.reshape(-1, 3).mean(axis=0) for x in xs]).astype(np.float32)


class Loudness:
    dim = 1

    def encode_batch(self, xs: list[np.ndarray]) -> np.ndarray:
        return np.array([[float(np.abs(x).mean())] for x in xs], np.float32)


def _extract(rows: list[dict[str, Any]], **overrides: Any
             ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], list[Any]]:
    from pipeline.extract import extract_clips
    from pipeline.extract_config import load_extract_config
    from pipeline.models import Models
    from pipeline.manifest import FacePolicy

    cfg = load_extract_config(modalities=["frames_2d", "audio"],
                              weights={"frames_2d": "random", "audio": "random"}, **overrides)
    models = Models({"frames_2d": MeanColour(), "audio": Loudness()}, None)
    return extract_clips(rows, cfg, models, FacePolicy(crop=False))


def _row(name: str, path: Path) -> dict[str, Any]:
    return {"sample_id": name, "split": "train", "media_path": str(path), "start_s": None,
            "end_s": None, "transcript": "words", "label": 0}


def test_extraction_keeps_a_damaged_clip_and_records_its_damage(
        rips: dict[str, Any], fault_log: Callable[..., None]) -> None:
    from pipeline.run import _index_table

    names = ["clean", "one_each", "long_gap", "thin"]
    kept, feats, failures = _extract([_row(n, rips[n]) for n in names])
    assert [r["sample_id"] for r in kept] == ["clean", "one_each"]
    clean, damaged = kept
    assert (clean["decode_errors"], clean["coverage"]) == (0, 1.0)
    assert damaged["decode_errors"] == 2 and 0.97 < damaged["coverage"] < 1.0
    np.testing.assert_allclose(feats["frames_2d"][1], feats["frames_2d"][0], rtol=0.05)
    assert {(f.sample_id, f.stage, f.reason) for f in failures} == {
        ("long_gap", Stage.DECODE, Reason.CORRUPT_MEDIA),
        ("thin", Stage.DECODE, Reason.CORRUPT_MEDIA)}
    assert all("too damaged to use" in f.message for f in failures)
    index = _index_table(kept, multilabel=False)
    assert index.column("decode_errors").to_pylist() == [0, 2]
    assert index.column("coverage").to_pylist() == [1.0, damaged["coverage"]]
    seen = [r["sample_id"] for r in kept] + [f.sample_id for f in failures]
    lost, duplicates = len(set(names) - set(seen)), len(seen) - len(set(seen))
    assert (lost, duplicates) == (0, 0)
    fault_log("undecodable packets (1 video + 1 audio; 40 audio; every 4th audio)",
              lost=lost, duplicates=duplicates,
              outcome=f"kept with decode_errors 2, coverage {damaged['coverage']:.3f}; "
                      "2 corrupt_media with the numbers")


def test_the_rule_is_part_of_the_store_identity() -> None:
    from pipeline.extract_config import load_extract_config
    from pipeline.manifest import load_manifest
    from pipeline.identity import feature_identity
    from pipeline.store import store_id_of

    manifest = load_manifest("meld")
    weights = {k: "random" for k in ("frames_2d", "frames_3d", "audio", "text")}
    ids = {store_id_of(feature_identity(load_extract_config(weights=weights, **o), manifest))
           for o in ({}, {"decode": {"min_coverage": 0.5}}, {"decode": {"max_gap_s": 2.0}})}
    assert len(ids) == 3
    ident = feature_identity(load_extract_config(weights=weights), manifest)
    assert ident.extraction is not None and ident.extraction.decode == DecodeSpec()
