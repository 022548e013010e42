"""The VoxCeleb2 adapter on hand-built trees (empty files: the adapter checks names only)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest

from pipeline.datasets import dataset_source, scan, voxceleb2
from pipeline.datasets.table import DatasetError, SampleTable, sample_schema
from pipeline.datasets.transcripts import write_sidecar
from pipeline.manifest import DatasetManifest, KnownBad, load_manifest

FILES = (
    "dev/mp4/id00012/21Uxsk56VDQ/00001.mp4", "dev/mp4/id00012/21Uxsk56VDQ/00002.mp4",
    "dev/mp4/id00012/2DLq_Kkc1r8/00016.mp4", "dev/mp4/id00002/-abcdefghij/00003.mp4",
    "test/mp4/id00017/01dfn2spqyE/00001.mp4",
)


@pytest.fixture
def manifest() -> DatasetManifest:
    return load_manifest("voxceleb2")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "vox"
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    return root


def _ids(table: SampleTable) -> list[str]:
    return table.samples.column("sample_id").to_pylist()


def test_reads_the_tree_in_order(root: Path, manifest: DatasetManifest) -> None:
    table = voxceleb2.read(root, manifest)
    assert table.samples.to_pylist() == [
        {"sample_id": name.split("/", 2)[2].removesuffix(".mp4"), "split": split,
         "media_path": str(root / name), "start_s": None, "end_s": None, "transcript": None,
         "label": -1}
        for name, split in [(FILES[3], "train"), (FILES[0], "train"), (FILES[1], "train"),
                            (FILES[2], "train"), (FILES[4], "test")]
    ]
    assert table.failures.num_rows == 0
    assert table.samples.schema == sample_schema(multilabel=False)


def test_scan_and_manifest(root: Path, manifest: DatasetManifest) -> None:
    assert _ids(scan("voxceleb2", root)) == _ids(voxceleb2.read(root, manifest))
    assert manifest.labels == () and not manifest.faces.crop
    assert manifest.splits["train"].media == "dev/mp4" and "val" not in manifest.splits


def test_speaker_in_two_splits_is_an_error(root: Path, manifest: DatasetManifest) -> None:
    (root / "test/mp4/id00012/zzzzzzzzzzz").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"test/mp4/id00012: speaker id00012 is in split "
                                           r"'train' too"):
        voxceleb2.read(root, manifest)


def test_absent_split_is_skipped_with_a_warning(root: Path, manifest: DatasetManifest,
                                                caplog: pytest.LogCaptureFixture) -> None:
    shutil.rmtree(root / "test")
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.voxceleb2"):
        table = voxceleb2.read(root, manifest)
    assert set(table.samples.column("split").to_pylist()) == {"train"}
    assert "split 'test' folder" in caplog.text and "not found" in caplog.text


def test_no_split_folder_is_an_error(tmp_path: Path, manifest: DatasetManifest) -> None:
    with pytest.raises(DatasetError, match=r"empty: no split folder found; expected one of "
                                           r"\[.*dev/mp4.*test/mp4"):
        voxceleb2.read(tmp_path / "empty", manifest)


def test_sidecar_transcripts_and_missing_files(root: Path, manifest: DatasetManifest) -> None:
    write_sidecar(root / "transcripts.csv", {
        "id00012/21Uxsk56VDQ/00002": "Hello there.",
        "id00017/01dfn2spqyE/00009": "lost from test",
        "id00012/newvideo123/00020": "lost from dev",
    })
    table = voxceleb2.read(root, manifest)
    text = dict(zip(_ids(table), table.samples.column("transcript").to_pylist(), strict=True))
    assert text == {"id00002/-abcdefghij/00003": None, "id00012/21Uxsk56VDQ/00001": None,
                    "id00012/21Uxsk56VDQ/00002": "Hello there.",
                    "id00012/2DLq_Kkc1r8/00016": None, "id00017/01dfn2spqyE/00001": None}
    failures = table.failures.to_pylist()
    assert [(f["sample_id"], f["split"], f["stage"], f["reason"]) for f in failures] == [
        ("id00017/01dfn2spqyE/00009", "test", "adapter", "missing_file"),
        ("id00012/newvideo123/00020", "train", "adapter", "missing_file"),
    ]
    assert "transcripts.csv row 3" in failures[0]["message"]
    assert str(root / "test/mp4/id00017/01dfn2spqyE/00009.mp4") in failures[0]["message"]


@pytest.mark.parametrize(("sample_id", "match"), [
    ("id09999/abcdefghijk/00001", r"speaker id09999 is under none of"),
    ("id00012/00001", r"sample_id 'id00012/00001' is not <speaker>/<video>/<utterance>"),
])
def test_unplaceable_sidecar_ids_are_errors(root: Path, manifest: DatasetManifest, tmp_path: Path,
                                            sample_id: str, match: str) -> None:
    write_sidecar(tmp_path / "asr.csv", {"id00012/21Uxsk56VDQ/00001": "ok", sample_id: "x"})
    with pytest.raises(DatasetError, match=r"asr\.csv, row 3, column 'sample_id': .*" + match):
        voxceleb2.read(root, manifest, transcripts=tmp_path / "asr.csv")


def test_known_bad_clip_becomes_a_failure(root: Path, manifest: DatasetManifest) -> None:
    bad = KnownBad(split="test", sample_id="id00017/01dfn2spqyE/00001", note="no speech")
    manifest = dataclasses.replace(manifest, known_bad=(bad,))
    table = voxceleb2.read(root, manifest)
    assert "id00017/01dfn2spqyE/00001" not in _ids(table)
    assert table.samples.num_rows == len(FILES) - 1
    assert table.failures.to_pylist() == [{
        "sample_id": "id00017/01dfn2spqyE/00001", "split": "test", "stage": "adapter",
        "reason": "known_bad", "message": "no speech"}]


def test_foreign_entries_are_ignored_with_a_warning(root: Path, manifest: DatasetManifest,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    (root / "dev/mp4/id00012/21Uxsk56VDQ/00003.wav").touch()
    (root / "dev/mp4/id00012/21Uxsk56VDQ/.00004.mp4.part").touch()  # hidden: not even warned
    (root / "dev/mp4/vox2_meta.csv").touch()
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.voxceleb2"):
        table = voxceleb2.read(root, manifest)
    assert table.samples.num_rows == len(FILES)
    assert "21Uxsk56VDQ: ignoring 1 entries that are not .mp4 files" in caplog.text
    assert "dev/mp4: ignoring 1 entries that are not folders" in caplog.text


# --annotations LIST: a subset of the sample ids

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_text_list_restricts_the_clips_in_tree_order(root: Path, tmp_path: Path) -> None:
    listed = _write(tmp_path / "subset.txt", "# the paper's subset\n\n"
                    "id00017/01dfn2spqyE/00001\n  id00012/21Uxsk56VDQ/00002  \n")
    table = scan("voxceleb2", root, annotations=listed)
    assert _ids(table) == ["id00012/21Uxsk56VDQ/00002", "id00017/01dfn2spqyE/00001"]
    assert table.samples.column("split").to_pylist() == ["train", "test"]
    assert table.failures.num_rows == 0


def test_csv_list_reads_its_sample_id_column(root: Path, tmp_path: Path) -> None:
    listed = _write(tmp_path / "subset.csv", "speaker,sample_id\nx,id00002/-abcdefghij/00003\n")
    assert _ids(scan("voxceleb2", root, annotations=listed)) == ["id00002/-abcdefghij/00003"]
    no_column = _write(tmp_path / "bad.csv", "id\nid00002/-abcdefghij/00003\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: a CSV sample id list needs a "
                                           r"'sample_id' column"):
        scan("voxceleb2", root, annotations=no_column)


def test_listed_id_without_its_file_is_a_missing_file_failure(root: Path,
                                                              tmp_path: Path) -> None:
    listed = _write(tmp_path / "subset.txt",
                    "id00012/21Uxsk56VDQ/00001\nid00017/zzzzzzzzzzz/00009\n")
    table = scan("voxceleb2", root, annotations=listed)
    assert _ids(table) == ["id00012/21Uxsk56VDQ/00001"]
    [failure] = table.failures.to_pylist()
    assert failure["sample_id"] == "id00017/zzzzzzzzzzz/00009"
    assert (failure["split"], failure["reason"]) == ("test", "missing_file")
    assert "subset.txt line 2" in failure["message"]
    assert "test/mp4/id00017/zzzzzzzzzzz/00009.mp4 does not exist" in failure["message"]


def test_listed_speaker_under_no_split_is_an_error(root: Path, tmp_path: Path) -> None:
    listed = _write(tmp_path / "subset.txt", "id00012/21Uxsk56VDQ/00001\n"
                    "id09999/aaaaaaaaaaa/00001\nid08888/bbbbbbbbbbb/00002\n")
    with pytest.raises(DatasetError, match=r"subset\.txt: 2 listed id\(s\) of speakers under "
                                           r"none of .*id09999/aaaaaaaaaaa/00001, "
                                           r"id08888/bbbbbbbbbbb/00002 \(line 2\)"):
        scan("voxceleb2", root, annotations=listed)


@pytest.mark.parametrize(("text", "match"), [
    ("id00012/21Uxsk56VDQ/00001\nid00012/21Uxsk56VDQ\n", r"line 2: 'id00012/21Uxsk56VDQ' is "
                                                         r"not a sample id of 3 parts"),
    ("# c\nid00012//00001\n", r"line 2: 'id00012//00001' is not a sample id"),
    ("id00012/21Uxsk56VDQ/00001\n\nid00012/21Uxsk56VDQ/00001\n", r"line 3: sample id "
                                                               r".* repeats line 1"),
    ("# nothing\n\n", r"the sample id list holds no id"),
])
def test_malformed_list_names_the_line(root: Path, tmp_path: Path, text: str,
                                       match: str) -> None:
    with pytest.raises(DatasetError, match=r"subset\.txt: " + match):
        scan("voxceleb2", root, annotations=_write(tmp_path / "subset.txt", text))


def test_known_bad_and_sidecar_follow_the_list(root: Path, tmp_path: Path) -> None:
    bad = [KnownBad(split="test", sample_id="id00017/01dfn2spqyE/00001", note="no speech"),
           KnownBad(split="train", sample_id="id00002/-abcdefghij/00003", note="unlisted")]
    manifest = dataclasses.replace(load_manifest("voxceleb2"), known_bad=tuple(bad))
    sidecar = tmp_path / "asr.csv"
    write_sidecar(sidecar, {"id00012/21Uxsk56VDQ/00001": "hello",
                            "id00012/2DLq_Kkc1r8/00016": "not listed",
                            "id00012/21Uxsk56VDQ/00099": "lost but not listed"})
    listed = _write(tmp_path / "subset.txt",
                    "id00012/21Uxsk56VDQ/00001\nid00017/01dfn2spqyE/00001\n")
    table = voxceleb2.read(root.resolve(), manifest, annotations=listed, transcripts=sidecar)
    assert table.samples.column("transcript").to_pylist() == ["hello"]
    assert [(f["sample_id"], f["reason"]) for f in table.failures.to_pylist()] == [
        ("id00017/01dfn2spqyE/00001", "known_bad")]


def test_manifest_sha256_covers_the_list_content(root: Path, tmp_path: Path) -> None:
    plain = dataset_source("voxceleb2", root)[1]
    one = _write(tmp_path / "subset.txt", "id00012/21Uxsk56VDQ/00001\n")
    same = _write(tmp_path / "copy.txt", "id00012/21Uxsk56VDQ/00001\n")
    other = _write(tmp_path / "other.txt", "id00012/21Uxsk56VDQ/00002\n")
    shas = {name: dataset_source("voxceleb2", root, annotations=path)[1].sha256
            for name, path in (("one", one), ("same", same), ("other", other))}
    assert shas["one"] == shas["same"]  # the list by content, not by path
    assert len({plain.sha256, shas["one"], shas["other"]}) == 3
    assert dataset_source("voxceleb2", root, annotations=one)[1].label_file == str(one.resolve())
    # other datasets' --annotations is a folder of annotation files: not recorded
    assert dataset_source("meld", root, annotations=tmp_path)[1].sha256 == \
        load_manifest("meld").sha256
