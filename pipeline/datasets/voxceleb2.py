"""VoxCeleb2 (Chung et al., Interspeech 2018): face-tracked celebrity utterances, unlabeled.

Official layout: ``<root>/dev|test/mp4/id<NNNNN>/<youtube id>/<NNNNN>.mp4``; ``dev`` is split
``train``, ``test`` is ``test``. Every clip has label -1 (the paper pretrains on it). Sample ids
are ``id00012/21Uxsk56VDQ/00001``; speakers are disjoint between dev and test, which makes the
ids unique, and a speaker found in both split folders is an error.

The release is ~1.1 million files, so the tree is walked with :func:`os.scandir` (file types come
from the directory listing, no ``stat`` per file) and the table is built column-wise in one go.
A split folder that is absent is skipped with a warning: partial downloads are normal (the paper
used 534,616 utterances), but a root with none of them is an error.

The release has no annotation files. ``--annotations LIST`` restricts the clips to a list of
sample ids (:mod:`pipeline.datasets.subset`: the paper's 534,616 utterances, for one, if you have
their list); the list's sha256 is part of the store's identity. Without a list, a lost file is
only noticed when the transcript sidecar (see :mod:`pipeline.datasets.transcripts`) lists it.
Either way, an id (of the list or the sidecar) whose speaker folder exists but whose file does
not becomes a ``missing_file`` failure in that speaker's split; an id whose speaker is under no
split folder is an error: it cannot be placed in a split, and it means the list or sidecar
belongs to another copy of the dataset (filter it to the speakers you downloaded).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipeline.datasets.subset import read_id_list
from pipeline.datasets.table import DatasetError, SampleTable, sample_schema
from pipeline.datasets.transcripts import SidecarEntry, read_sidecar_entries, sidecar_path
from pipeline.failures import FAILURE_SCHEMA, Failure, Reason, Stage, failures_table
from pipeline.manifest import SPLITS, DatasetManifest

log = logging.getLogger(__name__)

TEXT_SOURCE = "sidecar"
"""The release has no text: transcripts come from a sidecar (``cli transcribe``)."""


@dataclass
class _Columns:
    """The table under construction as plain lists (a dict per row costs far more at 10^6)."""

    sample_id: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    media_path: list[str] = field(default_factory=list)
    speaker_split: dict[str, str] = field(default_factory=dict)


def read(root: Path, manifest: DatasetManifest, *, annotations: Path | None = None,
         transcripts: Path | None = None) -> SampleTable:
    """Read VoxCeleb2's folder tree into a sample table (all labels -1).

    Args:
        root: the dataset root holding ``dev/mp4`` and/or ``test/mp4`` (absolute).
        manifest: the VoxCeleb2 manifest (split folders, media suffix, known-bad clips).
        annotations: a list of the sample ids to read (:mod:`pipeline.datasets.subset`);
            None: every utterance under ``root``.
        transcripts: a transcript sidecar CSV; defaults to the manifest's, if present.

    Returns:
        The utterances ordered by split (train, test), then speaker, video and utterance in
        natural order; failures for known-bad clips on disk and for listed (or, without a
        list, sidecar) ids without a file.

    Raises:
        DatasetError: no split folder exists, a speaker is in two splits, the list or the
            sidecar is invalid or names a speaker that is under no split folder.
    """
    cols = _Columns()
    folders = {s: root / manifest.splits[s].media for s in SPLITS if s in manifest.splits}
    found = {s: f for s, f in folders.items() if f.is_dir()}
    if not found:
        raise DatasetError(root, f"no split folder found; expected one of "
                                 f"{[str(f) for f in folders.values()]}")
    for split, folder in folders.items():
        if split in found:
            _scan_split(folder, split, _suffix(manifest), cols)
        else:
            log.warning("voxceleb2: split '%s' folder %s not found; skipped", split, folder)
    failures = _known_bad(cols, manifest)
    if annotations is not None:
        failures = _restrict(cols, failures, annotations, manifest, found)
    transcript: list[str | None] = [None] * len(cols.sample_id)
    sidecar = sidecar_path(root, manifest, transcripts)
    if sidecar is not None:
        entries = read_sidecar_entries(sidecar)
        if annotations is not None:  # listed ids without a file are failures already
            kept = set(cols.sample_id)
            entries = {sid: e for sid, e in entries.items() if sid in kept}
        failures += _attach(cols, transcript, entries, sidecar, manifest, found)
    log.info("voxceleb2: %d utterances (%s), %d failures", len(cols.sample_id),
             dict(Counter(cols.split)), len(failures))
    return _table(manifest.name, cols, transcript, failures)


def _scan_split(folder: Path, split: str, suffix: str, cols: _Columns) -> None:
    for speaker in _subdirs(str(folder)):
        other = cols.speaker_split.get(speaker.name)
        if other is not None:
            raise DatasetError(speaker.path, f"speaker {speaker.name} is in split '{other}' "
                                             f"too; VoxCeleb2 speakers are disjoint between "
                                             f"splits, so sample ids would repeat")
        cols.speaker_split[speaker.name] = split
        for video in _subdirs(speaker.path):
            for utterance in _files(video.path, suffix):
                stem = utterance.name[:-len(suffix)]
                cols.sample_id.append(f"{speaker.name}/{video.name}/{stem}")
                cols.split.append(split)
                cols.media_path.append(utterance.path)


def _subdirs(path: str) -> list[os.DirEntry[str]]:
    entries = _visible(path)
    dirs = [e for e in entries if e.is_dir()]
    if len(dirs) != len(entries):
        log.warning("%s: ignoring %d entries that are not folders", path,
                    len(entries) - len(dirs))
    return dirs


def _files(path: str, suffix: str) -> list[os.DirEntry[str]]:
    entries = _visible(path)
    files = [e for e in entries if e.name.endswith(suffix) and e.is_file()]
    if len(files) != len(entries):
        log.warning("%s: ignoring %d entries that are not %s files", path,
                    len(entries) - len(files), suffix)
    return files


def _visible(path: str) -> list[os.DirEntry[str]]:
    """Entries of a folder without hidden ones, in natural order (``2`` before ``10``).

    VoxCeleb2's names are fixed-width (``id00012``, ``00001``), so ordering by (length, name)
    equals natural order there and costs no parsing on a million names.
    """
    with os.scandir(path) as entries:
        visible = [e for e in entries if not e.name.startswith(".")]
    return sorted(visible, key=lambda e: (len(e.name), e.name))


def _suffix(manifest: DatasetManifest) -> str:
    ext = manifest.media_ext.lower()
    return ext if ext.startswith(".") else f".{ext}"


def _known_bad(cols: _Columns, manifest: DatasetManifest) -> list[Failure]:
    """Remove the manifest's known-bad clips that are on disk; they become failures."""
    bad = {k.sample_id: k for k in manifest.known_bad}
    if not bad:
        return []
    failures, keep = [], []
    for i, (sid, split) in enumerate(zip(cols.sample_id, cols.split, strict=True)):
        entry = bad.get(sid)
        if entry is not None and entry.split == split:
            failures.append(Failure(sid, split, Stage.ADAPTER, Reason.KNOWN_BAD, entry.note))
        else:
            keep.append(i)
    cols.sample_id = [cols.sample_id[i] for i in keep]
    cols.split = [cols.split[i] for i in keep]
    cols.media_path = [cols.media_path[i] for i in keep]
    return failures


def _restrict(cols: _Columns, failures: list[Failure], id_list: Path,
              manifest: DatasetManifest, found: dict[str, Path]) -> list[Failure]:
    """Keep the listed utterances (in the tree's order) and the failures of listed ids; a
    listed id without a file becomes a ``missing_file`` failure."""
    listed = read_id_list(id_list, parts=3)
    unplaced = [sid for sid in listed if sid.split("/")[0] not in cols.speaker_split]
    if unplaced:
        raise DatasetError(id_list, f"{len(unplaced)} listed id(s) of speakers under none of "
                                    f"{[str(f) for f in found.values()]}, e.g. "
                                    f"{', '.join(unplaced[:3])} (line {listed[unplaced[0]]}); "
                                    "the list belongs to another copy of the dataset")
    keep = [i for i, sid in enumerate(cols.sample_id) if sid in listed]
    present = {cols.sample_id[i] for i in keep} | {f.sample_id for f in failures}
    cols.sample_id = [cols.sample_id[i] for i in keep]
    cols.split = [cols.split[i] for i in keep]
    cols.media_path = [cols.media_path[i] for i in keep]
    kept = [f for f in failures if f.sample_id in listed]
    missing = [_lost(sid, f"listed in {id_list} line {line}", cols, found, _suffix(manifest))
               for sid, line in listed.items() if sid not in present]
    log.info("voxceleb2: %d of %d listed ids on disk (%s)", len(keep), len(listed), id_list)
    return kept + missing


def _attach(cols: _Columns, transcript: list[str | None], entries: dict[str, SidecarEntry],
            sidecar: Path, manifest: DatasetManifest, found: dict[str, Path]) -> list[Failure]:
    """Fill ``transcript`` from the sidecar; its ids without a file become failures."""
    position = {sid: i for i, sid in enumerate(cols.sample_id)}
    known_bad = {k.sample_id for k in manifest.known_bad}
    failures = []
    for sid, entry in entries.items():
        i = position.get(sid)
        if i is not None:
            transcript[i] = entry.transcript
        elif sid not in known_bad:
            failures.append(_missing(sid, entry, sidecar, cols, found, _suffix(manifest)))
    unlisted = transcript.count(None)
    if unlisted:
        log.warning("%s: %d of %d utterances have no transcript", sidecar, unlisted,
                    len(transcript))
    return failures


def _missing(sid: str, entry: SidecarEntry, sidecar: Path, cols: _Columns,
             found: dict[str, Path], suffix: str) -> Failure:
    parts = sid.split("/")
    if len(parts) != 3 or not all(parts):
        raise DatasetError(sidecar, f"sample_id {sid!r} is not <speaker>/<video>/<utterance>",
                           row=entry.row, column="sample_id")
    if parts[0] not in cols.speaker_split:
        raise DatasetError(sidecar, f"sample_id {sid!r}: speaker {parts[0]} is under none of "
                                    f"{[str(f) for f in found.values()]}; the sidecar belongs "
                                    f"to another copy of the dataset", row=entry.row,
                           column="sample_id")
    return _lost(sid, f"listed in {sidecar} row {entry.row}", cols, found, suffix)


def _lost(sid: str, where: str, cols: _Columns, found: dict[str, Path],
          suffix: str) -> Failure:
    """The ``missing_file`` failure of a listed id whose speaker folder is in a split."""
    speaker, *rest = sid.split("/")
    split = cols.speaker_split[speaker]
    path = found[split].joinpath(speaker, *rest[:-1], rest[-1] + suffix)
    return Failure(sid, split, Stage.ADAPTER, Reason.MISSING_FILE,
                   f"{where}, but {path} does not exist")


def _table(dataset: str, cols: _Columns, transcript: list[str | None],
           failures: list[Failure]) -> SampleTable:
    # Built column-wise rather than through build_table's row dicts: at a million rows the
    # dicts alone cost seconds. Ids are unique by construction: speakers are checked to be
    # disjoint between splits, and a folder cannot hold two entries of the same name.
    n = len(cols.sample_id)
    nulls = pa.nulls(n, pa.float64())
    samples = pa.Table.from_arrays(
        [pa.array(cols.sample_id, pa.string()), pa.array(cols.split, pa.string()),
         pa.array(cols.media_path, pa.string()), nulls, nulls,
         pa.array(transcript, pa.string()), pa.array([-1] * n, pa.int64())],
        schema=sample_schema(multilabel=False))
    fails = failures_table(failures) if failures else FAILURE_SCHEMA.empty_table()
    return SampleTable(dataset, samples, fails)
