"""Bad annotations, as ``cli extract`` reports them: one line naming the file, the row and the
column (where the format has them) with what is wrong, exit code 2, no traceback, and
nothing left in ``--out``. The adapters' own tests cover every error path; these are one per kind of
file a user hands over (MELD's CSVs, a transcripts sidecar, MOSEI's label CSV, AFEW-VA's
per-clip JSON)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.datasets import mosei

MELD_CSVS = ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv")

Case = Callable[[Path, Path], tuple[list[str], str]]
"""``(meld sample, folder) -> (extract options, the exact message)``."""


def _meld_annotations(sample: Path, folder: Path) -> tuple[Path, list[list[str]]]:
    """A copy of the sample's CSVs in ``folder`` (for ``--annotations``); the train rows."""
    folder.mkdir()
    for name in MELD_CSVS:
        shutil.copy(sample / name, folder / name)
    with (folder / MELD_CSVS[0]).open(newline="", encoding="utf-8") as f:
        return folder / MELD_CSVS[0], list(csv.reader(f))


def _meld_cell(column: str, value: str, row: int, message: str) -> Case:
    """File row ``row`` (the header is row 1) of the train CSV gets ``value`` in ``column``."""
    def make(sample: Path, folder: Path) -> tuple[list[str], str]:
        path, rows = _meld_annotations(sample, folder / "annotations")
        rows[row - 1][rows[0].index(column)] = value
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        return (["--dataset", "meld", "--root", str(sample), "--annotations", str(path.parent)],
                f"{path}, row {row}, column '{column}': {message}")
    return make


def _meld_extra_field(sample: Path, folder: Path) -> tuple[list[str], str]:
    path, rows = _meld_annotations(sample, folder / "annotations")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] += ",an unquoted comma"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return (["--dataset", "meld", "--root", str(sample), "--annotations", str(path.parent)],
            f"{path}, row 3: expected 11 fields, found 12")


def _meld_latin1(sample: Path, folder: Path) -> tuple[list[str], str]:
    path, _ = _meld_annotations(sample, folder / "annotations")
    data = path.read_bytes()
    line = data.index(b"\n", data.index(b"\n", data.index(b"\n") + 1) + 1) + 1  # row 4
    at = data.index(b",", line) + 1  # the utterance's first character
    path.write_bytes(data[:at] + "Café ".encode("cp1252") + data[at:])
    return (["--dataset", "meld", "--root", str(sample), "--annotations", str(path.parent)],
            f"{path}, row 4: not UTF-8 text: byte 0xe9 at offset {at + 3} "
            "(invalid continuation byte)")


def _sidecar_unknown_id(sample: Path, folder: Path) -> tuple[list[str], str]:
    path = folder / "asr.csv"
    path.write_text("sample_id,transcript\ntrain/dia0_utt0,heard\ntrain/dia999_utt0,never\n",
                    encoding="utf-8")
    return (["--dataset", "meld", "--root", str(sample), "--transcripts", str(path)],
            f"{path}, row 3, column 'sample_id': sample_id 'train/dia999_utt0' is not in the "
            "MELD annotations (ids are split-qualified, e.g. 'train/dia0_utt0')")


def _mosei_bad_number(sample: Path, folder: Path) -> tuple[list[str], str]:
    root = folder / "mosei"
    (root / "Raw" / "Videos" / "Full" / "Combined").mkdir(parents=True)
    path = folder / "labels.csv"
    path.write_text(",".join(mosei.CSV_HEADER) + "\nvidA,0.0,1.0,0.0,0,0,0,0,0,0\n"
                    "vidA,1.0,2.0,zero,0,0,0,0,0,0\n", encoding="utf-8")
    return (["--dataset", "mosei", "--root", str(root), "--annotations", str(path)],
            f"{path}, row 3, column 'sentiment': not a number: 'zero'")


def _afewva_out_of_range(sample: Path, folder: Path) -> tuple[list[str], str]:
    clip = folder / "afewva" / "001"
    clip.mkdir(parents=True)
    (clip / "00000.png").write_bytes(b"")  # the adapter does not decode
    (clip / "001.json").write_text(json.dumps({"actor": "a", "frames": {
        "00000": {"valence": 1.0, "arousal": 0.0}, "00001": {"valence": 11.0, "arousal": 0.0}}}))
    # AFEW-VA's clips have video keys only (audio or text would be refused first)
    return (["--dataset", "afewva", "--root", str(clip.parent), "--modalities", "frames_2d"],
            f"{clip / '001.json'}, column 'frames.valence': frame '00001': valence 11.0 is not "
            "a number in [-10, 10]")


CASES: dict[str, Case] = {
    "MELD CSV: unknown emotion": _meld_cell(
        "Emotion", "happy", 4, "unknown label 'happy'; valid: ['neutral', 'surprise', 'fear', "
        "'sadness', 'joy', 'disgust', 'anger']"),
    "MELD CSV: malformed time": _meld_cell(
        "StartTime", "00:01:02.003", 3,
        "'00:01:02.003' is not a time H:MM:SS,mmm or HH:MM:SS,mmm"),
    "MELD CSV: unquoted comma (12 fields)": _meld_extra_field,
    "MELD CSV: a byte not in UTF-8": _meld_latin1,
    "transcripts sidecar: unknown sample_id": _sidecar_unknown_id,
    "MOSEI label CSV: not a number": _mosei_bad_number,
    "AFEW-VA JSON: valence out of range": _afewva_out_of_range,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_annotations_are_one_message_naming_file_row_and_column(
        case: str, meld_sample: Path, tmp_path: Path, fault_log: Callable) -> None:
    options, message = CASES[case](meld_sample, tmp_path)
    out = tmp_path / "store"
    result = CliRunner().invoke(app, ["extract", "--out", str(out), "--weights", "random",
                                      "--modalities", "audio,text", "--device", "cpu", *options])
    assert result.exit_code == 2, result.output
    assert f"error: {message}\n" in result.output, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir()), "nothing written, the lock released"
    named = ", ".join(part for part, mark in (("file", ""), ("row", ", row "),
                                               ("column", ", column ")) if mark in message)
    fault_log(f"bad annotations: {case}", outcome=f"exit 2 before any extraction; names {named}")
