"""The watch that keeps a cluster from hanging the driver while shard tasks run.

Whatever the place (:mod:`pipeline.cluster`), the driver never waits forever:

* a SLURM job that ends (cancelled, pre-empted, out of walltime, failed) is replaced by a new
  one, up to ``--slurm-resubmits`` replacements, after which the run stops naming each ended
  job with its SLURM state and reason;
* a job that was never submitted (its sbatch failed) is checked with ``sbatch --test-only``,
  so the run stops with SLURM's reason;
* when no worker has been connected for ``--slurm-wait`` seconds (jobs stuck in the queue,
  every job gone, a scheduler without workers) the run stops and says why.

Each stop is a :class:`~pipeline.cluster.ClusterError` (exit 2).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.cluster import (ClusterError, ClusterOptions, check_job_script, cuda_devices,
                              device_of_workers, log_dir, slurm_job_states)
from pipeline.devices import DeviceError

log = logging.getLogger(__name__)

#: SLURM job states in which a job may still run its worker; any other state has ended it.
LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "REQUEUED",
                         "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                         "STAGE_OUT"})
SQUEUE_EVERY_S = 5.0
"""Seconds between two ``squeue`` calls of the watch (a login node shares them with others)."""
SUBMIT_GRACE_S = 30.0
"""Seconds a job may take to be submitted before a missing job id counts as a failed sbatch."""


@dataclass(frozen=True)
class JobEnd:
    """A SLURM job that ended while the run needed it."""

    job_id: str
    state: str
    reason: str

    def __str__(self) -> str:
        return f"job {self.job_id} {self.state} (reason: {self.reason})"


@dataclass
class ClusterWatch:
    """Checks, between two looks at the tasks, that the cluster can still finish them.

    Args:
        client: the run's Dask client.
        opts: the cluster options (the limits).
    """

    client: Any
    opts: ClusterOptions
    last_worker: float = field(default_factory=time.monotonic)
    ended: list[JobEnd] = field(default_factory=list)
    replaced: int = 0
    _last_squeue: float = 0.0
    _unsubmitted: dict[str, float] = field(default_factory=dict)
    _replacing: set[str] = field(default_factory=set)

    @property
    def slurm(self) -> Any:
        """The SLURMCluster, or None."""
        return self.client.cluster if self.opts.cluster == "slurm" and not \
            self.opts.scheduler else None

    def workers(self) -> int:
        """Workers connected now."""
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def check(self) -> int:
        """Replace ended SLURM jobs and stop when nothing can run the work.

        Returns:
            The number of workers connected.

        Raises:
            ClusterError: the replacement limit is reached, a job cannot be submitted, or no
                worker has been connected for ``wait_s``.
        """
        now = time.monotonic()
        if self.slurm is not None and now - self._last_squeue >= SQUEUE_EVERY_S:
            self._last_squeue = now
            self._check_jobs(now)
        connected = self.workers()
        if connected:
            self.last_worker = now
        elif now - self.last_worker > self.opts.wait_s:
            raise ClusterError(self._no_worker_message())
        return connected

    def _jobs(self) -> dict[str, str | None]:
        """Worker name -> SLURM job id (None until sbatch answered) of the jobs kept."""
        jobs = dict(self.slurm.workers)
        return {name: getattr(job, "job_id", None) for name, job in jobs.items()}

    def _check_jobs(self, now: float) -> None:
        jobs = self._jobs()
        states = slurm_job_states()
        gone: dict[str, JobEnd] = {}
        for name, job_id in jobs.items():
            if name in self._replacing:
                continue  # dask-jobqueue is closing it (asynchronously)
            if job_id is None:
                self._check_submitted(name, now)
                continue
            state, reason = states.get(job_id, ("ENDED", "no longer listed by squeue"))
            if state not in LIVE_STATES:
                gone[name] = JobEnd(job_id, state, reason)
        if gone:
            self._replace(gone)

    def _check_submitted(self, name: str, now: float) -> None:
        """A job without an id past the grace time: its sbatch failed (dask-jobqueue logged
        it); SLURM's reason, when it rejects the script now, stops the run."""
        first = self._unsubmitted.setdefault(name, now)
        if now - first > SUBMIT_GRACE_S:
            check_job_script(self.slurm.job_script(), self.opts)
            self._replace({name: JobEnd("(none)", "NOT_SUBMITTED", "sbatch failed")})

    def _replace(self, gone: dict[str, JobEnd]) -> None:
        self.ended.extend(gone.values())
        for end in gone.values():
            log.warning("SLURM %s", end)
        if self.replaced + len(gone) > self.opts.slurm_resubmits:
            raise ClusterError(
                f"SLURM jobs ended {len(self.ended)} time(s) and --slurm-resubmits "
                f"{self.opts.slurm_resubmits} replacements are used up: "
                + "; ".join(str(e) for e in self.ended)
                + ". Finished shards are kept: the same command resumes (jobs that reach "
                "their walltime: raise --slurm-walltime or lower --shard-size)")
        self.replaced += len(gone)
        self._replacing.update(gone)
        cluster, target = self.slurm, self.opts.slurm_jobs

        def resubmit() -> None:
            # A new name per job: dask-jobqueue closes a lost worker's job by its name later.
            for name in gone:
                cluster.worker_spec.pop(name, None)
            cluster.scale(jobs=target)

        cluster.loop.add_callback(resubmit)
        log.warning("SLURM: %d replacement job(s) submitted (%d of --slurm-resubmits %d used)",
                    len(gone), self.replaced, self.opts.slurm_resubmits)

    def _no_worker_message(self) -> str:
        waited = f"no Dask worker has been connected for {self.opts.wait_s:.0f} s"
        if self.slurm is None:
            where = self.opts.scheduler or "the local cluster"
            return f"{waited} ({where}); start workers, or run again once they are up"
        states = slurm_job_states()
        jobs = [str(JobEnd(i, *states.get(i, ("ENDED", "no longer listed by squeue"))))
                for i in self._jobs().values() if i]
        return (f"{waited}: " + ("; ".join(jobs) if jobs else "no SLURM job is queued")
                + f". Their output is in {log_dir(self.opts)}; finished shards are "
                "kept: the same command resumes (--slurm-wait sets the wait)")

    def wait_for_a_worker(self) -> int:
        """Wait, checking the cluster (so never forever), until a worker is connected;
        returns how many are."""
        while True:
            connected = self.check()
            if connected:
                return connected
            time.sleep(0.5)

    def device(self, device: str) -> str:
        """The device of remote workers: ``auto`` asks the workers connected once the first
        one is; ``cuda`` requires that they advertise a GPU (GPU tasks carry a Dask
        resource)."""
        if not self.opts.remote or device == "cpu":
            return device
        self.wait_for_a_worker()
        if device == "auto":
            counts = {str(w): int(n) for w, n in self.client.run(cuda_devices).items()}
            device = device_of_workers(counts)
            log.info("--device auto: %d worker(s) connected, %s: extracting on %s",
                     len(counts), "each with a CUDA device" if device == "cuda"
                     else "none with a CUDA device", device)
        if device == "cuda":
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            if not any(w.get("resources", {}).get("GPU") for w in workers):
                raise DeviceError("--device cuda, but no Dask worker advertises a GPU: start "
                                  "workers with `dask worker ADDRESS --nthreads 1 --resources "
                                  "GPU=1` (--cluster slurm: --slurm-gpus 1)")
        return device
