"""The CAER adapter on hand-built layouts (empty files: the adapter checks names, not media)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from pipeline.datasets import caer, scan
from pipeline.datasets.table import DatasetError
from pipeline.datasets.transcripts import write_sidecar
from pipeline.manifest import DatasetManifest, KnownBad, load_manifest

FILES = (
    "train/Anger/0010.avi", "train/Anger/0002.avi", "train/Anger/2.avi", "train/Happy/0001.avi",
    "validation/Sad/0001.avi", "test/Surprise/0001.avi", "test/Anger/0001.avi",
)


@pytest.fixture
def manifest() -> DatasetManifest:
    return load_manifest("caer")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "CAER"
    for split in ("train", "validation", "test"):
        for label in ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"):
            (root / split / label).mkdir(parents=True)
    for name in FILES:
        (root / name).touch()
    (root / "train" / ".DS_Store").touch()  # hidden entries are not part of the dataset
    return root


def _row(root: Path, sample_id: str, split: str, folder: str, label: int,
         transcript: str | None = None) -> dict[str, object]:
    _, cls, stem = sample_id.split("/")
    return {"sample_id": sample_id, "split": split,
            "media_path": str(root / folder / cls / f"{stem}.avi"), "start_s": None,
            "end_s": None, "transcript": transcript, "label": label}


def test_reads_the_class_folders_in_order(root: Path, manifest: DatasetManifest) -> None:
    table = caer.read(root, manifest)
    assert table.dataset == "caer" and not table.multilabel
    assert table.samples.to_pylist() == [
        _row(root, "train/Anger/0002", "train", "train", 0),
        _row(root, "train/Anger/2", "train", "train", 0),
        _row(root, "train/Anger/0010", "train", "train", 0),
        _row(root, "train/Happy/0001", "train", "train", 3),
        _row(root, "val/Sad/0001", "val", "validation", 5),
        _row(root, "test/Anger/0001", "test", "test", 0),
        _row(root, "test/Surprise/0001", "test", "test", 6),
    ]
    assert table.failures.num_rows == 0


def test_scan_resolves_a_relative_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root.parent)
    table = scan("caer", "CAER")
    assert table.samples.num_rows == len(FILES)
    assert all(Path(p).is_absolute() for p in table.samples.column("media_path").to_pylist())


def test_manifest_labels_and_eval_defaults(manifest: DatasetManifest) -> None:
    assert manifest.labels == ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    assert manifest.splits["val"].media == "validation"
    assert manifest.eval is not None
    assert (manifest.eval.lr, manifest.eval.weight_decay) == (6.1e-3, 8.216e-2)


def test_default_sidecar_gives_transcripts(root: Path, manifest: DatasetManifest,
                                           caplog: pytest.LogCaptureFixture) -> None:
    write_sidecar(root / "transcripts.csv", {"val/Sad/0001": "I miss her.",
                                             "train/Anger/2": ""})
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.caer"):
        table = caer.read(root, manifest)
    text = dict(zip(table.samples.column("sample_id").to_pylist(),
                    table.samples.column("transcript").to_pylist(), strict=True))
    assert text["val/Sad/0001"] == "I miss her."
    assert text["train/Anger/2"] == ""  # heard nothing: empty, not unknown
    assert text["train/Anger/0002"] is None  # not in the sidecar: unknown
    assert "5 of 7 clips have no transcript" in caplog.text


def test_explicit_sidecar_wins_over_the_default(root: Path, manifest: DatasetManifest,
                                                tmp_path: Path) -> None:
    write_sidecar(root / "transcripts.csv", {"val/Sad/0001": "default"})
    write_sidecar(tmp_path / "asr.csv", {"val/Sad/0001": "explicit"})
    table = caer.read(root, manifest, transcripts=tmp_path / "asr.csv")
    assert "explicit" in table.samples.column("transcript").to_pylist()
    assert "default" not in table.samples.column("transcript").to_pylist()


def test_sidecar_naming_an_absent_clip_is_an_error(root: Path, manifest: DatasetManifest) -> None:
    write_sidecar(root / "transcripts.csv", {"val/Sad/0001": "ok", "val/Sad/0099": "stray"})
    with pytest.raises(DatasetError, match=r"transcripts\.csv, row 3, column 'sample_id': "
                                           r"sample_id 'val/Sad/0099' is not a clip"):
        caer.read(root, manifest)


def test_invalid_sidecar_is_an_error(root: Path, manifest: DatasetManifest) -> None:
    (root / "transcripts.csv").write_text("sample_id,transcript\na,x\na,y\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"transcripts\.csv, row 3, column 'sample_id': "
                                           r"duplicate"):
        caer.read(root, manifest)


def test_unknown_class_folder_names_folder_and_classes(root: Path,
                                                       manifest: DatasetManifest) -> None:
    (root / "test" / "Contempt").mkdir()
    with pytest.raises(DatasetError, match=r"test/Contempt: unknown class folder 'Contempt'; "
                                           r"valid classes: \['Anger', 'Disgust'"):
        caer.read(root, manifest)


def test_two_folders_of_one_class_are_an_error(root: Path, manifest: DatasetManifest) -> None:
    (root / "test" / "anger").mkdir()
    with pytest.raises(DatasetError, match=r"test: class folders '(A|a)nger' and '(a|A)nger' "
                                           r"name the same class"):
        caer.read(root, manifest)


def test_missing_split_folder_is_an_error(root: Path, manifest: DatasetManifest) -> None:
    for path in sorted((root / "validation").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "validation").rmdir()
    with pytest.raises(DatasetError, match=r"CAER/validation: split folder for 'val' not found"):
        caer.read(root, manifest)


def test_annotations_are_refused(root: Path, manifest: DatasetManifest) -> None:
    with pytest.raises(DatasetError, match=r"labels.csv: CAER has no annotation files"):
        caer.read(root, manifest, annotations=root / "labels.csv")


def test_known_bad_clip_becomes_a_failure(root: Path, manifest: DatasetManifest) -> None:
    bad = KnownBad(split="train", sample_id="train/Happy/0001", note="frozen video")
    manifest = dataclasses.replace(manifest, known_bad=(bad,))
    write_sidecar(root / "transcripts.csv", {"train/Happy/0001": "listed, but known bad"})
    table = caer.read(root, manifest)
    assert "train/Happy/0001" not in table.samples.column("sample_id").to_pylist()
    assert table.failures.to_pylist() == [{
        "sample_id": "train/Happy/0001", "split": "train", "stage": "adapter",
        "reason": "known_bad", "message": "frozen video"}]


def test_foreign_files_are_ignored_with_a_warning(root: Path, manifest: DatasetManifest,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    (root / "train" / "Fear" / "notes.txt").touch()
    (root / "train" / "README").touch()
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.caer"):
        table = caer.read(root, manifest)
    assert table.samples.num_rows == len(FILES)
    assert "notes.txt" in caplog.text and "README" in caplog.text


def test_duplicate_ids_from_suffix_case_are_an_error(root: Path,
                                                     manifest: DatasetManifest) -> None:
    (root / "test" / "Anger" / "0001.AVI").touch()
    with pytest.raises(DatasetError, match=r"duplicate sample_id\(s\) \['test/Anger/0001'\]"):
        caer.read(root, manifest)
