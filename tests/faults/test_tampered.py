"""Tampered stores, through the command line: every command refuses what it would otherwise
read wrongly (a file outside the store, a device, a FIFO, an index that disagrees with
store.json), says so in one line, never hangs and never shows a traceback."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.store import write_arrays

SECRET = "outside-the-store: must never be read"
COMMANDS = ("verify", "info", "diff", "merge", "pretrain")
runner = CliRunner()


def _write(path: Path, prefix: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 48
    write_arrays(path, dataset="toy", sample_ids=[f"{prefix}{i}" for i in range(n)],
                 splits=["train"] * 32 + ["val"] * 8 + ["test"] * 8, labels=np.arange(n) % 3,
                 label_names=["a", "b", "c"], shard_size=16, feature_space="toy-space",
                 features={"audio": rng.standard_normal((n, 1, 16)).astype(np.float32),
                           "text": rng.standard_normal((n, 1, 8)).astype(np.float32)})


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("templates")
    _write(root / "store", "c", 0)
    _write(root / "clean", "d", 1)  # disjoint samples, same feature space: merge/diff partner
    return root / "store", root / "clean"


# ---------------------------------------------------------------------------------- tampering

def _shard_path(value: str) -> Callable[[Path, Path], None]:
    def tamper(store: Path, outside: Path) -> None:
        data = json.loads((store / "store.json").read_text())
        data["shards"][0]["path"] = str(outside) if value == "OUTSIDE" else value
        (store / "store.json").write_text(json.dumps(data))
    return tamper


def _elsewhere(store: Path, outside: Path) -> None:
    """store.json lists an untouched copy; the shard training reads is altered."""
    (store / "other").mkdir()
    shutil.copy(store / "shards" / "shard-00000.h5", store / "other" / "shard-00000.h5")
    _flip(store / "shards" / "shard-00000.h5")
    _shard_path("other/shard-00000.h5")(store, outside)


def _index(column: str, position: int, value: object) -> Callable[[Path, Path], None]:
    def tamper(store: Path, outside: Path) -> None:
        table = pq.read_table(store / "index.parquet")
        values = table.column(column).to_pylist()
        values[position] = str(outside) if value == "OUTSIDE" else value
        typ = table.schema.field(column).type
        pq.write_table(table.set_column(table.column_names.index(column), column,
                                        pa.array(values, typ)), store / "index.parquet")
    return tamper


def _replace_shard(kind: str) -> Callable[[Path, Path], None]:
    def tamper(store: Path, outside: Path) -> None:
        shard = store / "shards" / "shard-00000.h5"
        shard.unlink()
        if kind == "fifo":
            os.mkfifo(shard)
        elif kind == "garbage":
            shard.write_bytes(b"\x00not an HDF5 file" * 64)
        else:
            shard.symlink_to(outside if kind == "outside" else Path(kind))
    return tamper


def _flip(path: Path) -> None:
    with h5py.File(path, "r") as h5:
        chunk = h5["audio"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset + chunk.size // 2] ^= 0x01  # a low mantissa bit: still finite
    path.write_bytes(bytes(data))


def _rehash(store: Path) -> None:
    """store.json's checksums made to match the tampered shards: only the content is wrong."""
    import hashlib

    data = json.loads((store / "store.json").read_text())
    for entry in data["shards"]:
        entry["sha256"] = hashlib.sha256((store / entry["path"]).read_bytes()).hexdigest()
    (store / "store.json").write_text(json.dumps(data))


def _linked(kind: str) -> Callable[[Path, Path], None]:
    """Shard 0's ``audio`` replaced by data that lives in another file (or a soft link)."""
    def tamper(store: Path, outside: Path) -> None:
        shard = store / "shards" / "shard-00000.h5"
        source = outside.with_name("features.h5")
        with h5py.File(shard, "a") as h5:
            shape, dtype = h5["audio"].shape, h5["audio"].dtype
            if not source.exists():
                with h5py.File(source, "w") as other:
                    other.create_dataset("audio", data=np.full(shape, 7, dtype))
            del h5["audio"]
            if kind == "external link":
                h5["audio"] = h5py.ExternalLink(str(source), "audio")
            elif kind == "soft link":
                h5.create_dataset("copy", data=np.full(shape, 7, dtype))
                h5["audio"] = h5py.SoftLink("/copy")
            elif kind == "virtual dataset":
                layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
                layout[:] = h5py.VirtualSource(str(source), "audio", shape=shape)
                h5.create_virtual_dataset("audio", layout, fillvalue=0)
            else:  # external storage: raw bytes of a file outside the store
                raw = outside.with_name("raw.bin")
                raw.write_bytes(np.full(shape, 7, dtype).tobytes())
                h5.create_dataset("audio", shape=shape, dtype=dtype,
                                  external=[(str(raw), 0, raw.stat().st_size)])
        _rehash(store)
    return tamper


def _swapped_shards(store: Path, outside: Path) -> None:
    """Shards 0 and 1 swapped (same rows each): every checksum matches store.json."""
    a, b = store / "shards" / "shard-00000.h5", store / "shards" / "shard-00001.h5"
    tmp = a.with_suffix(".swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    _rehash(store)


def _declared_rows(store: Path, outside: Path) -> None:
    data = json.loads((store / "store.json").read_text())
    data["shards"][1]["rows"] = 15
    (store / "store.json").write_text(json.dumps(data))


def _huge_dim(store: Path, outside: Path) -> None:
    """A dimension that would make a reader allocate 10^12 x rows floats."""
    data = json.loads((store / "store.json").read_text())
    data["modalities"]["audio"]["dim"] = 10**12
    (store / "store.json").write_text(json.dumps(data))


def _no_modalities(store: Path, outside: Path) -> None:
    data = json.loads((store / "store.json").read_text())
    data["modalities"], data["identity"]["modalities"] = {}, {}
    (store / "store.json").write_text(json.dumps(data))


REFUSED = {"verify": 1, "info": 2, "diff": 2, "merge": 2, "pretrain": 2}
SHARD_REFUSED = {"verify": 1, "info": 0, "diff": 0, "merge": 2, "pretrain": 2}
"""info and diff never open a shard: they succeed, and read nothing outside."""

CASES: dict[str, tuple[Callable[[Path, Path], None], dict[str, int]]] = {
    "store.json: absolute shard path": (_shard_path("OUTSIDE"), REFUSED),
    "store.json: '..' shard path": (_shard_path("shards/../../outside/secret.txt"), REFUSED),
    "store.json: lists a copy, training reads an altered shard": (_elsewhere, REFUSED),
    "store.json: without modalities": (_no_modalities, REFUSED),
    "store.json: a dimension of 10^12": (_huge_dim, REFUSED),
    "index: absolute shard": (_index("shard", 5, "OUTSIDE"), REFUSED),
    "index: '..' shard": (_index("shard", 5, "../outside/secret"), REFUSED),
    "index: a shard store.json does not list": (_index("shard", 5, "shard-00009"), REFUSED),
    "index: out-of-range row": (_index("row", 5, 16), REFUSED),
    "index/store.json: row counts differ": (_declared_rows, REFUSED),
    "shard: symlink out of the store": (_replace_shard("outside"), SHARD_REFUSED),
    "shard: symlink to /dev/zero": (_replace_shard("/dev/zero"), SHARD_REFUSED),
    "shard: a FIFO": (_replace_shard("fifo"), SHARD_REFUSED),
    "shard: not HDF5": (_replace_shard("garbage"), SHARD_REFUSED),
    "shard: an external link to another file": (_linked("external link"), SHARD_REFUSED),
    "shard: a soft link": (_linked("soft link"), SHARD_REFUSED),
    "shard: a virtual dataset of another file": (_linked("virtual dataset"), SHARD_REFUSED),
    "shard: external storage": (_linked("external storage"), SHARD_REFUSED),
    "shards swapped (checksums updated)": (_swapped_shards, SHARD_REFUSED),
    # open does not hash (documented): training reads it; verify and merge catch it
    "shard: one flipped byte": (lambda s, o: _flip(s / "shards" / "shard-00000.h5"),
                                {**SHARD_REFUSED, "pretrain": 0}),
}


#: What verify (and pretrain, which reads the shard) must say, where it is not a checksum.
SAYS = {**{case: "plain datasets only" for case in CASES if case.startswith("shard: a")
           and ("link" in case or "virtual" in case or "external" in case)},
        "shards swapped (checksums updated)": "does not hold the clips the index names",
        "store.json: a dimension of 10^12": "modalities.audio.dim is 1000000000000, outside"}


def _run(command: str, store: Path, clean: Path, work: Path) -> tuple[int, str]:
    args = {"verify": ["store", "verify", str(store)],
            "info": ["store", "info", str(store)],
            "diff": ["store", "diff", str(store), str(clean)],
            "merge": ["store", "merge", str(store), str(clean), "--out", str(work / "merged")],
            "pretrain": ["pretrain", "--store", str(store), "--out", str(work / "run"),
                         "--objective", "multi_cont", "--modalities", "audio,text",
                         "--preset", "cpu", "--epochs", "1", "--device", "cpu",
                         "--set", "data.batch_size=16", "--set", "output.tensorboard=false",
                         "--set", "model.representation_dim=16",
                         "--set", "model.projection_dim=8",
                         "--set", "model.reconstruction_dim=8"]}[command]
    result = runner.invoke(app, args)
    return result.exit_code, result.output


@pytest.mark.timeout(300)  # hashing /dev/zero or opening a FIFO would never return
@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_store_is_refused_by_every_command(
        case: str, templates: tuple[Path, Path], tmp_path: Path, fault_log: object) -> None:
    tamper, expected = CASES[case]
    store, clean = tmp_path / "store", tmp_path / "clean"
    shutil.copytree(templates[0], store)
    shutil.copytree(templates[1], clean)
    outside = tmp_path / "outside" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text(SECRET)
    tamper(store, outside)
    codes = {}
    for command in COMMANDS:
        code, output = _run(command, store, clean, tmp_path)
        assert "Traceback" not in output and SECRET not in output, (command, output[-2000:])
        if code == 2:
            assert output.count("error:") == 1, (command, output[-2000:])
        codes[command] = code
        if case in SAYS and command == "pretrain":
            assert SAYS[case] in " ".join(output.split()), output[-2000:]
    merged = tmp_path / "merged"
    assert not any(SECRET.encode() in p.read_bytes() for p in merged.rglob("*") if p.is_file())
    assert codes == expected, (case, codes)
    fault_log(f"tampered {case}", runs=len(COMMANDS), outside=0,
              outcome=", ".join(f"{c} {codes[c]}" for c in COMMANDS))
