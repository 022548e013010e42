"""Transcript sidecars (read, write, validation); speech recognition: test_transcribe.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.datasets.table import DatasetError
from pipeline.datasets.transcripts import (
    read_sidecar,
    read_sidecar_entries,
    sidecar_path,
    write_sidecar,
)
from pipeline.manifest import load_manifest


def _csv(tmp_path: Path, text: str, name: str = "t.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ---- reading and writing ------------------------------------------------------------------


def test_round_trip_keeps_text_exactly(tmp_path: Path) -> None:
    mapping = {
        "train/Anger/0001": "Stop, \"now\" — I’m mad.",
        "val/Sad/0002": "line one\nline two",
        "test/Fear/0003": "NA",  # a type-inferring reader would make this missing
        "test/Fear/0004": "",  # heard nothing: stays empty, not unknown
        "id00012/21Uxsk56VDQ/00001": "  leading space kept ",
    }
    path = tmp_path / "transcripts.csv"
    write_sidecar(path, mapping)
    assert read_sidecar(path) == mapping
    assert list(read_sidecar(path)) == list(mapping)  # file order
    assert [p.name for p in tmp_path.iterdir()] == ["transcripts.csv"]  # no temp file left


def test_rows_are_file_lines_and_extra_columns_are_ignored(tmp_path: Path) -> None:
    path = _csv(tmp_path, "model,transcript,sample_id\nw,hello,a\n\nw,bye,b\n")
    entries = read_sidecar_entries(path)
    assert {k: (e.transcript, e.row) for k, e in entries.items()} == {
        "a": ("hello", 2), "b": ("bye", 4)}


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = _csv(tmp_path, "sample_id,transcript\r\na,hi\r\n", encoding="utf-8-sig")
    assert read_sidecar(path) == {"a": "hi"}


def test_write_rejects_empty_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty sample_id"):
        write_sidecar(tmp_path / "t.csv", {"": "x"})


@pytest.mark.parametrize(("text", "match"), [
    ("", r"t\.csv: empty file"),
    ("sample_id,text\na,b\n", r"t\.csv, row 1, column 'transcript': missing column"),
    ("id,transcript\na,b\n", r"t\.csv, row 1, column 'sample_id': missing column"),
    ("sample_id,transcript\na,b\nc,d,e\n", r"t\.csv, row 3: expected 2 fields, found 3"),
    ("sample_id,transcript\n,b\n", r"t\.csv, row 2, column 'sample_id': empty sample_id"),
    ("sample_id,transcript\na,b\nc,d\na,e\n",
     r"t\.csv, row 4, column 'sample_id': duplicate sample_id 'a' \(first at row 2\)"),
    ('sample_id,transcript\na,b\nc,"d"x\n', r"t\.csv, row 3: not valid CSV"),
])
def test_invalid_sidecars_name_file_row_and_column(tmp_path: Path, text: str, match: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(DatasetError, match=match):
        read_sidecar(path)


def test_missing_and_non_utf8_sidecars(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.csv: transcript sidecar not found"):
        read_sidecar(tmp_path / "nope.csv")
    path = _csv(tmp_path, "sample_id,transcript\na,caf\xe9\n", encoding="latin-1")
    with pytest.raises(DatasetError, match=r"t\.csv: not UTF-8"):
        read_sidecar(path)


def test_sidecar_path_resolution(tmp_path: Path) -> None:
    manifest = load_manifest("caer")  # transcripts: transcripts.csv
    assert sidecar_path(tmp_path, manifest, None) is None  # default absent: no text
    default = _csv(tmp_path, "sample_id,transcript\n", name="transcripts.csv")
    assert sidecar_path(tmp_path, manifest, None) == default
    explicit = _csv(tmp_path, "sample_id,transcript\n", name="other.csv")
    assert sidecar_path(tmp_path, manifest, explicit) == explicit
    with pytest.raises(DatasetError, match=r"gone\.csv: transcript sidecar not found"):
        sidecar_path(tmp_path, manifest, tmp_path / "gone.csv")
