"""Test-wide settings (offline model hubs, the GPU marker) and the shared fixtures: one
generated MELD sample dataset and one store extracted from it; an unreachable address and an
environment without S3 credentials; a race for a store's lock."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Nothing in the suite may reach a model hub: weights are made by the tests themselves.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Nor read or fill the user's weights folder, nor a mirror of the publishers set outside.
os.environ["CONCLUGEN_WEIGHTS_DIR"] = tempfile.mkdtemp(prefix="conclugen-test-weights-")
atexit.register(shutil.rmtree, os.environ["CONCLUGEN_WEIGHTS_DIR"], ignore_errors=True)
os.environ.pop("CONCLUGEN_WEIGHTS_MIRROR", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------ shared fixtures: one sample, one store

SAMPLE_CLIPS = 10


@pytest.fixture(scope="session")
def meld_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated MELD sample (10 usable clips plus the release's defects)."""
    from pipeline.sample_data import generate

    return generate("meld", tmp_path_factory.mktemp("meld") / "raw", clips=SAMPLE_CLIPS, seed=0)


@pytest.fixture(scope="session")
def meld_store(meld_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample extracted with random weights by two local Dask workers, 3 clips a shard."""
    from pipeline.extract import load_extract_config
    from pipeline.run import ClusterOptions, run_extract

    out = tmp_path_factory.mktemp("stores") / "meld"
    cfg = load_extract_config(weights={m: "random" for m in
                                       ("frames_2d", "frames_3d", "audio", "text")},
)
    run_extract("meld", meld_sample, str(out), cfg=cfg, shard_size=3, device="cpu",
                cluster=ClusterOptions(workers=2))
    return out


# ------------------------------------------------ unreachable places, races


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_s3_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                      closed_port: int) -> Iterator[None]:
    """An environment where S3 has no credentials at all (no keys, profile, container or
    instance metadata) and its endpoint is a closed port, with s3fs's cached clients cleared
    before and after."""
    s3fs = pytest.importorskip("s3fs")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


Race = Callable[[Any, int], tuple[list[Any], list[Any]]]


@pytest.fixture
def race_for_lock() -> Race:
    """``race_for_lock(loc, n)``: ``n`` threads take ``StoreLock(loc)`` at the same instant;
    returns ``(won, refused)``, the locks acquired and those refused with ``LockedError``."""
    from pipeline.store import LockedError
    from pipeline.store.lock import StoreLock

    def race(loc: Any, n: int) -> tuple[list[Any], list[Any]]:
        start, won, refused = threading.Barrier(n), [], []

        def run() -> None:
            lock = StoreLock(loc, interval=60)
            start.wait()
            try:
                lock.acquire()
                won.append(lock)
            except LockedError:
                refused.append(lock)

        threads = [threading.Thread(target=run) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return won, refused

    return race
