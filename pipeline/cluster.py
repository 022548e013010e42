"""Where extraction runs: the cluster options, the Dask client, the workers' device and cores.

Three places: an in-process ``LocalCluster`` (the default), a running Dask scheduler
(``--scheduler``) and SLURM through dask-jobqueue (``--cluster slurm``). A SLURM job script that
SLURM would reject (an unknown partition, more cores or memory than a node has, a missing gres)
is found before anything is submitted, with ``sbatch --test-only``, and refused with SLURM's own
message. While the tasks run, :class:`~pipeline.cluster_watch.ClusterWatch` keeps the cluster
from hanging the driver.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from pipeline.config import ConfigError
from pipeline.devices import DeviceError
from pipeline.errors import UserError

log = logging.getLogger(__name__)

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


def cuda_devices() -> int:
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


def make_client(opts: ClusterOptions, device: str) -> tuple[Any, str | None]:
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


__all__ = ["ClusterError", "ClusterOptions", "WorkerOutput", "check_job_script", "close_client",
           "cuda_devices", "device_of_workers", "log_dir", "make_client", "resolve_device",
           "slurm_job_states", "task_threads"]
