"""The feature store: write, read back with this project and with plain h5py + pyarrow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.failures import FAILURE_SCHEMA
from pipeline.store import (Location, StoreError, canonical_json, completed_shard, open_store,
                            store_id_of, write_arrays, write_shard)


def _store(tmp_path: Path, n: int = 300, views: int = 2, shard_size: int = 128):
    rng = np.random.default_rng(0)
    feats = {"frames_2d": rng.standard_normal((n, views, 16)).astype(np.float32),
             "audio": rng.standard_normal((n, views, 8)).astype(np.float32)}
    splits = ["train"] * (n - 100) + ["val"] * 50 + ["test"] * 50
    store = write_arrays(tmp_path / "s", dataset="toy", sample_ids=[f"c{i}" for i in range(n)],
                         splits=splits, features=feats, labels=np.arange(n) % 7,
                         label_names=[f"l{i}" for i in range(7)], shard_size=shard_size)
    return store, feats


def test_round_trip_in_any_order(tmp_path: Path) -> None:
    store, feats = _store(tmp_path)
    pos = store.positions("val")
    assert len(pos) == 50 and pos[0] == 200
    shuffled = np.random.default_rng(1).permutation(store.positions())
    got = store.read("frames_2d", shuffled).astype(np.float32)
    np.testing.assert_allclose(got, feats["frames_2d"][shuffled], atol=2e-3)
    assert store.read("audio", pos, view=1).shape == (50, 8)
    np.testing.assert_array_equal(store.labels(pos), np.arange(200, 250) % 7)
    assert store.keys == ("audio", "frames_2d") and store.views == 2 and store.dim("audio") == 8


def test_open_shards_keep_no_chunk_cache(tmp_path: Path) -> None:
    """HDF5's default chunk cache (8 MiB per dataset, held while the shard is open) made a
    streamed epoch's memory grow with the store: the reader opens shards without one."""
    store, feats = _store(tmp_path)
    got = store.read("frames_2d", store.positions()).astype(np.float32)
    np.testing.assert_allclose(got, feats["frames_2d"], atol=2e-3)
    opened = list(store._shards.files.values())
    assert len(opened) == 3  # 300 rows in shards of 128
    for h5 in opened:
        assert h5.id.get_access_plist().get_cache()[2] == 0  # rdcc_nbytes


def test_a_reader_keeps_a_bounded_number_of_shards_open(tmp_path: Path) -> None:
    """A streamed epoch over VoxCeleb2 reads ~4,300 shards: kept open, they exceed a usual
    ``ulimit -n`` of 1024 and hold HDF5 metadata each. The least recently read is closed."""
    from pipeline.store.reader import FeatureStore

    written, feats = _store(tmp_path, n=300, shard_size=20)  # 15 shards
    store = FeatureStore(written.loc, written.manifest, written.index, max_open_shards=4)
    fds = len(list(Path("/proc/self/fd").iterdir()))
    order = np.random.default_rng(2).permutation(300)
    for start in range(0, 300, 7):  # many reads across shards, each shard reopened often
        pos = order[start:start + 7]
        np.testing.assert_allclose(store.read("audio", pos, view=0).astype(np.float32),
                                   feats["audio"][pos, 0], atol=2e-3)
        assert len(store._shards.files) <= 4
    assert len(list(Path("/proc/self/fd").iterdir())) <= fds + 4
    recent = list(store._shards.files)[-1]
    store.read("frames_2d", store.positions()[:1])  # shard-00000, opened again
    assert list(store._shards.files)[-1] == "shard-00000" and recent in store._shards.files
    store.close()
    assert not store._shards.files and not store._shards.datasets


def test_plain_h5py_and_pyarrow_read_the_contract(tmp_path: Path) -> None:
    store, feats = _store(tmp_path)
    root = tmp_path / "s"
    manifest = json.loads((root / "store.json").read_text())
    assert manifest["format"] == "conclugen-store/3"
    assert manifest["store_id"] == store_id_of(manifest["identity"])
    index = pq.read_table(root / "index.parquet").to_pandas()
    assert index["sample_id"].is_unique and len(index) == 300
    for entry in manifest["shards"]:
        with h5py.File(root / entry["path"], "r") as h5:
            rows = index[index["shard"] == Path(entry["path"]).stem]
            assert h5["frames_2d"].shape == (entry["rows"], 2, 16)
            assert h5["frames_2d"].dtype == np.float16
            ids = [s.decode() for s in h5["sample_id"][:]]
            assert ids == rows.sort_values("row")["sample_id"].tolist()


def test_unknown_key_lists_the_keys(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    with pytest.raises(KeyError, match="frames_2d"):
        store.read("text")


def test_incomplete_store_is_refused_with_a_resume_hint(tmp_path: Path) -> None:
    _store(tmp_path)
    (tmp_path / "s" / "store.json").unlink()
    with pytest.raises(StoreError, match="resume"):
        open_store(tmp_path / "s")


def test_shard_of_another_configuration_is_refused(tmp_path: Path) -> None:
    loc = Location.parse(tmp_path / "x")
    import pyarrow as pa

    index = pa.table({"sample_id": ["a"], "split": ["train"]})
    write_shard(loc, 0, store_id="aaa", sample_ids=["a"],
                features={"audio": np.zeros((1, 1, 4), np.float32)}, index=index,
                failures=FAILURE_SCHEMA.empty_table())
    assert completed_shard(loc, 0, "aaa") is not None
    assert completed_shard(loc, 1, "aaa") is None
    with pytest.raises(StoreError, match="another configuration"):
        completed_shard(loc, 0, "bbb")


def test_non_finite_features_are_never_written(tmp_path: Path) -> None:
    import pyarrow as pa

    bad = np.zeros((1, 1, 4), np.float32)
    bad[0, 0, 2] = np.nan
    with pytest.raises(StoreError, match="NaN"):
        write_shard(Location.parse(tmp_path / "x"), 0, store_id="a", sample_ids=["a"],
                    features={"audio": bad}, index=pa.table({"sample_id": ["a"]}),
                    failures=FAILURE_SCHEMA.empty_table())


def test_memory_filesystem_round_trip() -> None:
    rng = np.random.default_rng(0)
    feats = {"text": rng.standard_normal((10, 1, 4)).astype(np.float32)}
    store = write_arrays("memory://stores/t", dataset="toy", sample_ids=list("abcdefghij"),
                         splits=["train"] * 10, features=feats, labels=np.zeros(10, int),
                         label_names=["x"])
    np.testing.assert_allclose(store.read("text").astype(np.float32), feats["text"], atol=1e-3)


def test_store_id_is_canonical() -> None:
    assert store_id_of({"b": 1, "a": [1, 2]}) == store_id_of({"a": [1, 2], "b": 1})
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_a_shard_finished_meanwhile_by_the_same_configuration_is_kept(tmp_path: Path) -> None:
    """A task orphaned by a killed driver and the re-run's task both write shard 0: the first
    file stays and the second writer records it, so store.json's checksum is the file's."""
    import pyarrow as pa

    loc = Location.parse(tmp_path / "x")

    def write(store_id: str, worker: str) -> object:
        return write_shard(loc, 0, store_id=store_id, sample_ids=["a"],
                           features={"audio": np.ones((1, 1, 4), np.float32)},
                           index=pa.table({"sample_id": ["a"]}),
                           failures=FAILURE_SCHEMA.empty_table(), info={"worker": worker})

    first = write("aaa", "orphan")
    second = write("aaa", "rerun")
    path = tmp_path / "x" / "shards" / "shard-00000.h5"
    assert second.sha256 == first.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert second.info == {"worker": "orphan"}
    other = write("bbb", "another configuration")  # replaced, as before
    assert other.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != first.sha256
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "shard-00000.failures.parquet", "shard-00000.h5", "shard-00000.index.parquet"]
