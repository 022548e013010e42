"""Storage failures are one StoreError naming the file and the cause, never a library traceback:
a missing file or key, a refused connection, missing S3 credentials, a full disk, a read-only
location."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileOpener

from pipeline.failures import FAILURE_SCHEMA
from pipeline.store import Location, StoreError, open_store, write_arrays, write_shard
from pipeline.store.ops import verify_store


def _write(url: str | Path, n: int = 10) -> None:
    write_arrays(url, dataset="toy", sample_ids=[f"c{i}" for i in range(n)],
                 splits=["train"] * n, labels=np.zeros(n, int), label_names=["a"],
                 features={"text": np.ones((n, 1, 4), np.float32)}, shard_size=4)


def test_a_missing_index_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "s")
    (tmp_path / "s" / "index.parquet").unlink()
    with pytest.raises(StoreError, match=r"s/index.parquet: missing"):
        open_store(tmp_path / "s")


def test_a_missing_store_json_key_names_the_key(tmp_path: Path) -> None:
    _write(tmp_path / "s")
    data = json.loads((tmp_path / "s" / "store.json").read_text())
    del data["counts"]
    (tmp_path / "s" / "store.json").write_text(json.dumps(data))
    with pytest.raises(StoreError, match="counts"):
        open_store(tmp_path / "s")


def test_an_index_that_is_not_parquet_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "s")
    (tmp_path / "s" / "index.parquet").write_text("sample_id,split\n")
    with pytest.raises(StoreError, match="index.parquet: not a readable Parquet file"):
        open_store(tmp_path / "s")


def test_a_refused_connection_is_not_a_missing_store(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/stores/meld"
    with pytest.raises(StoreError, match="store.json: cannot read it: Cannot connect") as err:
        open_store(url)
    assert "no store.json" not in str(err.value)
    with pytest.raises(StoreError, match="Cannot connect"):
        verify_store(url)


@pytest.mark.usefixtures("no_s3_credentials")
def test_missing_s3_credentials_are_named() -> None:
    with pytest.raises(StoreError, match=r"s3://bucket/meld/store.json: cannot read it: "
                                         r"no credentials .*AWS_ACCESS_KEY_ID"):
        open_store("s3://bucket/meld")


def test_a_full_disk_while_writing_a_shard_names_the_shard(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    loc = Location.parse(tmp_path / "s")
    with pytest.raises(StoreError, match=r"shards/shard-00003.h5: no space left on the device"):
        write_shard(loc, 3, store_id="x", sample_ids=["a"],
                    features={"text": np.ones((1, 1, 4), np.float32)},
                    index=pa.table({"sample_id": ["a"]}), failures=FAILURE_SCHEMA.empty_table())
    assert sorted(p.name for p in (tmp_path / "s" / "shards").iterdir()) == [
        "shard-00003.failures.parquet", "shard-00003.index.parquet"]  # no half-written shard


def test_a_full_disk_while_writing_store_json_names_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    original = LocalFileOpener.write

    def write(self: LocalFileOpener, data: bytes) -> int:
        if "store.json" in self.path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(LocalFileOpener, "write", write)
    with pytest.raises(StoreError, match=r"s/store.json: no space left on the device .*run the "
                                         "same command again"):
        _write(tmp_path / "s")
    assert not list((tmp_path / "s").glob("store.json*"))  # neither the file nor a temporary


def test_a_read_only_location_is_refused_when_written(closed_port: int) -> None:
    loc = Location.parse(f"http://127.0.0.1:{closed_port}/stores/x")
    with pytest.raises(StoreError, match="store.json: cannot write it: this filesystem is "
                                         "read-only"):
        loc.write_atomic(b"{}", "store.json")


def test_an_unknown_protocol_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="nosuch://x"):
        open_store("nosuch://x/y")
