"""Where an extraction's text comes from, and the refusal of unknown transcripts.

A dataset released without text (CAER, VoxCeleb2: its adapter's ``TEXT_SOURCE`` is
``sidecar``) reads a transcript sidecar made by ``cli transcribe``; the others read their
annotations (``--transcripts`` may override some of it). :func:`transcript_source` is what a
store records at dataset level; :func:`require_known` stops an extraction of text features
before any worker starts while some clips' transcripts are unknown. Apart from
:mod:`pipeline.datasets.transcripts` because it asks the adapter registry, which imports that
module.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import file_sha256
from pipeline.datasets import text_source
from pipeline.datasets.table import SampleTable
from pipeline.datasets.transcripts import failed_entries, read_provenance, sidecar_path
from pipeline.errors import UserError
from pipeline.failures import Failure, Reason, Stage, failures_table
from pipeline.manifest import DatasetManifest
from pipeline.store.manifest import TranscriptSource


class TranscriptsUnknownError(UserError):
    """Text features were asked for, but some clips' transcripts are unknown."""


def transcript_source(root: Path, manifest: DatasetManifest,
                      transcripts: Path | None) -> TranscriptSource:
    """Where a dataset's transcripts come from, as a store records it.

    ``sidecar`` for a dataset released without text (its manifest names a sidecar), else
    ``annotations``; with the sidecar's name, sha256 and provenance (:func:`read_provenance`)
    when one is read (for an ``annotations`` dataset: the ``--transcripts`` file overriding
    some of its text).
    """
    kind = _text_source(manifest)
    path = _sidecar(root, manifest, transcripts)
    if path is None:
        return TranscriptSource(kind)
    sha = file_sha256(path)
    return TranscriptSource(kind, path.name, sha, read_provenance(path, sha))


def require_known(table: SampleTable, manifest: DatasetManifest, root: Path,
                  transcripts: Path | None) -> SampleTable:
    """The sample table of an extraction with text features, refused while transcripts are
    unknown.

    A clip the sidecar records as not transcribable (no decodable speech) becomes a failure
    with that reason; any other clip without a transcript stops the run. An empty transcript
    is known (nobody spoke): the extraction's ``empty_text`` policy decides about it.

    Raises:
        TranscriptsUnknownError: naming the count and how to get transcripts (exit 2).
    """
    texts = table.samples.column("transcript")
    if texts.null_count == 0:
        return table
    sidecar = _sidecar(root, manifest, transcripts)
    failed = failed_entries(sidecar) if sidecar is not None else {}
    ids = table.samples.column("sample_id").to_pylist()
    unknown = [sid for sid, text in zip(ids, texts.to_pylist(), strict=True)
               if text is None and sid not in failed]
    if unknown:
        raise TranscriptsUnknownError(_unknown_message(unknown, len(ids), manifest, root,
                                                       sidecar))
    drop = pa.array([sid in failed for sid in ids])
    splits = table.samples.column("split").to_pylist()
    failures = [Failure(sid, split, Stage.ADAPTER, Reason(failed[sid]),
                        f"{sidecar} records no transcript: speech recognition found no "
                        f"decodable speech ({failed[sid]})")
                for sid, split in zip(ids, splits, strict=True) if sid in failed]
    return SampleTable(table.dataset, table.samples.filter(pc.invert(drop)),
                       pa.concat_tables([table.failures, failures_table(failures)]))


def _text_source(manifest: DatasetManifest) -> str:
    return text_source(manifest.name)


def _sidecar(root: Path, manifest: DatasetManifest, transcripts: Path | None) -> Path | None:
    """The sidecar the adapter reads: ``--transcripts``, or the default of a dataset released
    without text (a dataset with its own text reads none by default)."""
    if transcripts is None and _text_source(manifest) != "sidecar":
        return None
    return sidecar_path(root, manifest, transcripts)


def _unknown_message(unknown: list[str], total: int, manifest: DatasetManifest, root: Path,
                     sidecar: Path | None) -> str:
    shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
    what = f"{manifest.name}: {len(unknown)} of {total} clips have no transcript ({shown})"
    if _text_source(manifest) != "sidecar":
        return (f"{what} in the dataset's annotations; text features need one: pass "
                "--transcripts FILE.csv (sample_id,transcript) listing them (`cli transcribe "
                "--out FILE.csv` makes one), or leave text out of --modalities")
    where = (f"{sidecar} does not list them" if sidecar is not None
             else f"no transcript sidecar at {root / str(manifest.transcripts)}")
    return (f"{what}: {where}; text features need one: run `cli transcribe --dataset "
            f"{manifest.name} --root {root}` first (or pass --transcripts FILE.csv), or leave "
            "text out of --modalities")


__all__ = ["TranscriptsUnknownError", "require_known", "transcript_source"]
