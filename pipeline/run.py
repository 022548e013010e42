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
of a killed run is taken over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import store as store_mod
from pipeline.backbones.registry import check_extraction_weights
from pipeline.store.destination import check_destination
from pipeline.store.lock import StoreLock
from pipeline.store.manifest import StoreManifest
from pipeline.config import ConfigError
from pipeline.datasets import dataset_source, scan
from pipeline.datasets.modalities import check_extracted, check_modalities, check_plan
from pipeline.datasets.table import SampleTable
from pipeline.datasets.text_sources import require_known, transcript_source
from pipeline.devices import DeviceError
from pipeline.errors import UserError
from pipeline.extract import Timer, extract_clips
from pipeline.extract_config import ExtractConfig
from pipeline.failures import failures_table
from pipeline.identity import (check_same_weights, feature_identity, modalities_from_shards,
                               software_versions)
from pipeline.manifest import DatasetManifest, FacePolicy
from pipeline.models import load_models

log = logging.getLogger(__name__)

INDEX_FIELDS_BASE = [
    pa.field("sample_id", pa.string()), pa.field("split", pa.string()),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("duration_s", pa.float64()), pa.field("face_ratio", pa.float64()),
    pa.field("transcript", pa.string()), pa.field("empty_transcript", pa.bool_()),
    pa.field("decode_errors", pa.int64()), pa.field("coverage", pa.float64()),
]


@dataclass(frozen=True)
class ClusterOptions:
    """Where the work runs: in-process LocalCluster (default), a scheduler, or SLURM."""

    workers: int | None = None          # local workers (default: cores, or one per GPU)
    scheduler: str | None = None        # tcp://host:8786 of a running cluster
    cluster: str = "local"              # "local" | "slurm"
    slurm_queue: str | None = None
    slurm_cores: int = 8
    slurm_memory: str = "32GB"
    slurm_gpus: int = 0
    slurm_walltime: str = "04:00:00"
    slurm_jobs: int = 1
    slurm_account: str | None = None


# -------------------------------------------------------------------------------- worker side

def resolve_device(device: str, cluster: ClusterOptions) -> str:
    """``cpu`` or ``cuda`` for the workers. On an in-process cluster the GPU must be on this
    machine (checked at once, before any work); workers elsewhere (``--scheduler``, SLURM)
    are checked when they connect (:func:`_check_gpu_workers`)."""
    import torch

    from pipeline.devices import resolve_device as local_device

    if device not in ("cpu", "cuda", "auto"):
        raise DeviceError(f"--device {device!r}: extraction takes cpu, cuda or auto")
    if cluster.scheduler or cluster.cluster == "slurm":
        if device == "auto":
            raise DeviceError("--device auto cannot see the GPUs of a remote cluster: say "
                              "--device cuda or --device cpu")
        return device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return local_device(device).type


def _worker_name() -> str:
    """The Dask worker's name, or "driver" when called outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except ValueError:
        return "driver"


def _worker_device(device: str) -> str:
    """One GPU per worker: a worker named 0, 1, ... (LocalCluster) takes that GPU."""
    if device != "cuda":
        return device
    import torch

    name = _worker_name()
    index = int(name) if name.isdigit() else 0
    return f"cuda:{index % max(1, torch.cuda.device_count())}"


def extract_shard(url: str, k: int, rows: list[dict[str, Any]], cfg: ExtractConfig,
                  policy: FacePolicy, store_id: str, device: str, multilabel: bool,
                  threads: int = 1) -> store_mod.ShardResult:
    """One Dask task: extract the clips of shard ``k`` and write the shard into the store."""
    import torch

    if device == "cpu":
        torch.set_num_threads(threads)
    device = _worker_device(device)
    loc = store_mod.Location.parse(url)
    timer = Timer()
    with timer("load"):
        models = load_models(cfg, policy, device)
    kept, feats, failures = extract_clips(rows, cfg, models, policy, timer)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        result = store_mod.write_shard(
            loc, k, store_id=store_id, sample_ids=[r["sample_id"] for r in kept],
            features=feats, index=_index_table(kept, multilabel),
            failures=failures_table(failures), dtype=cfg.dtype, scratch=scratch,
            info={"encoders": {m: e.provenance() for m, e in models.encoders.items()},
                  "timings": dict(timer.seconds), "host": socket.gethostname(),
                  "worker": _worker_name(),
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


def check_run_options(*, shard_size: int, limit: int | None, cluster: ClusterOptions) -> None:
    """Counts that must be positive, refused before any work (``range()`` would otherwise
    fail deep inside with "arg 3 must not be zero", and 0 workers would mean "one per core").

    Raises:
        ConfigError: naming the option.
    """
    for name, option, value in (("shard_size", "--shard-size", shard_size),
                                ("limit", "--limit", limit),
                                ("workers", "--workers", cluster.workers),
                                ("slurm_jobs", "--slurm-jobs", cluster.slurm_jobs),
                                ("slurm_cores", "--slurm-cores", cluster.slurm_cores)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: {name} must be at least 1")


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


def _make_client(opts: ClusterOptions, device: str) -> Any:
    from distributed import Client, LocalCluster

    if opts.scheduler:
        return Client(opts.scheduler)
    if opts.cluster == "slurm":
        from dask_jobqueue import SLURMCluster

        if opts.slurm_gpus not in (0, 1):
            # One worker per job, one GPU per worker: more GPUs means more jobs (--slurm-jobs).
            raise ConfigError(f"--slurm-gpus {opts.slurm_gpus}: each SLURM job runs one worker "
                             "with 0 or 1 GPU; use --slurm-jobs for more GPUs")
        extra = ["--gres=gpu:1"] if opts.slurm_gpus else []
        slurm = SLURMCluster(queue=opts.slurm_queue, account=opts.slurm_account,
                             cores=opts.slurm_cores, memory=opts.slurm_memory, processes=1,
                             walltime=opts.slurm_walltime, job_extra_directives=extra,
                             worker_extra_args=(["--resources", "GPU=1"]
                                                if opts.slurm_gpus else []))
        slurm.scale(jobs=opts.slurm_jobs)
        return Client(slurm)
    if device == "cuda":
        import torch

        n = opts.workers or torch.cuda.device_count()
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               resources={"GPU": 1}, dashboard_address=":0")
    else:
        n = opts.workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    return Client(cluster)


ProgressFn = Callable[[int, int], None]
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
        on_progress: called with ``(clips_done, failures_so_far)`` as shards finish.

    Returns:
        The store's manifest (``store.json``).
    """
    cluster = cluster or ClusterOptions()
    check_run_options(shard_size=shard_size, limit=limit, cluster=cluster)
    device = resolve_device(device, cluster)
    if manifest is None:  # an unknown dataset lists the valid ones, before any work
        root, manifest = dataset_source(dataset, root, transcripts=transcripts)
    check_modalities(cfg, manifest)  # a modality the dataset lacks, before weights or work
    text = "text" in cfg.modalities
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
            results.update(_run_tasks(loc.url, plan, todo, cfg, manifest, store_id, device,
                                      cluster, on_progress,
                                      initial=sum(len(plan[k]) for k in done)))
        shards = [results[k] for k in range(len(plan))]
        check_same_weights(shards)
        check_extracted(sum(s.index.num_rows for s in shards),
                        [adapter_failures, *(s.failures for s in shards)])
        lock.check()  # taken over while this run was frozen: leave store.json to that run
        written = store_mod.finalize(
            loc, identity=identity,
            modalities=modalities_from_shards(identity, shards, cfg.dtype), shards=shards,
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
               initial: int) -> dict[int, store_mod.ShardResult]:
    with dask_client(opts, device) as (client, resources):
        futures = {client.submit(extract_shard, url, k, plan[k], cfg, manifest.faces, store_id,
                                 device, manifest.multilabel, key=f"shard-{k}-{store_id[:8]}",
                                 resources=resources, pure=False): k for k in todo}
        return gather_shards(futures, plan, initial, on_progress,
                             lambda result: int(result.failures.num_rows))


@contextlib.contextmanager
def dask_client(opts: ClusterOptions, device: str) -> Iterator[tuple[Any, dict[str, int] | None]]:
    """A Dask client for ``opts`` and the resources a task needs on ``device`` (GPU workers
    checked); the client and a cluster it started are closed on exit."""
    client = _make_client(opts, device)
    log.info("Dask dashboard: %s", client.dashboard_link)
    try:
        resources = {"GPU": 1} if device == "cuda" else None
        if resources:
            _check_gpu_workers(client)
        yield client, resources
    finally:
        client.close()
        if client.cluster is not None:
            client.cluster.close()


def gather_shards(futures: dict[Any, int], plan: list[list[dict[str, Any]]], initial: int,
                  on_progress: ProgressFn | None,
                  failed_in: Callable[[Any], int]) -> dict[int, Any]:
    """Shard results by shard number as they finish, with ``(clips, failures)`` progress
    after each; a shard that killed every worker it ran on stops the run by name."""
    from distributed import KilledWorker, as_completed

    results: dict[int, Any] = {}
    clips, failed = initial, 0
    for future in as_completed(futures):
        k = futures[future]
        try:
            results[k] = future.result()
        except KilledWorker as err:
            raise ShardCrashError(_crash_message(k, plan[k], err)) from None
        clips += len(plan[k])
        failed += failed_in(results[k])
        if on_progress:
            on_progress(clips, failed)
    return results


class ShardCrashError(UserError):
    """A shard's task killed every worker that ran it (Dask's ``KilledWorker``)."""


def _crash_message(k: int, rows: list[dict[str, Any]], err: Exception) -> str:
    """What to do about a shard that keeps killing its workers: the clips it holds (one of
    them is the likeliest cause: a very long or broken file exhausting the worker's memory)
    and how to isolate it."""
    ids = [str(r["sample_id"]) for r in rows]
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return (f"shard {k} ({len(ids)} clips: {shown}) killed every worker that ran it "
            f"({type(err).__name__}: {str(err)[:200]}). The usual cause is memory: give each "
            "worker more (--slurm-memory, or fewer workers per node) or run again with "
            "--shard-size 1 to find the clip; completed shards are kept, so the same command "
            "resumes.")


def _check_gpu_workers(client: Any) -> None:
    """GPU tasks carry a Dask resource; workers that do not advertise it would never run them."""
    client.wait_for_workers(1, timeout=300)
    workers = client.scheduler_info()["workers"].values()
    if not any(w.get("resources", {}).get("GPU") for w in workers):
        raise DeviceError("--device cuda, but no Dask worker advertises a GPU: start workers "
                         "with `dask worker ADDRESS --nthreads 1 --resources GPU=1`")


def _sum_timings(shards: Sequence[store_mod.ShardResult]) -> dict[str, float]:
    total: dict[str, float] = {}
    for shard in shards:
        for stage, seconds in shard.info.get("timings", {}).items():
            total[stage] = round(total.get(stage, 0.0) + float(seconds), 3)
    return total


__all__ = ["ClusterOptions", "extract_shard", "feature_identity", "run_extract"]
