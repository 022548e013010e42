"""The CMU-MOSEI sample writer: its plan, its files, and a round trip through the adapter."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import av
import pytest

from pipeline.datasets import mosei as adapter
from pipeline.manifest import load_manifest
from pipeline.sample_data import generate
from pipeline.sample_data import mosei

FPS = mosei.FPS


@pytest.fixture(scope="module")
def manifest():
    return load_manifest("mosei")


def labelled(videos: list[mosei.Video]) -> list[tuple[mosei.Video, mosei.Segment]]:
    return [(v, s) for v in videos for s in v.segments if s.labelled]


@pytest.mark.parametrize(("clips", "expected"), [
    (1, {"train": 1, "val": 0, "test": 0}),
    (3, {"train": 1, "val": 1, "test": 1}),
    (48, {"train": 28, "val": 10, "test": 10}),
])
def test_split_counts(clips: int, expected: dict[str, int]) -> None:
    assert mosei.split_counts(clips) == expected


def test_plan_uses_real_fold_ids_and_balances_classes(manifest) -> None:
    videos = mosei.plan_videos(manifest, mosei.split_counts(60), random.Random(3))
    fold_of = adapter.fold_lookup(manifest)
    assert all(fold_of[v.video_id] == v.split for v in videos)
    assert len({v.video_id for v in videos}) == len(videos)
    for video in videos:
        assert 2 <= sum(s.labelled for s in video.segments) <= 4
        assert video.size in mosei.SIZES
        assert all(s.labelled for s in video.segments[1:])  # only an intro is unlabelled
        assert all(not s.emotions and s.frames < 2 * FPS for s in video.segments if not s.labelled)
    assert any(not v.segments[0].labelled for v in videos)
    segments = labelled(videos)
    assert len(segments) == 60
    train = [s for v, s in segments if v.split == "train"]
    firsts = [s.emotions[0][0] if s.emotions else None for s in train]
    cycle = [*manifest.labels, None]
    assert firsts == [cycle[i % len(cycle)] for i in range(len(train))]
    for _, segment in segments:
        assert 2 * FPS <= segment.frames <= 4 * FPS
        assert len(segment.emotions) <= 2
        for _, intensity in segment.emotions:
            assert 1 / 3 - 1e-9 <= intensity <= 3.0 and round(intensity * 3, 6).is_integer()
    assert [s.face for _, s in segments].count(False) == 60 // mosei.NO_FACE_EVERY
    assert any(len(s.emotions) == 2 for _, s in segments)


def test_plan_is_a_function_of_the_seed(manifest) -> None:
    plan = [mosei.plan_videos(manifest, mosei.split_counts(20), random.Random(seed))
            for seed in (7, 7, 8)]
    assert plan[0] == plan[1] and plan[0] != plan[2]


def test_labels_and_transcripts_files_match_the_plan(tmp_path: Path, manifest) -> None:
    videos = mosei.plan_videos(manifest, mosei.split_counts(9), random.Random(1))
    mosei.write_labels(tmp_path / "labels.csd", videos, random.Random(0))
    by_video = adapter.read_labels(tmp_path / "labels.csd")
    assert list(by_video) == sorted(v.video_id for v in videos)
    for video in videos:
        rows = [(s, span) for s, span in zip(video.segments, video.spans()) if s.labelled]
        intervals = by_video[video.video_id]
        assert [(iv.start, iv.end) for iv in intervals] == [span for _, span in rows]
        for iv, (segment, _) in zip(intervals, rows):
            expected = dict(segment.emotions)
            assert iv.values[1:] == pytest.approx(
                [expected.get(name, 0.0) for name in adapter.LABEL_COLUMNS[1:]], abs=1e-6)
        path = tmp_path / f"{video.video_id}.txt"
        mosei.write_transcript(path, video)
        segments = adapter.read_transcript(path, video.video_id)
        assert [s.text for s in segments] == [s.transcript for s in video.segments]
        assert [s.index for s in segments] == list(range(len(video.segments)))
        # the file holds rounded decimals ("2.04") of the frame-grid times
        assert [t for s in segments for t in (s.start, s.end)] == pytest.approx(
            [t for span in video.spans() for t in span], abs=1e-9)


def test_soundtrack_has_the_segment_length(manifest) -> None:
    track = mosei.soundtrack(("happy",), "Happy glad.", 2 * FPS, seed=4)
    assert track.shape == (2 * mosei.render.AUDIO_RATE,) and track.dtype.name == "float32"
    assert abs(track).max() > 0.05  # there is speech in it
    assert (track == mosei.soundtrack(("happy",), "Happy glad.", 2 * FPS, seed=4)).all()


@pytest.mark.slow
def test_sample_dataset_reads_back(tmp_path: Path, caplog) -> None:
    root = generate("mosei", tmp_path / "mosei", clips=5, seed=2)
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.mosei"):
        table = adapter.read(root, load_manifest("mosei"))
    samples = table.samples.to_pylist()
    assert [r["split"] for r in samples] == ["train"] * 3 + ["val", "test"]
    assert all(r["transcript"] for r in samples)
    # the class cycle starts over in each split: happy, sad, anger in train, happy in val/test
    assert [r["labels"].index(1.0) for r in samples] == [0, 1, 2, 0, 0]
    fails = [(f["sample_id"], f["reason"]) for f in table.failures.to_pylist()]
    assert fails == [(f"9cxlcpbmrH0_{k}", "missing_file") for k in range(6)] + [
        ("9cxlcpbmrH0_6", "known_bad")]
    assert "-NFrJFQijFE" in caplog.text
    for path in {r["media_path"] for r in samples}:
        end = max(r["end_s"] for r in samples if r["media_path"] == path)
        with av.open(path) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == round(end * FPS)
        assert float(audio.duration * audio.time_base) == pytest.approx(end, abs=0.05)


@pytest.mark.slow
def test_writer_is_deterministic(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    first = digest(generate("mosei", tmp_path / "a", clips=2, seed=5))
    assert first == digest(generate("mosei", tmp_path / "b", clips=2, seed=5))
    assert any(name.endswith(".mp4") for name in first)
