"""Transcript sidecars for datasets released without text, and the speech-recognition hook.

CAER and VoxCeleb2 ship video only; the paper transcribed them with an English speech
recognition model. A *sidecar* is the result kept next to the dataset: a UTF-8 CSV with the
header ``sample_id,transcript`` (further columns, e.g. a model name, are allowed and ignored),
one row per clip. It is read with the :mod:`csv` module on purpose: a table reader that infers
types would turn a transcript such as ``"NA"`` or ``"null"`` into a missing value.

Row numbers in errors are line numbers of the file (the header is row 1), as an editor shows them.
An empty transcript stays ``""`` (the recogniser heard no words); a clip the sidecar does not list
gets ``None`` (unknown). An optional ``status`` column says why a clip has no transcript: ``ok``
(or empty) for a transcribed clip, else the failure reason of a clip without decodable speech
(``no_audio_stream``, ``corrupt_media``, ...); such a clip is never read as ``""``.

``cli transcribe`` (:mod:`pipeline.transcribe`) also writes a *provenance file* beside the sidecar
(``transcripts.csv`` -> ``transcripts.provenance.json``): how the sidecar was made and the
sha256 of the sidecar it describes, so a sidecar edited afterwards is not credited to the model.
:func:`pipeline.datasets.text_sources.transcript_source` turns both into the store's record of
where its text came from, and :func:`~pipeline.datasets.text_sources.require_known` stops an
extraction of text features when transcripts are unknown.

``cli transcribe`` (:mod:`pipeline.transcribe`) makes a sidecar by speech recognition.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pipeline.config import file_sha256
from pipeline.datasets.table import DatasetError
from pipeline.failures import Reason
from pipeline.manifest import DatasetManifest
from pipeline.store.manifest import TranscriptSource

log = logging.getLogger(__name__)

COLUMNS = ("sample_id", "transcript")
STATUS = "status"
"""The optional column saying why a clip has no transcript (``ok``: it has one)."""
OK = "ok"


@dataclass(frozen=True)
class SidecarEntry:
    """One sidecar row: the transcript (None when ``status`` records why there is none) and
    the line it came from (for error messages)."""

    transcript: str | None
    row: int
    status: str = OK


def read_sidecar_entries(path: str | Path) -> dict[str, SidecarEntry]:
    """Read and validate a sidecar, keeping each entry's row number.

    Args:
        path: the CSV file (UTF-8, a byte-order mark is accepted).

    Returns:
        ``sample_id -> SidecarEntry`` in file order.

    Raises:
        DatasetError: the file is missing, not UTF-8, not CSV, lacks a column, has a row with the
            wrong number of fields, an empty or a duplicate ``sample_id``; the message names the
            file and, where there is one, the row and column.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "transcript sidecar not found (expected a CSV with header "
                                 "sample_id,transcript)")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return _parse(handle, path)
    except UnicodeDecodeError as err:
        raise DatasetError(path, f"not UTF-8 text ({err})") from None


def read_sidecar(path: str | Path) -> dict[str, str]:
    """Read and validate a sidecar into ``sample_id -> transcript`` (clips it records as not
    transcribable are left out: their transcript is unknown).

    Raises:
        DatasetError: see :func:`read_sidecar_entries`.
    """
    return {sid: entry.transcript for sid, entry in read_sidecar_entries(path).items()
            if entry.transcript is not None}


def failed_entries(path: str | Path) -> dict[str, str]:
    """``sample_id -> failure reason`` of the clips a sidecar records as not transcribable."""
    return {sid: entry.status for sid, entry in read_sidecar_entries(path).items()
            if entry.transcript is None}


def _parse(handle: TextIO, path: Path) -> dict[str, SidecarEntry]:
    reader = csv.reader(handle, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(path, f"empty file; expected the header {','.join(COLUMNS)}")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DatasetError(path, f"missing column(s) {missing}; header is {header}",
                               row=1, column=missing[0])
        at = (header.index("sample_id"), header.index("transcript"),
              header.index(STATUS) if STATUS in header else None)
        entries: dict[str, SidecarEntry] = {}
        for fields in reader:
            _add_row(entries, fields, len(header), at, path, reader.line_num)
        return entries
    except csv.Error as err:
        raise DatasetError(path, f"not valid CSV: {err}", row=reader.line_num) from None


def _add_row(entries: dict[str, SidecarEntry], fields: list[str], width: int,
             at: tuple[int, int, int | None], path: Path, line: int) -> None:
    sid_at, text_at, status_at = at
    if not fields:
        return  # a blank line carries no entry
    if len(fields) != width:
        raise DatasetError(path, f"expected {width} fields, found {len(fields)}", row=line)
    sid = fields[sid_at]
    if not sid:
        raise DatasetError(path, "empty sample_id", row=line, column="sample_id")
    if sid in entries:
        raise DatasetError(path, f"duplicate sample_id {sid!r} (first at row "
                                 f"{entries[sid].row})", row=line, column="sample_id")
    status = (fields[status_at] if status_at is not None else "") or OK
    if status == OK:
        entries[sid] = SidecarEntry(fields[text_at], line)
        return
    if status not in set(Reason):
        raise DatasetError(path, f"status {status!r} is neither {OK!r} nor a failure reason "
                                 f"({', '.join(sorted(Reason))})", row=line, column=STATUS)
    entries[sid] = SidecarEntry(None, line, status)


def write_sidecar(path: str | Path, mapping: Mapping[str, str | None], *,
                  failed: Mapping[str, str] | None = None,
                  provenance: Mapping[str, Any] | None = None) -> None:
    """Write ``sample_id -> transcript`` as a sidecar CSV, atomically.

    The file appears complete or not at all (written beside, then renamed), so an interrupted
    transcription run never leaves a truncated sidecar that would read as valid.

    Args:
        path: the CSV to (over)write.
        mapping: transcripts by sample id, written in the mapping's order; None for a clip
            that could not be transcribed (its reason is in ``failed``).
        failed: ``sample_id -> failure reason`` of the clips without a transcript; written in
            a ``status`` column (only when there are any).
        provenance: how the sidecar was made; written to :func:`provenance_path` with the
            sidecar's sha256, before the sidecar itself appears.

    Raises:
        ValueError: an empty sample id (it could not be read back), or a None transcript
            without a failure reason.
    """
    path = Path(path)
    failed = dict(failed or {})
    empty = [sid for sid in mapping if not sid]
    if empty:
        raise ValueError(f"{path}: cannot write an empty sample_id")
    unexplained = [sid for sid, text in mapping.items() if text is None and sid not in failed]
    if unexplained:
        raise ValueError(f"{path}: no transcript and no failure reason for {unexplained[:3]}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, STATUS] if failed else COLUMNS)
        for sid, text in mapping.items():
            row = [sid, "" if text is None else text]
            writer.writerow([*row, failed.get(sid, OK) if text is None else OK]
                            if failed else row)
    if provenance is not None:
        record = {**provenance, "sidecar": path.name, "sidecar_sha256": file_sha256(tmp)}
        _write_json(provenance_path(path), record)
    tmp.replace(path)


def provenance_path(sidecar: str | Path) -> Path:
    """The provenance file beside a sidecar (``transcripts.csv``: ``transcripts.provenance.json``)."""
    sidecar = Path(sidecar)
    return sidecar.with_name(f"{sidecar.stem}.provenance.json")


def read_provenance(sidecar: str | Path, sha256: str) -> dict[str, Any]:
    """How a sidecar was made, when its provenance file describes exactly these bytes.

    Returns:
        The provenance (without the sidecar's name and sha256), or ``{}`` when there is no
        provenance file, it is not valid JSON, or it describes another version of the sidecar
        (edited afterwards: a warning says so).
    """
    path = provenance_path(sidecar)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("%s: not read (%s); the sidecar's provenance is unknown", path, err)
        return {}
    if not isinstance(record, dict) or record.get("sidecar_sha256") != sha256:
        log.warning("%s describes another version of %s (changed after transcription); its "
                    "provenance is not recorded", path, Path(sidecar).name)
        return {}
    return {k: v for k, v in record.items() if k not in ("sidecar", "sidecar_sha256")}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def sidecar_path(root: Path, manifest: DatasetManifest, transcripts: Path | None) -> Path | None:
    """The sidecar an adapter should read, or None.

    An explicit ``transcripts`` path must exist. Otherwise the manifest's ``transcripts`` file
    (relative to ``root``) is used when present: a release without it simply has no text.

    Raises:
        DatasetError: an explicit ``transcripts`` path that is not a file.
    """
    if transcripts is not None:
        if not transcripts.is_file():
            raise DatasetError(transcripts, "transcript sidecar not found")
        return transcripts
    if manifest.transcripts is None:
        return None
    default = root / manifest.transcripts
    if default.is_file():
        return default
    log.info("%s: no transcript sidecar at %s; transcripts are unknown", manifest.name, default)
    return None


def describe_transcripts(source: TranscriptSource) -> str:
    """One line for ``store info``: where a store's text came from."""
    if source.file is None:
        return ("the dataset's annotations" if source.kind == "annotations"
                else "none (no sidecar)")
    what = (f"sidecar {source.file} (sha256 {str(source.sha256)[:16]})"
            if source.kind == "sidecar" else
            f"the dataset's annotations, overridden by {source.file} "
            f"(sha256 {str(source.sha256)[:16]})")
    made = source.provenance
    if not made:
        return f"{what}; how it was made is not recorded"
    return (f"{what}; made by {made.get('made_by')} with {made.get('model')} "
            f"({made.get('engine')}, weights sha256 {str(made.get('weights_sha256'))[:16]}), "
            f"language {made.get('language')}, {made.get('created')}")
