"""Crashed, concurrent and starved extractions: whatever happens to a run, the rerun of the same
command ends with every clip asked for exactly once in the store (index or failures)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileOpener
from typer.testing import CliRunner

from cli import app
from pipeline.extract_config import load_extract_config
from pipeline.run import ClusterOptions, run_extract
from pipeline.store import LockedError, StoreError
from pipeline.store.lock import LOCK_PREFIX
from pipeline.store.ops import verify_store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LIMIT = 6
KILLS = 3
SEED = 20240617
WHOLE_RUN_S = 25.0
"""The first kill lands uniformly within this many seconds after the run takes the lock."""


def _config() -> object:
    return load_extract_config(weights={"audio": "random", "text": "random"},
                               modalities=["audio", "text"])


def _extract(root: Path, out: Path, scheduler: str, shard_size: int) -> object:
    return run_extract("meld", root, str(out), cfg=_config(), limit=LIMIT,
                       shard_size=shard_size, device="cpu",
                       cluster=ClusterOptions(scheduler=scheduler))


def _finished_shards(out: Path) -> dict[str, int]:
    shards = out / "shards"
    return {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.h5")} if (
        shards.is_dir()) else {}


def _lock_pid(out: Path) -> int | None:
    for marker in out.glob(f"{LOCK_PREFIX}*"):
        try:
            return int(json.loads(marker.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def _wait(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 240) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError("the extraction made no progress")


def _kill_round(cmd: list[str], out: Path, env: dict[str, str],
                wait_for: Callable[[subprocess.Popen], None]) -> int:
    """Start ``cmd`` in its own session, wait as ``wait_for`` says, SIGKILL the session (the
    driver and any workers it started); the number of finished shards at the kill."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return len(_finished_shards(out))


def test_sigkill_at_random_points_then_a_rerun(
        meld_sample: Path, meld_clips: list[str], scheduler: str, tmp_path: Path,
        account: Callable, fault_log: Callable) -> None:
    """``kill -9`` at random points, then the same command again: nothing lost, nothing twice,
    finished shards kept, the dead run's lock taken over.

    The first kill takes the whole run (driver and its local Dask workers) at a random moment
    after it took the lock (scanning, starting workers, loading models, writing shards); a
    second run tried meanwhile is refused. The next kills take a driver attached to a running
    cluster (``--scheduler``, as on SLURM) after a random number of shards: between shards,
    while one is written (its task runs on, orphaned), or while store.json is written.
    """
    rng = np.random.default_rng(SEED)
    out = tmp_path / "store"
    base = [sys.executable, "-m", "cli", "extract", "--dataset", "meld", "--root",
            str(meld_sample), "--out", str(out), "--weights", "random", "--modalities",
            "audio,text", "--limit", str(LIMIT), "--shard-size", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    concurrent: list[object] = []

    def whole_run(proc: subprocess.Popen) -> None:
        if _wait(lambda: _lock_pid(out) == proc.pid, proc):
            concurrent.append(CliRunner().invoke(app, base[3:]))  # a second run, meanwhile
            time.sleep(float(rng.uniform(0, WHOLE_RUN_S)))

    def after_shards(proc: subprocess.Popen) -> None:
        if not _wait(lambda: _lock_pid(out) == proc.pid, proc):
            return
        done = len(_finished_shards(out))
        # LIMIT: killed while finishing (the last shard, index, store.json)
        target = LIMIT if done >= LIMIT else done + int(rng.integers(1, LIMIT - done + 1))
        _wait(lambda: len(_finished_shards(out)) >= target, proc)
        time.sleep(float(rng.uniform(0, 0.5)))

    killed_at = [_kill_round([*base, "--workers", "1"], out, env, whole_run)]
    for _ in range(KILLS - 1):
        if (out / "store.json").exists():
            break
        killed_at.append(_kill_round([*base, "--scheduler", scheduler], out, env,
                                     after_shards))
    (result,) = concurrent
    assert result.exit_code == 2 and "being extracted by another run" in result.output, (
        result.output)
    kept = _finished_shards(out)
    _extract(meld_sample, out, scheduler, shard_size=1)  # the rerun, taking the dead lock over
    assert all(_finished_shards(out)[name] == mtime for name, mtime in kept.items())
    report = verify_store(out)
    assert report.ok, report.problems
    assert not list(out.glob(f"{LOCK_PREFIX}*")), "the lock is released"
    lost, duplicates = account(out, set(meld_clips[:LIMIT]))
    assert (lost, duplicates) == (0, 0)
    fault_log(f"SIGKILL at random points ({len(killed_at)} kills), then a rerun",
              runs=len(killed_at) + 1, lost=lost, duplicates=duplicates,
              outcome=f"killed with {killed_at} of {LIMIT} shards done; rerun completed")
    fault_log("two concurrent extractions (CLI, separate processes)", runs=2, lost=lost,
              duplicates=duplicates, outcome="the second refused (exit 2), the store completed")


def test_a_second_extraction_is_refused_while_one_runs(
        meld_sample: Path, meld_clips: list[str], scheduler: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, account: Callable, fault_log: Callable) -> None:
    import pipeline.run

    out, holding, go = tmp_path / "store", threading.Event(), threading.Event()
    scan = pipeline.run.scan

    def slow_scan(*args: object, **kwargs: object) -> object:
        holding.set()  # the first run holds the lock here
        go.wait(60)
        return scan(*args, **kwargs)

    monkeypatch.setattr(pipeline.run, "scan", slow_scan)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            _extract(meld_sample, out, scheduler, shard_size=2)
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            errors.append(err)

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(60)
    try:
        with pytest.raises(LockedError, match=rf"being extracted by another run \(process "
                                              rf"{os.getpid()}"):
            _extract(meld_sample, out, scheduler, shard_size=2)
    finally:
        go.set()
        thread.join(300)
    assert not errors, errors
    assert verify_store(out).ok
    lost, duplicates = account(out, set(meld_clips[:LIMIT]))
    assert (lost, duplicates) == (0, 0)
    fault_log("two concurrent extractions (one process)", runs=2, lost=lost,
              duplicates=duplicates, outcome="the second refused (LockedError), first completed")


def test_a_full_disk_then_a_rerun(meld_sample: Path, meld_clips: list[str], scheduler: str,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  account: Callable, fault_log: Callable) -> None:
    """ENOSPC injected where the disk fills: in a worker writing the second shard, then in the
    driver writing store.json; each run stops with one error naming the file, the rerun after
    that completes the store and keeps every finished shard."""
    out = tmp_path / "store"
    create, calls = h5py.Group.create_dataset, [0]

    def full_after_one_shard(self: h5py.Group, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] > 3:  # shard 0 writes sample_id, audio and text
            raise OSError(errno.ENOSPC, "No space left on device")
        return create(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(h5py.Group, "create_dataset", full_after_one_shard)
        with pytest.raises(StoreError, match=r"shards/shard-00001.h5: no space left on the "
                                             "device"):
            _extract(meld_sample, out, scheduler, shard_size=2)
    first = _finished_shards(out)
    assert list(first) == ["shard-00000.h5"]
    assert not list((out / "shards").glob("*.partial")), "no half-written shard is left"

    write = LocalFileOpener.write

    def full_at_store_json(self: LocalFileOpener, data: bytes) -> int:
        if "store.json" in self.path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)

    with monkeypatch.context() as patch:
        patch.setattr(LocalFileOpener, "write", full_at_store_json)
        with pytest.raises(StoreError, match=r"store/store.json: no space left on the device"):
            _extract(meld_sample, out, scheduler, shard_size=2)
    assert not list(out.glob("store.json*")) and len(_finished_shards(out)) == 3

    _extract(meld_sample, out, scheduler, shard_size=2)
    assert _finished_shards(out)["shard-00000.h5"] == first["shard-00000.h5"]
    assert verify_store(out).ok
    lost, duplicates = account(out, set(meld_clips[:LIMIT]))
    assert (lost, duplicates) == (0, 0)
    fault_log("full disk (ENOSPC) writing a shard, then store.json; rerun", runs=3, lost=lost,
              duplicates=duplicates, outcome="each stopped naming the file; rerun completed")


def test_a_shard_that_kills_every_worker_is_named_then_the_rerun_completes(
        meld_sample: Path, meld_clips: list[str], scheduler: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, account: Callable, fault_log: Callable) -> None:
    """A shard whose task kills every worker it runs on (a clip exhausting the worker's
    memory) ends in Dask's ``KilledWorker``: the run stops with one message naming the shard,
    its clips and what to do, finished shards stay, and a rerun (with the cause gone)
    completes the store."""
    from distributed import KilledWorker

    import pipeline.run
    from pipeline.shard_tasks import ShardCrashError

    out = tmp_path / "store"
    real = pipeline.run.extract_shard

    def dies_on_shard_1(url: str, k: int, *args: object, **kwargs: object) -> object:
        if k == 1:
            worker = SimpleNamespace(address="tcp://10.0.0.7:40123")
            raise KilledWorker(task=f"shard-{k}", last_worker=worker, allowed_failures=3)
        return real(url, k, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pipeline.run, "extract_shard", dies_on_shard_1)
        with pytest.raises(ShardCrashError) as err:
            _extract(meld_sample, out, scheduler, shard_size=2)
    message = str(err.value)
    assert message.startswith(f"shard 1 (2 clips: {meld_clips[2]}, {meld_clips[3]}) killed "
                              "every worker that ran it")
    assert "--shard-size 1" in message and "resumes" in message and "10.0.0.7" in message
    _extract(meld_sample, out, scheduler, shard_size=2)
    assert verify_store(out).ok
    lost, duplicates = account(out, set(meld_clips[:LIMIT]))
    assert (lost, duplicates) == (0, 0)
    fault_log("a shard killing every worker it runs on (KilledWorker), then a rerun", runs=2,
              lost=lost, duplicates=duplicates,
              outcome="stopped naming the shard and its clips (exit 2); rerun completed")
