"""The videos list: a CSV naming clips, read by ``--dataset videos --list`` and written by
``cli scan --out FILE.csv``.

Columns (a header row, UTF-8, a byte-order mark accepted; column order free, further columns
ignored):

- ``path`` (required): the media file, or a clip's folder of frames, relative to the dataset
  root (``--root``, or the list's folder without ``--root``). An absolute path, a URL, a
  backslash or a ``..`` / ``.`` / empty part is refused (the rule the feature store applies to
  every file it reads: nothing outside the root is read).
- ``sample_id``: unique; default the path without its suffix (``clips/a.mp4`` -> ``clips/a``).
- ``split``: ``train``, ``val`` or ``test``; without the column every clip is ``train``.
- ``label``: a class name; an empty cell is an unlabelled clip (label -1).
- ``transcript``: what is said; an empty cell is *unknown* (a CSV cell cannot tell "nothing was
  said" from "not known": a transcript sidecar, which ``cli transcribe`` writes, can).
- ``start_s``, ``end_s``: the clip's interval in the file in seconds; empty: the whole file.

It is read with the :mod:`csv` module, as transcript sidecars are, so that a transcript such as
``NA`` stays text. Row numbers in errors are the file's line numbers (the header is row 1).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from pipeline.datasets.table import DatasetError, SampleTable
from pipeline.manifest import SPLITS
from pipeline.store.errors import UnsafePathError
from pipeline.store.filesystem import check_relative

log = logging.getLogger(__name__)

COLUMNS = ("path", "sample_id", "split", "label", "transcript", "start_s", "end_s")


@dataclass(frozen=True)
class ListRow:
    """One clip of a videos list, validated; ``row`` is its line in the file."""

    path: str
    sample_id: str
    split: str
    label: str | None
    transcript: str | None
    start_s: float | None
    end_s: float | None
    row: int


def read_list(path: Path) -> list[ListRow]:
    """Read and validate a videos list.

    Raises:
        DatasetError: the file is missing or not UTF-8 CSV, lacks ``path``, or a row has the
            wrong number of fields, an unsafe or empty path, an unknown split, a time that is
            not a number >= 0 or an end not after its start (naming the row and column).
    """
    if not path.is_file():
        raise DatasetError(path, "videos list not found (expected a CSV with at least the "
                                 f"column path; optional: {', '.join(COLUMNS[1:])})")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return _parse(handle, path)
    except UnicodeDecodeError as err:
        raise DatasetError(path, f"not UTF-8 text ({err})") from None


def _parse(handle: TextIO, path: Path) -> list[ListRow]:
    # DictReader marks a row with more fields than the header (key None) or fewer (None values)
    reader = csv.DictReader(handle, strict=True)
    try:
        if reader.fieldnames is None:
            raise DatasetError(path, f"empty file; expected a header with {COLUMNS[0]}")
        if "path" not in reader.fieldnames:
            raise DatasetError(path, f"missing column 'path'; header is {reader.fieldnames}",
                               row=1, column="path")
        rows = []
        for record in reader:
            if None in record or None in record.values():
                raise DatasetError(path, f"expected {len(reader.fieldnames)} fields like the "
                                         "header", row=reader.line_num)
            rows.append(_row({k: v for k, v in record.items() if k in COLUMNS}, path,
                             reader.line_num))
        return rows
    except csv.Error as err:
        raise DatasetError(path, f"not valid CSV: {err}", row=reader.line_num) from None


def _row(cells: dict[str, str], path: Path, line: int) -> ListRow:
    media = cells["path"]
    try:
        check_relative(media, "path")
    except UnsafePathError as err:
        raise DatasetError(path, f"{err}; paths are relative to the dataset root (--root, "
                                 "or the list's folder)", row=line, column="path") from None
    split = cells.get("split", "train")
    if split not in SPLITS:
        raise DatasetError(path, f"split {split!r} is not one of {list(SPLITS)}", row=line,
                           column="split")
    start, end = (_seconds(cells.get(c, ""), path, line, c) for c in ("start_s", "end_s"))
    if start is not None and end is not None and end <= start:
        raise DatasetError(path, f"end_s {end} is not after start_s {start}", row=line,
                           column="end_s")
    return ListRow(path=media, sample_id=cells.get("sample_id") or default_sample_id(media),
                   split=split, label=cells.get("label") or None,
                   transcript=cells.get("transcript") or None, start_s=start, end_s=end,
                   row=line)


def _seconds(text: str, path: Path, line: int, column: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise DatasetError(path, f"{text!r} is not a time in seconds >= 0", row=line,
                           column=column)
    return value


def default_sample_id(path: str) -> str:
    """A clip's id when the list gives none: its path without the suffix (POSIX)."""
    pure = PurePosixPath(path)
    return str(pure.with_suffix("")) if pure.suffix else path


def write_list(table: SampleTable, labels: Sequence[str], root: Path, path: Path) -> int:
    """Write a sample table as a videos list, atomically; returns the number of rows.

    Paths are written relative to ``root`` (the scanned dataset's root): extract the list with
    ``--root`` set to the same folder. Label indices become names from ``labels``. What the
    format cannot hold is left out with a warning: multi-label labels and continuous targets;
    adapter failures (missing files, known-bad clips) are no clips and are not written.

    Raises:
        DatasetError: a media path that is not under ``root``.
    """
    samples = table.samples.to_pylist()
    if table.multilabel or "targets" in table.samples.column_names:
        log.warning("%s: the videos list holds one class per clip: %s left out", path,
                    "the multi-label labels" if table.multilabel else "the continuous targets")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for sample in samples:
            writer.writerow(_list_fields(sample, labels, root))
    tmp.replace(path)
    return len(samples)


def _list_fields(sample: dict[str, object], labels: Sequence[str], root: Path) -> list[str]:
    media = Path(str(sample["media_path"]))
    try:
        relative = media.relative_to(root).as_posix()
    except ValueError:
        raise DatasetError(media, f"not under the scanned root {root}: a videos list names "
                                  "files under its root only") from None
    label = sample.get("label")
    name = labels[label] if isinstance(label, int) and 0 <= label < len(labels) else ""
    return [relative, str(sample["sample_id"]), str(sample["split"]), name,
            str(sample.get("transcript") or ""), _time(sample.get("start_s")),
            _time(sample.get("end_s"))]


def _time(value: object) -> str:
    return "" if value is None else repr(float(str(value)))


__all__ = ["COLUMNS", "ListRow", "default_sample_id", "read_list", "write_list"]
