"""MELD adapter: the official raw release (``MELD.Raw.tar.gz``, unpacked) -> sample table.

Layout (``manifests/meld.yaml``)::

    ROOT/train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv
    ROOT/train/train_splits/dia{D}_utt{U}.mp4
    ROOT/dev/dev_splits_complete/dia{D}_utt{U}.mp4
    ROOT/test/output_repeated_splits_test/dia{D}_utt{U}.mp4

``D`` is the CSV's ``Dialogue_ID`` and ``U`` its ``Utterance_ID``; MELD calls the dev split
``dev``, the sample table calls it ``val``.

Decisions, and why:

- **Sample ids are split-qualified** (``"train/dia0_utt0"``, ``"val/dia0_utt0"``): MELD restarts
  ``Dialogue_ID`` at 0 in every split, so ``dia0_utt0`` names three different clips, and a store
  needs ids that are unique across splits. ``known_bad`` entries in the manifest use the same ids.
- **Rows in errors** are line numbers of the CSV file with the header as row 1, as a text editor
  or spreadsheet numbers them (MELD has no line breaks inside fields).
- **Every column is checked**, not only the ones used: ``Sr No.``, ``Dialogue_ID``,
  ``Utterance_ID``, ``Season`` and ``Episode`` must be integers, ``Emotion`` one of the manifest's
  labels, ``Sentiment`` positive/negative/neutral, ``StartTime``/``EndTime`` ``H:MM:SS,mmm`` or
  ``HH:MM:SS,mmm`` (a few rows have two fraction digits, read as a decimal fraction). A file
  that fails any check is an error: annotations that do not parse are not guessed at.
- **Times are not clip offsets**: ``StartTime``/``EndTime`` are times in the episode and every
  clip is its own file, so ``start_s``/``end_s`` are null; the times are only validated.
- **Encoding**: strict UTF-8 (a byte-order mark is allowed). Undecodable bytes or NUL bytes are
  an error naming the byte offset and row, never replaced silently.
- **Transcripts** are the ``Utterance`` column as released, typographic quotes (``’ “ ” …``)
  included. Mojibake is repaired only where the repair is provably right
  (:func:`repair_mojibake`): the released CSVs contain none, but copies that went through a
  cp1252/latin-1 round trip (``donâ€™t``, ``don\\x92t``) are restored to ``don’t``. The count of
  repaired utterances is logged.
- The test folder holds unannotated ``final_videos_test*.mp4`` files: media files that no CSV
  row names are ignored, and their count is logged.
- A ``transcripts=`` sidecar (``sample_id,transcript``, split-qualified ids) replaces the CSV
  utterance of each clip it lists, e.g. to compare with speech-recognition text as used for
  CAER and VoxCeleb2; an id that no CSV lists is an error, and the counts are logged.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError
from pipeline.datasets.table import DatasetError, SampleTable, build_table
from pipeline.datasets.transcripts import read_sidecar_entries
from pipeline.failures import Failure, Reason, Stage
from pipeline.manifest import SPLITS, DatasetManifest, SplitLayout, manifest_path

log = logging.getLogger(__name__)

COLUMNS = ("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
           "Utterance_ID", "Season", "Episode", "StartTime", "EndTime")
INTEGER_COLUMNS = ("Sr No.", "Dialogue_ID", "Utterance_ID", "Season", "Episode")
TIME_COLUMNS = ("StartTime", "EndTime")
SENTIMENTS = ("positive", "negative", "neutral")

_TIME = re.compile(r"(\d{1,2}):([0-5]\d):([0-5]\d),(\d{1,3})")
_INTEGER = re.compile(r"[0-9]+")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_C1_CONTROL = re.compile(r"[\x80-\x9f]")


@dataclass(frozen=True)
class Utterance:
    """One validated row of a MELD annotation CSV."""

    dialogue: int
    utterance: int
    label: int
    text: str
    row: int

    @property
    def clip_id(self) -> str:
        """The release's file stem, ``dia{D}_utt{U}`` (unique within one split only)."""
        return f"dia{self.dialogue}_utt{self.utterance}"


def read(root: Path, manifest: DatasetManifest, *, annotations: Path | None = None,
         transcripts: Path | None = None) -> SampleTable:
    """Read the MELD raw release into its sample table.

    Args:
        root: the dataset root (absolute, existing) in the official layout.
        manifest: the parsed ``manifests/meld.yaml``.
        annotations: folder holding ``train_sent_emo.csv`` etc. when they are not under ``root``.
        transcripts: optional sidecar CSV ``sample_id,transcript`` whose transcripts replace
            the ``Utterance`` of the clips it lists.

    Returns:
        One row per usable clip (split order train, val, test, then by dialogue and utterance
        id) with ``label`` the class index in the manifest's label order; clips listed in a CSV
        but absent on disk are ``missing_file`` failures, manifest ``known_bad`` clips are
        ``known_bad`` failures.

    Raises:
        DatasetError: an annotation CSV or the sidecar is missing, unreadable or has a bad row
            or column.
        ConfigError: the manifest does not fit MELD (multi-label, a split without annotations,
            a ``known_bad`` id that is not split-qualified).
    """
    if manifest.multilabel:
        raise ConfigError(f"{manifest_path(manifest.name)}: MELD is single-label; "
                          "set 'multilabel: false'")
    known_bad = _known_bad(manifest)
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    seen: set[str] = set()
    for split in (s for s in SPLITS if s in manifest.splits):
        layout = manifest.splits[split]
        csv_path = _annotation_path(root, annotations, layout, split, manifest)
        utterances = read_annotations(csv_path, manifest)
        split_rows, split_failures = _split_samples(
            split, utterances, root / layout.media, manifest.media_ext, known_bad)
        rows += split_rows
        failures += split_failures
        seen.update(f"{split}/{u.clip_id}" for u in utterances)
        log.info("MELD %s (%s): %d clips, %d failures", split, csv_path.name,
                 len(split_rows), len(split_failures))
    unmatched = sorted(set(known_bad) - seen)
    if unmatched:
        log.info("known_bad entries not listed in the annotations (nothing to drop): %s",
                 unmatched)
    if transcripts is not None:
        _apply_sidecar(transcripts, rows, seen)
    return build_table(manifest.name, rows, failures, multilabel=False, source=root)


def read_annotations(path: Path, manifest: DatasetManifest) -> list[Utterance]:
    """Parse and validate one MELD annotation CSV (e.g. ``train_sent_emo.csv``).

    Args:
        path: the CSV file.
        manifest: gives the label names (``Emotion`` -> class index).

    Returns:
        The rows in file order, transcripts with mojibake repaired.

    Raises:
        DatasetError: missing or undecodable file, missing column, wrong field count, a value
            that does not parse, or a (Dialogue_ID, Utterance_ID) pair listed twice.
    """
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)
    utterances: list[Utterance] = []
    first_row: dict[tuple[int, int], int] = {}
    repaired = 0
    try:
        header = _check_header(path, next(reader, None))
        for record in reader:
            if not record:  # a blank line, e.g. at the end of a hand-edited file
                continue
            utt = _parse_record(path, reader.line_num, header, record, manifest)
            text = repair_mojibake(utt.text)
            if text != utt.text:
                repaired += 1
                utt = replace(utt, text=text)
            key = (utt.dialogue, utt.utterance)
            if key in first_row:
                raise DatasetError(path, f"{utt.clip_id} is listed twice (first at row "
                                   f"{first_row[key]})", row=utt.row,
                                   column="Dialogue_ID/Utterance_ID")
            first_row[key] = utt.row
            utterances.append(utt)
    except csv.Error as err:
        raise DatasetError(path, f"not a valid CSV file: {err}", row=reader.line_num) from None
    if repaired:
        log.info("%s: repaired mojibake in %d utterance(s)", path, repaired)
    return utterances


def parse_time(text: str) -> float:
    """Seconds from a MELD time, ``H:MM:SS,mmm`` or ``HH:MM:SS,mmm``.

    The fraction after the comma is a decimal fraction (``"0:05:11,82"`` is 311.82 s).

    Raises:
        ValueError: the text is not in one of those formats.
    """
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time H:MM:SS,mmm or HH:MM:SS,mmm")
    hours, minutes, seconds, fraction = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + float(f"0.{fraction}")


def repair_mojibake(text: str) -> str:
    """Undo the two mojibakes MELD copies suffer, only where the undoing is exact.

    1. UTF-8 bytes decoded as cp1252 or latin-1 (``donâ€™t``): each run of non-ASCII characters
       is re-encoded and decoded as UTF-8, and replaced only when that round trip succeeds.
       Correct text survives because its runs do not re-encode to valid UTF-8: ``’`` is the
       lone byte 0x92, ``é`` the lone byte 0xE9.
    2. cp1252 bytes decoded as latin-1 (``don\\x92t``): C1 control characters (U+0080-U+009F)
       never occur in text, so each is read back as the cp1252 byte it was.

    Args:
        text: one utterance.

    Returns:
        The repaired text (the same string when there is nothing to repair).
    """
    return _C1_CONTROL.sub(_cp1252_char, _NON_ASCII_RUN.sub(_redecode_run, text))


def _redecode_run(match: re.Match[str]) -> str:
    run = match.group()
    for encoding in ("cp1252", "latin-1"):
        try:
            return run.encode(encoding).decode("utf-8")
        except UnicodeError:  # not mojibake of this kind: try the next, else keep the run
            continue
    return run


def _cp1252_char(match: re.Match[str]) -> str:
    try:
        return match.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are undefined in cp1252
        return match.group()


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
    except OSError as err:
        raise DatasetError(path, f"cannot read the annotation file: {err.strerror}") from None
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DatasetError(path, f"binary data, not a CSV file (NUL byte at offset {nul})",
                           row=data.count(b"\n", 0, nul) + 1)
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        raise DatasetError(path, f"not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} "
                           f"({err.reason})", row=data.count(b"\n", 0, offset) + 1) from None


def _check_header(path: Path, header: list[str] | None) -> list[str]:
    if header is None:
        raise DatasetError(path, f"empty file; expected the header {list(COLUMNS)}", row=1)
    for column in COLUMNS:
        if column not in header:
            raise DatasetError(path, f"missing column; the header has {header}", row=1,
                               column=column)
    return header


def _parse_record(path: Path, row: int, header: list[str], record: list[str],
                  manifest: DatasetManifest) -> Utterance:
    if len(record) != len(header):
        raise DatasetError(path, f"expected {len(header)} fields, found {len(record)}", row=row)
    fields = dict(zip(header, record))
    ints = {column: _integer(path, row, column, fields[column]) for column in INTEGER_COLUMNS}
    for column in TIME_COLUMNS:
        try:
            parse_time(fields[column])
        except ValueError as err:
            raise DatasetError(path, str(err), row=row, column=column) from None
    try:
        label = manifest.label_index(fields["Emotion"])
    except KeyError as err:
        raise DatasetError(path, str(err.args[0]), row=row, column="Emotion") from None
    if fields["Sentiment"].strip().lower() not in SENTIMENTS:
        raise DatasetError(path, f"unknown sentiment {fields['Sentiment']!r}; valid: "
                           f"{list(SENTIMENTS)}", row=row, column="Sentiment")
    return Utterance(ints["Dialogue_ID"], ints["Utterance_ID"], label, fields["Utterance"], row)


def _integer(path: Path, row: int, column: str, value: str) -> int:
    if _INTEGER.fullmatch(value.strip()) is None:
        raise DatasetError(path, f"{value!r} is not a non-negative integer", row=row,
                           column=column)
    return int(value)


def _annotation_path(root: Path, annotations: Path | None, layout: SplitLayout, split: str,
                     manifest: DatasetManifest) -> Path:
    if layout.annotations is None:
        raise ConfigError(f"{manifest_path(manifest.name)}: splits.{split}.annotations is "
                          "required for MELD (the CSV listing the split's clips)")
    if annotations is None:
        return root / layout.annotations
    if not annotations.is_dir():
        raise DatasetError(annotations, "annotations folder not found")
    return annotations / layout.annotations


def _known_bad(manifest: DatasetManifest) -> dict[str, str]:
    notes = {}
    for entry in manifest.known_bad:
        if not entry.sample_id.startswith(f"{entry.split}/"):
            raise ConfigError(f"{manifest_path(manifest.name)}: known_bad sample_id "
                              f"{entry.sample_id!r} must be split-qualified, "
                              f"'{entry.split}/diaX_uttY'")
        notes[entry.sample_id] = entry.note
    return notes


def _split_samples(split: str, utterances: list[Utterance], media: Path, ext: str,
                   known_bad: dict[str, str]) -> tuple[list[dict[str, Any]], list[Failure]]:
    ext = "." + ext.lstrip(".")
    on_disk = _media_files(media, ext, split)
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    for utt in sorted(utterances, key=lambda u: (u.dialogue, u.utterance)):
        sample_id = f"{split}/{utt.clip_id}"
        path = media / f"{utt.clip_id}{ext}"
        if sample_id in known_bad:
            failures.append(Failure(sample_id, split, Stage.ADAPTER, Reason.KNOWN_BAD,
                                    f"known bad: {known_bad[sample_id]}"))
        elif path.name not in on_disk:
            failures.append(Failure(sample_id, split, Stage.ADAPTER, Reason.MISSING_FILE,
                                    f"{path} not found (annotated at row {utt.row})"))
        else:
            rows.append({"sample_id": sample_id, "split": split, "media_path": str(path),
                         "start_s": None, "end_s": None, "transcript": utt.text,
                         "label": utt.label})
    unannotated = on_disk - {f"{u.clip_id}{ext}" for u in utterances}
    if unannotated:
        log.info("%s: ignoring %d unannotated %s file(s), e.g. %s", media, len(unannotated),
                 ext, min(unannotated))
    return rows, failures


def _apply_sidecar(path: Path, rows: list[dict[str, Any]], annotated: set[str]) -> None:
    entries = read_sidecar_entries(path)
    by_id = {row["sample_id"]: row for row in rows}
    for sample_id, entry in entries.items():
        if sample_id in by_id:
            by_id[sample_id]["transcript"] = entry.transcript
        elif sample_id not in annotated:  # listed clips that failed are fine, unknown ids not
            raise DatasetError(path, f"sample_id {sample_id!r} is not in the MELD annotations "
                               "(ids are split-qualified, e.g. 'train/dia0_utt0')",
                               row=entry.row, column="sample_id")
    kept = sum(1 for sample_id in by_id if sample_id not in entries)
    log.info("%s: replaced %d transcripts; %d clips keep their CSV utterance", path,
             len(by_id) - kept, kept)


def _media_files(media: Path, ext: str, split: str) -> set[str]:
    # One directory listing instead of 10^4 stat calls; it also finds the unannotated files.
    if not media.is_dir():
        log.warning("%s: media folder of split %s not found; its clips are missing_file "
                    "failures", media, split)
        return set()
    with os.scandir(media) as entries:
        return {e.name for e in entries if e.name.endswith(ext) and e.is_file()}
