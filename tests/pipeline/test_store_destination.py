"""Where an extraction may write: new, empty, or a store (complete or partial) of the same
configuration; anything else is refused before any work, with nothing written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.failures import FAILURE_SCHEMA
from pipeline.store import Location, StoreError, open_store, write_arrays, write_shard
from pipeline.store.destination import check_destination


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _shard(url: str | Path, store_id: str, k: int = 0) -> None:
    write_shard(Location.parse(url), k, store_id=store_id, sample_ids=["a"],
                features={"text": np.ones((1, 1, 4), np.float32)},
                index=pa.table({"sample_id": ["a"], "split": ["train"]}),
                failures=FAILURE_SCHEMA.empty_table())


def _check(url: str | Path, store_id: str = "abc") -> str:
    return check_destination(Location.parse(url), store_id)


def test_new_and_empty_folders(tmp_path: Path) -> None:
    assert _check(tmp_path / "missing") == "new"
    (tmp_path / "empty").mkdir()
    assert _check(tmp_path / "empty") == "new"
    assert _check("memory://dest/new") == "new"


@pytest.mark.parametrize("files", [
    {"index.parquet": b"the user's own index", "notes.txt": b"my notes"},
    {"index.parquet": b"the user's own index"},
    {"shards/shard-00000.h5.bak": b"x"},
    {"shards": b"a file named shards"},
    {".DS_Store": b""},
])
def test_a_folder_of_other_files_is_refused_untouched(tmp_path: Path,
                                                      files: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    before = _snapshot(out)
    with pytest.raises(StoreError, match="nothing was written"):
        _check(out)
    assert _snapshot(out) == before


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        _check(tmp_path / "f")


def test_a_partial_store_of_this_configuration_is_resumed(tmp_path: Path) -> None:
    _shard(tmp_path / "p", "abc")
    (tmp_path / "p" / "shards" / "shard-00001.h5.0123abcd4567.partial").write_bytes(b"x")
    (tmp_path / "p" / "index.parquet.0123abcd4567.tmp").write_bytes(b"x")
    (tmp_path / "p" / "extract.lock.3").write_text("{}")
    assert _check(tmp_path / "p") == "partial"
    with pytest.raises(StoreError, match="partial store of another configuration"):
        _check(tmp_path / "p", "xyz")


def test_a_partial_store_without_a_finished_shard_is_resumed(tmp_path: Path) -> None:
    (tmp_path / "p" / "shards").mkdir(parents=True)
    (tmp_path / "p" / "shards" / "shard-00000.index.parquet").write_bytes(b"x")
    assert _check(tmp_path / "p") == "partial"


def test_store_tables_without_a_finished_shard_are_not_a_partial_store(tmp_path: Path) -> None:
    (tmp_path / "p" / "shards").mkdir(parents=True)
    (tmp_path / "p" / "index.parquet").write_bytes(b"somebody's table")
    with pytest.raises(StoreError, match="holds index.parquet but no finished shard"):
        _check(tmp_path / "p")
    _shard(tmp_path / "p", "abc")  # a run killed between its index and store.json
    assert _check(tmp_path / "p") == "partial"


def test_a_complete_store(tmp_path: Path) -> None:
    write_arrays(tmp_path / "c", dataset="toy", sample_ids=["a", "b"], splits=["train"] * 2,
                 features={"text": np.ones((2, 1, 4), np.float32)}, labels=np.zeros(2, int),
                 label_names=["x"])
    store_id = open_store(tmp_path / "c").store_id
    assert _check(tmp_path / "c", store_id) == "complete"
    with pytest.raises(StoreError, match="complete store of another configuration"):
        _check(tmp_path / "c", "xyz")


def test_on_an_fsspec_url() -> None:
    _shard("memory://dest/p", "abc")
    assert _check("memory://dest/p") == "partial"
    with pytest.raises(StoreError, match="another configuration"):
        _check("memory://dest/p", "xyz")
    Location.parse("memory://dest/p").fs.pipe_file("/dest/p/notes.txt", b"mine")
    with pytest.raises(StoreError, match="notes.txt"):
        _check("memory://dest/p")
