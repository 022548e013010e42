"""CAER (Lee et al., ICCV 2019): TV-show clips sorted into one folder per emotion class.

Official layout: ``<root>/train|validation|test/<Class>/<NNNN>.avi`` with the seven class folders
Anger, Disgust, Fear, Happy, Neutral, Sad, Surprise (13,175 clips in all). The class index is
the folder's position in the manifest's label list (alphabetical, as the paper's reference code
mapped them). The folder ``validation`` is split ``val``.

Sample ids are ``<split>/<Class>/<stem>`` (``val/Happy/0042``): file stems repeat across class
folders and splits. The release has no annotation list, so a lost clip cannot be detected; the
folder listing is the dataset.

CAER has no transcripts. They come from an optional sidecar (see
:mod:`pipeline.datasets.transcripts`): the ``transcripts=`` argument, else the manifest's
``transcripts`` file under the root when it exists. A sidecar row naming a clip that is not on
disk is an error: the sidecar was made from another copy of the dataset, and its text could be
attached to the wrong clips.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.datasets.table import DatasetError, SampleTable, build_table
from pipeline.datasets.transcripts import SidecarEntry, read_sidecar_entries, sidecar_path
from pipeline.failures import Failure, Reason, Stage
from pipeline.manifest import SPLITS, DatasetManifest

log = logging.getLogger(__name__)

TEXT_SOURCE = "sidecar"
"""The release has no text: transcripts come from a sidecar (``cli transcribe``)."""


def read(root: Path, manifest: DatasetManifest, *, annotations: Path | None = None,
         transcripts: Path | None = None) -> SampleTable:
    """Read CAER's folder layout into a sample table.

    Args:
        root: the dataset root holding the split folders (absolute).
        manifest: the CAER manifest (labels in class-index order, split folders, media suffix).
        annotations: unused: CAER's labels are its folder names. Must be None.
        transcripts: a transcript sidecar CSV; defaults to the manifest's, if present.

    Returns:
        The clips ordered by split (train, val, test), class index, then natural file order;
        ``known_bad`` clips of the manifest found on disk become failures instead of rows.

    Raises:
        DatasetError: a split folder is missing, a class folder is not one of the manifest's
            labels, or the sidecar is invalid or names a clip that is not on disk.
    """
    if annotations is not None:
        raise DatasetError(annotations, "CAER has no annotation files (labels are the class "
                                        "folder names); do not pass --annotations "
                                        "(annotations=)")
    clips = [clip for split in SPLITS if split in manifest.splits
             for clip in _scan_split(root, split, manifest)]
    rows, failures = _drop_known_bad(clips, manifest)
    sidecar = sidecar_path(root, manifest, transcripts)
    if sidecar is not None:
        _attach(rows, read_sidecar_entries(sidecar), sidecar, root, manifest)
    table = build_table(manifest.name, rows, failures, multilabel=False, source=root)
    counts = Counter(row["split"] for row in rows)
    log.info("caer: %d clips (%s), %d failures", len(rows), dict(counts), len(failures))
    return table


def _scan_split(root: Path, split: str, manifest: DatasetManifest) -> list[dict[str, Any]]:
    folder = root / manifest.splits[split].media
    if not folder.is_dir():
        raise DatasetError(folder, f"split folder for '{split}' not found (expected "
                                   f"<root>/{manifest.splits[split].media}/<Class>/*"
                                   f"{_suffix(manifest)})")
    present: dict[int, os.DirEntry[str]] = {}
    for entry in _listing(folder):
        if not entry.is_dir():
            log.warning("%s: ignoring %s (not a class folder)", folder, entry.name)
            continue
        index = _class_index(entry.name, folder, manifest)
        if index in present:
            raise DatasetError(folder, f"class folders {present[index].name!r} and "
                                       f"{entry.name!r} name the same class")
        present[index] = entry
    absent = [name for i, name in enumerate(manifest.labels) if i not in present]
    if absent:
        log.warning("%s: no class folder for %s", folder, absent)
    return [clip for index in sorted(present)
            for clip in _scan_class(present[index], index, split, manifest)]


def _class_index(name: str, folder: Path, manifest: DatasetManifest) -> int:
    try:
        return manifest.label_index(name)
    except KeyError:
        raise DatasetError(folder / name, f"unknown class folder {name!r}; valid classes: "
                                          f"{list(manifest.labels)}") from None


def _scan_class(class_dir: os.DirEntry[str], label: int, split: str,
                manifest: DatasetManifest) -> list[dict[str, Any]]:
    suffix = _suffix(manifest)
    clips, ignored = [], []
    for entry in _listing(class_dir.path):
        if not (entry.is_file() and entry.name.lower().endswith(suffix)):
            ignored.append(entry.name)
            continue
        stem = entry.name[:-len(suffix)]
        clips.append({"sample_id": f"{split}/{class_dir.name}/{stem}", "split": split,
                      "media_path": entry.path, "start_s": None, "end_s": None,
                      "transcript": None, "label": label})
    if ignored:
        log.warning("%s: ignoring %d entries that are not %s files: %s", class_dir.path,
                    len(ignored), suffix, ignored[:5])
    return clips


def _listing(folder: str | Path) -> list[os.DirEntry[str]]:
    """Visible entries of a folder in natural name order (``2.avi`` before ``10.avi``)."""
    with os.scandir(folder) as entries:
        visible = [e for e in entries if not e.name.startswith(".")]
    return sorted(visible, key=lambda e: _natural_key(e.name))


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key ordering digit runs by value: ``clip2`` < ``clip10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", name) if part)


def _suffix(manifest: DatasetManifest) -> str:
    ext = manifest.media_ext.lower()
    return ext if ext.startswith(".") else f".{ext}"


def _drop_known_bad(clips: list[dict[str, Any]], manifest: DatasetManifest
                    ) -> tuple[list[dict[str, Any]], list[Failure]]:
    bad = {(k.split, k.sample_id): k.note for k in manifest.known_bad}
    rows, failures = [], []
    for clip in clips:
        note = bad.get((clip["split"], clip["sample_id"]))
        if note is None:
            rows.append(clip)
        else:
            failures.append(Failure(clip["sample_id"], clip["split"], Stage.ADAPTER,
                                    Reason.KNOWN_BAD, note))
    return rows, failures


def _attach(rows: list[dict[str, Any]], entries: dict[str, SidecarEntry], sidecar: Path,
            root: Path, manifest: DatasetManifest) -> None:
    by_id = {row["sample_id"]: row for row in rows}
    known_bad = {k.sample_id for k in manifest.known_bad}
    for sid, entry in entries.items():
        row = by_id.get(sid)
        if row is not None:
            row["transcript"] = entry.transcript
        elif sid not in known_bad:
            raise DatasetError(sidecar, f"sample_id {sid!r} is not a clip under {root}; the "
                                        f"sidecar belongs to another copy of the dataset",
                               row=entry.row, column="sample_id")
    unlisted = len(rows) - sum(row["transcript"] is not None for row in rows)
    if unlisted:
        log.warning("%s: %d of %d clips have no transcript", sidecar, unlisted, len(rows))
