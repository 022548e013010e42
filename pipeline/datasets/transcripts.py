"""Transcript sidecars for datasets released without text, and the speech-recognition hook.

CAER and VoxCeleb2 ship video only; the paper transcribed them with an English speech
recognition model. A *sidecar* is the result kept next to the dataset: a UTF-8 CSV with the
header ``sample_id,transcript`` (further columns, e.g. a model name, are allowed and ignored),
one row per clip. It is read with the :mod:`csv` module on purpose: a table reader that infers
types would turn a transcript such as ``"NA"`` or ``"null"`` into a missing value.

Row numbers in errors are line numbers of the file (the header is row 1), as an editor shows them.
An empty transcript stays ``""`` (the recogniser heard no words); a clip the sidecar does not list
gets ``None`` (unknown).

:func:`transcribe` produces a sidecar's content with a Whisper model through the ``transformers``
``automatic-speech-recognition`` pipeline; audio is decoded by :func:`pipeline.media.read_audio`
(PyAV, 16 kHz mono), not by the pipeline's own loaders, so no FFmpeg binary or torchcodec is needed.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from pipeline.datasets.table import DatasetError
from pipeline.failures import ClipError
from pipeline.manifest import DatasetManifest

log = logging.getLogger(__name__)

COLUMNS = ("sample_id", "transcript")
SAMPLE_RATE = 16_000
"""Whisper's input rate; audio is resampled to it while decoding."""
_LOG_EVERY = 1000

AsrPipeline = Callable[..., list[dict[str, Any]]]
"""Anything called like a ``transformers`` ASR pipeline: ``pipe(inputs, batch_size=...,
generate_kwargs=...)`` with ``inputs`` a list of ``{"raw": float32 [n], "sampling_rate": int}``
returning one ``{"text": str}`` per input, in order."""


@dataclass(frozen=True)
class SidecarEntry:
    """One sidecar row: the transcript and the line it came from (for error messages)."""

    transcript: str
    row: int


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
    """Read and validate a sidecar into ``sample_id -> transcript``.

    Raises:
        DatasetError: see :func:`read_sidecar_entries`.
    """
    return {sid: entry.transcript for sid, entry in read_sidecar_entries(path).items()}


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
        sid_at, text_at = header.index("sample_id"), header.index("transcript")
        entries: dict[str, SidecarEntry] = {}
        for fields in reader:
            _add_row(entries, fields, len(header), sid_at, text_at, path, reader.line_num)
        return entries
    except csv.Error as err:
        raise DatasetError(path, f"not valid CSV: {err}", row=reader.line_num) from None


def _add_row(entries: dict[str, SidecarEntry], fields: list[str], width: int, sid_at: int,
             text_at: int, path: Path, line: int) -> None:
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
    entries[sid] = SidecarEntry(fields[text_at], line)


def write_sidecar(path: str | Path, mapping: Mapping[str, str]) -> None:
    """Write ``sample_id -> transcript`` as a sidecar CSV, atomically.

    The file appears complete or not at all (written beside, then renamed), so an interrupted
    transcription run never leaves a truncated sidecar that would read as valid.

    Args:
        path: the CSV to (over)write.
        mapping: transcripts by sample id, written in the mapping's order.

    Raises:
        ValueError: an empty sample id (it could not be read back).
    """
    path = Path(path)
    empty = [sid for sid in mapping if not sid]
    if empty:
        raise ValueError(f"{path}: cannot write an empty sample_id")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(mapping.items())
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


def transcribe(media_paths: Sequence[str | Path] | Mapping[str, str | Path], *,
               model: str = "openai/whisper-small", device: str = "cpu", batch_size: int = 8,
               language: str | None = "english",
               pipe: AsrPipeline | None = None) -> dict[str, str]:
    """Transcribe the speech of media files with a Whisper model.

    Audio is decoded with PyAV to 16 kHz mono float32 ``[n]`` one batch at a time, so memory
    stays bounded for any number of files. A file that cannot be decoded (missing, corrupt, no
    audio stream, too short) is logged as a warning and left out of the result: its transcript
    stays unknown, never an invented empty string.

    Args:
        media_paths: the files; or ``key -> file`` (e.g. ``sample_id -> media_path``) to get
            results under those keys, ready for :func:`write_sidecar`.
        model: a ``transformers`` model id or local folder (Whisper or any ASR model).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        batch_size: clips per forward pass, >= 1.
        language: the spoken language passed to Whisper's ``generate`` (the paper's datasets are
            English); None lets the model detect it, and is required for English-only models.
        pipe: a ready pipeline to use instead of building one from ``model`` / ``device``.

    Returns:
        ``key -> transcript`` (whitespace-stripped) for every decodable file, in input order;
        keys are the input paths as given (``str``) when ``media_paths`` is a sequence.

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    items = (list(media_paths.items()) if isinstance(media_paths, Mapping)
             else [(str(p), p) for p in media_paths])
    pipe = pipe or _build_pipeline(model, device)
    generate_kwargs = {"language": language, "task": "transcribe"} if language else {}
    decoded = _decoded(items)
    out: dict[str, str] = {}
    while batch := list(islice(decoded, batch_size)):
        keys, audio = zip(*batch, strict=True)
        results = pipe(list(audio), batch_size=batch_size, generate_kwargs=generate_kwargs)
        out.update((k, r["text"].strip()) for k, r in zip(keys, results, strict=True))
        if len(out) % _LOG_EVERY < batch_size:
            log.info("transcribed %d of %d files", len(out), len(items))
    log.info("transcribed %d of %d files (%d not decodable)", len(out), len(items),
             len(items) - len(out))
    return out


def _decoded(items: Sequence[tuple[str, str | Path]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Decode lazily, skipping undecodable files, so batches stay full and memory bounded."""
    # Imported here: decoding pulls in PyAV, which sidecar reading alone does not need.
    from pipeline.media import read_audio

    for key, path in items:
        try:
            samples = read_audio(path, sample_rate=SAMPLE_RATE)
        except ClipError as err:
            log.warning("not transcribed: %s", err)
            continue
        yield key, {"raw": samples, "sampling_rate": SAMPLE_RATE}


def _build_pipeline(model: str, device: str) -> AsrPipeline:
    # Imported here: transformers is heavy and only this function needs it.
    from transformers import pipeline

    log.info("loading speech recognition model %s on %s", model, device)
    return pipeline("automatic-speech-recognition", model=model, device=device)
