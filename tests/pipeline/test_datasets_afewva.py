"""The AFEW-VA adapter on hand-built raw layouts: clip-level targets, actor splits, defects."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pipeline.datasets import DATASETS, afewva, scan
from pipeline.datasets.afewva import actor_split
from pipeline.datasets.table import DatasetError
from pipeline.manifest import KnownBad, load_manifest


def _clip(root: Path, clip: str, actor: str, values: list[tuple[float, float]], *,
          frames: int = 2) -> None:
    folder = root / clip
    folder.mkdir(parents=True)
    for k in range(frames):
        (folder / f"{k:05d}.png").write_bytes(b"")  # adapters do not decode
    data = {"actor": actor, "video_id": clip,
            "frames": {f"{k:05d}": {"valence": v, "arousal": a, "landmarks": []}
                       for k, (v, a) in enumerate(values)}}
    (folder / f"{clip}.json").write_text(json.dumps(data))


@pytest.fixture
def manifest():
    return load_manifest("afewva")


def test_targets_are_the_clip_means_over_frames_scaled_to_one(tmp_path: Path) -> None:
    _clip(tmp_path, "001", "actor-a", [(2.0, -4.0), (4.0, -6.0), (6.0, -8.0)])
    _clip(tmp_path, "002", "actor-a", [(-10.0, 10.0)])
    (tmp_path / "003").mkdir()  # no JSON: not a clip
    _clip(tmp_path, "004", "actor-b", [(0.0, 0.0)], frames=0)
    table = scan("afewva", tmp_path)
    rows = table.samples.to_pylist()
    assert [r["sample_id"] for r in rows] == ["001", "002"]
    assert rows[0]["targets"] == pytest.approx([0.4, -0.6])
    assert rows[1]["targets"] == pytest.approx([-1.0, 1.0])
    assert rows[0]["label"] == -1 and rows[0]["transcript"] is None
    assert rows[0]["media_path"] == str(tmp_path / "001")
    assert rows[0]["split"] == rows[1]["split"] == actor_split("actor-a")
    assert table.failures.to_pylist()[0]["reason"] == "missing_file"
    assert "afewva" in DATASETS


def test_splits_follow_the_actor_and_cover_all_three() -> None:
    splits = [actor_split(f"actor-{n}") for n in range(200)]
    shares = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.6 < shares["train"] < 0.8 and shares["val"] > 0.08 and shares["test"] > 0.08
    assert actor_split("Tom Hanks") == actor_split("Tom Hanks")


def test_malformed_annotations_are_named(tmp_path: Path, manifest) -> None:
    _clip(tmp_path, "001", "a", [(11.0, 0.0)])
    with pytest.raises(DatasetError, match=r"001\.json.*valence 11\.0"):
        afewva.read(tmp_path, manifest)
    (tmp_path / "001" / "001.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        afewva.read(tmp_path, manifest)
    (tmp_path / "001" / "001.json").write_text(json.dumps({"frames": {"0": {}}}))
    with pytest.raises(DatasetError, match="actor"):
        afewva.read(tmp_path, manifest)


def test_known_bad_options_and_targets(tmp_path: Path, manifest) -> None:
    _clip(tmp_path, "001", "a", [(1.0, 1.0)])
    bad = dataclasses.replace(manifest, known_bad=(KnownBad("train", "001", "broken"),))
    assert afewva.read(tmp_path, bad).failures.to_pylist()[0]["reason"] == "known_bad"
    with pytest.raises(DatasetError, match="no separate annotations"):
        afewva.read(tmp_path, manifest, annotations=tmp_path)
    with pytest.raises(DatasetError, match="dominance"):
        afewva.read(tmp_path, dataclasses.replace(manifest, targets=("dominance",)))
