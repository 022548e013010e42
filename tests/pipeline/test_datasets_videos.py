"""The generic adapter (any folder or CSV list of videos) on hand-built folders: the list's
columns and defaults, refused paths, sorted labels, the run-time manifest's sha256, transcript
sidecars, and `scan --out FILE.csv` taken back by `--list`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli import app
from pipeline.datasets import DATASETS, dataset_source, scan
from pipeline.datasets.table import DatasetError
from pipeline.datasets.video_list import read_list
from pipeline.datasets.videos import build_manifest

runner = CliRunner()


def _files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * len(name))  # adapters do not decode


def _list(path: Path, header: list[str], *rows: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_the_folder_form_takes_every_video_under_the_root(tmp_path: Path) -> None:
    _files(tmp_path, "b.mp4", "a/c.MKV", "a/notes.txt", ".hidden/d.mp4", "a/.e.mp4", "f.mp4",
           "f.avi")
    root, manifest = dataset_source("videos", tmp_path)
    rows = scan("videos", root, manifest=manifest).samples.to_pylist()
    # ids without the suffix, unless two files differ only in it
    assert [r["sample_id"] for r in rows] == ["a/c", "b", "f.avi", "f.mp4"]
    assert {r["split"] for r in rows} == {"train"} and {r["label"] for r in rows} == {-1}
    assert rows[0]["media_path"] == str(tmp_path.resolve() / "a" / "c.MKV")
    assert rows[0]["transcript"] is None and manifest.labels == ()
    # no transcripts: the default modalities leave text out
    assert manifest.modalities == ("frames_2d", "frames_3d", "audio")
    assert "videos" in DATASETS


def test_a_folder_without_videos_is_refused(tmp_path: Path) -> None:
    _files(tmp_path, "notes.txt")
    with pytest.raises(DatasetError, match="no video file"):
        dataset_source("videos", tmp_path)


def test_the_list_form_reads_every_column_and_sorts_the_label_names(tmp_path: Path) -> None:
    _files(tmp_path, "clips/one.mp4", "clips/two.mp4", "three.avi", "frames/0001.png")
    path = _list(tmp_path / "list.csv",
                 ["split", "path", "label", "transcript", "start_s", "end_s", "note"],
                 ["train", "clips/one.mp4", "sad", "NA", "1.5", "3", "ignored"],
                 ["val", "clips/two.mp4", "angry", "", "", "", ""],
                 ["test", "three.avi", "", "hello", "", "2.0", ""],
                 ["train", "frames", "sad", "", "", "", ""],
                 ["train", "gone.mp4", "happy", "", "", "", ""])
    root, manifest = dataset_source("videos", None, list_file=path)
    assert root == tmp_path.resolve()  # no --root: the list's folder
    table = scan("videos", root, manifest=manifest)
    rows = {r["sample_id"]: r for r in table.samples.to_pylist()}
    # sorted names, including the label of a clip whose file is missing
    assert manifest.labels == ("angry", "happy", "sad")
    assert rows["clips/one"]["label"] == 2 and rows["clips/two"]["label"] == 0
    assert rows["three"]["label"] == -1 and rows["three"]["split"] == "test"
    assert rows["clips/one"]["transcript"] == "NA"  # text, never a missing value
    assert rows["clips/two"]["transcript"] is None  # an empty cell is unknown
    assert (rows["clips/one"]["start_s"], rows["clips/one"]["end_s"]) == (1.5, 3.0)
    assert rows["three"]["start_s"] is None and rows["three"]["end_s"] == 2.0
    assert rows["frames"]["media_path"] == str(tmp_path.resolve() / "frames")
    failure = table.failures.to_pylist()
    assert [(f["sample_id"], f["reason"]) for f in failure] == [("gone", "missing_file")]
    assert manifest.modalities == ("frames_2d", "frames_3d", "audio", "text")


def test_paths_are_relative_to_root_when_given(tmp_path: Path) -> None:
    _files(tmp_path / "data", "a.mp4")
    (tmp_path / "lists").mkdir()
    path = _list(tmp_path / "lists" / "l.csv", ["path", "sample_id"], ["a.mp4", "clip-a"])
    root, manifest = dataset_source("videos", tmp_path / "data", list_file=path)
    rows = scan("videos", root, manifest=manifest).samples.to_pylist()
    assert rows[0]["sample_id"] == "clip-a"
    assert rows[0]["media_path"] == str((tmp_path / "data" / "a.mp4").resolve())


@pytest.mark.parametrize("bad", ["../outside.mp4", "/etc/passwd", "a/../../b.mp4",
                                 "s3://bucket/a.mp4", "a\\b.mp4", ""])
def test_a_path_leaving_the_root_is_refused_naming_the_row(tmp_path: Path, bad: str) -> None:
    path = _list(tmp_path / "l.csv", ["path"], ["ok.mp4"], [bad])
    with pytest.raises(DatasetError,
                       match=r"l\.csv, row 3, column 'path': .*(refused|not a file name)"):
        read_list(path)


@pytest.mark.parametrize(("header", "row", "message"), [
    (["path", "split"], ["a.mp4", "dev"], r"row 2, column 'split': split 'dev'"),
    (["path", "start_s"], ["a.mp4", "-1"], r"column 'start_s'.*seconds >= 0"),
    (["path", "start_s", "end_s"], ["a.mp4", "2", "1"], r"column 'end_s'.*not after"),
    (["path", "label"], ["a.mp4", "x", "extra"], r"row 2: expected 2 fields"),
    (["file"], ["a.mp4"], r"missing column 'path'"),
])
def test_a_bad_list_is_one_error_naming_row_and_column(tmp_path: Path, header: list[str],
                                                       row: list[str], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_list(_list(tmp_path / "l.csv", header, row))


def test_duplicate_sample_ids_are_refused(tmp_path: Path) -> None:
    _files(tmp_path, "a.mp4", "a.avi")
    path = _list(tmp_path / "l.csv", ["path"], ["a.mp4"], ["a.avi"])
    root, manifest = dataset_source("videos", None, list_file=path)
    with pytest.raises(DatasetError, match="duplicate sample_id"):
        scan("videos", root, manifest=manifest)


def test_the_manifest_sha256_follows_the_list_the_folder_labels_and_faces(
        tmp_path: Path) -> None:
    _files(tmp_path, "a.mp4", "b.mp4")
    path = _list(tmp_path / "l.csv", ["path", "label"], ["a.mp4", "x"], ["b.mp4", "y"])
    base = build_manifest(None, path)[1].sha256
    assert build_manifest(None, path)[1].sha256 == base  # reproducible
    assert build_manifest(None, path, faces="none")[1].sha256 != base
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    _files(moved, "a.mp4", "b.mp4")
    copy = moved / "l.csv"
    copy.write_bytes(path.read_bytes())
    assert build_manifest(None, copy)[1].sha256 == base  # same list elsewhere: same store
    _list(path, ["path", "label"], ["a.mp4", "x"], ["b.mp4", "z"])
    relabelled = build_manifest(None, path)[1]
    assert relabelled.sha256 != base and relabelled.labels == ("x", "z")
    folder = build_manifest(tmp_path / "elsewhere", None)[1].sha256
    (moved / "c.mp4").write_bytes(b"new")
    assert build_manifest(tmp_path / "elsewhere", None)[1].sha256 != folder


def test_a_list_edited_after_planning_is_refused(tmp_path: Path) -> None:
    _files(tmp_path, "a.mp4", "b.mp4")
    path = _list(tmp_path / "l.csv", ["path"], ["a.mp4"])
    root, manifest = dataset_source("videos", None, list_file=path)
    _list(path, ["path"], ["a.mp4"], ["b.mp4"])
    with pytest.raises(DatasetError, match="changed since the run was planned"):
        scan("videos", root, manifest=manifest)


def test_faces_option_sets_the_face_policy_and_is_only_for_videos(tmp_path: Path) -> None:
    _files(tmp_path, "a.mp4")
    assert dataset_source("videos", tmp_path)[1].faces.crop is True
    kept = dataset_source("videos", tmp_path, faces="crop-or-full")[1].faces
    assert (kept.crop, kept.no_face) == (True, "full_frame")
    assert dataset_source("videos", tmp_path, faces="none")[1].faces.crop is False
    with pytest.raises(DatasetError, match="--faces: 'blur' is not one of"):
        dataset_source("videos", tmp_path, faces="blur")
    with pytest.raises(DatasetError, match="--faces: only for --dataset videos"):
        dataset_source("meld", tmp_path, faces="none")
    with pytest.raises(DatasetError, match="--list: only for --dataset videos"):
        dataset_source("meld", tmp_path, list_file=tmp_path / "l.csv")


def test_a_sidecar_fills_unknown_transcripts_and_a_conflict_is_refused(tmp_path: Path) -> None:
    _files(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    path = _list(tmp_path / "l.csv", ["path", "transcript"], ["a.mp4", "hi"], ["b.mp4", ""],
                 ["c.mp4", ""])
    sidecar = _list(tmp_path / "s.csv", ["sample_id", "transcript"], ["a", "hi"], ["b", ""])
    root, manifest = dataset_source("videos", None, list_file=path, transcripts=sidecar)
    rows = {r["sample_id"]: r["transcript"] for r in
            scan("videos", root, manifest=manifest, transcripts=sidecar).samples.to_pylist()}
    assert rows == {"a": "hi", "b": "", "c": None}  # "" from the sidecar: nothing was said
    _list(sidecar, ["sample_id", "transcript"], ["a", "bye"])
    with pytest.raises(DatasetError, match=r"row 2, column 'transcript'.*'hi'.*'bye'"):
        scan("videos", root, manifest=manifest, transcripts=sidecar)


def _scan_out(root: Path, out: Path) -> Result:
    return runner.invoke(app, ["scan", "--dataset", "meld", "--root", str(root), "--out",
                               str(out)])


def test_scan_out_csv_is_a_list_that_extract_takes_back(meld_sample: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "meld.csv"
    said = _scan_out(meld_sample, out)
    assert said.exit_code == 0, said.output
    assert "--dataset videos --list" in " ".join(said.output.split())
    meld = scan("meld", meld_sample)
    root, manifest = dataset_source("videos", meld_sample, list_file=out)
    back = scan("videos", root, manifest=manifest)
    assert back.failures.num_rows == 0
    names = dataset_source("meld", meld_sample)[1].labels
    original = {r["sample_id"]: r for r in meld.samples.to_pylist()}
    taken = {r["sample_id"]: r for r in back.samples.to_pylist()}
    assert taken.keys() == original.keys()
    for sid, row in taken.items():
        was = original[sid]
        for key in ("split", "media_path", "transcript", "start_s", "end_s"):
            assert row[key] == was[key], (sid, key)
        assert manifest.labels[row["label"]] == names[was["label"]]
    # parquet stays the sample table; another suffix is refused
    assert _scan_out(meld_sample, tmp_path / "t.parquet").exit_code == 0
    bad = _scan_out(meld_sample, tmp_path / "t.json")
    assert bad.exit_code == 2 and ".csv" in bad.output


def test_scan_cli_takes_a_list_without_root(tmp_path: Path) -> None:
    _files(tmp_path, "a.mp4", "b.mp4")
    path = _list(tmp_path / "l.csv", ["path", "split", "label"], ["a.mp4", "train", "x"],
                 ["b.mp4", "test", "y"])
    result = runner.invoke(app, ["scan", "--dataset", "videos", "--list", str(path)])
    assert result.exit_code == 0, result.output
    assert "videos: 2 clips" in result.output and "x" in result.output
    missing = runner.invoke(app, ["scan", "--dataset", "meld"])
    assert missing.exit_code == 2 and "--root" in missing.output
