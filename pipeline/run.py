"""The extraction run: a sample table -> a complete feature store, with Dask.

One Dask task per shard of clips. Workers load the backbones once (a per-process cache keyed by
the configuration) and write their shard straight into the store; the driver only plans, shows
progress and, after the last shard, writes ``index.parquet``, ``failures.parquet`` and
``store.json``. A re-run of the same command skips complete shards and refuses to mix shards of
another configuration into the store.

Before any work the driver checks ``--out``
(:func:`~pipeline.store.destination.check_destination`: new, empty, or a store of this
configuration; anything else is refused with nothing written) and takes the store's extraction
lock (:class:`~pipeline.store.lock.StoreLock`), which is also the check that ``--out`` can be
written: a second run into the same store is refused while the first one lives, and the lock
of a killed run is taken over. The shard tasks run through :mod:`pipeline.shard_tasks` (the
loop transcription shares).
"""

from __future__ import annotations

import logging
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import store as store_mod
from pipeline.backbones.registry import check_extraction_weights
from pipeline.cluster import ClusterOptions, resolve_device, task_threads
from pipeline.datasets import dataset_source, scan
from pipeline.datasets.modalities import check_extracted, check_modalities, check_plan
from pipeline.datasets.table import SampleTable
from pipeline.datasets.text_sources import require_known, transcript_source
from pipeline.errors import UserError
from pipeline.extract import Timer, extract_clips
from pipeline.extract_config import ExtractConfig
from pipeline.failures import Failure, failures_table
from pipeline.identity import (check_same_weights, feature_identity, modalities_from_shards,
                               software_versions)
from pipeline.manifest import DatasetManifest, FacePolicy
from pipeline.models import load_models
from pipeline.progress import CLIPS_TOPIC, ClipTally, report_clips
from pipeline.shard_tasks import check_run_options, run_shard_tasks, worker_device, worker_name
from pipeline.store.destination import check_destination
from pipeline.store.lock import StoreLock
from pipeline.store.manifest import StoreManifest

log = logging.getLogger(__name__)

INDEX_FIELDS_BASE = [
    pa.field("sample_id", pa.string()), pa.field("split", pa.string()),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("duration_s", pa.float64()), pa.field("face_ratio", pa.float64()),
    pa.field("transcript", pa.string()), pa.field("empty_transcript", pa.bool_()),
    pa.field("decode_errors", pa.int64()), pa.field("coverage", pa.float64()),
]


# -------------------------------------------------------------------------------- worker side

def extract_shard(url: str, k: int, rows: list[dict[str, Any]], cfg: ExtractConfig,
                  policy: FacePolicy, store_id: str, device: str, multilabel: bool,
                  threads: int | None = None) -> store_mod.ShardResult:
    """One Dask task: extract the clips of shard ``k`` and write the shard into the store,
    reporting its clips as each batch finishes (:func:`pipeline.progress.report_clips`).

    ``threads``: torch threads for a CPU task (default: the worker's share of its cores).
    """
    import torch

    if device == "cpu":
        torch.set_num_threads(threads or task_threads())
    device = worker_device(device)
    loc = store_mod.Location.parse(url)
    timer = Timer()
    with timer("load"):
        models = load_models(cfg, policy, device)
    attempt, through, reasons = uuid.uuid4().hex, 0, Counter[str]()

    def on_batch(clips: int, failed: list[Failure]) -> None:
        nonlocal through
        through += clips
        reasons.update(f.reason.value for f in failed)
        report_clips(k, attempt, through, reasons)

    kept, feats, failures = extract_clips(rows, cfg, models, policy, timer, on_batch=on_batch)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        result = store_mod.write_shard(
            loc, k, store_id=store_id, sample_ids=[r["sample_id"] for r in kept],
            features=feats, index=_index_table(kept, multilabel),
            failures=failures_table(failures), dtype=cfg.features.dtype, scratch=scratch,
            info={"encoders": {m: e.provenance() for m, e in models.encoders.items()},
                  "timings": dict(timer.seconds), "host": socket.gethostname(),
                  "worker": worker_name(),
                  "device": device, "clips": len(rows)})
    # The shard's own write time cannot be inside the shard; it travels back with the result.
    result.info["timings"]["write"] = time.perf_counter() - started
    return result


def _index_table(rows: list[dict[str, Any]], multilabel: bool) -> pa.Table:
    label = (pa.field("labels", pa.list_(pa.float32())) if multilabel
             else pa.field("label", pa.int64()))
    # continuous targets (valence, arousal) when the dataset's sample table has them
    targets = ([pa.field("targets", pa.list_(pa.float32()))]
               if rows and "targets" in rows[0] else [])
    schema = pa.schema([*INDEX_FIELDS_BASE, label, *targets])
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows],
                                schema=schema)


# -------------------------------------------------------------------------------- driver side

def plan_shards(samples: pa.Table, shard_size: int) -> list[list[dict[str, Any]]]:
    rows = samples.to_pylist()
    return [rows[i:i + shard_size] for i in range(0, len(rows), shard_size)]


def _completed(loc: store_mod.Location, plan: list[list[dict[str, Any]]],
               store_id: str) -> dict[int, store_mod.ShardResult]:
    done = {}
    for k, rows in enumerate(plan):
        shard = store_mod.completed_shard(loc, k, store_id)
        if shard is None:
            continue
        have = set(shard.index.column("sample_id").to_pylist()) | set(
            shard.failures.column("sample_id").to_pylist())
        if have != {r["sample_id"] for r in rows}:
            raise store_mod.StoreError(
                f"{loc.display}: shard {k} holds other clips than this run plans (was --limit or "
                "--shard-size different?); use the same options as before or a new --out")
        done[k] = shard
    return done


ProgressFn = Callable[[int, Counter[str], int], None]
PlanFn = Callable[[int, int], None]
def run_extract(dataset: str, root: str | Path, out: str, *, cfg: ExtractConfig,
                annotations: str | Path | None = None, transcripts: str | Path | None = None,
                limit: int | None = None, shard_size: int = 256, device: str = "auto",
                cluster: ClusterOptions | None = None,
                manifest: DatasetManifest | None = None,
                on_plan: PlanFn | None = None,
                on_progress: ProgressFn | None = None) -> StoreManifest:
    """Extract a raw dataset into a complete feature store at ``out``.

    Args:
        dataset: dataset name (``meld``, ...).
        root: the raw dataset root in its official layout.
        out: the store (folder or fsspec URL).
        cfg: the extraction configuration.
        limit: extract only the first ``limit`` clips of the sample table.
        shard_size: clips per shard (= per Dask task).
        device: ``cpu``, ``cuda`` or ``auto``.
        cluster: where to run (default: an in-process LocalCluster).
        manifest: the dataset's manifest (default: :func:`~pipeline.datasets.dataset_source`'s
            for ``dataset`` and ``root``; ``videos`` lists pass the one built from the list).
        on_plan: called once with ``(clips to extract, clips already done)`` after the dataset
            is scanned and finished shards are found.
        on_progress: called about every :data:`~pipeline.shard_tasks.POLL_S` with ``(clips
            done, failures by reason, workers connected)``; clips move as workers finish them.

    Returns:
        The store's manifest (``store.json``).
    """
    cluster = cluster or ClusterOptions()
    check_run_options(shard_size=shard_size, limit=limit, cluster=cluster)
    device = resolve_device(device, cluster)
    if manifest is None:  # an unknown dataset lists the valid ones, before any work
        root, manifest = dataset_source(dataset, root, transcripts=transcripts,
                                        annotations=annotations)
    check_modalities(cfg, manifest)  # a modality the dataset lacks, before weights or work
    text = "text" in cfg.choices.modalities
    transcripts = Path(transcripts) if transcripts else None
    source = transcript_source(Path(root), manifest, transcripts) if text else None
    identity = feature_identity(cfg, manifest, source)
    store_id = store_mod.store_id_of(identity)
    loc = store_mod.Location.parse(out)

    def planned() -> tuple[pa.Table, pa.Table]:
        table = scan(dataset, root, manifest=manifest, annotations=annotations,
                     transcripts=transcripts)
        if text:  # unknown transcripts stop the run here, before any worker starts
            table = require_known(table, manifest, Path(root), transcripts)
        return _limit(table, limit)

    # Before any work: a folder of other files or a store of another configuration is refused
    # with nothing written; then the lock (the first write) keeps a second run out.
    if check_destination(loc, store_id) == "complete":
        complete = _complete_with_plan(loc, *planned(), limit=limit, shard_size=shard_size)
        StoreLock(loc).clear_stale()  # a run killed after writing store.json left its marker
        return complete
    check_extraction_weights(cfg)  # every checkpoint fetched and checked before any worker
    with StoreLock(loc) as lock:
        samples, adapter_failures = planned()
        if check_destination(loc, store_id) == "complete":  # finished while we waited
            return _complete_with_plan(loc, samples, adapter_failures, limit=limit,
                                       shard_size=shard_size)
        check_plan(cfg, manifest, samples, adapter_failures)
        plan = plan_shards(samples, shard_size)
        done = _completed(loc, plan, store_id)
        log.info("%d clips in %d shards (%d already done), store_id %s", samples.num_rows,
                 len(plan), len(done), store_id[:12])
        results = dict(done)
        todo = [k for k in range(len(plan)) if k not in done]
        if on_plan:
            on_plan(samples.num_rows, sum(len(plan[k]) for k in done))
        if todo:
            ran, device = _run_tasks(loc.url, plan, todo, cfg, manifest, store_id, device,
                                     cluster, on_progress,
                                     initial=sum(len(plan[k]) for k in done))
            results.update(ran)
        shards = [results[k] for k in range(len(plan))]
        check_same_weights(shards)
        check_extracted(sum(s.index.num_rows for s in shards),
                        [adapter_failures, *(s.failures for s in shards)])
        lock.check()  # taken over while this run was frozen: leave store.json to that run
        written = store_mod.finalize(
            loc, identity=identity,
            modalities=modalities_from_shards(identity, shards, cfg.features.dtype), shards=shards,
            adapter_failures=adapter_failures, config=cfg,
            software=software_versions(), timings=_sum_timings(shards),
            options={"shard_size": shard_size, "limit": limit, "device": device})
        return _with_label_texts(loc, written)


def _complete_with_plan(loc: store_mod.Location, samples: pa.Table, adapter_failures: pa.Table,
                        *, limit: int | None, shard_size: int) -> StoreManifest:
    """A complete store of this configuration is this run's result only if it holds the clips
    this run plans (each in its index or its failures), not merely the same ``store_id``: a
    store made with ``--limit 4`` is not the whole dataset.

    Raises:
        StoreError: the store holds other clips than planned, naming the difference and the
            options it was made with.
    """
    store = store_mod.open_store(loc.url)
    have = set(store.index.column("sample_id").to_pylist()) | set(
        store.failures.column("sample_id").to_pylist())
    want = set(samples.column("sample_id").to_pylist()) | set(
        adapter_failures.column("sample_id").to_pylist())
    if have == want:
        log.info("%s is already complete with this configuration and these %d clips; nothing "
                 "to do", loc.display, len(want))
        return store.manifest
    missing, extra = sorted(want - have), sorted(have - want)
    made = store.manifest.options
    raise store_mod.StoreError(
        f"{loc.display} is complete with this configuration but holds other clips than this "
        f"run plans: {_some(missing)} planned but not in it, {_some(extra)} in it but not "
        f"planned (it was made with --limit {made.get('limit')} --shard-size "
        f"{made.get('shard_size')}; this run: --limit {limit} --shard-size {shard_size}). "
        "Extract into a new --out (nothing was written)")


def _some(ids: Sequence[str], shown: int = 3) -> str:
    if not ids:
        return "0 clips"
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return f"{len(ids)} clip{'s' if len(ids) > 1 else ''} ({', '.join(ids[:shown])}{more})"


def _with_label_texts(loc: store_mod.Location, manifest: StoreManifest) -> StoreManifest:
    """The complete store with its label texts embedded by its text backbone, on the driver's
    CPU (a few dozen texts): CLEF's prototypes (:mod:`pipeline.label_texts`). A store they
    cannot be made for stays complete without them, and says how to add them later."""
    from pipeline.label_texts import add_label_texts, available

    problem = available(manifest)
    if problem:
        log.info("%s: no label texts: %s", loc.display, problem)
        return manifest
    try:
        return add_label_texts(loc.url, device="cpu")
    except (UserError, OSError, RuntimeError) as err:
        log.warning("%s: label texts not added (%s); `cli store add-label-texts %s` adds them",
                    loc.display, err, loc.display)
        return manifest


def _limit(table: SampleTable, limit: int | None) -> tuple[pa.Table, pa.Table]:
    if limit is None:
        return table.samples, table.failures
    return table.samples.slice(0, limit), table.failures.slice(0, 0)


def _run_tasks(url: str, plan: list[list[dict[str, Any]]], todo: Sequence[int],
               cfg: ExtractConfig, manifest: DatasetManifest, store_id: str, device: str,
               opts: ClusterOptions, on_progress: ProgressFn | None,
               initial: int) -> tuple[dict[int, store_mod.ShardResult], str]:
    """Run the shards' extraction tasks (:func:`run_shard_tasks`), reporting progress per
    clip as the workers publish it; returns the results and the device they ran on."""
    tally = ClipTally(initial)

    def submit(client: Any, device: str, resources: dict[str, int] | None) -> dict[Any, int]:
        client.subscribe_topic(CLIPS_TOPIC, tally.on_event)
        return {client.submit(extract_shard, url, k, plan[k], cfg, manifest.faces, store_id,
                              device, manifest.multilabel, key=f"shard-{k}-{store_id[:8]}",
                              resources=resources, pure=False): k for k in todo}

    def done(k: int, result: store_mod.ShardResult) -> None:
        tally.shard_done(k, len(plan[k]), Counter(result.failures.column("reason").to_pylist()))

    def tick(workers: int) -> None:
        if on_progress:
            clips, failed = tally.counts()
            on_progress(clips, failed, workers)

    return run_shard_tasks(opts, device, plan, submit, on_done=done, on_tick=tick)


def _sum_timings(shards: Sequence[store_mod.ShardResult]) -> dict[str, float]:
    total: dict[str, float] = {}
    for shard in shards:
        for stage, seconds in shard.info.get("timings", {}).items():
            total[stage] = round(total.get(stage, 0.0) + float(seconds), 3)
    return total


__all__ = ["extract_shard", "run_extract"]
