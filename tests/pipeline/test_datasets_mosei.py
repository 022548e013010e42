"""The CMU-MOSEI adapter on hand-built raw layouts (empty media files: adapters do not decode)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.datasets import scan
from pipeline.datasets import mosei
from pipeline.datasets.mosei import Interval, Segment, match_segment
from pipeline.datasets.table import DatasetError
from pipeline.manifest import KnownBad, load_manifest

VIDEOS = "Raw/Videos/Full/Combined"
TEXTS = "Raw/Transcript/Segmented/Combined"
#             sentiment happy sad anger surprise disgust fear
LABELS = {
    "vidA": ([[4.0, 6.0], [0.5, 3.5]],
             [[1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
              [-1.0, 0.0, 0.0, 1.3, 0.0, 0.0, 0.6]]),
    "12345": ([[1.0, 2.5]],
              [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]),
    "vidC": ([[0.0, 2.0], [2.0, 5.0]],
             [[0.0, 0.0, 0.33, 0.0, 0.0, 0.0, 0.0],
              [2.0, 0.0, 0.0, 0.0, 3.0, 0.66, 0.0]]),
}
TRANSCRIPTS = {
    "vidA": ["vidA___0___0.5___3.5___first words", "vidA___1___4.0___6.2___second words", ""],
    "12345": ["12345___0___5.0___7.0___far away from the label"],
    "vidC": ["vidC___3___0.0___2.0___only the first"],
}


def write_csd(path: Path, labels: dict, *, root_name: str = "All Labels") -> None:
    with h5py.File(path, "w") as h5:
        data = h5.create_group(root_name).create_group("data")
        for vid, (intervals, features) in labels.items():
            group = data.create_group(vid)
            group.create_dataset("features", data=np.asarray(features, dtype=np.float32))
            group.create_dataset("intervals", data=np.asarray(intervals, dtype=np.float64))
        meta = h5[root_name].create_group("metadata")
        meta.create_dataset("root name", data=[root_name], dtype=h5py.string_dtype())


def write_csv(path: Path, labels: dict) -> None:
    lines = [",".join(mosei.CSV_HEADER)]
    for vid, (intervals, features) in labels.items():
        for (start, end), values in zip(intervals, features):
            lines.append(",".join([vid, str(start), str(end), *map(str, values)]))
    path.write_text("\n".join(lines) + "\n")


def make_root(tmp_path: Path, *, labels: dict = LABELS, videos=("vidA", "12345", "vidC"),
              transcripts: dict = TRANSCRIPTS) -> Path:
    root = tmp_path / "mosei"
    (root / VIDEOS).mkdir(parents=True)
    (root / TEXTS).mkdir(parents=True)
    for vid in videos:
        (root / VIDEOS / f"{vid}.mp4").write_bytes(b"")
    for vid, lines in transcripts.items():
        (root / TEXTS / f"{vid}.txt").write_text("\n".join(lines))
    write_csd(root / "CMU_MOSEI_Labels.csd", labels)
    return root


@pytest.fixture(scope="module")
def real_manifest():
    return load_manifest("mosei")


@pytest.fixture
def manifest(real_manifest):
    return dataclasses.replace(real_manifest, known_bad=(),
                               folds={"train": ("vidA",), "val": ("vidC",), "test": ("12345",)})


def test_reads_exact_table(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    table = mosei.read(root, manifest)
    video = str(root / VIDEOS)
    assert table.dataset == "mosei" and table.multilabel
    # the sentiment (column 0) is the target valence, divided by 3 into [-1, 1]
    rows = table.samples.to_pylist()
    valence = [row.pop("targets")[0] for row in rows]
    assert valence == pytest.approx([1 / 3, -1 / 3, 0.0, 2 / 3, 0.0])
    assert rows == [
        {"sample_id": "vidA_0", "split": "train", "media_path": f"{video}/vidA.mp4",
         "start_s": 4.0, "end_s": 6.0, "transcript": "second words",
         "labels": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]},
        {"sample_id": "vidA_1", "split": "train", "media_path": f"{video}/vidA.mp4",
         "start_s": 0.5, "end_s": 3.5, "transcript": "first words",
         "labels": [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]},
        {"sample_id": "vidC_0", "split": "val", "media_path": f"{video}/vidC.mp4",
         "start_s": 0.0, "end_s": 2.0, "transcript": "only the first",
         "labels": [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]},
        {"sample_id": "vidC_1", "split": "val", "media_path": f"{video}/vidC.mp4",
         "start_s": 2.0, "end_s": 5.0, "transcript": None,
         "labels": [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]},
        {"sample_id": "12345_0", "split": "test", "media_path": f"{video}/12345.mp4",
         "start_s": 1.0, "end_s": 2.5, "transcript": None,
         "labels": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]},
    ]
    assert table.failures.num_rows == 0


def test_csv_export_gives_the_same_table(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    write_csv(tmp_path / "labels.csv", LABELS)
    from_csd = mosei.read(root, manifest)
    from_csv = mosei.read(root, manifest, annotations=tmp_path / "labels.csv")
    assert from_csv.samples.equals(from_csd.samples)


def test_annotations_folder_holds_the_label_file(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    elsewhere = tmp_path / "labels"
    elsewhere.mkdir()
    (root / "CMU_MOSEI_Labels.csd").rename(elsewhere / "CMU_MOSEI_Labels.csd")
    table = mosei.read(root, manifest, annotations=elsewhere)
    assert table.samples.num_rows == 5


def test_scan_goes_through_the_registry(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    assert scan("mosei", root, manifest=manifest).samples.num_rows == 5


def test_missing_video_is_a_failure_per_interval(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path, videos=("12345", "vidC"))
    table = mosei.read(root, manifest)
    assert "vidA" not in "".join(table.samples.column("sample_id").to_pylist())
    fails = table.failures.to_pylist()
    assert [(f["sample_id"], f["split"], f["stage"], f["reason"]) for f in fails] == [
        ("vidA_0", "train", "adapter", "missing_file"),
        ("vidA_1", "train", "adapter", "missing_file"),
    ]
    assert "vidA.mp4" in fails[0]["message"]


def test_known_bad_is_a_failure_not_a_sample(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    bad = KnownBad(split="val", sample_id="vidC_1", note="broken interval")
    table = mosei.read(root, dataclasses.replace(manifest, known_bad=(bad,)))
    assert "vidC_1" not in table.samples.column("sample_id").to_pylist()
    assert table.failures.to_pylist() == [{"sample_id": "vidC_1", "split": "val",
                                           "stage": "adapter", "reason": "known_bad",
                                           "message": "broken interval"}]


def test_video_in_no_fold_is_left_out_with_a_warning(tmp_path: Path, manifest, caplog) -> None:
    root = make_root(tmp_path)
    manifest = dataclasses.replace(manifest, folds={"train": ("vidA",), "val": ("vidC",)})
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.mosei"):
        table = mosei.read(root, manifest)
    assert "12345_0" not in table.samples.column("sample_id").to_pylist()
    assert table.failures.num_rows == 0
    assert "1 labelled videos (1 intervals)" in caplog.text and "12345" in caplog.text


def test_unmatched_transcripts_are_counted_in_the_log(tmp_path: Path, manifest, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.mosei"):
        mosei.read(make_root(tmp_path), manifest)
    assert "2 of 5 CMU-MOSEI clips overlap no transcript segment" in caplog.text


def test_natural_order_of_rows(tmp_path: Path, manifest) -> None:
    labels = {"vidA": ([[i, i + 1.0] for i in range(12)], [[0.0] * 7] * 12)}
    root = make_root(tmp_path, labels=labels, transcripts={})
    ids = mosei.read(root, manifest).samples.column("sample_id").to_pylist()
    assert ids == [f"vidA_{i}" for i in range(12)]


def test_sidecar_transcripts_override(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    sidecar = tmp_path / "asr.csv"
    sidecar.write_text("sample_id,transcript\nvidC_1,recognised speech\nvidA_0,other words\n")
    rows = {r["sample_id"]: r["transcript"]
            for r in mosei.read(root, manifest, transcripts=sidecar).samples.to_pylist()}
    assert rows["vidC_1"] == "recognised speech" and rows["vidA_0"] == "other words"
    assert rows["vidA_1"] == "first words"


def test_missing_transcript_folder_gives_null_transcripts(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path, transcripts={})
    assert set(mosei.read(root, manifest).samples.column("transcript").to_pylist()) == {None}


@pytest.mark.parametrize(("segments", "expected"), [
    ([Segment(0, 0.0, 2.0, "a"), Segment(1, 2.0, 4.0, "b")], "b"),  # touching is no overlap
    ([Segment(0, 1.9, 4.1, "a"), Segment(1, 2.0, 4.0, "b")], "b"),  # exact beats wider
    ([Segment(0, 3.0, 6.0, "a")], None),                             # IoU 0.25 < 0.5
    ([Segment(0, 2.0, 5.0, "a")], "a"),                              # IoU 2/3
    ([Segment(7, 2.0, 4.0, "a"), Segment(8, 2.0, 4.0, "b")], "a"),  # first on ties
    ([], None),
])
def test_match_segment(segments: list[Segment], expected: str | None) -> None:
    match = match_segment(Interval("v", 0, 2.0, 4.0, (0.0,) * 7), segments)
    assert (match.text if match else None) == expected


def test_real_manifest_has_the_standard_folds(real_manifest) -> None:
    manifest = real_manifest
    assert manifest.multilabel and manifest.faces.crop
    assert manifest.labels == ("happy", "sad", "anger", "surprise", "disgust", "fear")
    assert {k: len(v) for k, v in manifest.folds.items()} == {"train": 2249, "val": 300,
                                                             "test": 678}
    fold_of = mosei.fold_lookup(manifest)
    assert len(fold_of) == 2249 + 300 + 678
    assert fold_of["hh04W3xXa5s"] == "train" and fold_of["81406"] == "train"
    assert fold_of["188343"] == "val" and fold_of["Vuay0mVKkik"] == "val"
    assert fold_of["7l3BNtSE0xc"] == "test" and fold_of["vR90Pdx9wxs"] == "test"
    assert "-NFrJFQijFE" not in fold_of
    for bad in manifest.known_bad:
        assert fold_of[bad.sample_id.rsplit("_", 1)[0]] == bad.split
    assert (manifest.eval.lr, manifest.eval.weight_decay) == (9.96e-3, 7e-5)


# ----------------------------------------------------------------------------- errors


def test_missing_label_file(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    (root / "CMU_MOSEI_Labels.csd").unlink()
    with pytest.raises(DatasetError, match=r"CMU_MOSEI_Labels\.csd: label file not found"):
        mosei.read(root, manifest)


def test_label_file_that_is_not_hdf5(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    (root / "CMU_MOSEI_Labels.csd").write_text("video_id,start\n")
    with pytest.raises(DatasetError, match=r"CMU_MOSEI_Labels\.csd: not an HDF5 file"):
        mosei.read(root, manifest)


def test_label_file_without_the_sequence_group(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    with h5py.File(root / "CMU_MOSEI_Labels.csd", "w") as h5:
        h5.create_dataset("stray", data=[1])
    with pytest.raises(DatasetError, match=r"Labels\.csd: expected one top-level group.*stray"):
        mosei.read(root, manifest)


def test_label_file_without_data_group(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    with h5py.File(root / "CMU_MOSEI_Labels.csd", "w") as h5:
        h5.create_group("All Labels").create_group("metadata")
    with pytest.raises(DatasetError, match=r"Labels\.csd: missing HDF5 group 'All Labels/data'"):
        mosei.read(root, manifest)


def test_label_file_without_intervals(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    with h5py.File(root / "CMU_MOSEI_Labels.csd", "a") as h5:
        del h5["All Labels/data/vidC/intervals"]
    with pytest.raises(DatasetError,
                       match=r"Labels\.csd: missing HDF5 dataset 'All Labels/data/vidC/intervals'"):
        mosei.read(root, manifest)


def test_features_with_the_wrong_number_of_columns(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path, labels={"vidA": ([[0.0, 1.0]], [[0.0] * 6])})
    with pytest.raises(DatasetError, match=r"Labels\.csd: HDF5 dataset 'All Labels/data/vidA/"
                                           r"features' has shape \(1, 6\); expected \[n, 7\]"):
        mosei.read(root, manifest)


def test_interval_with_end_before_start_in_hdf5(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path, labels={"vidA": ([[0.0, 1.0], [3.0, 3.0]], [[0.0] * 7] * 2)})
    with pytest.raises(DatasetError, match=r"Labels\.csd, row 1: HDF5 dataset 'All Labels/data/"
                                           r"vidA': interval end 3\.0 <= start 3\.0"):
        mosei.read(root, manifest)


def test_csv_with_a_wrong_header(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    bad = tmp_path / "labels.csv"
    bad.write_text("video,start,end\n")
    with pytest.raises(DatasetError, match=r"labels\.csv, row 1: expected the header video_id,"):
        mosei.read(root, manifest, annotations=bad)


def test_csv_with_end_before_start(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    write_csv(tmp_path / "labels.csv", {"vidA": ([[0.0, 1.0], [5.0, 4.0]], [[0.0] * 7] * 2)})
    with pytest.raises(DatasetError, match=r"labels\.csv, row 3, column 'end': CSV: interval end"):
        mosei.read(root, manifest, annotations=tmp_path / "labels.csv")


def test_csv_with_a_bad_number(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    path = tmp_path / "labels.csv"
    write_csv(path, {"vidA": ([[0.0, 1.0]], [[0.0] * 7])})
    path.write_text(path.read_text().replace("0.0,1.0,0.0,0.0", "0.0,1.0,zero,0.0"))
    with pytest.raises(DatasetError, match=r"labels\.csv, row 2, column 'sentiment': not a number"):
        mosei.read(root, manifest, annotations=path)


@pytest.mark.parametrize("line", [
    "vidA___0___0.5___3.5",                  # no text field
    "vidA___zero___0.5___3.5___words",       # segment index not a number
    "vidA___0___0.5___later___words",        # end not a number
    "other___0___0.5___3.5___words",         # another video's line
    "vidA___0___3.5___0.5___words",          # end before start
])
def test_malformed_transcript_line_names_file_and_line(tmp_path: Path, manifest,
                                                       line: str) -> None:
    root = make_root(tmp_path, transcripts={"vidA": ["vidA___0___0.5___3.5___ok", "", line]})
    with pytest.raises(DatasetError, match=r"vidA\.txt, row 3: malformed transcript line"):
        mosei.read(root, manifest)


def test_sidecar_without_transcript_column(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    (tmp_path / "asr.csv").write_text("sample_id,text\nvidA_0,x\n")
    with pytest.raises(DatasetError, match=r"asr\.csv, row 1, column 'transcript'"):
        mosei.read(root, manifest, transcripts=tmp_path / "asr.csv")


def test_manifest_without_folds(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    with pytest.raises(DatasetError, match=r"mosei\.yaml, column 'folds': .*standard folds"):
        mosei.read(root, dataclasses.replace(manifest, folds=None))


def test_video_in_two_folds(tmp_path: Path, manifest) -> None:
    root = make_root(tmp_path)
    folds = {"train": ("vidA",), "test": ("12345", "vidA")}
    with pytest.raises(DatasetError, match=r"video 'vidA' is in folds 'train' and 'test'"):
        mosei.read(root, dataclasses.replace(manifest, folds=folds))


def test_without_targets_in_the_manifest_the_table_has_no_targets(tmp_path: Path,
                                                                  manifest) -> None:
    table = mosei.read(make_root(tmp_path), dataclasses.replace(manifest, targets=()))
    assert "targets" not in table.samples.column_names


def test_refuses_a_target_the_label_file_has_not(tmp_path: Path, manifest) -> None:
    with pytest.raises(DatasetError, match="arousal"):
        mosei.read(make_root(tmp_path), dataclasses.replace(manifest, targets=("arousal",)))
