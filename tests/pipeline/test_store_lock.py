"""One extraction at a time per store: the lock refuses a live owner, takes over a dead or
silent one, loses to a taker when its own heartbeat stopped, and races fairly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.store import Location, LockedError, StoreError
from pipeline.store.lock import LOCK_PREFIX, LockOwner, StoreLock, this_process


def _marker(folder: Path, generation: int, owner: LockOwner) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{LOCK_PREFIX}{generation}").write_text(json.dumps(owner.__dict__))


def _markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(LOCK_PREFIX))


@pytest.fixture(params=["local", "memory"])
def loc(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "local":
        return Location.parse(tmp_path / "store")
    return Location.parse(f"memory://locks/{tmp_path.name}")


def test_a_second_run_is_refused_while_the_first_lives(loc: Location) -> None:
    with StoreLock(loc, interval=0.05):
        with pytest.raises(LockedError, match=rf"being extracted by another run \(process "
                                              rf"{os.getpid()} on {socket.gethostname()}"):
            StoreLock(loc).acquire()
    with StoreLock(loc):  # released: free again
        pass
    assert not [p for p in loc.fs.ls(loc.root, detail=False) if LOCK_PREFIX in p]


def test_the_lock_of_a_killed_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a process id that no longer runs
    dead = LockOwner(**{**this_process("dead").__dict__, "pid": proc.pid, "pid_start": None})
    _marker(tmp_path / "s", 0, dead)
    with StoreLock(Location.parse(tmp_path / "s")) as lock:
        assert lock.generation == 1
        assert _markers(tmp_path / "s") == [f"{LOCK_PREFIX}1"]  # the stale one is gone


def test_a_reused_process_id_does_not_keep_a_lock(tmp_path: Path) -> None:
    reused = LockOwner(**{**this_process("old").__dict__, "pid_start": "1"})
    _marker(tmp_path / "s", 4, reused)  # our own pid, but another process's start time
    with StoreLock(Location.parse(tmp_path / "s")) as lock:
        assert lock.generation == 5


def test_another_hosts_lock_is_stale_only_without_a_heartbeat(loc: Location,
                                                              tmp_path: Path) -> None:
    other = LockOwner("t", "another-host", 1, time.time(), time.time())
    loc.fs.makedirs(loc.root, exist_ok=True)
    loc.fs.pipe_file(loc.path(f"{LOCK_PREFIX}0"), json.dumps(other.__dict__).encode())
    with pytest.raises(LockedError, match="process 1 on another-host"):
        StoreLock(loc, stale_after=60).acquire()
    silent = LockOwner("t", "another-host", 1, time.time() - 600, time.time() - 300)
    loc.fs.pipe_file(loc.path(f"{LOCK_PREFIX}0"), json.dumps(silent.__dict__).encode())
    with StoreLock(loc, stale_after=60) as lock:
        assert lock.generation == 1


def test_a_run_whose_heartbeat_stopped_loses_the_lock_and_knows_it(loc: Location) -> None:
    frozen = StoreLock(loc, interval=60, stale_after=0.2)
    frozen.acquire()  # its heartbeat waits 60 s: as silent as a frozen run
    time.sleep(0.3)
    with StoreLock(loc, stale_after=0.2, interval=0.05) as taker:
        assert taker.generation == 1
        with pytest.raises(LockedError, match="took this run's lock over"):
            frozen.check()
        frozen.release()  # must not delete the taker's marker
        taker.check()
    frozen.release()


def test_the_heartbeat_keeps_a_lock_alive(loc: Location) -> None:
    with StoreLock(loc, interval=0.05, stale_after=0.5) as lock:
        first = json.loads(loc.fs.cat_file(loc.path(f"{LOCK_PREFIX}0")))["heartbeat"]
        time.sleep(0.8)
        later = json.loads(loc.fs.cat_file(loc.path(f"{LOCK_PREFIX}0")))["heartbeat"]
        assert later > first
        with pytest.raises(LockedError):
            StoreLock(loc, stale_after=0.5).acquire()
        lock.check()


def test_of_runs_racing_for_a_stale_lock_exactly_one_wins(tmp_path: Path,
                                                         race_for_lock: Callable) -> None:
    silent = LockOwner("t", "another-host", 1, 0.0, 0.0)
    _marker(tmp_path / "s", 0, silent)
    loc = Location.parse(tmp_path / "s")
    won, refused = race_for_lock(loc, 8)
    assert len(won) == 1 and len(refused) == 7
    won[0].release()


def test_a_location_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot write"):
        StoreLock(Location.parse(tmp_path / "file" / "store")).acquire()
    with pytest.raises(StoreError, match="read-only"):
        StoreLock(Location.parse("http://127.0.0.1:9/store")).acquire()


def test_a_dead_runs_marker_on_a_finished_store_is_cleared_a_live_one_kept(
        tmp_path: Path) -> None:
    """A run killed after writing store.json leaves its marker; the next run finds the store
    complete and clears it, without writing anything when there is nothing to clear."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = LockOwner(**{**this_process("dead").__dict__, "pid": proc.pid, "pid_start": None})
    _marker(tmp_path / "s", 2, dead)
    loc = Location.parse(tmp_path / "s")
    assert StoreLock(loc).clear_stale() and _markers(tmp_path / "s") == []
    assert not StoreLock(loc).clear_stale()
    _marker(tmp_path / "s", 3, this_process("alive"))
    assert not StoreLock(loc).clear_stale() and _markers(tmp_path / "s") == [f"{LOCK_PREFIX}3"]
