"""CMU-MOSEI (Zadeh et al., ACL 2018): the labelled intervals of full YouTube videos.

Raw layout (paths from ``manifests/mosei.yaml``)::

    <root>/Raw/Videos/Full/Combined/<video_id>.mp4            full videos
    <root>/Raw/Transcript/Segmented/Combined/<video_id>.txt   segmented transcripts
    <root>/CMU_MOSEI_Labels.csd                               labels (or in the annotations folder)

The labels are the SDK's computational sequence, an HDF5 file read here with plain h5py: one
top-level group named after the sequence (``All Labels``) holding ``data/<video_id>/features``
(``[n, 7]``: sentiment, happy, sad, anger, surprise, disgust, fear) and
``data/<video_id>/intervals`` (``[n, 2]`` start/end seconds), plus a ``metadata`` group. A CSV
export works too: a file ending in ``.csv`` whose header is exactly :data:`CSV_HEADER`
(``video_id,start,end,sentiment,happy,sad,anger,surprise,disgust,fear``), one interval a line;
pass it (or a ``.csd`` elsewhere) as ``annotations``.

Decisions:

- One clip per labelled interval; ``sample_id`` is ``<video_id>_<k>`` with ``k`` the interval's
  0-based row for that video in the label file (file order). These are the ids of the paper's
  reference code, they exist without transcripts and are unique by construction.
- ``transcript`` is the text of the transcript segment whose interval has the largest
  intersection over union with the clip, if that is at least :data:`MIN_IOU`; otherwise null
  (the count is logged). A sidecar CSV (``sample_id,transcript``, read by
  :func:`pipeline.datasets.transcripts.read_sidecar`) overrides it for the clips it lists.
- ``labels`` follows the manifest's label names: 1.0 where the intensity is > 0, else 0.0.
- ``targets`` follows the manifest's ``targets``: ``valence`` is the sentiment score (column
  0, annotated apart from the emotions, in [-3, 3]) divided by 3, so in [-1, 1] like every
  continuous target of a store.
- The split of a video comes from the manifest's standard folds. A labelled video in no fold is
  left out, with a warning giving the count and the first ids (a failure row needs a split).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.datasets.table import DatasetError, SampleTable, build_table
from pipeline.datasets.transcripts import read_sidecar
from pipeline.failures import Failure, Reason, Stage
from pipeline.manifest import SPLITS, DatasetManifest

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear")
CSV_HEADER = ("video_id", "start", "end", *LABEL_COLUMNS)
MIN_IOU = 0.5
SEPARATOR = "___"
#: Continuous target -> (its column of the label file, the scale that maps it to [-1, 1]).
TARGET_COLUMNS = {"valence": ("sentiment", 3.0)}


@dataclass(frozen=True)
class Interval:
    """One labelled interval: row ``row`` of video ``video_id`` in the label file."""

    video_id: str
    row: int
    start: float
    end: float
    values: tuple[float, ...]  # the LABEL_COLUMNS, in that order

    @property
    def sample_id(self) -> str:
        return f"{self.video_id}_{self.row}"


@dataclass(frozen=True)
class Segment:
    """One line of a segmented transcript file."""

    index: int
    start: float
    end: float
    text: str


def read(root: Path, manifest: DatasetManifest, *, annotations: Path | None = None,
         transcripts: Path | None = None) -> SampleTable:
    """Read CMU-MOSEI into its sample table.

    Args:
        root: the dataset root (absolute, existing).
        manifest: the parsed ``manifests/mosei.yaml``.
        annotations: a folder holding the label file named in the manifest, or the label file
            itself (``.csd`` / HDF5, or a ``.csv`` export).
        transcripts: optional CSV ``sample_id,transcript`` overriding the segmented transcripts.

    Returns:
        One row per labelled interval of a video in the standard folds (``labels``: one 0/1
        per manifest label); missing videos and known-bad clips as failures.

    Raises:
        DatasetError: unreadable label file, transcript line, sidecar or manifest folds.
    """
    label_path = label_file_path(root, manifest, annotations)
    by_video = read_labels(label_path)
    fold_of = fold_lookup(manifest)
    columns = _label_columns(manifest)
    targets = _target_columns(manifest)
    overrides = read_sidecar(transcripts) if transcripts else {}
    _warn_unassigned(by_video, fold_of, label_path)
    known_bad = {kb.sample_id: kb.note for kb in manifest.known_bad}
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    unmatched = 0
    for video_id, intervals in by_video.items():
        split = fold_of.get(video_id)
        if split is None:
            continue
        media = root / manifest.splits[split].media / f"{video_id}{manifest.media_ext}"
        segments = _video_segments(root, manifest, video_id)
        present = media.is_file()
        for iv in intervals:
            failure = _failure(iv, split, media, present, known_bad)
            if failure is not None:
                failures.append(failure)
                continue
            segment = match_segment(iv, segments)
            unmatched += segment is None
            text = overrides.get(iv.sample_id, segment.text if segment else None)
            rows.append(_row(iv, split, media, text, columns, targets))
    if unmatched:
        log.warning("%d of %d CMU-MOSEI clips overlap no transcript segment (IoU >= %.2f); "
                    "their transcript is null", unmatched, len(rows), MIN_IOU)
    _warn_unused_overrides(overrides, rows, failures, transcripts)
    rows.sort(key=lambda r: _order(r["split"], r["sample_id"]))
    failures.sort(key=lambda f: _order(f.split, f.sample_id))
    log.info("CMU-MOSEI: %d clips, %d failures from %s", len(rows), len(failures), label_path)
    return build_table(manifest.name, rows, failures, multilabel=True, source=label_path,
                       targets=bool(targets))


def _failure(iv: Interval, split: str, media: Path, present: bool,
             known_bad: dict[str, str]) -> Failure | None:
    if iv.sample_id in known_bad:
        return Failure(iv.sample_id, split, Stage.ADAPTER, Reason.KNOWN_BAD,
                       known_bad[iv.sample_id])
    if not present:
        return Failure(iv.sample_id, split, Stage.ADAPTER, Reason.MISSING_FILE,
                       f"video not found: {media}")
    return None


def label_file_path(root: Path, manifest: DatasetManifest, annotations: Path | None) -> Path:
    """Where the label file is: ``annotations`` if it is a file, else the manifest's
    ``label_file`` in ``annotations`` (a folder) or in ``root``."""
    if annotations is not None and annotations.is_file():
        return annotations
    if manifest.label_file is None:
        raise DatasetError(f"manifests/{manifest.name}.yaml", "no label_file given",
                           column="label_file")
    path = (annotations or root) / manifest.label_file
    if not path.is_file():
        raise DatasetError(path, "label file not found (the SDK's CMU_MOSEI_Labels.csd, or pass "
                                 "its folder or a CSV export as --annotations, "
                                 "annotations=)")
    return path


def read_labels(path: Path) -> dict[str, list[Interval]]:
    """Labelled intervals per video from a ``.csd`` (HDF5) or ``.csv`` file.

    A video's intervals keep their order in the file: ``Interval.row`` is the row in the
    video's HDF5 ``intervals`` dataset, or the video's n-th line in the CSV.

    Raises:
        DatasetError: not HDF5 / bad CSV header, missing group or dataset, a features array
            without 7 columns, an interval with end <= start; the message names the file, the
            HDF5 path or CSV column, and the row (for a CSV, the line number; header = 1).
    """
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if not h5py.is_hdf5(path):
        raise DatasetError(path, "not an HDF5 file: expected the SDK's computational sequence "
                                 f"(.csd) or a .csv export with header {','.join(CSV_HEADER)}")
    with h5py.File(path, "r") as h5:
        groups = [name for name, item in h5.items() if isinstance(item, h5py.Group)]
        if len(groups) != 1:
            raise DatasetError(path, "expected one top-level group named after the sequence "
                                     f"(e.g. 'All Labels'), found {sorted(h5.keys())}")
        data = h5[groups[0]].get("data")
        if not isinstance(data, h5py.Group):
            raise DatasetError(path, f"missing HDF5 group '{groups[0]}/data'")
        return {vid: _read_h5_video(path, data, vid) for vid in data}


def _read_h5_video(path: Path, data: h5py.Group, video_id: str) -> list[Interval]:
    where = f"{data.name.lstrip('/')}/{video_id}"
    arrays = {}
    for name in ("features", "intervals"):
        item = data[video_id].get(name) if isinstance(data[video_id], h5py.Group) else None
        if not isinstance(item, h5py.Dataset):
            raise DatasetError(path, f"missing HDF5 dataset '{where}/{name}'")
        arrays[name] = np.asarray(item[()], dtype=np.float64)
    feats, spans = arrays["features"], arrays["intervals"]
    if feats.ndim != 2 or feats.shape[1] != len(LABEL_COLUMNS):
        raise DatasetError(path, f"HDF5 dataset '{where}/features' has shape {feats.shape}; "
                                 f"expected [n, {len(LABEL_COLUMNS)}] ({', '.join(LABEL_COLUMNS)})")
    if spans.ndim != 2 or spans.shape != (len(feats), 2):
        raise DatasetError(path, f"HDF5 dataset '{where}/intervals' has shape {spans.shape}; "
                                 f"expected [{len(feats)}, 2] (start, end seconds)")
    out = []
    for row, ((start, end), values) in enumerate(zip(spans, feats, strict=True)):
        _check_interval(path, f"HDF5 dataset '{where}'", row, start, end, values)
        out.append(Interval(video_id, row, float(start), float(end), tuple(map(float, values))))
    return out


def _read_csv(path: Path) -> dict[str, list[Interval]]:
    out: dict[str, list[Interval]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = tuple(h.strip() for h in next(reader, []))
        if header != CSV_HEADER:
            raise DatasetError(path, f"expected the header {','.join(CSV_HEADER)}, got "
                                     f"{','.join(header) or 'an empty file'}", row=1)
        for record in reader:
            line = reader.line_num
            if len(record) != len(CSV_HEADER):
                raise DatasetError(path, f"expected {len(CSV_HEADER)} fields, got {len(record)}",
                                   row=line)
            video_id = record[0].strip()
            if not video_id:
                raise DatasetError(path, "empty video id", row=line, column="video_id")
            start, end, *values = (_csv_float(path, line, col, text)
                                   for col, text in zip(CSV_HEADER[1:], record[1:]))
            _check_interval(path, "CSV", line, start, end, values, csv_row=True)
            rows = out.setdefault(video_id, [])
            rows.append(Interval(video_id, len(rows), start, end, tuple(values)))
    return out


def _csv_float(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DatasetError(path, f"not a number: {text!r}", row=line, column=column) from None


def _check_interval(path: Path, where: str, row: int, start: float, end: float,
                    values: Iterable[float], *, csv_row: bool = False) -> None:
    if not np.all(np.isfinite([start, end, *values])):
        raise DatasetError(path, f"{where}: non-finite value in the interval or its labels",
                           row=row)
    if end <= start:
        raise DatasetError(path, f"{where}: interval end {end} <= start {start}", row=row,
                           column="end" if csv_row else None)


def read_transcript(path: Path, video_id: str) -> list[Segment]:
    """Segments of one segmented transcript file (``<id>___<k>___<start>___<end>___<text>``).

    Raises:
        DatasetError: a malformed line (naming the file and the 1-based line number).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(path, f"not UTF-8 text: {err}") from None
    segments = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            segments.append(_parse_segment(path, number, line, video_id))
    return segments


def _parse_segment(path: Path, number: int, line: str, video_id: str) -> Segment:
    parts = line.strip().split(SEPARATOR, 4)
    expected = "expected " + SEPARATOR.join((video_id, "<k>", "<start>", "<end>", "<text>"))
    if len(parts) != 5 or parts[0] != video_id:
        raise DatasetError(path, f"malformed transcript line: {expected}, got {line[:80]!r}",
                           row=number)
    try:
        index, start, end = int(parts[1]), float(parts[2]), float(parts[3])
    except ValueError:
        raise DatasetError(path, "malformed transcript line (segment index, start and end must "
                                 f"be numbers): {expected}, got {line[:80]!r}", row=number) from None
    if end < start:
        raise DatasetError(path, f"malformed transcript line: end {end} < start {start}",
                           row=number)
    return Segment(index, start, end, parts[4].strip())


def match_segment(interval: Interval, segments: list[Segment]) -> Segment | None:
    """The segment overlapping ``interval`` best (largest IoU, first on ties), if IoU >= MIN_IOU."""
    best, best_iou = None, 0.0
    for segment in segments:
        overlap = min(interval.end, segment.end) - max(interval.start, segment.start)
        union = max(interval.end, segment.end) - min(interval.start, segment.start)
        iou = overlap / union if overlap > 0 else 0.0
        if iou > best_iou:
            best, best_iou = segment, iou
    return best if best_iou >= MIN_IOU else None


def _video_segments(root: Path, manifest: DatasetManifest, video_id: str) -> list[Segment]:
    if manifest.transcripts is None:
        return []
    path = root / manifest.transcripts / f"{video_id}.txt"
    return read_transcript(path, video_id) if path.is_file() else []


def fold_lookup(manifest: DatasetManifest) -> dict[str, str]:
    """Video id -> split, from the manifest's standard folds (``val`` is the SDK's valid fold).

    Raises:
        DatasetError: no folds, an unknown fold name, or a video listed in two folds.
    """
    where = f"manifests/{manifest.name}.yaml"
    if not manifest.folds:
        raise DatasetError(where, "CMU-MOSEI needs the standard folds (video ids per split)",
                           column="folds")
    unknown = sorted(set(manifest.folds) - set(SPLITS))
    if unknown:
        raise DatasetError(where, f"unknown fold(s) {unknown}; valid: {list(SPLITS)}",
                           column="folds")
    fold_of: dict[str, str] = {}
    for split, videos in manifest.folds.items():
        for video_id in videos:
            if fold_of.setdefault(video_id, split) != split:
                raise DatasetError(where, f"video {video_id!r} is in folds {fold_of[video_id]!r} "
                                          f"and {split!r}", column="folds")
    return fold_of


def _label_columns(manifest: DatasetManifest) -> list[int]:
    unknown = [name for name in manifest.labels if name.lower() not in LABEL_COLUMNS]
    if unknown:
        raise DatasetError(f"manifests/{manifest.name}.yaml", f"label(s) {unknown} are not "
                           f"columns of the label file {list(LABEL_COLUMNS)}", column="labels")
    return [LABEL_COLUMNS.index(name.lower()) for name in manifest.labels]


def _target_columns(manifest: DatasetManifest) -> list[tuple[int, float]]:
    """Per manifest target, its label-file column and scale (:data:`TARGET_COLUMNS`)."""
    unknown = [name for name in manifest.targets if name not in TARGET_COLUMNS]
    if unknown:
        raise DatasetError(f"manifests/{manifest.name}.yaml", f"target(s) {unknown} are not "
                           f"targets of CMU-MOSEI {sorted(TARGET_COLUMNS)}", column="targets")
    return [(LABEL_COLUMNS.index(TARGET_COLUMNS[name][0]), TARGET_COLUMNS[name][1])
            for name in manifest.targets]


def _row(iv: Interval, split: str, media: Path, transcript: str | None,
         columns: list[int], targets: list[tuple[int, float]]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sample_id": iv.sample_id, "split": split, "media_path": str(media),
        "start_s": iv.start, "end_s": iv.end, "transcript": transcript,
        "labels": [1.0 if iv.values[c] > 0 else 0.0 for c in columns],
    }
    if targets:
        row["targets"] = [float(np.clip(iv.values[c] / scale, -1.0, 1.0))
                          for c, scale in targets]
    return row


def _warn_unassigned(by_video: dict[str, list[Interval]], fold_of: dict[str, str],
                     label_path: Path) -> None:
    # Not failure rows: the failure table needs a split, and these videos have none.
    outside = [vid for vid in by_video if vid not in fold_of]
    if outside:
        clips = sum(len(by_video[vid]) for vid in outside)
        log.warning("%d labelled videos (%d intervals) in %s are in no standard fold and are "
                    "left out; first: %s", len(outside), clips, label_path, outside[:10])


def _warn_unused_overrides(overrides: dict[str, str], rows: list[dict[str, Any]],
                           failures: list[Failure], path: Path | None) -> None:
    known = {r["sample_id"] for r in rows} | {f.sample_id for f in failures}
    unused = sorted(set(overrides) - known)
    if unused:
        log.warning("%d sample ids in %s are not clips of CMU-MOSEI; first: %s",
                    len(unused), path, unused[:10])


def _order(split: str, sample_id: str) -> tuple[int, list[int | str]]:
    # Natural order: "vid_2" before "vid_10"; re.split keeps text at even and digits at odd
    # positions, so tuples of two ids compare str with str and int with int.
    parts = re.split(r"(\d+)", sample_id)
    return SPLITS.index(split), [int(p) if i % 2 else p for i, p in enumerate(parts)]
