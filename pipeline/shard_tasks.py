"""Shard tasks on a Dask cluster, for extraction and transcription alike: one task per shard of
clips, submitted to the cluster :class:`~pipeline.cluster.ClusterOptions` describes and watched
while they run (:func:`run_shard_tasks`); on the worker, the device a task runs on
(:func:`worker_device`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pipeline.cluster import ClusterOptions, close_client, make_client
from pipeline.cluster_watch import ClusterWatch
from pipeline.config import ConfigError
from pipeline.errors import UserError

log = logging.getLogger(__name__)

POLL_S = 0.5
"""Seconds between two looks at the tasks, the workers' clip reports and the cluster."""


def worker_name() -> str:
    """The Dask worker's name, or "driver" when called outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except ValueError:
        return "driver"


def worker_device(device: str) -> str:
    """One GPU per worker: a worker named 0, 1, ... (LocalCluster) takes that GPU."""
    if device != "cuda":
        return device
    import torch

    name = worker_name()
    index = int(name) if name.isdigit() else 0
    return f"cuda:{index % max(1, torch.cuda.device_count())}"


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


SubmitFn = Callable[[Any, str, "dict[str, int] | None"], "dict[Any, int]"]


def run_shard_tasks(opts: ClusterOptions, device: str, plan: list[list[dict[str, Any]]],
                    submit: SubmitFn, *, on_done: Callable[[int, Any], None],
                    on_tick: Callable[[int], None] | None = None) -> tuple[dict[int, Any], str]:
    """One Dask task per shard, on the cluster ``opts`` describes, watched while they run
    (:class:`~pipeline.cluster_watch.ClusterWatch`: ended SLURM jobs replaced, a cluster that cannot
    finish stops the run); extraction and transcription both run through it.

    Args:
        opts: where the workers are.
        device: ``cpu``, ``cuda`` or ``auto`` (resolved by asking the workers).
        plan: the shards' rows (named in the message of a shard that kills its workers).
        submit: ``(client, device, resources) -> {future: shard number}``.
        on_done: called with ``(shard number, result)`` as each task finishes.
        on_tick: called about every :data:`POLL_S` with the workers connected.

    Returns:
        The results by shard number, and the device they ran on.
    """
    from distributed import KilledWorker

    client, worker_logs = make_client(opts, device)
    log.info("Dask dashboard: %s", client.dashboard_link)
    ok = False
    try:
        watch = ClusterWatch(client, opts)
        device = watch.device(device)
        pending = submit(client, device, {"GPU": 1} if device == "cuda" else None)
        results: dict[int, Any] = {}
        workers = 0
        while pending:
            for future in [f for f in pending if f.done()]:
                try:
                    # Bounded: a result lost with its worker is computed again, on a worker
                    # that the watch below may first have to bring back.
                    result = future.result(timeout=POLL_S)
                except KilledWorker as err:
                    k = pending[future]
                    raise ShardCrashError(_crash_message(k, plan[k], err)) from None
                except TimeoutError:
                    continue
                k = pending.pop(future)
                results[k] = result
                on_done(k, result)
            workers = watch.check() if pending else workers
            if on_tick:
                on_tick(workers)
            if pending:
                time.sleep(POLL_S)
        ok = True
        return results, device
    finally:
        close_client(client, worker_logs, ok=ok)


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
