"""The extraction run end to end: sample dataset -> store, resume, refusals, remote scheduler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import scan
from pipeline.extract_config import load_extract_config
from pipeline.run import ClusterOptions, run_extract
from pipeline.store import StoreError, open_store

pytestmark = pytest.mark.slow


def test_store_matches_the_contract(meld_store: Path) -> None:
    manifest = json.loads((meld_store / "store.json").read_text())
    dims = {"frames_2d": 2048, "frames_3d": 2048, "audio": 1024, "text": 768}
    index = pq.read_table(meld_store / "index.parquet").to_pandas()
    for entry in manifest["shards"]:
        with h5py.File(meld_store / entry["path"], "r") as h5:
            for key, dim in dims.items():
                assert h5[key].shape == (entry["rows"], 1, dim)
                assert h5[key].dtype == np.float16
                assert np.isfinite(h5[key][:]).all()
    assert index["sample_id"].is_unique
    assert set(index["split"]) == {"train", "val", "test"}
    assert ((index["face_ratio"] > 0) & (index["face_ratio"] <= 1)).all()
    for key in dims:
        assert manifest["identity"]["modalities"][key]["weights"] == "random"
        assert manifest["modalities"][key]["dim"] == dims[key]
        assert manifest["feature_space"][key]["dim"] == dims[key]
    assert manifest["software"]["torch"].startswith("2.")
    assert {"decode", "faces", "write"} <= set(manifest["timings"])


def test_index_and_failures_account_for_every_clip_once(meld_sample: Path,
                                                        meld_store: Path) -> None:
    table = scan("meld", meld_sample)
    expected = set(table.samples.column("sample_id").to_pylist()) | set(
        table.failures.column("sample_id").to_pylist())
    index = pq.read_table(meld_store / "index.parquet").column("sample_id").to_pylist()
    failures = pq.read_table(meld_store / "failures.parquet").to_pandas()
    got = index + failures["sample_id"].tolist()
    assert len(got) == len(set(got)), "a clip is both extracted and failed, or twice"
    assert set(got) == expected
    reasons = dict(zip(failures["sample_id"], failures["reason"], strict=True))
    assert reasons["train/dia125_utt3"] == "known_bad"
    assert reasons["val/dia110_utt7"] in ("missing_file", "known_bad")
    assert reasons["test/dia120_utt0"] == "corrupt_media"
    assert "no_face" in reasons.values(), "the sample's face-less clips must be recorded"


def test_features_follow_their_sample_ids(meld_store: Path) -> None:
    """Rows of different clips differ; the same clip read twice is identical."""
    store = open_store(meld_store)
    x = store.read("frames_2d").astype(np.float32)[:, 0]
    assert len(np.unique(x.round(3), axis=0)) == len(x)
    rev = store.positions()[::-1]
    np.testing.assert_array_equal(store.read("audio", rev), store.read("audio")[::-1])


def test_another_configuration_is_refused(meld_sample: Path, meld_store: Path) -> None:
    cfg = load_extract_config(weights={m: "random" for m in ("frames_2d", "audio")},
                              modalities=["frames_2d", "audio"])
    with pytest.raises(StoreError, match="another configuration"):
        run_extract("meld", meld_sample, str(meld_store), cfg=cfg, device="cpu")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


#: Two shards of two clips: the run is killed after the first, the rerun makes the second (each
#: clip more costs face detection and a ResNet-152 pass in both runs).
KILLED_LIMIT = 4


def test_killed_run_resumes_to_the_same_store(meld_sample: Path, meld_store: Path,
                                              tmp_path: Path) -> None:
    """SIGKILL the driver and its workers after the first shard, run again: the same index and
    (for the keys both have) the same features as the uninterrupted session store, no
    duplicates."""
    out = tmp_path / "resumed"
    cmd = _cli("extract", "--dataset", "meld", "--root", str(meld_sample), "--out", str(out),
               "--weights", "random", "--modalities", "frames_2d,audio", "--limit",
               str(KILLED_LIMIT), "--shard-size", "2", "--workers", "1", "--device", "cpu")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "shards").glob("*.h5")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers, mid-run
    proc.wait()
    assert not (out / "store.json").exists(), "the run finished before it could be killed"
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.h5")}
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    for name, mtime in kept.items():  # complete shards were kept, not redone
        assert (out / "shards" / name).stat().st_mtime_ns == mtime
    full, resumed = open_store(meld_store), open_store(out)
    ids = resumed.index.column("sample_id").to_pylist()
    failed = pq.read_table(out / "failures.parquet").column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) and not set(ids) & set(failed)
    assert len(ids) + len(failed) == KILLED_LIMIT  # the first clips of the sample table
    position = {sid: i for i, sid in enumerate(full.index.column("sample_id").to_pylist())}
    rows = np.array([position[sid] for sid in ids])
    for key in resumed.keys:
        np.testing.assert_allclose(resumed.read(key).astype(np.float32),
                                   full.read(key, rows).astype(np.float32), rtol=1e-2, atol=1e-2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_on_a_separately_started_dask_cluster(meld_sample: Path, tmp_path: Path) -> None:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                 "--name", f"w{i}", "--no-dashboard"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Audio and text only: the test is about the cluster, not the video backbones.
        cfg = load_extract_config(weights={"audio": "random", "text": "random"},
                                  modalities=["audio", "text"])
        manifest = run_extract("meld", meld_sample, str(tmp_path / "s"), cfg=cfg, limit=6,
                               shard_size=2, device="cpu",
                               cluster=ClusterOptions(scheduler=address))
        assert manifest.counts.samples + manifest.counts.failures == 6
        workers = set()
        for entry in manifest.shards:
            with h5py.File(tmp_path / "s" / entry.path, "r") as h5:
                workers.add(json.loads(h5.attrs["info"])["worker"])
        assert workers <= {"w0", "w1"} and workers, workers
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_augmented_views_feed_instance_cont(meld_sample: Path, tmp_path: Path) -> None:
    """--views 3: view 0 clean, views 1 and 2 augmented, and the instance_cont objective
    trains on the two augmented ones."""
    from heads.pretrain.train import run_pretrain

    cfg = load_extract_config(weights={"frames_2d": "random"}, modalities=["frames_2d"],
                              views=3)
    run_extract("meld", meld_sample, str(tmp_path / "s"), cfg=cfg, limit=5, shard_size=5,
                device="cpu", cluster=ClusterOptions(workers=1))
    store = open_store(tmp_path / "s")
    x = store.read("frames_2d").astype(np.float32)
    assert x.shape[1:] == (3, 2048) and not np.allclose(x[:, 0], x[:, 1])
    assert not np.allclose(x[:, 1], x[:, 2])
    run = run_pretrain(str(tmp_path / "s"), "instance_cont", tmp_path / "run", preset="cpu",
                       device="cpu", epochs=2, progress=False,
                       overrides={"data": {"batch_size": 2}})
    assert '"info_nce"' in (run / "metrics.jsonl").read_text()


def test_slurm_jobs_take_at_most_one_gpu_each() -> None:
    from pipeline.cluster import make_client

    with pytest.raises(ValueError, match="--slurm-jobs"):
        make_client(ClusterOptions(cluster="slurm", slurm_gpus=2), "cuda")
