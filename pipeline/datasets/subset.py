"""A list of sample ids that restricts a dataset to a subset (VoxCeleb2's ``--annotations LIST``).

The paper pretrained on 534,616 of VoxCeleb2's ~1.09 million utterances; no list of them is
published, but a user who has one extracts exactly it. Two formats, told apart by the name:

- a file whose name ends in ``.csv``: a CSV with a header holding a ``sample_id`` column (other
  columns are ignored);
- any other file: plain text, one sample id per line (``id00012/21Uxsk56VDQ/00001``); blank
  lines and lines starting with ``#`` are ignored, as is whitespace around an id.

The list's sha256 goes into the dataset's ``manifest_sha256`` (:func:`subset_manifest`), so two
stores of different subsets have different ``store_id``\\ s, and the same list at another path
makes the same store.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path

from pipeline.config import file_sha256
from pipeline.datasets.table import DatasetError
from pipeline.manifest import DatasetManifest


def read_id_list(path: Path, parts: int) -> dict[str, int]:
    """The ids of a subset list, each with its line (text) or row (CSV) number, in file order.

    Args:
        path: the list (see the module docstring for the formats).
        parts: how many ``/``-separated non-empty parts an id has (VoxCeleb2: 3).

    Raises:
        DatasetError: an unreadable file, a CSV without a ``sample_id`` column, a malformed or
            repeated id (naming its line), or a list without any id.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"cannot read the sample id list: {err}") from None
    entries = _csv_ids(path, text) if path.name.lower().endswith(".csv") else _text_ids(text)
    ids: dict[str, int] = {}
    for line, sid in entries:
        pieces = sid.split("/")
        if len(pieces) != parts or not all(pieces):
            raise DatasetError(path, f"line {line}: {sid!r} is not a sample id of "
                                     f"{parts} parts separated by '/' (e.g. "
                                     "id00012/21Uxsk56VDQ/00001)")
        if sid in ids:
            raise DatasetError(path, f"line {line}: sample id {sid!r} repeats line {ids[sid]}")
        ids[sid] = line
    if not ids:
        raise DatasetError(path, "the sample id list holds no id")
    return ids


def _text_ids(text: str) -> list[tuple[int, str]]:
    lines = ((n, raw.strip()) for n, raw in enumerate(text.splitlines(), start=1))
    return [(n, sid) for n, sid in lines if sid and not sid.startswith("#")]


def _csv_ids(path: Path, text: str) -> list[tuple[int, str]]:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or "sample_id" not in reader.fieldnames:
        raise DatasetError(path, f"a CSV sample id list needs a 'sample_id' column; the header "
                                 f"is {reader.fieldnames}")
    # Line numbers as an editor shows them: the header is line 1.
    return [(n, (row["sample_id"] or "").strip()) for n, row in enumerate(reader, start=2)]


def subset_manifest(manifest: DatasetManifest, id_list: Path) -> DatasetManifest:
    """The dataset's manifest with its ``sha256`` covering the subset list's sha256 (the
    identity's ``manifest_sha256``), and the list's path in ``label_file``."""
    return dataclasses.replace(manifest, sha256=subset_sha256(manifest.sha256, id_list),
                               label_file=str(id_list.resolve()))


def subset_sha256(manifest_sha256: str, id_list: Path) -> str:
    """sha256 of the manifest's sha256 and the list's (the list by content, not by path)."""
    try:
        list_sha = file_sha256(id_list)
    except OSError as err:
        raise DatasetError(id_list, f"cannot read the sample id list: {err}") from None
    content = {"manifest_sha256": manifest_sha256, "subset_sha256": list_sha}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["read_id_list", "subset_manifest", "subset_sha256"]
