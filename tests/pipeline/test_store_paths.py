"""A store never reads outside itself: every file reference (store.json's shard list, the
index's shard column) goes through one gate, ``Location.member``, for local folders and fsspec
URLs alike; verify, open/read, info, diff and merge refuse what it refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.store import (Location, MissingFileError, StoreError, UnsafePathError,
                            check_relative, open_store, write_arrays)
from pipeline.store.ops import diff_stores, store_info, verify_store
from pipeline.store.merge import merge_stores

SECRET = b"the content of a file outside the store\n"


def _write(url: str | Path, prefix: str = "c", n: int = 20) -> None:
    rng = np.random.default_rng(len(prefix))
    write_arrays(url, dataset="toy", sample_ids=[f"{prefix}{i}" for i in range(n)],
                 splits=["train"] * n, labels=np.zeros(n, int), label_names=["a"],
                 features={"text": rng.standard_normal((n, 1, 4)).astype(np.float32)},
                 shard_size=8)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    _write(tmp_path / "a")
    _write(tmp_path / "b", prefix="d")
    return tmp_path / "a", tmp_path / "b"


def _edit_manifest(store: Path, path: str) -> None:
    manifest = json.loads((store / "store.json").read_text())
    manifest["shards"][0]["path"] = path
    (store / "store.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("ref", ["/etc/passwd", "shards/../../x.h5", "../x", "s3://b/x.h5",
                                 "file:///etc/passwd", "C:/x.h5", "shards//x.h5", "./x.h5",
                                 "shards\\x.h5", "", "shards/x.h5\x00"])
def test_references_that_leave_the_store_are_refused(ref: str) -> None:
    with pytest.raises(UnsafePathError, match="refused|not a file name"):
        check_relative(ref, "store.json")


def test_a_plain_relative_reference_passes() -> None:
    assert check_relative("shards/shard-00000.h5", "x") == "shards/shard-00000.h5"


@pytest.mark.parametrize("path", ["OUTSIDE", "shards/../../outside/secret.txt",
                                  "other/shard-00000.h5"])
def test_store_json_pointing_elsewhere_is_refused_by_every_command(
        pair: tuple[Path, Path], outside: Path, tmp_path: Path, path: str) -> None:
    a, b = pair
    if path == "other/shard-00000.h5":  # the real file, where training would not read it
        (a / "other").mkdir()
        (a / "other" / "shard-00000.h5").write_bytes((a / "shards/shard-00000.h5").read_bytes())
    _edit_manifest(a, str(outside) if path == "OUTSIDE" else path)
    report = verify_store(a)
    assert not report.ok and report.bytes_hashed == 0
    assert report.problems[0].file == "store.json" and "shards[0].path" in str(report.problems[0])
    for command in (lambda: open_store(a), lambda: store_info(a), lambda: diff_stores(a, b),
                    lambda: merge_stores([a, b], tmp_path / "m")):
        with pytest.raises(StoreError, match=r"shards\[0\]\.path"):
            command()
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("target", ["outside", "/dev/zero", "fifo", "folder"])
@pytest.mark.timeout(60)
def test_a_shard_that_is_a_link_out_a_device_or_a_fifo_is_never_read(
        pair: tuple[Path, Path], outside: Path, tmp_path: Path, target: str) -> None:
    a, b = pair
    shard = a / "shards" / "shard-00000.h5"
    shard.unlink()
    if target == "fifo":
        os.mkfifo(shard)
    elif target == "folder":
        shard.mkdir()
    else:
        shard.symlink_to(outside if target == "outside" else Path(target))
    report = verify_store(a)  # hashing /dev/zero never ends; opening a FIFO blocks
    (problem,) = [p for p in report.problems if p.file == "shards/shard-00000.h5"]
    assert "refused" in problem.message and report.shards == 2
    store = open_store(a)  # the cheap open checks do not touch shards
    with pytest.raises(UnsafePathError):
        store.read("text")
    with pytest.raises(UnsafePathError):
        merge_stores([a, b], tmp_path / "m")
    merged = tmp_path / "m" / "shards"
    assert not any(SECRET in p.read_bytes() for p in merged.glob("*") if p.is_file())


def test_a_link_inside_the_store_is_followed(pair: tuple[Path, Path]) -> None:
    a, _ = pair
    shard = a / "shards" / "shard-00001.h5"
    (a / "shards" / "real.bin").write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to("real.bin")
    assert open_store(a).read("text").shape == (20, 1, 4)
    assert verify_store(a).ok


def test_a_store_folder_reached_through_a_link_reads(pair: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(pair[0])
    assert verify_store(tmp_path / "link").ok
    assert open_store(tmp_path / "link").read("text").shape == (20, 1, 4)


def test_store_json_and_the_index_are_read_through_the_gate(pair: tuple[Path, Path],
                                                            outside: Path) -> None:
    a, _ = pair
    (a / "index.parquet").unlink()
    (a / "index.parquet").symlink_to("/dev/zero")
    with pytest.raises(UnsafePathError, match="index.parquet"):
        open_store(a)
    (a / "store.json").unlink()
    (a / "store.json").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="store.json"):
        open_store(a)
    assert "refused" in str(verify_store(a).problems[0])


@pytest.mark.parametrize("value", ["/etc/passwd", "../../outside/secret", "shard-00000.h5"])
def test_an_index_shard_that_store_json_does_not_list_is_refused_at_open(
        pair: tuple[Path, Path], value: str) -> None:
    a, _ = pair
    index = pq.read_table(a / "index.parquet")
    shards = index.column("shard").to_pylist()
    shards[3] = value
    pq.write_table(index.set_column(index.column_names.index("shard"), "shard",
                                    pa.array(shards)), a / "index.parquet")
    with pytest.raises(StoreError, match=rf"row 3 .*{value!r} is not listed in store.json"):
        open_store(a)
    assert any("does not list" in str(p) for p in verify_store(a).problems)


def test_the_gate_on_an_fsspec_url() -> None:
    _write("memory://gate/a")
    fs = fsspec.filesystem("memory")
    fs.mkdir("/gate/a/shards/shard-00009.h5")
    loc = Location.parse("memory://gate/a")
    assert loc.member("shards", "shard-00000.h5") == "/gate/a/shards/shard-00000.h5"
    with pytest.raises(UnsafePathError, match="not a file"):
        loc.member("shards", "shard-00009.h5")
    with pytest.raises(MissingFileError):
        loc.member("shards", "shard-00077.h5")
    with pytest.raises(UnsafePathError):
        loc.member("..", "b", "store.json")
    manifest = json.loads(fs.cat("/gate/a/store.json"))
    manifest["shards"][1]["path"] = "/gate/secret"
    fs.pipe("/gate/secret", SECRET)
    fs.pipe("/gate/a/store.json", json.dumps(manifest).encode())
    with pytest.raises(UnsafePathError):
        open_store("memory://gate/a")
    assert not verify_store("memory://gate/a").ok
