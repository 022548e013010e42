"""The MELD adapter: exact tables from hand-built layouts, every error path, the real CSVs."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import ConfigError
from pipeline.datasets import meld, scan
from pipeline.datasets.table import DatasetError
from pipeline.manifest import KnownBad, load_manifest

HEADER = ("Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,"
          "StartTime,EndTime")
CSV_NAMES = {"train": "train_sent_emo.csv", "val": "dev_sent_emo.csv",
             "test": "test_sent_emo.csv"}
MEDIA = {"train": "train/train_splits", "val": "dev/dev_splits_complete",
         "test": "test/output_repeated_splits_test"}
REAL_CSV_DIR = Path(os.environ.get(
    "CONCLUGEN_MELD_CSV_DIR", Path(__file__).resolve().parents[2].parent / "shared/datasets/meld"))
# Labels in manifest order: neutral, surprise, fear, sadness, joy, disgust, anger.
NEUTRAL, SURPRISE, FEAR, SADNESS, JOY, DISGUST, ANGER = range(7)


@pytest.fixture(scope="module")
def manifest():
    return load_manifest("meld")


def row(sr: int, dia: int, utt: int, text: str = "Hi.", emotion: str = "neutral",
        sentiment: str = "neutral", start: str = "00:01:02,003", end: str = "0:01:04,5") -> str:
    """One CSV line; the utterance is written as given (quote it yourself if it has commas)."""
    return f'{sr},{text},Joey,{emotion},{sentiment},{dia},{utt},3,12,"{start}","{end}"'


def make_layout(root: Path, csvs: dict[str, list[str]], files: dict[str, list[str]]) -> Path:
    """CSV lines per split (header added) and empty media files per split."""
    for split, lines in csvs.items():
        (root / CSV_NAMES[split]).write_text("\r\n".join([HEADER, *lines]) + "\r\n",
                                             encoding="utf-8")
    for split, names in files.items():
        (root / MEDIA[split]).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / MEDIA[split] / name).write_bytes(b"")
    return root


def minimal(root: Path, train_lines: list[str]) -> Path:
    """A layout whose train CSV is ``train_lines`` and whose other splits are empty."""
    return make_layout(root, {"train": train_lines, "val": [], "test": []}, {})


def test_read_builds_the_exact_table(tmp_path, manifest, caplog):
    make_layout(
        tmp_path,
        {"train": [row(3, 1, 0, "Yeah!", "joy", "positive"),
                   row(1, 0, 0, '"Oh, my ‘God’ — he’s lost it…"', "anger", "negative"),
                   row(2, 0, 1, '"Well, I’m… fine."', "surprise", "positive"),
                   row(4, 2, 0), row(5, 125, 3)],
         "val": [row(1, 0, 0, "What?", "Surprise", "negative"), row(2, 110, 7)],
         "test": [row(1, 0, 0, "Run!", "fear", "negative")]},
        {"train": ["dia0_utt0.mp4", "dia0_utt1.mp4", "dia1_utt0.mp4", "dia125_utt3.mp4"],
         "val": ["dia0_utt0.mp4"],
         "test": ["dia0_utt0.mp4", "final_videos_test0.mp4", "final_videos_test1.mp4"]})
    with caplog.at_level(logging.INFO, logger="pipeline.datasets.meld"):
        table = meld.read(tmp_path, manifest)

    def sample(split: str, clip: str, text: str, label: int) -> dict:
        return {"sample_id": f"{split}/{clip}", "split": split,
                "media_path": str(tmp_path / MEDIA[split] / f"{clip}.mp4"),
                "start_s": None, "end_s": None, "transcript": text, "label": label}

    assert table.dataset == "meld" and not table.multilabel
    assert table.samples.to_pylist() == [
        sample("train", "dia0_utt0", "Oh, my ‘God’ — he’s lost it…", ANGER),
        sample("train", "dia0_utt1", "Well, I’m… fine.", SURPRISE),
        sample("train", "dia1_utt0", "Yeah!", JOY),
        sample("val", "dia0_utt0", "What?", SURPRISE),
        sample("test", "dia0_utt0", "Run!", FEAR),
    ]
    failures = table.failures.to_pylist()
    assert [(f["sample_id"], f["split"], f["stage"], f["reason"]) for f in failures] == [
        ("train/dia2_utt0", "train", "adapter", "missing_file"),
        ("train/dia125_utt3", "train", "adapter", "known_bad"),
        ("val/dia110_utt7", "val", "adapter", "known_bad"),
    ]
    assert str(tmp_path / MEDIA["train"] / "dia2_utt0.mp4") in failures[0]["message"]
    assert "row 5" in failures[0]["message"]
    assert "corrupt" in failures[1]["message"]
    assert "ignoring 2 unannotated .mp4 file(s)" in caplog.text
    assert "final_videos_test0.mp4" in caplog.text
    assert "train/dia110_utt7" in caplog.text  # a known_bad entry no CSV lists


def test_scan_goes_through_the_registry(tmp_path):
    make_layout(tmp_path, {"train": [row(1, 0, 0)], "val": [row(1, 0, 0)], "test": []},
                {"train": ["dia0_utt0.mp4"], "val": ["dia0_utt0.mp4"]})
    table = scan("meld", tmp_path)
    assert table.samples.column("sample_id").to_pylist() == ["train/dia0_utt0", "val/dia0_utt0"]


def test_missing_media_folder_makes_missing_file_failures(tmp_path, manifest, caplog):
    minimal(tmp_path, [row(1, 0, 0), row(2, 0, 1)])
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.meld"):
        table = meld.read(tmp_path, manifest)
    assert table.samples.num_rows == 0
    assert table.failures.column("reason").to_pylist() == ["missing_file", "missing_file"]
    assert "media folder of split train not found" in caplog.text


def test_annotations_folder_replaces_the_root_csvs(tmp_path, manifest):
    csv_dir, media_root = tmp_path / "csv", tmp_path / "media"
    csv_dir.mkdir(), media_root.mkdir()
    make_layout(csv_dir, {"train": [row(1, 0, 0, "From the folder.")], "val": [], "test": []},
                {})
    make_layout(media_root, {}, {"train": ["dia0_utt0.mp4"]})
    table = meld.read(media_root, manifest, annotations=csv_dir)
    assert table.samples.column("transcript").to_pylist() == ["From the folder."]
    assert table.samples.column("media_path").to_pylist() == [
        str(media_root / MEDIA["train"] / "dia0_utt0.mp4")]


def test_mojibake_is_repaired_and_counted(tmp_path, manifest, caplog):
    minimal(tmp_path, [row(1, 0, 0, "donâ€™t"), row(2, 0, 1, "don\x92t"),
                       row(3, 0, 2, "don’t")])
    with caplog.at_level(logging.INFO, logger="pipeline.datasets.meld"):
        texts = [u.text for u in meld.read_annotations(tmp_path / CSV_NAMES["train"], manifest)]
    assert texts == ["don’t", "don’t", "don’t"]
    assert "repaired mojibake in 2 utterance(s)" in caplog.text


@pytest.mark.parametrize(("broken", "fixed"), [
    ("Itâ€™s", "It’s"),                  # UTF-8 read as cp1252
    ("Itâ\x80\x99s", "It’s"),           # UTF-8 read as latin-1
    ("It\x92s \x93so\x94 \x85", "It’s “so” …"),  # cp1252 read as latin-1
    ("cafÃ©", "café"),
    ("It’s “so” … café — naïve ‘x’", "It’s “so” … café — naïve ‘x’"),  # correct text kept
    ("\x81 stays", "\x81 stays"),         # undefined in cp1252: nothing provable to repair
])
def test_repair_mojibake(broken, fixed):
    assert meld.repair_mojibake(broken) == fixed


@pytest.mark.parametrize(("text", "seconds"), [
    ("0:08:03,733", 483.733), ("00:08:03,733", 483.733), ("12:00:00,000", 43200.0),
    ("00:05:11,82", 311.82), ("0:00:00,5", 0.5),
])
def test_parse_time_reads_both_formats(text, seconds):
    assert meld.parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["00:08:03.733", "8:03,733", "00:61:00,000", "00:08:03,7333",
                                  "", "000:08:03,733", "00:08:03"])
def test_parse_time_rejects_other_formats(text):
    with pytest.raises(ValueError, match="is not a time"):
        meld.parse_time(text)


def expect_error(path: Path, manifest, *, row: int | None, column: str | None,
                 match: str) -> DatasetError:
    with pytest.raises(DatasetError, match=match) as info:
        meld.read(path.parent, manifest)
    err = info.value
    assert (err.file, err.row, err.column) == (str(path), row, column)
    assert str(path) in str(err)
    if row is not None:
        assert f"row {row}" in str(err)
    if column is not None:
        assert f"column '{column}'" in str(err)
    return err


def test_missing_annotation_csv(tmp_path, manifest):
    make_layout(tmp_path, {"train": [], "test": []}, {})
    expect_error(tmp_path / "dev_sent_emo.csv", manifest, row=None, column=None,
                 match="annotation file not found")


def test_missing_annotations_folder(tmp_path, manifest):
    with pytest.raises(DatasetError, match="annotations folder not found") as info:
        meld.read(tmp_path, manifest, annotations=tmp_path / "nowhere")
    assert info.value.file == str(tmp_path / "nowhere")


def test_missing_column(tmp_path, manifest):
    path = tmp_path / CSV_NAMES["train"]
    minimal(tmp_path, [])
    path.write_text(HEADER.replace(",Emotion", "") + "\r\n", encoding="utf-8")
    expect_error(path, manifest, row=1, column="Emotion", match="missing column")


def test_unknown_emotion(tmp_path, manifest):
    minimal(tmp_path, [row(1, 0, 0), row(2, 0, 1, emotion="happy")])
    expect_error(tmp_path / CSV_NAMES["train"], manifest, row=3, column="Emotion",
                 match="unknown label 'happy'")


def test_unknown_sentiment(tmp_path, manifest):
    minimal(tmp_path, [row(1, 0, 0, sentiment="meh")])
    expect_error(tmp_path / CSV_NAMES["train"], manifest, row=2, column="Sentiment",
                 match="unknown sentiment 'meh'")


def test_duplicate_clip_in_one_csv(tmp_path, manifest):
    minimal(tmp_path, [row(1, 4, 2), row(2, 4, 3), row(3, 4, 2)])
    err = expect_error(tmp_path / CSV_NAMES["train"], manifest, row=4,
                       column="Dialogue_ID/Utterance_ID", match="dia4_utt2 is listed twice")
    assert "first at row 2" in str(err)


def test_same_clip_id_in_two_splits_is_fine(tmp_path, manifest):
    make_layout(tmp_path, {"train": [row(1, 0, 0)], "val": [row(1, 0, 0)],
                           "test": [row(1, 0, 0)]}, {})
    ids = meld.read(tmp_path, manifest).failures.column("sample_id").to_pylist()
    assert ids == ["train/dia0_utt0", "val/dia0_utt0", "test/dia0_utt0"]


@pytest.mark.parametrize(("column", "line"), [
    ("Dialogue_ID", '1,Hi.,Joey,neutral,neutral,1a,0,3,12,"00:01:02,003","00:01:04,000"'),
    ("Utterance_ID", '1,Hi.,Joey,neutral,neutral,1,-1,3,12,"00:01:02,003","00:01:04,000"'),
    ("Sr No.", 'x,Hi.,Joey,neutral,neutral,1,0,3,12,"00:01:02,003","00:01:04,000"'),
    ("Season", '1,Hi.,Joey,neutral,neutral,1,0,,12,"00:01:02,003","00:01:04,000"'),
])
def test_non_integer_id(tmp_path, manifest, column, line):
    minimal(tmp_path, [line])
    expect_error(tmp_path / CSV_NAMES["train"], manifest, row=2, column=column,
                 match="is not a non-negative integer")


@pytest.mark.parametrize(("column", "start", "end"), [
    ("StartTime", "00:01:02.003", "00:01:04,000"),
    ("EndTime", "00:01:02,003", "1:04,000"),
])
def test_malformed_time(tmp_path, manifest, column, start, end):
    minimal(tmp_path, [row(1, 0, 0), row(2, 0, 1, start=start, end=end)])
    expect_error(tmp_path / CSV_NAMES["train"], manifest, row=3, column=column,
                 match="is not a time")


def test_wrong_field_count(tmp_path, manifest):
    minimal(tmp_path, [row(1, 0, 0, "Oh, no")])  # unquoted comma: one field too many
    expect_error(tmp_path / CSV_NAMES["train"], manifest, row=2, column=None,
                 match="expected 11 fields, found 12")


def test_bad_encoding_names_offset_and_row(tmp_path, manifest):
    path = tmp_path / CSV_NAMES["train"]
    minimal(tmp_path, [])
    body = f"{HEADER}\r\n{row(1, 0, 0)}\r\n".encode() + row(2, 0, 1, "Café").encode("cp1252")
    path.write_bytes(body)
    offset = body.index(b"\xe9")
    expect_error(path, manifest, row=3, column=None, match=f"byte 0xe9 at offset {offset}")


def test_binary_garbage(tmp_path, manifest):
    path = tmp_path / CSV_NAMES["train"]
    minimal(tmp_path, [])
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00garbage")
    expect_error(path, manifest, row=1, column=None, match="binary data, not a CSV file")


def test_broken_quoting(tmp_path, manifest):
    minimal(tmp_path, [row(1, 0, 0, '"Hi" there')])
    expect_error(tmp_path / CSV_NAMES["train"], manifest, row=2, column=None,
                 match="not a valid CSV file")


def test_empty_csv(tmp_path, manifest):
    path = tmp_path / CSV_NAMES["train"]
    minimal(tmp_path, [])
    path.write_bytes(b"")
    expect_error(path, manifest, row=1, column=None, match="empty file")


def test_byte_order_mark_and_blank_lines_are_accepted(tmp_path, manifest):
    path = tmp_path / CSV_NAMES["train"]
    minimal(tmp_path, [])
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\r\n{row(1, 0, 0)}\r\n\r\n".encode())
    assert [u.clip_id for u in meld.read_annotations(path, manifest)] == ["dia0_utt0"]


def test_transcripts_sidecar_replaces_the_listed_utterances(tmp_path, manifest, caplog):
    make_layout(tmp_path, {"train": [row(1, 0, 0, "CSV zero."), row(2, 0, 1, "CSV one."),
                                     row(3, 0, 2)], "val": [], "test": []},
                {"train": ["dia0_utt0.mp4", "dia0_utt1.mp4"]})
    sidecar = tmp_path / "asr.csv"
    sidecar.write_text("sample_id,transcript\ntrain/dia0_utt1,Heard one.\n"
                       "train/dia0_utt2,Missing clip.\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="pipeline.datasets.meld"):
        table = meld.read(tmp_path, manifest, transcripts=sidecar)
    assert table.samples.column("transcript").to_pylist() == ["CSV zero.", "Heard one."]
    assert "replaced 1 transcripts; 1 clips keep their CSV utterance" in caplog.text


@pytest.mark.parametrize("sample_id", ["dia0_utt0", "val/dia0_utt0"])
def test_transcripts_sidecar_with_an_unknown_id(tmp_path, manifest, sample_id):
    minimal(tmp_path, [row(1, 0, 0)])
    sidecar = tmp_path / "asr.csv"
    sidecar.write_text(f"sample_id,transcript\ntrain/dia0_utt0,ok\n{sample_id},x\n",
                       encoding="utf-8")
    with pytest.raises(DatasetError, match=f"sample_id '{sample_id}' is not in the MELD") as info:
        meld.read(tmp_path, manifest, transcripts=sidecar)
    assert (info.value.file, info.value.row, info.value.column) == (str(sidecar), 3, "sample_id")


def test_missing_transcripts_sidecar(tmp_path, manifest):
    minimal(tmp_path, [])
    with pytest.raises(DatasetError, match="sidecar not found") as info:
        meld.read(tmp_path, manifest, transcripts=tmp_path / "asr.csv")
    assert info.value.file == str(tmp_path / "asr.csv")


@pytest.mark.parametrize(("change", "match"), [
    ({"known_bad": (KnownBad("train", "dia1_utt0", "x"),)},
     "meld.yaml: known_bad sample_id 'dia1_utt0' must be split-qualified"),
    ({"multilabel": True}, "meld.yaml: MELD is single-label"),
])
def test_manifest_that_does_not_fit_meld(tmp_path, manifest, change, match):
    minimal(tmp_path, [])
    with pytest.raises(ConfigError, match=match):
        meld.read(tmp_path, dataclasses.replace(manifest, **change))


# --- the real annotation files ------------------------------------------------------------

needs_real_csvs = pytest.mark.skipif(
    not (REAL_CSV_DIR / "train_sent_emo.csv").is_file(),
    reason=f"the real MELD CSVs are not at {REAL_CSV_DIR} (set CONCLUGEN_MELD_CSV_DIR)")

REAL_LABEL_COUNTS = {  # in manifest order: neutral, surprise, fear, sadness, joy, disgust, anger
    "train": [4710, 1205, 268, 683, 1743, 271, 1109],
    "val": [470, 150, 40, 111, 163, 22, 153],
    "test": [1256, 281, 50, 208, 402, 68, 345],
}


@pytest.fixture(scope="module")
def real(manifest):
    return {split: meld.read_annotations(REAL_CSV_DIR / name, manifest)
            for split, name in CSV_NAMES.items()}


@needs_real_csvs
def test_real_csvs_parse_completely(real):
    assert {split: len(rows) for split, rows in real.items()} == {
        "train": 9989, "val": 1109, "test": 2610}
    for split, rows in real.items():
        counts = Counter(u.label for u in rows)
        assert [counts[i] for i in range(7)] == REAL_LABEL_COUNTS[split], split


@needs_real_csvs
def test_real_utterances_keep_their_typographic_quotes(real):
    texts = {(split, u.clip_id): u.text for split, rows in real.items() for u in rows}
    assert texts["val", "dia0_utt0"] == "Oh my God, he’s lost it. He’s totally lost it."
    assert texts["test", "dia0_utt1"] == (
        "Oh. That’s so Monica can keep track. That way if one on them is missing, she can be "
        "like, ‘Where’s number 27?!’")
    assert texts["val", "dia112_utt1"] == (
        "“Good-bye Phoebe and Ursula. I’ll miss you. P.S. Your Mom lives in Montauk.” "
        "You just wrote this!")
    assert texts["train", "dia613_utt6"] == "Nestlé Toll House?"


@needs_real_csvs
def test_real_utterances_are_not_altered_by_the_mojibake_repair(real):
    for split, rows in real.items():
        with (REAL_CSV_DIR / CSV_NAMES[split]).open(encoding="utf-8", newline="") as handle:
            raw = [record["Utterance"] for record in csv.DictReader(handle)]
        assert [u.text for u in rows] == raw


@needs_real_csvs
def test_real_csvs_with_a_sparse_media_root(tmp_path, manifest):
    make_layout(tmp_path, {}, {
        "train": ["dia0_utt0.mp4", "dia125_utt3.mp4"], "val": ["dia0_utt0.mp4"],
        "test": ["dia0_utt0.mp4", "final_videos_test0.mp4"]})
    table = meld.read(tmp_path, manifest, annotations=REAL_CSV_DIR)
    assert table.samples.column("sample_id").to_pylist() == [
        "train/dia0_utt0", "val/dia0_utt0", "test/dia0_utt0"]
    assert table.samples.column("label").to_pylist() == [NEUTRAL, SADNESS, SURPRISE]
    reasons = Counter(zip(table.failures.column("split").to_pylist(),
                          table.failures.column("reason").to_pylist()))
    assert reasons == {("train", "known_bad"): 1, ("train", "missing_file"): 9987,
                       ("val", "known_bad"): 1, ("val", "missing_file"): 1107,
                       ("test", "missing_file"): 2609}
    assert table.samples.num_rows + table.failures.num_rows == 13_708
    known_bad = [f["sample_id"] for f in table.failures.to_pylist() if f["reason"] == "known_bad"]
    assert known_bad == ["train/dia125_utt3", "val/dia110_utt7"]
