"""CAER and VoxCeleb2 sample-data writers: the plans, and real clips read back by the adapters."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from pipeline.datasets import scan
from pipeline.datasets.transcripts import read_sidecar
from pipeline.manifest import load_manifest
from pipeline.media import probe
from pipeline.sample_data import caer, generate, voxceleb2


def test_caer_plan_cycles_classes_in_every_split() -> None:
    labels = load_manifest("caer").labels
    planned = caer.plan(labels, caer.split_counts(48), random.Random(7))
    assert planned == caer.plan(labels, caer.split_counts(48), random.Random(7))
    assert Counter(c.split for c in planned) == {"train": 28, "val": 10, "test": 10}
    for split in ("train", "val", "test"):
        per_class = Counter(c.label for c in planned if c.split == split)
        assert set(per_class) == set(labels)  # every split sees every class
        assert max(per_class.values()) - min(per_class.values()) <= 1
        for label, n in per_class.items():  # NNNN numbering per class folder, from 1
            numbers = [c.number for c in planned if c.split == split and c.label == label]
            assert numbers == list(range(1, n + 1))
    assert all(2.0 <= c.duration_s <= 4.0 and c.transcript.endswith(".") for c in planned)


def test_voxceleb2_plan_keeps_speakers_in_one_split() -> None:
    planned = voxceleb2.plan(voxceleb2.split_counts(48), random.Random(3))
    assert planned == voxceleb2.plan(voxceleb2.split_counts(48), random.Random(3))
    assert Counter(u.split for u in planned) == {"train": 38, "test": 10}
    speakers: dict[str, set[str]] = {}
    for u in planned:
        speakers.setdefault(u.speaker, set()).add(u.split)
        assert len(u.video) == 11 and u.speaker.startswith("id") and len(u.speaker) == 7
    assert all(len(splits) == 1 for splits in speakers.values())
    assert len(speakers) >= 8  # several speakers ...
    for speaker in speakers:
        mine = [u for u in planned if u.speaker == speaker]
        assert [u.number for u in mine] == list(range(1, len(mine) + 1))  # per speaker
        assert len({u.video for u in mine}) >= min(2, len(mine))  # ... several videos each
    assert len({u.sample_id for u in planned}) == len(planned)


def test_split_counts_small() -> None:
    assert voxceleb2.split_counts(1) == {"train": 1, "test": 0}
    assert voxceleb2.split_counts(3) == {"train": 2, "test": 1}
    assert caer.split_counts(3) == {"train": 1, "val": 1, "test": 1}


@pytest.mark.slow
def test_caer_sample_data_reads_back(tmp_path: Path) -> None:
    root = generate("caer", tmp_path / "caer", clips=4, seed=1)
    table = scan("caer", root)
    rows = table.samples.to_pylist()
    assert [r["sample_id"] for r in rows] == [
        "train/Anger/0001", "train/Disgust/0001", "val/Anger/0001", "test/Anger/0001"]
    assert [r["label"] for r in rows] == [0, 1, 0, 0]
    spoken = read_sidecar(root / "transcripts.csv")
    assert {r["sample_id"]: r["transcript"] for r in rows} == spoken
    assert table.failures.num_rows == 0
    assert sorted(p.name for p in (root / "validation").iterdir()) == sorted(
        load_manifest("caer").labels)  # all class folders, empty ones too
    for row in rows:
        info = probe(row["media_path"])
        assert info.has_video and info.has_audio and 2.0 <= info.duration_s <= 4.2
    assert {probe(r["media_path"]).width for r in rows} == {320, 480, 640}


@pytest.mark.slow
def test_voxceleb2_sample_data_reads_back(tmp_path: Path) -> None:
    root = generate("voxceleb2", tmp_path / "vox", clips=4, seed=2)
    table = scan("voxceleb2", root)
    rows = table.samples.to_pylist()
    assert Counter(r["split"] for r in rows) == {"train": 3, "test": 1}
    assert all(r["label"] == -1 and r["transcript"] for r in rows)
    spoken = read_sidecar(root / "transcripts.csv")
    assert all(spoken[r["sample_id"]] == r["transcript"] for r in rows)
    # the sidecar's one extra row is the utterance lost from the download
    [lost] = table.failures.to_pylist()
    assert lost["reason"] == "missing_file" and lost["split"] == "train"
    assert set(spoken) == {r["sample_id"] for r in rows} | {lost["sample_id"]}
    for row in rows:
        assert Path(row["media_path"]).relative_to(root).parts[:2] in {("dev", "mp4"),
                                                                        ("test", "mp4")}
        info = probe(row["media_path"])
        assert (info.width, info.height) == (224, 224) and info.has_audio
