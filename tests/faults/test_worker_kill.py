"""A Dask worker process killed mid-shard while the driver lives on: the scheduler hands the
shard to the other worker, and the run ends with every clip once, a store that verifies, and
the features of an undisturbed run.

The kill is not timed by a guess. A worker plugin makes the first task to reach the kill point
write its process id into a marker and wait there to be killed; every later passage (the other
worker, the rescheduled task) goes on. The kill point is the worst moment of a shard task: its
clips are extracted, the shard's index and failure sidecars and its whole temporary ``.h5``
are on disk, and the ``.h5`` is not yet in place (a half-finished shard that a resumed run or
the rescheduled task could take for a finished one, or write twice). A kill earlier in the task
leaves nothing of the shard on disk.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin
from typer.testing import CliRunner

from cli import app
from pipeline.extract_config import load_extract_config
from pipeline.run import ClusterOptions, run_extract
from pipeline.store import open_store
from pipeline.store.ops import verify_store

pytestmark = pytest.mark.slow

LIMIT = 6
SHARD_SIZE = 2
MODALITIES = ["audio"]  # the fastest backbone to load: the test is about the cluster
PAUSE_S = 300.0
"""How long the paused task waits to be killed (the test fails long before)."""

# The plugin runs in the worker processes, which cannot import this file: send it by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class PauseBeforePublishing(WorkerPlugin):
    """In every worker (a restarted one too): the first shard task of all to reach
    ``_publish`` writes ``{pid, shard}`` to ``folder/publishing.json`` and sleeps there."""

    name = "pause-before-publishing"

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def setup(self, worker: Any) -> None:
        import pipeline.store.writer as writer

        publish, folder = writer._publish, self.folder

        def paused(loc: Any, k: int, *args: Any) -> bool:
            try:
                os.close(os.open(os.path.join(folder, "publishing.claim"),
                                 os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return publish(loc, k, *args)  # the one pause was taken: go on
            tmp = os.path.join(folder, "publishing.tmp")
            with open(tmp, "w") as f:
                json.dump({"pid": os.getpid(), "shard": writer.shard_name(k)}, f)
            os.replace(tmp, os.path.join(folder, "publishing.json"))
            time.sleep(PAUSE_S)
            return publish(loc, k, *args)

        writer._publish = paused


def _kill_when_paused(marker: Path, shards: Path, seen: dict[str, Any],
                      done: threading.Event) -> None:
    """Wait for the marker, note the shard's files on disk, SIGKILL the worker holding it."""
    while not marker.exists():
        if done.wait(0.05):
            return
    seen.update(json.loads(marker.read_text()))
    seen["files"] = sorted(p.name for p in shards.glob(f"{seen['shard']}*"))
    os.kill(seen["pid"], signal.SIGKILL)


def _features(store: Path) -> dict[str, dict[str, np.ndarray]]:
    opened = open_store(store)
    ids = opened.index.column("sample_id").to_pylist()
    return {key: dict(zip(ids, opened.read(key), strict=True)) for key in opened.keys}


def test_a_worker_killed_mid_shard(meld_sample: Path, meld_clips: list[str], scheduler: str,
                                   tmp_path: Path, account: Callable,
                                   fault_log: Callable) -> None:
    cfg = load_extract_config(weights={m: "random" for m in MODALITIES}, modalities=MODALITIES)
    out, markers = tmp_path / "store", tmp_path / "markers"
    markers.mkdir()
    seen: dict[str, Any] = {}
    done = threading.Event()
    killer = threading.Thread(target=_kill_when_paused,
                              args=(markers / "publishing.json", out / "shards", seen, done))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", env={"OMP_NUM_THREADS": "1"}) as cluster, \
            Client(cluster) as client:
        client.register_plugin(PauseBeforePublishing(markers))
        workers = set(client.run(os.getpid).values())
        killer.start()
        try:
            run_extract("meld", meld_sample, str(out), cfg=cfg, limit=LIMIT,
                        shard_size=SHARD_SIZE, device="cpu",
                        cluster=ClusterOptions(scheduler=cluster.scheduler_address))
        finally:
            done.set()
            killer.join()

    assert seen.get("pid") in workers, f"no worker was killed mid-shard: {seen}"
    name, files = seen["shard"], seen["files"]
    assert f"{name}.h5" not in files and any(f.endswith(".partial") for f in files), files
    assert {f"{name}.index.parquet", f"{name}.failures.parquet"} <= set(files), files

    verified = CliRunner().invoke(app, ["store", "verify", str(out)])
    assert verified.exit_code == 0, verified.output
    assert not list((out / "shards").glob("*.partial")), "the dead task's file is removed"
    assert not any(".partial" in note for note in verify_store(out).notes)
    lost, duplicates = account(out, set(meld_clips[:LIMIT]))
    assert (lost, duplicates) == (0, 0)

    clean = tmp_path / "clean"
    run_extract("meld", meld_sample, str(clean), cfg=cfg, limit=LIMIT, shard_size=SHARD_SIZE,
                device="cpu", cluster=ClusterOptions(scheduler=scheduler))
    for table in ("index.parquet", "failures.parquet"):
        assert pq.read_table(out / table).equals(pq.read_table(clean / table)), table
    got, want = _features(out), _features(clean)
    assert got.keys() == want.keys() and all(got[k].keys() == want[k].keys() for k in want)
    for key in want:
        for sid, row in want[key].items():
            np.testing.assert_array_equal(got[key][sid], row, err_msg=f"{key} {sid}")
    fault_log("SIGKILL of one of 2 Dask worker processes mid-shard (driver alive)", lost=lost,
              duplicates=duplicates,
              outcome=f"killed writing {name}; rescheduled, its .partial removed, verify ok, "
                      "features = a clean run's")
