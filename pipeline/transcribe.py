"""The transcription run: a dataset's clips -> a transcript sidecar, with Dask.

For the datasets released without text (CAER, VoxCeleb2) the paper used speech recognition;
``cli transcribe`` does it where extraction runs (local workers, ``--scheduler``, SLURM, a GPU)
and writes the sidecar the adapters read (:mod:`pipeline.datasets.transcripts`).

One Dask task per shard of clips, as in extraction: a worker loads the recogniser once
(:func:`pipeline.asr.load_recognizer`), decodes ``batch_clips`` clips at a time with PyAV
(memory bounded by a batch, whatever the shard size) and writes the shard's results to a part
file, atomically, under ``.<sidecar>.parts/<run key>/`` beside the sidecar. A killed run loses
only the shards in flight: the same command skips the parts it finds. When every shard is done
the driver writes the sidecar in the sample table's order, with its provenance file (model,
weights sha256, language, settings, software, counts), and removes the parts.

A clip whose audio cannot be decoded (no audio stream, corrupt, too short) is recorded with its
failure reason in the sidecar's ``status`` column, never as an empty transcript; an empty
transcript means the recogniser heard no words.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.asr import AsrSettings, Recognizer, check_model, load_recognizer
from pipeline.config import ConfigError
from pipeline.datasets import scan, text_source
from pipeline.datasets.transcripts import OK, provenance_path, write_sidecar
from pipeline.failures import ClipError
from pipeline.manifest import DatasetManifest, load_manifest
from pipeline.store.manifest import sha256_json

log = logging.getLogger(__name__)

PARTS_FORMAT = "conclugen-transcripts-part/1"

ProgressFn = Callable[[int, int], None]
PlanFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ClipResult:
    """One clip: its transcript, or None with the failure reason as ``status``."""

    sample_id: str
    transcript: str | None
    status: str = OK
    message: str = ""


@dataclass(frozen=True)
class TranscribeResult:
    """What :func:`run_transcribe` wrote."""

    sidecar: Path
    provenance_file: Path
    clips: int
    transcribed: int
    empty: int
    failed: dict[str, int]
    provenance: dict[str, Any]


class TranscribeOptionError(ConfigError):
    """An option of ``cli transcribe`` that cannot be used (the message names it)."""


# -------------------------------------------------------------------------------- worker side

_RECOGNIZERS: dict[str, Recognizer] = {}


def transcribe_clips(rows: Sequence[dict[str, Any]], recognizer: Recognizer,
                     batch_clips: int) -> list[ClipResult]:
    """Transcribe sample-table rows ``batch_clips`` at a time (decoded with PyAV at 16 kHz).

    A clip that cannot be decoded is a :class:`ClipResult` with its failure reason.
    """
    from pipeline.media import read_audio

    results: dict[str, ClipResult] = {}
    for start in range(0, len(rows), batch_clips):
        batch: list[tuple[str, Any]] = []
        for row in rows[start:start + batch_clips]:
            sid = str(row["sample_id"])
            try:
                batch.append((sid, read_audio(row["media_path"], start_s=row.get("start_s"),
                                              end_s=row.get("end_s"))))
            except ClipError as err:
                results[sid] = ClipResult(sid, None, str(err.reason), err.message)
        if batch:
            texts = recognizer.transcribe([audio for _, audio in batch])
            results.update((sid, ClipResult(sid, text))
                           for (sid, _), text in zip(batch, texts, strict=True))
    return [results[str(r["sample_id"])] for r in rows]


def transcribe_shard(parts: str, k: int, rows: list[dict[str, Any]], settings: AsrSettings,
                     device: str, threads: int = 1) -> dict[str, Any]:
    """One Dask task: transcribe shard ``k`` and write its part file.

    Returns:
        The part's content: ``clips`` (one dict per clip), ``provenance`` (the recogniser's)
        and ``seconds``.
    """
    from pipeline.shard_tasks import worker_device

    if device == "cpu":
        import torch

        torch.set_num_threads(threads)
    device = worker_device(device)
    key = repr((settings, device))
    if key not in _RECOGNIZERS:
        _RECOGNIZERS[key] = load_recognizer(settings, device)
    recognizer = _RECOGNIZERS[key]
    started = time.perf_counter()
    clips = transcribe_clips(rows, recognizer, settings.batch_clips)
    part = {"format": PARTS_FORMAT, "shard": k, "clips": [dataclasses.asdict(c) for c in clips],
            "provenance": recognizer.provenance, "device": device,
            "seconds": round(time.perf_counter() - started, 3)}
    _write_part(Path(parts) / _part_name(k), part)
    return part


def _part_name(k: int) -> str:
    return f"shard-{k:05d}.json"


def _write_part(path: Path, part: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(part), encoding="utf-8")
    tmp.replace(path)


# -------------------------------------------------------------------------------- driver side

def default_sidecar(manifest: DatasetManifest, root: Path, out: Path | None) -> Path:
    """``--out``, else the sidecar the dataset's adapter reads by default.

    Raises:
        TranscribeOptionError: a dataset whose annotations carry its text, without ``--out``.
    """
    if out is not None:
        return out
    if text_source(manifest.name) != "sidecar" or manifest.transcripts is None:
        raise TranscribeOptionError(f"--dataset {manifest.name}: its annotations carry the "
                                    "transcripts; pass --out FILE.csv to transcribe it anyway "
                                    "(extract it with --transcripts FILE.csv)")
    return root / manifest.transcripts


def run_transcribe(dataset: str, root: str | Path, *, out: str | Path | None = None,
                   settings: AsrSettings | None = None, annotations: str | Path | None = None,
                   limit: int | None = None, shard_size: int = 64, device: str = "auto",
                   cluster: Any = None, on_plan: PlanFn | None = None,
                   on_progress: ProgressFn | None = None) -> TranscribeResult:
    """Transcribe a dataset's clips into a transcript sidecar (resumable).

    Args:
        dataset: dataset name (``caer``, ``voxceleb2``, ...).
        root: the raw dataset root in its official layout.
        out: the sidecar CSV (default: the manifest's ``transcripts`` file under ``root``,
            which extraction reads without being told).
        settings: the recogniser and how it decodes (default: the reference's model).
        annotations: folder of annotation files, if not under ``root``.
        limit: only the first ``limit`` clips of the sample table.
        shard_size: clips per shard (= per Dask task, = per part file).
        device: ``cpu``, ``cuda`` or ``auto``.
        cluster: a :class:`pipeline.cluster.ClusterOptions` (default: an in-process LocalCluster).
        on_plan: called once with ``(clips, clips already done)``.
        on_progress: called with ``(clips done, clips failed)`` as shards finish.

    Raises:
        UserError: a bad option, an unreadable dataset, a recogniser that cannot be loaded,
            a shard that kills every worker it runs on.
    """
    from pipeline.cluster import ClusterOptions, resolve_device
    from pipeline.shard_tasks import check_run_options

    settings = settings or AsrSettings()
    cluster = cluster or ClusterOptions()
    check_run_options(shard_size=shard_size, limit=limit, cluster=cluster)
    check_model(settings)
    device = resolve_device(device, cluster)
    manifest = load_manifest(dataset)
    root = Path(root)
    sidecar = default_sidecar(manifest, root, Path(out) if out is not None else None)
    # A dataset released without text is scanned without its sidecar: every clip is
    # transcribed, whatever an older sidecar says.
    if text_source(dataset) == "sidecar":
        manifest = dataclasses.replace(manifest, transcripts=None)
    table = scan(dataset, root, manifest=manifest, annotations=annotations)
    samples = table.samples if limit is None else table.samples.slice(0, limit)
    rows = [{k: r[k] for k in ("sample_id", "media_path", "start_s", "end_s")}
            for r in samples.to_pylist()]
    plan = [rows[i:i + shard_size] for i in range(0, len(rows), shard_size)]
    parts = _parts_folder(sidecar, dataset, settings, plan)
    done = _completed_parts(parts, plan)
    log.info("%d clips in %d shards (%d already done), parts in %s", len(rows), len(plan),
             len(done), parts)
    if on_plan:
        on_plan(len(rows), sum(len(plan[k]) for k in done))
    todo = [k for k in range(len(plan)) if k not in done]
    if todo:
        done.update(_run_tasks(parts, plan, todo, settings, device, cluster, on_progress,
                               initial=sum(len(plan[k]) for k in done)))
    result = _write(sidecar, dataset, settings, [done[k] for k in range(len(plan))])
    shutil.rmtree(parts.parent, ignore_errors=True)
    return result


def _parts_folder(sidecar: Path, dataset: str, settings: AsrSettings,
                  plan: list[list[dict[str, Any]]]) -> Path:
    """``.<sidecar>.parts/<run key>``: another model, settings or plan is another run, whose
    parts are never mixed with these."""
    key = sha256_json({"dataset": dataset, "settings": settings.recorded(),
                       "shards": [[r["sample_id"] for r in shard] for shard in plan]})
    folder = sidecar.parent / f".{sidecar.name}.parts" / key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _completed_parts(parts: Path, plan: list[list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    done = {}
    for k, rows in enumerate(plan):
        path = parts / _part_name(k)
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # absent, or cut short by a kill: the shard runs again
        ids = [c.get("sample_id") for c in part.get("clips", [])]
        if part.get("format") == PARTS_FORMAT and ids == [r["sample_id"] for r in rows]:
            done[k] = part
    return done


def _run_tasks(parts: Path, plan: list[list[dict[str, Any]]], todo: Sequence[int],
               settings: AsrSettings, device: str, opts: Any, on_progress: ProgressFn | None,
               initial: int) -> dict[int, dict[str, Any]]:
    from pipeline.shard_tasks import run_shard_tasks

    clips, failed = initial, 0

    def submit(client: Any, device: str, resources: dict[str, int] | None) -> dict[Any, int]:
        return {client.submit(transcribe_shard, str(parts), k, plan[k], settings, device,
                              key=f"transcribe-{k}-{parts.name[:8]}", resources=resources,
                              pure=False): k for k in todo}

    def done(k: int, part: dict[str, Any]) -> None:
        nonlocal clips, failed
        clips += len(plan[k])
        failed += sum(c["transcript"] is None for c in part["clips"])
        if on_progress:
            on_progress(clips, failed)

    results, _ = run_shard_tasks(opts, device, plan, submit, on_done=done)
    return results


def _write(sidecar: Path, dataset: str, settings: AsrSettings,
           parts: list[dict[str, Any]]) -> TranscribeResult:
    from pipeline.identity import software_versions

    clips = [c for part in parts for c in part["clips"]]
    mapping = {c["sample_id"]: c["transcript"] for c in clips}
    failed = {c["sample_id"]: c["status"] for c in clips if c["transcript"] is None}
    recognizers = {json.dumps(p["provenance"], sort_keys=True) for p in parts}
    if len(recognizers) > 1:
        raise TranscribeOptionError(f"{sidecar}: shards were transcribed by different "
                                    f"recognisers: {sorted(recognizers)}")
    recognizer = parts[0]["provenance"] if parts else {}
    counts = {"clips": len(clips), "transcribed": len(clips) - len(failed),
              "empty": sum(c["transcript"] == "" for c in clips),
              "failed": dict(Counter(failed.values()))}
    provenance = {"made_by": "cli transcribe", "dataset": dataset, **recognizer,
                  "language": settings.language, "settings": settings.recorded(),
                  "software": software_versions(), "counts": counts,
                  "seconds": round(sum(p["seconds"] for p in parts), 3),
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    write_sidecar(sidecar, mapping, failed=failed, provenance=provenance)
    return TranscribeResult(sidecar, provenance_path(sidecar), len(clips), counts["transcribed"],
                            counts["empty"], counts["failed"], provenance)


__all__ = ["ClipResult", "TranscribeResult", "default_sidecar", "run_transcribe",
           "transcribe_clips", "transcribe_shard"]
