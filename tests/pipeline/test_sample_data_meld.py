"""The MELD sample-data writer: layout, CSV format, class and split balance, defects, and a
real rendered dataset read back by the MELD adapter."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from pathlib import Path

import av
import pytest

from pipeline.datasets import meld as adapter
from pipeline.manifest import load_manifest
from pipeline.sample_data import meld, render, signals

MEDIA = {"train": "train/train_splits", "val": "dev/dev_splits_complete",
         "test": "test/output_repeated_splits_test"}
CSV_NAMES = ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv")


@pytest.fixture(scope="module")
def manifest():
    return load_manifest("meld")


@pytest.fixture
def fake_render(monkeypatch):
    """Record render requests and write placeholder files instead of encoding video."""
    calls: dict[str, list] = {"clips": [], "corrupt": []}

    def render_clip(req: render.ClipRequest) -> None:
        req.path.parent.mkdir(parents=True, exist_ok=True)
        req.path.write_bytes(b"clip")
        calls["clips"].append(req)

    def write_corrupt(path: Path, seed: int = 0) -> None:
        path.write_bytes(b"corrupt")
        calls["corrupt"].append(path)

    monkeypatch.setattr(render, "render_clip", render_clip)
    monkeypatch.setattr(render, "write_corrupt", write_corrupt)
    return calls


@pytest.mark.parametrize(("clips", "counts"), [
    (1, {"train": 1, "val": 0, "test": 0}), (2, {"train": 2, "val": 0, "test": 0}),
    (3, {"train": 1, "val": 1, "test": 1}), (10, {"train": 6, "val": 2, "test": 2}),
    (48, {"train": 28, "val": 10, "test": 10}),
])
def test_split_counts(clips, counts):
    assert meld.split_counts(clips) == counts


def test_plan_cycles_classes_per_split_and_numbers_dialogues_naturally(manifest):
    rows = meld.plan_rows(manifest, {"train": 30, "val": 9, "test": 7}, random.Random(0))
    for split, n in (("train", 30), ("val", 9), ("test", 7)):
        mine = [r for r in rows if r.split == split]
        assert [r.emotion for r in mine] == [manifest.labels[i % 7] for i in range(n)]
        dialogues = [r.dialogue for r in mine]
        assert dialogues[0] == 0 and dialogues == sorted(dialogues)
        assert set(dialogues) == set(range(dialogues[-1] + 1))  # no gaps below 110
        for dia in set(dialogues):
            utts = [r.utterance for r in mine if r.dialogue == dia]
            assert utts == list(range(len(utts))) and len(utts) <= 4
    assert all(2.0 <= r.duration_s <= 4.0 for r in rows)


def test_plan_never_collides_with_the_defect_rows(manifest):
    rows = meld.plan_rows(manifest, {"train": 700, "val": 600, "test": 0}, random.Random(1))
    used = {(r.split, r.dialogue) for r in rows}
    assert ("train", 125) not in used and ("val", 110) not in used
    assert ("train", 126) in used and ("val", 111) in used


@pytest.mark.parametrize(("seconds", "long", "text"), [
    (483.733, True, "00:08:03,733"), (483.733, False, "0:08:03,733"),
    (3723.0, False, "1:02:03,000"), (59.9996, True, "00:01:00,000"),
])
def test_format_time_writes_both_meld_formats(seconds, long, text):
    assert meld.format_time(seconds, long=long) == text
    assert adapter.parse_time(text) == pytest.approx(round(seconds, 3))


def test_sentiment_follows_the_emotion(manifest):
    row = meld.plan_rows(manifest, {"train": 1, "val": 0, "test": 0}, random.Random(0))[0]
    by_emotion = {e: meld.sentiment(dataclasses.replace(row, emotion=e)) for e in manifest.labels}
    assert by_emotion["joy"] == "positive" and by_emotion["neutral"] == "neutral"
    assert by_emotion["surprise"] in ("positive", "negative")
    assert {by_emotion[e] for e in ("fear", "sadness", "disgust", "anger")} == {"negative"}


def test_write_lays_out_meld_with_its_defects(tmp_path, manifest, fake_render):
    meld.write(tmp_path, clips=24, seed=3)
    table = adapter.read(tmp_path, manifest)

    # test holds the truncated dia120_utt0 too: on disk and in no known-bad list, it is only
    # found broken when extraction decodes it
    assert Counter(table.samples.column("split").to_pylist()) == {"train": 14, "val": 5,
                                                                   "test": 5 + 1}
    truncated = tmp_path / MEDIA["test"] / "dia120_utt0.mp4"
    assert truncated.read_bytes() == b"cl"  # the first half of the rendered file
    assert [(f["sample_id"], f["reason"]) for f in table.failures.to_pylist()] == [
        ("train/dia125_utt3", "known_bad"), ("val/dia110_utt7", "known_bad")]
    assert fake_render["corrupt"] == [tmp_path / MEDIA["train"] / "dia125_utt3.mp4"]
    assert not (tmp_path / MEDIA["val"] / "dia110_utt7.mp4").exists()

    requests = {str(req.path): req for req in fake_render["clips"]}
    unannotated = str(tmp_path / MEDIA["test"] / "final_videos_test0.mp4")
    assert unannotated in requests and len(requests) == 24 + 1 + 1
    for sample in table.samples.to_pylist():
        if sample["sample_id"] == "test/dia120_utt0":
            continue
        req = requests[sample["media_path"]]
        assert req.transcript == sample["transcript"]  # the CSV says what the audio says
        assert req.emotions == (signals.canonical(manifest.labels[sample["label"]]),)
        assert 2.0 <= req.duration_s <= 4.0
    clips = [requests[p] for p in table.samples.column("media_path").to_pylist()
             if p != str(truncated)]
    assert {req.size for req in clips} == set(meld.SIZES)
    assert sum(not req.face for req in clips) == 24 // 12


def test_write_uses_meld_csv_quirks(tmp_path, fake_render):
    meld.write(tmp_path, clips=12, seed=0)
    text = "".join((tmp_path / name).read_text(encoding="utf-8") for name in CSV_NAMES)
    assert "’" in text
    assert re.search(r'\d+,"[^"]*, [^"]*",', text)  # a quoted utterance with a comma
    times = re.findall(r'"(\d+):\d\d:\d\d,\d{3}"', text)
    assert {len(h) for h in times} == {1, 2}
    lines = (tmp_path / CSV_NAMES[0]).read_bytes().count(b"\r\n")
    assert lines == 1 + 8 + 1  # header, train clips, the corrupt clip's row


def test_write_is_deterministic(tmp_path, fake_render):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        (tmp_path / name).mkdir()
        meld.write(tmp_path / name, clips=9, seed=seed)
    csvs = {name: [(tmp_path / name / f).read_bytes() for f in CSV_NAMES] for name in "abc"}
    assert csvs["a"] == csvs["b"] != csvs["c"]
    seeds = [req.seed for req in fake_render["clips"]]
    assert seeds[:11] == seeds[11:22] != seeds[22:]


@pytest.mark.slow
def test_rendered_sample_dataset_reads_back(tmp_path, manifest):
    meld.write(tmp_path, clips=3, seed=0)
    table = adapter.read(tmp_path, manifest)
    assert table.samples.column("sample_id").to_pylist() == [
        "train/dia0_utt0", "val/dia0_utt0", "test/dia0_utt0", "test/dia120_utt0"]
    assert table.samples.column("label").to_pylist() == [0, 0, 0, 0]
    assert table.samples.column("transcript").to_pylist()[0].startswith("It’s ")
    for index, path in enumerate(table.samples.column("media_path").to_pylist()[:3]):
        with av.open(path) as container:
            video = container.streams.video[0]
            assert (video.codec_context.width, video.codec_context.height) == meld.SIZES[index]
            assert container.streams.audio
            assert 2.0 <= container.duration / av.time_base <= 4.2
    with av.open(str(tmp_path / MEDIA["test"] / "final_videos_test0.mp4")) as container:
        assert container.streams.video
    for broken in (MEDIA["train"] + "/dia125_utt3.mp4", MEDIA["test"] + "/dia120_utt0.mp4"):
        with pytest.raises(av.FFmpegError):
            with av.open(str(tmp_path / broken)) as container:
                for _ in container.decode(video=0):
                    pass
