"""Stores on a real S3 server (moto, on 127.0.0.1): write, stream, verify, merge, train.

Credentials and the endpoint come the standard way (environment variables, or
``storage_options``); the Dask workers of an extraction inherit the environment.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from pipeline.store import open_store, write_arrays  # noqa: E402
from pipeline.store.ops import store_info, verify_store  # noqa: E402
from pipeline.store.merge import merge_stores  # noqa: E402

SECRET = "wJalrXUtnFEMI-K7MDENG-this-must-never-be-written"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server with a bucket ``bucket``; the standard AWS variables point at it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    url = f"http://127.0.0.1:{server._server.server_port}"
    with pytest.MonkeyPatch.context() as mp:
        # Set before any Dask cluster starts: worker processes inherit the environment.
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_ENDPOINT_URL": url}.items():
            mp.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()  # no client bound to another endpoint
        s3fs.S3FileSystem().mkdir("bucket")
        try:
            yield url
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of every ranged GET that s3fs sends for an open file."""
    sizes: list[int] = []
    original = s3fs.core.S3File._fetch_range

    def counting(self: object, start: int, end: int) -> bytes:
        sizes.append(end - start)
        return original(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    return sizes


def _write(url: str, n: int, *, seed: int = 0, prefix: str = "c", shard_size: int = 256,
           dim: int = 512, **kw: object) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = {"frames_2d": rng.standard_normal((n, 1, dim)).astype(np.float32),
             "text": rng.standard_normal((n, 1, 64)).astype(np.float32)}
    write_arrays(url, dataset="toy", sample_ids=[f"{prefix}{i}" for i in range(n)],
                 splits=["train" if i % 4 else "val" for i in range(n)], features=feats,
                 labels=np.arange(n) % 3, label_names=["a", "b", "c"], shard_size=shard_size,
                 **kw)
    return feats


@pytest.mark.slow
def test_read_of_a_few_rows_streams_a_few_blocks(endpoint: str, fetched: list[int]) -> None:
    feats = _write("s3://bucket/big", 8192, shard_size=8192, dim=1024)   # one shard of 17 MB
    store = open_store("s3://bucket/big")
    shard_bytes = s3fs.S3FileSystem().size("bucket/big/shards/shard-00000.h5")
    fetched.clear()
    rows = np.array([1000, 1003, 1001, 1009])
    got = store.read("frames_2d", rows, view=0)
    np.testing.assert_allclose(got.astype(np.float32), feats["frames_2d"][rows, 0], atol=1e-2)
    assert 0 < sum(fetched) < 0.25 * shard_bytes, (sum(fetched), shard_bytes)
    store.close()


def test_a_store_on_s3_verifies_merges_and_describes_itself(endpoint: str,
                                                            tmp_path: Path) -> None:
    a = _write("s3://bucket/team-a", 200, shard_size=64)
    b = _write("s3://bucket/team-b", 100, seed=1, prefix="d", shard_size=64)
    report = verify_store("s3://bucket/team-a")
    assert report.ok, report.problems
    assert report.shards == 4 and report.rows == 200
    info = store_info("s3://bucket/team-a")
    assert info.counts["val"] == {"a": 17, "b": 17, "c": 16} and info.size_bytes > 0
    result = merge_stores(["s3://bucket/team-a", "s3://bucket/team-b"], tmp_path / "ab")
    assert result.samples == 300 and verify_store(tmp_path / "ab").ok
    merged = open_store(tmp_path / "ab")
    np.testing.assert_array_equal(merged.read("text")[200:],
                                  b["text"].astype(np.float16))
    np.testing.assert_array_equal(merged.read("frames_2d", np.arange(200)),
                                  a["frames_2d"].astype(np.float16))


@pytest.mark.slow
def test_credentials_never_reach_store_json_or_logs(endpoint: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    options = {"key": "AKIAEXAMPLEKEY", "secret": SECRET,
               "client_kwargs": {"endpoint_url": endpoint}}
    _write("s3://bucket/secret", 20, storage_options=options)
    _write("s3://bucket/secret-2", 10, prefix="d", storage_options=options)
    store = open_store("s3://bucket/secret", storage_options=options)
    store.read("text")
    report = verify_store("s3://bucket/secret", storage_options=options)
    info = store_info(store)
    merge_stores([store, open_store("s3://bucket/secret-2", storage_options=options)],
                 "s3://bucket/merged", storage_options=options)
    assert report.ok and info.samples == 20
    fs = s3fs.S3FileSystem()
    for path in ("bucket/secret/store.json", "bucket/merged/store.json"):
        text = fs.cat(path).decode()
        assert SECRET not in text and "AKIAEXAMPLEKEY" not in text
    assert json.loads(fs.cat("bucket/merged/store.json"))["merged_from"][0]["url"] == (
        "s3://bucket/secret")
    assert caplog.records, "the operations log what they do"
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
    assert SECRET not in repr(store) + repr(store.loc) + str(report) + str(info)


@pytest.mark.slow
def test_extract_to_s3_then_verify_and_train(endpoint: str, meld_sample: Path,
                                             tmp_path: Path) -> None:
    from heads.pretrain.train import run_pretrain
    from pipeline.extract_config import load_extract_config
    from pipeline.run import ClusterOptions, run_extract

    # Audio and text only: the test is about the store on S3, not the (slow) video backbones.
    cfg = load_extract_config(weights={m: "random" for m in ("audio", "text")},
                              modalities=["audio", "text"])
    manifest = run_extract("meld", meld_sample, "s3://bucket/meld", cfg=cfg, shard_size=4,
                           device="cpu", cluster=ClusterOptions(workers=1))
    fs = s3fs.S3FileSystem()
    leftovers = [f for f in fs.ls("bucket/meld/shards", detail=False)
                 if not f.endswith((".h5", ".index.parquet", ".failures.parquet"))]
    assert not leftovers, "no temporary upload is left next to the shards"
    store = open_store("s3://bucket/meld")
    assert store.store_id == manifest.store_id and store.keys == ("audio", "text")
    report = verify_store("s3://bucket/meld")
    assert report.ok, report.problems
    info = store_info("s3://bucket/meld")
    assert info.random_weights == ["audio", "text"] and info.failures_by_reason
    run = run_pretrain("s3://bucket/meld", "multi_cont", tmp_path / "run",
                       modalities=["audio", "text"], device="cpu", epochs=1, progress=False,
                       overrides={"model": {"representation_dim": 32, "projection_dim": 8,
                                            "reconstruction_dim": 16},
                                  "data": {"batch_size": 2, "drop_last": True},
                                  "output": {"tensorboard": False}})
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert lines and all(np.isfinite(v) for v in json.loads(lines[-1]).values()
                         if isinstance(v, float))
