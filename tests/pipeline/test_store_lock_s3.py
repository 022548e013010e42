"""The extraction lock on an object store (a moto S3 server on 127.0.0.1): the marker is created
with a conditional put (If-None-Match), so of runs racing for it exactly one wins; a live owner
is refused and a silent one taken over; the destination check and the gate work on S3 too."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from pipeline.store import Location, LockedError, UnsafePathError, write_arrays  # noqa: E402
from pipeline.store.destination import check_destination  # noqa: E402
from pipeline.store.lock import LOCK_PREFIX, LockOwner, StoreLock  # noqa: E402


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
            mp.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("locks")
        try:
            yield "s3://locks"
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def test_runs_racing_for_an_s3_lock(bucket: str, race_for_lock: Callable) -> None:
    loc = Location.parse(f"{bucket}/race")
    won, refused = race_for_lock(loc, 4)
    assert (len(won), len(refused)) == (1, 3)
    won[0].release()
    assert not loc.fs.exists(loc.path(f"{LOCK_PREFIX}0"))


def test_a_silent_s3_lock_is_taken_over(bucket: str) -> None:
    loc = Location.parse(f"{bucket}/silent")
    now = time.time()
    loc.fs.pipe_file(loc.path(f"{LOCK_PREFIX}2"), json.dumps(
        LockOwner("t", "another-host", 7, now, now).__dict__).encode())
    with pytest.raises(LockedError, match="process 7 on another-host"):
        StoreLock(loc, stale_after=60).acquire()
    loc.fs.pipe_file(loc.path(f"{LOCK_PREFIX}2"), json.dumps(
        LockOwner("t", "another-host", 7, now - 900, now - 600).__dict__).encode())
    with StoreLock(loc, stale_after=60) as lock:
        assert lock.generation == 3


def test_destination_and_gate_on_s3(bucket: str) -> None:
    url = f"{bucket}/store"
    write_arrays(url, dataset="toy", sample_ids=["a", "b"], splits=["train"] * 2,
                 features={"text": np.ones((2, 1, 4), np.float32)}, labels=np.zeros(2, int),
                 label_names=["x"])
    loc = Location.parse(url)
    assert check_destination(Location.parse(f"{bucket}/nothing-here"), "x") == "new"
    with pytest.raises(Exception, match="complete store of another configuration"):
        check_destination(loc, "x")
    loc.fs.mkdir(loc.path("shards", "shard-00009.h5"))  # on S3: a "folder" marker
    loc.fs.pipe_file(loc.path("shards", "shard-00009.h5", "x"), b"x")
    with pytest.raises(UnsafePathError, match="not a file"):
        loc.member("shards", "shard-00009.h5")
