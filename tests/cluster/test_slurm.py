"""``cli extract --cluster slurm`` through a real single-node SLURM cluster (``conftest.py``).

The node has the machine's cores (2 in CI): jobs of one core each, or one job of two. The
extraction is the generated MELD sample's first clips, audio with random weights (the fastest
backbone to load: these tests are about the cluster; text too where two threads load it at
once), one clip a shard so that there is work left to lose when jobs end. Every test has a
timeout: a hang is a failure.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from cli import app
from pipeline.extract_config import load_extract_config
from pipeline.run import ClusterOptions, run_extract
from pipeline.store import open_store

if TYPE_CHECKING:
    from tests.cluster.conftest import Slurm

pytestmark = pytest.mark.slow

LIMIT = 6
MODALITIES = ("audio",)


def _extract(slurm: Slurm, sample: Path, out: Path, *options: str,
             modalities: tuple[str, ...] = MODALITIES) -> Result:
    args = ["extract", "--dataset", "meld", "--root", str(sample), "--out", str(out),
            "--modalities", ",".join(modalities), "--weights", "random",
            "--limit", str(LIMIT), "--shard-size", "1", "--device", "cpu",
            "--cluster", "slurm", "--slurm-queue", slurm.partition,
            "--slurm-memory", "3GB", "--slurm-walltime", "00:10:00",
            "--slurm-log-dir", str(out.parent / "logs"), *options]
    return CliRunner().invoke(app, args)


def _features(store: Path) -> dict[str, dict[str, np.ndarray]]:
    opened = open_store(store)
    ids = opened.index.column("sample_id").to_pylist()
    return {key: dict(zip(ids, opened.read(key), strict=True)) for key in opened.keys}


@pytest.fixture(scope="module")
def local_store(meld_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same extraction on a local Dask worker: what every SLURM run must equal."""
    out = tmp_path_factory.mktemp("local") / "store"
    cfg = load_extract_config(weights={m: "random" for m in MODALITIES},
                              modalities=list(MODALITIES))
    run_extract("meld", meld_sample, str(out), cfg=cfg, limit=LIMIT, shard_size=1,
                device="cpu", cluster=ClusterOptions(workers=1))
    return out


def _assert_same_store(out: Path, local: Path) -> None:
    verified = CliRunner().invoke(app, ["store", "verify", str(out)])
    assert verified.exit_code == 0, verified.output
    got, want = _features(out), _features(local)
    assert got.keys() == want.keys() and all(got[k].keys() == want[k].keys() for k in want)
    for key in want:
        for sid, row in want[key].items():
            np.testing.assert_array_equal(got[key][sid], row, err_msg=f"{key} {sid}")


@pytest.mark.timeout(240)
def test_two_jobs_make_the_local_store(slurm: Slurm, meld_sample: Path, local_store: Path,
                                       tmp_path: Path) -> None:
    before = set(slurm.jobs())
    result = _extract(slurm, meld_sample, tmp_path / "store", "--slurm-jobs", "2",
                      "--slurm-cores", "1")
    assert result.exit_code == 0, result.output
    _assert_same_store(tmp_path / "store", local_store)
    jobs = set(slurm.jobs()) - before
    assert len(jobs) == 2, f"2 jobs submitted, SLURM lists {jobs}"
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert any(name.endswith(".err") for name in logs), logs


def _cancel_when_a_shard_is_done(slurm: Slurm, shards: Path, seen: dict[str, Any],
                                 stop: threading.Event) -> None:
    """Once a shard is complete and two jobs run: ``scancel`` every running job."""
    while not stop.wait(0.2):
        running = slurm.running()
        done = list(shards.glob("shard-*.h5")) if shards.exists() else []
        if done and len(running) == 2:
            slurm.run("scancel", *running)
            seen.update(cancelled=running, shards_done=len(done))
            return


def _run_cancelling(slurm: Slurm, sample: Path, out: Path, *options: str
                    ) -> tuple[Result, dict[str, Any]]:
    seen: dict[str, Any] = {}
    stop = threading.Event()
    canceller = threading.Thread(target=_cancel_when_a_shard_is_done,
                                 args=(slurm, out / "shards", seen, stop))
    canceller.start()
    try:
        result = _extract(slurm, sample, out, "--slurm-jobs", "2", "--slurm-cores", "1",
                          *options)
    finally:
        stop.set()
        canceller.join()
    assert seen, f"no job was cancelled mid-run: {result.output}"
    assert seen["shards_done"] < LIMIT, "cancelled after the last shard"
    return result, seen


@pytest.mark.timeout(240)
def test_every_job_cancelled_mid_run_is_replaced(slurm: Slurm, meld_sample: Path,
                                                 local_store: Path, tmp_path: Path) -> None:
    result, seen = _run_cancelling(slurm, meld_sample, tmp_path / "store")
    assert result.exit_code == 0, result.output
    _assert_same_store(tmp_path / "store", local_store)
    states = slurm.jobs()
    assert all(states.get(job) == "CANCELLED" for job in seen["cancelled"]), states


@pytest.mark.timeout(180)
def test_cancelled_jobs_past_the_resubmit_limit_stop_the_run(
        slurm: Slurm, meld_sample: Path, local_store: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    result, seen = _run_cancelling(slurm, meld_sample, tmp_path / "store",
                                   "--slurm-resubmits", "0")
    assert result.exit_code == 2, result.output
    for job in seen["cancelled"]:
        assert re.search(rf"job {job} (CANCELLED|COMPLETING|ENDED)", result.output), \
            result.output
    assert "--slurm-resubmits 0" in result.output and "resumes" in result.output
    assert time.monotonic() - started < 120
    kept = len(list((tmp_path / "store" / "shards").glob("shard-*.h5")))
    assert kept >= 1, "finished shards are kept"
    again = _extract(slurm, meld_sample, tmp_path / "store", "--slurm-jobs", "2",
                     "--slurm-cores", "1")
    assert again.exit_code == 0, again.output
    _assert_same_store(tmp_path / "store", local_store)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("options, said", [
    (["--slurm-queue", "no-such-partition"], "invalid partition"),
    ([], "requested node configuration is not available"),  # defaults: 8 cores, 32GB
])
def test_a_job_slurm_rejects_stops_the_run_in_seconds(
        slurm: Slurm, meld_sample: Path, tmp_path: Path, options: list[str],
        said: str) -> None:
    started = time.monotonic()
    before = set(slurm.jobs())
    args = ["extract", "--dataset", "meld", "--root", str(meld_sample),
            "--out", str(tmp_path / "store"), "--modalities", "audio", "--weights", "random",
            "--limit", "2", "--device", "cpu", "--cluster", "slurm",
            "--slurm-log-dir", str(tmp_path / "logs"), *options]
    if not options:
        args += ["--slurm-queue", slurm.partition]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert said in result.output.lower() and "SLURM rejects the worker job" in result.output
    assert time.monotonic() - started < 30
    assert set(slurm.jobs()) == before, "nothing was submitted"


@pytest.mark.timeout(120)
def test_jobs_that_never_start_stop_the_run_after_the_wait(
        slurm: Slurm, meld_sample: Path, tmp_path: Path) -> None:
    """A job holding every core keeps the run's job in the queue: the run stops after
    --slurm-wait, naming the job, its state and SLURM's reason."""
    blocker = slurm.run("sbatch", "--parsable", "-p", slurm.partition, "-c", str(slurm.cores),
                        "--mem", "100M", "-o", "/dev/null", "--wrap", "sleep 300").strip()
    try:
        started = time.monotonic()
        result = _extract(slurm, meld_sample, tmp_path / "store", "--slurm-jobs", "1",
                          "--slurm-cores", "1", "--slurm-wait", "8")
    finally:
        slurm.run("scancel", blocker)
    assert result.exit_code == 2, result.output
    assert "no Dask worker has been connected for 8 s" in result.output
    assert re.search(r"job \d+ PENDING \(reason: (Resources|Priority)\)", result.output), \
        result.output
    assert time.monotonic() - started < 60


@pytest.mark.timeout(240)
def test_a_worker_with_two_cores_loads_its_models_once(
        slurm: Slurm, meld_sample: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two tasks start at once in one worker: both ask for the text model (transformers'
    lazy imports fail when two threads load at once). ``--device auto`` asks the worker."""
    caplog.set_level(logging.INFO, logger="pipeline.cluster_watch")
    result = _extract(slurm, meld_sample, tmp_path / "store", "--slurm-jobs", "1",
                      "--slurm-cores", str(min(2, slurm.cores)), "--device", "auto",
                      modalities=("audio", "text"))
    assert result.exit_code == 0, result.output
    assert "--device auto: 1 worker(s) connected, none with a CUDA device: extracting on " \
           "cpu" in caplog.text
    store = open_store(tmp_path / "store")
    assert store.manifest.counts.samples == LIMIT and set(store.keys) == {"audio", "text"}
    verified = CliRunner().invoke(app, ["store", "verify", str(tmp_path / "store")])
    assert verified.exit_code == 0, verified.output


@pytest.mark.timeout(240)
def test_three_jobs_on_a_node_with_room_for_two(
        slurm: Slurm, meld_sample: Path, local_store: Path, tmp_path: Path) -> None:
    """On a node with two cores the third job waits in the queue; the run completes with the
    jobs that start, and leaves no job behind."""
    before = set(slurm.jobs())
    result = _extract(slurm, meld_sample, tmp_path / "store", "--slurm-jobs", "3",
                      "--slurm-cores", "1")
    assert result.exit_code == 0, result.output
    _assert_same_store(tmp_path / "store", local_store)
    jobs = {j: s for j, s in slurm.jobs().items() if j not in before}
    assert len(jobs) == 3, jobs
    assert not {s for s in jobs.values()} & {"PENDING", "RUNNING"}, jobs
