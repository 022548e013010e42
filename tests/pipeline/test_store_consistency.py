"""What training reads is what verify checks: opening a store refuses an index that disagrees
with store.json (cheaply, without hashing), reading refuses a shard that is not what store.json
declares, and a store.json without modalities is not a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.store import StoreError, open_store, write_arrays
from pipeline.store.ops import verify_store

N = 20


@pytest.fixture
def store(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    write_arrays(tmp_path / "s", dataset="toy", sample_ids=[f"c{i}" for i in range(N)],
                 splits=["train"] * 12 + ["val"] * 8, labels=np.arange(N) % 2,
                 label_names=["a", "b"], shard_size=8,
                 features={"text": rng.standard_normal((N, 1, 4)).astype(np.float32)})
    return tmp_path / "s"


def _index(store: Path, column: str, edit: Any) -> None:
    index = pq.read_table(store / "index.parquet")
    values = index.column(column).to_pylist()
    edit(values)
    typ = index.schema.field(column).type
    pq.write_table(index.set_column(index.column_names.index(column), column,
                                    pa.array(values, typ)), store / "index.parquet")


def _manifest(store: Path, edit: Any) -> None:
    data = json.loads((store / "store.json").read_text())
    edit(data)
    (store / "store.json").write_text(json.dumps(data))


def _set(values: list, i: int, v: object) -> None:
    values[i] = v


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: _index(s, "row", lambda v: _set(v, 2, 8)),
     r"row 2 \(sample_id 'c2', shard 'shard-00000', row 8\): row 8 is out of range \(0..7\)"),
    (lambda s: _index(s, "row", lambda v: _set(v, 2, -1)), r"row -1 is out of range"),
    (lambda s: _index(s, "row", lambda v: _set(v, 2, 3)),
     r"rows 2 and 3: both point to shard 'shard-00000' row 3"),
    (lambda s: _index(s, "shard", lambda v: _set(v, 2, "shard-00001")),
     r"7 rows point to shard 'shard-00000', store.json declares 8"),
    (lambda s: _manifest(s, lambda d: d["shards"][2].update(rows=3)),
     r"rows point to shard 'shard-00002', store.json declares 3"),
    (lambda s: _manifest(s, lambda d: d["shards"].pop()),
     r"shard 'shard-00002' is not listed in store.json"),
    (lambda s: _manifest(s, lambda d: d["counts"].update(samples=21)),
     r"20 rows, store.json counts 21 samples"),
    (lambda s: pq.write_table(pq.read_table(s / "index.parquet").drop_columns(["row"]),
                              s / "index.parquet"), r"column 'row' missing"),
])
def test_an_index_that_disagrees_with_store_json_is_refused_at_open(store: Path, edit: Any,
                                                                   message: str) -> None:
    edit(store)
    with pytest.raises(StoreError, match=message):
        open_store(store)
    assert not verify_store(store).ok


def test_open_does_not_hash_verify_does(store: Path) -> None:
    """The boundary, as documented: a flipped feature byte opens and reads; verify names it."""
    shard = store / "shards" / "shard-00001.h5"
    with h5py.File(shard, "r") as h5:
        chunk = h5["text"].id.get_chunk_info(0)
    data = bytearray(shard.read_bytes())
    data[chunk.byte_offset + 2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert open_store(store).read("text").shape == (N, 1, 4)
    assert [p.message.split(":")[0] for p in verify_store(store).problems] == [
        "checksum mismatch"]


@pytest.mark.parametrize("edit", [lambda d: d.update(modalities={}),
                                  lambda d: d["modalities"].update(audio=d["modalities"]["text"])])
def test_a_store_json_without_the_modalities_it_holds_is_refused(store: Path, edit: Any) -> None:
    _manifest(store, edit)
    with pytest.raises(StoreError, match="modalities"):
        open_store(store)
    report = verify_store(store)
    assert [p.file for p in report.problems] == ["store.json"]
    assert "modalities" in report.problems[0].message


def test_a_shard_with_another_shape_is_refused_when_read(store: Path) -> None:
    shard = store / "shards" / "shard-00001.h5"
    with h5py.File(shard, "r+") as h5:
        del h5["text"]
        h5.create_dataset("text", data=np.zeros((8, 1, 3), np.float16))
    with pytest.raises(StoreError, match=r"shard-00001.h5 dataset 'text': shape \(8, 1, 3\)"):
        open_store(store).read("text")


def test_a_shard_that_is_not_hdf5_is_refused_when_read(store: Path) -> None:
    (store / "shards" / "shard-00002.h5").write_bytes(b"not an HDF5 file" * 100)
    with pytest.raises(StoreError, match="shard-00002.h5: cannot open it as an HDF5 shard"):
        open_store(store).read("text")
    with pytest.raises(StoreError, match="shard-00002.h5"):
        open_store(store).read("text", np.array([17]))


def test_a_shard_missing_a_key_is_refused_when_read(store: Path) -> None:
    with h5py.File(store / "shards" / "shard-00000.h5", "r+") as h5:
        del h5["text"]
    with pytest.raises(StoreError, match=r"shard-00000.h5 dataset 'text': missing"):
        open_store(store).read("text")
