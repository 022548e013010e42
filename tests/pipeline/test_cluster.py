"""The cluster machinery without SLURM: the device of remote workers, the watch's stops and
replacements (with a stand-in for dask-jobqueue's cluster), SLURM's refusal passed on, and one
model load at a time per worker process."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster

import pipeline.cluster as cluster_mod
import pipeline.cluster_watch as watch_mod
import pipeline.models as models_mod
from pipeline.cluster import (ClusterError, ClusterOptions, check_job_script, device_of_workers,
                              resolve_device)
from pipeline.cluster_watch import ClusterWatch
from pipeline.devices import DeviceError


def test_auto_takes_what_every_worker_has() -> None:
    assert device_of_workers({"tcp://a:1": 1, "tcp://b:1": 2}) == "cuda"
    assert device_of_workers({"tcp://a:1": 0, "tcp://b:1": 0}) == "cpu"


def test_a_mixed_cluster_is_refused_by_name() -> None:
    with pytest.raises(DeviceError, match=r"tcp://a:1 have a CUDA device, tcp://b:1 have none"):
        device_of_workers({"tcp://a:1": 1, "tcp://b:1": 0})


def test_auto_on_a_remote_cluster_waits_for_the_workers() -> None:
    assert resolve_device("auto", ClusterOptions(cluster="slurm")) == "auto"
    assert resolve_device("auto", ClusterOptions(scheduler="tcp://h:8786")) == "auto"
    assert resolve_device("cpu", ClusterOptions()) == "cpu"


@pytest.fixture
def scheduler_only() -> Iterator[Client]:
    """A scheduler in this process, with no worker."""
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def test_no_worker_for_the_wait_stops_the_run(scheduler_only: Client) -> None:
    opts = ClusterOptions(scheduler=scheduler_only.scheduler.address, wait_s=0.3)
    watch = ClusterWatch(scheduler_only, opts)
    assert watch.check() == 0, "within the wait: no stop"
    time.sleep(0.4)
    with pytest.raises(ClusterError,
                       match=r"no Dask worker has been connected for 0 s \(inproc://"):
        watch.check()


def test_auto_asks_the_connected_workers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.cluster_watch")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        watch = ClusterWatch(client, ClusterOptions(scheduler=cluster.scheduler_address))
        want = "cuda" if cluster_mod.cuda_devices() else "cpu"
        assert watch.device("auto") == want
    assert "--device auto: 1 worker(s) connected" in caplog.text
    assert f"extracting on {want}" in caplog.text


class FakeJob:
    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id


class FakeSlurmCluster:
    """What the watch uses of dask-jobqueue's SLURMCluster: its jobs by worker name, its spec,
    its event loop and ``scale``; a scale submits a job per missing name."""

    def __init__(self, jobs: int) -> None:
        self.next_id = 100
        self.worker_spec: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, FakeJob] = {}
        self.loop = self
        self.submitted: list[str] = []
        self.scale(jobs=jobs)

    def add_callback(self, fn: Any) -> None:
        fn()

    def scale(self, jobs: int) -> None:
        for name in set(self.workers) - set(self.worker_spec):
            del self.workers[name]
        while len(self.worker_spec) < jobs:
            self.next_id += 1
            name = f"w{self.next_id}"
            self.worker_spec[name] = {}
            self.workers[name] = FakeJob(str(self.next_id))
            self.submitted.append(str(self.next_id))


class FakeClient:
    def __init__(self, cluster: FakeSlurmCluster, workers: int) -> None:
        self.cluster, self.connected = cluster, workers

    def scheduler_info(self, n_workers: int = -1) -> dict[str, Any]:
        return {"workers": {f"tcp://w:{i}": {} for i in range(self.connected)}}


def _watch(monkeypatch: pytest.MonkeyPatch, states: dict[str, tuple[str, str]],
           resubmits: int) -> tuple[ClusterWatch, FakeSlurmCluster]:
    monkeypatch.setattr(watch_mod, "slurm_job_states", lambda: states)
    monkeypatch.setattr(watch_mod, "SQUEUE_EVERY_S", 0.0)
    fake = FakeSlurmCluster(jobs=2)
    opts = ClusterOptions(cluster="slurm", slurm_jobs=2, slurm_resubmits=resubmits)
    return ClusterWatch(FakeClient(fake, workers=2), opts), fake


def test_an_ended_job_is_replaced_once(monkeypatch: pytest.MonkeyPatch) -> None:
    states = {"101": ("RUNNING", "None"), "102": ("PREEMPTED", "None")}
    watch, fake = _watch(monkeypatch, states, resubmits=1)
    watch.check()
    assert fake.submitted == ["101", "102", "103"]
    states["103"] = ("PENDING", "Priority")
    watch.check()
    assert fake.submitted == ["101", "102", "103"], "the ended job counts once"
    assert [str(e) for e in watch.ended] == ["job 102 PREEMPTED (reason: None)"]


def test_ended_jobs_past_the_limit_stop_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    states = {"101": ("TIMEOUT", "None")}  # 102 is gone from squeue altogether
    watch, fake = _watch(monkeypatch, states, resubmits=1)
    with pytest.raises(ClusterError) as err:
        watch.check()
    assert "job 101 TIMEOUT (reason: None)" in str(err.value)
    assert "job 102 ENDED (reason: no longer listed by squeue)" in str(err.value)
    assert "--slurm-resubmits 1" in str(err.value) and "resumes" in str(err.value)
    assert fake.submitted == ["101", "102"], "no replacement past the limit"


def _fake_sbatch(folder: Path, script: str) -> None:
    sbatch = folder / "sbatch"
    sbatch.write_text("#!/bin/sh\n" + script)
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)


def test_slurm_refusal_is_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_sbatch(tmp_path, 'echo "sbatch: error: invalid partition specified: gpu" >&2\n'
                           'exit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ClusterError, match=r"--slurm-queue gpu.*: sbatch: error: invalid "
                                           r"partition specified: gpu"):
        check_job_script("#!/bin/sh\n", ClusterOptions(cluster="slurm", slurm_queue="gpu"))
    _fake_sbatch(tmp_path, 'echo "sbatch: Job 3 to start at now" >&2\n')
    check_job_script("#!/bin/sh\n", ClusterOptions(cluster="slurm"))


def test_no_sbatch_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match="sbatch not found"):
        check_job_script("#!/bin/sh\n", ClusterOptions(cluster="slurm"))


def test_models_load_once_when_threads_ask_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's tasks are threads: two asking at once get one load, one at a time."""
    loads: list[float] = []
    inside = threading.Semaphore(1)

    def slow_load(cfg: Any, policy: Any, device: str) -> str:
        assert inside.acquire(blocking=False), "two loads at once"
        loads.append(time.monotonic())
        time.sleep(0.2)
        inside.release()
        return f"models for {cfg}"

    monkeypatch.setattr(models_mod, "_load_models", slow_load)
    monkeypatch.setattr(models_mod, "_MODELS", {})
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(models_mod.load_models(
        "cfg", "policy", "cpu"))) for _ in range(2)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and got == ["models for cfg"] * 2


def _say_on_stderr(text: str) -> int:
    return os.write(2, text.encode())


@pytest.mark.slow
def test_local_workers_output_stays_off_the_driver(capfd: pytest.CaptureFixture[str]) -> None:
    """What a local worker process writes (FFmpeg's complaints, warnings) goes to its log
    file, not onto the driver's terminal; the file is removed after a run that completed."""
    client, logs = cluster_mod.make_client(ClusterOptions(workers=1), "cpu")
    assert logs is not None
    try:
        client.submit(_say_on_stderr, "moov atom not found\n", pure=False).result()
    finally:
        cluster_mod.close_client(client, logs, ok=False)
    assert "moov atom" not in capfd.readouterr().err
    (worker_log,) = Path(logs).glob("worker-*.log")
    assert "moov atom not found" in worker_log.read_text()
    shutil.rmtree(logs)
    client, logs = cluster_mod.make_client(ClusterOptions(workers=1), "cpu")
    cluster_mod.close_client(client, logs, ok=True)
    assert logs is not None and not Path(logs).exists()


@pytest.mark.parametrize("option, value, said", [
    ("--slurm-resubmits", "-1", "--slurm-resubmits -1: must be 0 or more"),
    ("--slurm-wait", "0", "--slurm-wait 0.0: must be more than 0 seconds"),
])
def test_cluster_limits_are_checked_before_any_work(tmp_path: Path, option: str, value: str,
                                                    said: str) -> None:
    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["extract", "--dataset", "meld", "--root", str(tmp_path),
                                      "--out", str(tmp_path / "s"), "--cluster", "slurm",
                                      option, value])
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "s").exists()
