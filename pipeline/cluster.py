"""Where extraction runs, and the watch that keeps a cluster from hanging the driver.

Three places: an in-process ``LocalCluster`` (the default), a running Dask scheduler
(``--scheduler``) and SLURM through dask-jobqueue (``--cluster slurm``). Whatever the place, the
driver never waits forever:

* a SLURM job script that SLURM would reject (an unknown partition, more cores or memory than
  a node has, a missing gres) is found before anything is submitted, with ``sbatch
  --test-only``, and refused with SLURM's own message;
* a SLURM job that ends (cancelled, pre-empted, out of walltime, failed) is replaced by a new
  one, up to ``--slurm-resubmits`` replacements, after which the run stops naming each ended
  job with its SLURM state and reason;
* when no worker has been connected for ``--slurm-wait`` seconds (jobs stuck in the queue,
  every job gone, a scheduler without workers) the run stops and says why.

Each stop is a :class:`ClusterError` (exit 2). Finished shards are already in the store, so the
same command resumes.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from pipeline.config import ConfigError
from pipeline.devices import DeviceError
from pipeline.errors import UserError

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
class ClusterOptions:
    """Where the work runs: in-process LocalCluster (default), a scheduler, or SLURM.

    Attributes:
        workers: local workers (default: cores, or one per GPU).
        scheduler: ``tcp://host:8786`` of a running cluster.
        cluster: ``local`` or ``slurm``.
        slurm_queue: the partition (``sbatch -p``).
        slurm_cores: cores per job (``--cpus-per-task``); the worker runs one task per core.
        slurm_memory: memory per job (``--mem``).
        slurm_gpus: 0, or 1 GPU per job (``--gres=gpu:1``).
        slurm_walltime: time limit per job (``-t``).
        slurm_jobs: jobs kept running, one worker each.
        slurm_account: the account charged (``-A``).
        slurm_log_dir: the folder of the jobs' output (``-o``/``-e``), one pair per job.
        slurm_resubmits: ended jobs replaced before the run stops.
        wait_s: seconds without any connected worker before the run stops.
    """

    workers: int | None = None
    scheduler: str | None = None
    cluster: str = "local"
    slurm_queue: str | None = None
    slurm_cores: int = 8
    slurm_memory: str = "32GB"
    slurm_gpus: int = 0
    slurm_walltime: str = "04:00:00"
    slurm_jobs: int = 1
    slurm_account: str | None = None
    slurm_log_dir: str = "slurm-logs"
    slurm_resubmits: int = 4
    wait_s: float = 3600.0

    @property
    def remote(self) -> bool:
        """Workers run elsewhere: their devices are known only when they connect."""
        return bool(self.scheduler) or self.cluster == "slurm"


class ClusterError(UserError):
    """The cluster cannot run the work: a rejected job, every job gone, no worker."""


# ------------------------------------------------------------------------------------ devices

def resolve_device(device: str, cluster: ClusterOptions) -> str:
    """``cpu``, ``cuda`` or (on a remote cluster, for :meth:`ClusterWatch.device`) ``auto``.

    On an in-process cluster the GPU must be on this machine (checked at once, before any
    work); the devices of workers elsewhere (``--scheduler``, SLURM) are asked when they
    connect.

    Raises:
        DeviceError: an unknown device, or CUDA asked for where this machine has none.
    """
    import torch

    from pipeline.devices import resolve_device as local_device

    if device not in ("cpu", "cuda", "auto"):
        raise DeviceError(f"--device {device!r}: extraction takes cpu, cuda or auto")
    if cluster.remote:
        return device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return local_device(device).type


def _cuda_devices() -> int:
    """CUDA devices this process sees (run on each worker)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_of_workers(counts: dict[str, int]) -> str:
    """``cuda`` when every worker has a CUDA device, ``cpu`` when none has.

    Args:
        counts: worker address -> CUDA devices it sees.

    Raises:
        DeviceError: a mixed cluster, naming the workers of each kind.
    """
    with_gpu = sorted(w for w, n in counts.items() if n > 0)
    without = sorted(w for w, n in counts.items() if n == 0)
    if with_gpu and without:
        raise DeviceError(f"--device auto: the workers differ: {', '.join(with_gpu)} have a "
                          f"CUDA device, {', '.join(without)} have none; say --device cuda "
                          "(GPU workers only) or --device cpu")
    return "cuda" if with_gpu else "cpu"


# ------------------------------------------------------------------------------------- SLURM

@dataclass(frozen=True)
class JobEnd:
    """A SLURM job that ended while the run needed it."""

    job_id: str
    state: str
    reason: str

    def __str__(self) -> str:
        return f"job {self.job_id} {self.state} (reason: {self.reason})"


def _slurm_command(args: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, check=False,
                              timeout=timeout_s)
    except FileNotFoundError:
        raise ClusterError(f"--cluster slurm: {args[0]} not found; run the command on a SLURM "
                           "login node (where sbatch and squeue work)") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"--cluster slurm: {' '.join(args[:2])} did not answer in "
                           f"{timeout_s:.0f} s; is slurmctld up?") from None


def check_job_script(script: str, opts: ClusterOptions) -> None:
    """Ask SLURM whether it would accept the worker job (``sbatch --test-only``).

    Raises:
        ClusterError: SLURM's own message, with the options that made the job.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="conclugen-job-") as f:
        f.write(script)
        f.flush()
        res = _slurm_command(["sbatch", "--test-only", f.name])
    if res.returncode != 0:
        said = "; ".join(line.strip() for line in (res.stderr + res.stdout).splitlines()
                         if line.strip()) or f"exit status {res.returncode}"
        raise ClusterError(
            f"SLURM rejects the worker job (--slurm-queue {opts.slurm_queue or '(default)'}, "
            f"--slurm-cores {opts.slurm_cores}, --slurm-memory {opts.slurm_memory}, "
            f"--slurm-gpus {opts.slurm_gpus}, --slurm-walltime {opts.slurm_walltime}"
            f"{', --slurm-account ' + opts.slurm_account if opts.slurm_account else ''}): "
            f"{said}")


def slurm_job_states() -> dict[str, tuple[str, str]]:
    """job id -> (state, reason) of this user's jobs that SLURM still lists (recently ended
    ones included, for a few minutes)."""
    res = _slurm_command(["squeue", "-h", "-t", "all", "-u", getpass.getuser(),
                          "-o", "%i|%T|%r"])
    if res.returncode != 0:
        log.warning("squeue failed (%s); job states unknown this time", res.stderr.strip())
        return {}
    states = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def log_dir(opts: ClusterOptions) -> Path:
    """The folder of the SLURM jobs' output, absolute (the jobs may start elsewhere)."""
    return Path(opts.slurm_log_dir).expanduser().absolute()


def _slurm_cluster(opts: ClusterOptions) -> Any:
    """A dask-jobqueue SLURMCluster (no job submitted yet): one worker per job, one Dask
    thread per core, its output in ``opts.slurm_log_dir``."""
    from dask_jobqueue import SLURMCluster

    if opts.slurm_gpus not in (0, 1):
        # One worker per job, one GPU per worker: more GPUs means more jobs (--slurm-jobs).
        raise ConfigError(f"--slurm-gpus {opts.slurm_gpus}: each SLURM job runs one worker "
                          "with 0 or 1 GPU; use --slurm-jobs for more GPUs")
    logs = log_dir(opts)
    logs.mkdir(parents=True, exist_ok=True)  # SLURM does not create it: the job would fail
    extra = ["--gres=gpu:1"] if opts.slurm_gpus else []
    return SLURMCluster(queue=opts.slurm_queue, account=opts.slurm_account,
                        cores=opts.slurm_cores, memory=opts.slurm_memory, processes=1,
                        walltime=opts.slurm_walltime, job_extra_directives=extra,
                        log_directory=str(logs), job_name="conclugen-worker",
                        job_script_prologue=[f"export {WORKER_CORES}={opts.slurm_cores}"],
                        worker_extra_args=(["--resources", "GPU=1"] if opts.slurm_gpus
                                           else []))


SCHEDULER_TIMEOUT_S = 20
"""Seconds to reach a running scheduler (``--scheduler``) before the run stops."""


def _make_client(opts: ClusterOptions, device: str) -> tuple[Any, str | None]:
    """A Dask client for ``opts`` (SLURM jobs are checked by SLURM, then submitted) and, for
    a local cluster, the folder of its workers' output (:class:`WorkerOutput`)."""
    from distributed import Client, LocalCluster

    if opts.scheduler:
        try:
            return Client(opts.scheduler, timeout=SCHEDULER_TIMEOUT_S), None
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"--scheduler {opts.scheduler}: no Dask scheduler answers there "
                               f"({err}); start one (`dask scheduler --port 8786`) or check the "
                               "address; nothing was extracted") from None
    if opts.cluster == "slurm":
        slurm = _slurm_cluster(opts)
        try:
            check_job_script(slurm.job_script(), opts)
        except BaseException:
            slurm.close()
            raise
        slurm.scale(jobs=opts.slurm_jobs)
        log.info("SLURM: %d job(s) of %d core(s) and %s submitted; their output is in %s",
                 opts.slurm_jobs, opts.slurm_cores, opts.slurm_memory, log_dir(opts))
        return Client(slurm), None
    if device == "cuda":
        import torch

        n = opts.workers or torch.cuda.device_count()
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               resources={"GPU": 1}, dashboard_address=":0")
    else:
        n = opts.workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    client = Client(cluster)
    logs = tempfile.mkdtemp(prefix="conclugen-workers-")
    client.register_plugin(WorkerOutput(logs))
    return client, logs


def close_client(client: Any, worker_logs: str | None, *, ok: bool) -> None:
    """Close the client and the cluster it started. A local cluster's worker output is
    removed after a run that completed and kept, and named, after one that did not."""
    client.close()
    if client.cluster is not None:
        client.cluster.close()
    if worker_logs is None:
        return
    if ok:
        shutil.rmtree(worker_logs, ignore_errors=True)
    else:
        log.info("the local workers' output (warnings, FFmpeg's messages) is in %s",
                 worker_logs)


class WorkerOutput(WorkerPlugin):
    """A Dask worker plugin for local worker processes: their stdout and stderr (Python's
    warnings, weight-loading bars, FFmpeg's messages) go to ``folder/worker-PID.log`` rather
    than onto the driver's terminal, where they would break the progress bar. (SLURM workers
    write to their jobs' logs already.)"""

    name = "conclugen-worker-output"

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def setup(self, worker: Any) -> None:
        import sys

        path = os.path.join(self.folder, f"worker-{os.getpid()}.log")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


WORKER_CORES = "CONCLUGEN_WORKER_CORES"
"""Set in each SLURM job's script: the cores of the job, shared by its worker's tasks."""


def task_threads() -> int:
    """Torch threads for one task on this worker: a SLURM job's cores shared by the tasks that
    run at once (one per core on a CPU, one GPU task at a time); one elsewhere (a local
    cluster runs a worker per core)."""
    cores = os.environ.get(WORKER_CORES)
    if not cores:
        return 1
    from distributed import get_worker

    try:
        state = get_worker().state
    except ValueError:
        return 1
    at_once = 1 if state.total_resources.get("GPU") else state.nthreads
    return max(1, int(cores) // max(1, at_once))


# -------------------------------------------------------------------------------------- watch

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
            counts = {str(w): int(n) for w, n in self.client.run(_cuda_devices).items()}
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


__all__ = ["ClusterError", "ClusterOptions", "ClusterWatch", "JobEnd", "WorkerOutput", "check_job_script", "close_client",
           "device_of_workers", "resolve_device", "slurm_job_states", "task_threads"]
