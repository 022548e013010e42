"""Bad options and unreachable or broken stores: one message naming the option, file or cause,
exit code 2, no traceback; an extraction refused this way has done no work and written
nothing."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.failures import FAILURE_SCHEMA
from pipeline.store import Location, write_arrays, write_shard

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    if not folder.exists():
        return {}
    if folder.is_file():
        return {"": (hashlib.sha256(folder.read_bytes()).hexdigest(), folder.stat().st_mtime_ns)}
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any scan of the dataset or Dask cluster fails the test: refusals come before work."""
    import pipeline.run
    import pipeline.shard_tasks

    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the extraction started working before refusing")

    monkeypatch.setattr(pipeline.run, "scan", work)
    monkeypatch.setattr(pipeline.shard_tasks, "make_client", work)


def _user_folder(out: Path) -> None:
    out.mkdir()
    (out / "index.parquet").write_bytes(b"the user's own index")
    (out / "notes.txt").write_text("my notes")


def _partial_of_another_configuration(out: Path) -> None:
    import pyarrow as pa

    write_shard(Location.parse(out), 0, store_id="another", sample_ids=["a"],
                features={"text": np.ones((1, 1, 4), np.float32)},
                index=pa.table({"sample_id": ["a"]}), failures=FAILURE_SCHEMA.empty_table())


def _user_index_and_empty_shards(out: Path) -> None:
    (out / "shards").mkdir(parents=True)
    (out / "index.parquet").write_bytes(b"the user's own index")


def _a_file(out: Path) -> None:
    out.write_text("a file, not a folder")


OPTIONS: dict[str, tuple[list[str], Callable[[Path], None] | None, str]] = {
    "--shard-size 0": (["--shard-size", "0"], None, "--shard-size 0: must be at least 1"),
    "--workers 0": (["--workers", "0"], None, "--workers 0: must be at least 1"),
    "--limit 0": (["--limit", "0"], None, "--limit 0: must be at least 1"),
    "--slurm-jobs 0": (["--cluster", "slurm", "--slurm-jobs", "0"], None, "--slurm-jobs 0"),
    "--out: a folder of the user's files": ([], _user_folder, "notes.txt"),
    "--backbone with an unknown key": (["--backbone", "video=resnet152"], None,
                                       "--backbone video=resnet152: unknown key 'video'"),
    "--dataset nope": (["--dataset", "nope"], None, "unknown dataset 'nope'; valid: ["),
    "--out: a file": ([], _a_file, "is a file, not a folder"),
    "--out: the user's index.parquet beside an empty shards/": (
        [], _user_index_and_empty_shards, "holds index.parquet but no finished shard"),
    "--out: a partial store of another configuration": (
        [], _partial_of_another_configuration, "partial store of another configuration"),
    "--out: a read-only URL (http://)": (["READONLY"], None, "read-only"),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_bad_extract_options_are_refused_before_any_work(
        case: str, tmp_path: Path, no_work: None, fault_log: Callable) -> None:
    extra, prepare, message = OPTIONS[case]
    out: Path | str = tmp_path / "out"
    if extra == ["READONLY"]:
        extra, out = [], f"http://127.0.0.1:{_closed_port()}/stores/meld"
    elif prepare is not None:
        prepare(Path(out))
    before = _snapshot(Path(out)) if isinstance(out, Path) else {}
    result = runner.invoke(app, ["extract", "--dataset", "meld", "--root", str(tmp_path / "raw"),
                                 "--out", str(out), "--weights", "random", "--modalities",
                                 "audio,text", "--device", "cpu", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("error:") == 1
    if isinstance(out, Path):
        assert _snapshot(out) == before, "nothing written, nothing touched"
    fault_log(f"bad option: {case}", lost=0, duplicates=0,
              touched=0 if isinstance(out, Path) else None,
              outcome="exit 2 before any work, nothing written")


def _store(tmp_path: Path) -> Path:
    write_arrays(tmp_path / "s", dataset="toy", sample_ids=["a", "b"], splits=["train"] * 2,
                 features={"text": np.ones((2, 1, 4), np.float32)}, labels=np.zeros(2, int),
                 label_names=["x"])
    return tmp_path / "s"


def _without(name: str) -> Callable[[Path], str]:
    def make(tmp_path: Path) -> str:
        store = _store(tmp_path)
        (store / name).unlink()
        return str(store)
    return make


def _without_key(tmp_path: Path) -> str:
    store = _store(tmp_path)
    data = json.loads((store / "store.json").read_text())
    del data["identity"]
    (store / "store.json").write_text(json.dumps(data))
    return str(store)


def _refused_connection(tmp_path: Path) -> str:
    return f"http://127.0.0.1:{_closed_port()}/stores/meld"


STORES: dict[str, tuple[Callable[[Path], str], str]] = {
    "no index.parquet": (_without("index.parquet"), "index.parquet: missing"),
    "no store.json": (_without("store.json"), "store.json: missing|no store.json"),
    "store.json without a key": (_without_key, "identity"),
    "a refused HTTP connection": (_refused_connection, "Cannot connect"),
}


@pytest.mark.parametrize("case", list(STORES))
@pytest.mark.parametrize("command", ["info", "verify"])
def test_a_store_that_cannot_be_read_is_one_message(case: str, command: str, tmp_path: Path,
                                                    fault_log: Callable) -> None:
    make, message = STORES[case]
    result = runner.invoke(app, ["store", command, make(tmp_path)])
    missing_for_verify = command == "verify" and case in ("no index.parquet", "no store.json",
                                                          "store.json without a key")
    assert result.exit_code == (1 if missing_for_verify else 2), result.output
    assert any(m in result.output for m in message.split("|")), result.output
    assert "Traceback" not in result.output
    fault_log(f"store {command}: {case}", outcome=f"exit {result.exit_code}, names the cause")


@pytest.mark.usefixtures("no_s3_credentials")
def test_missing_s3_credentials_are_one_message(tmp_path: Path, fault_log: Callable) -> None:
    for args in (["store", "info", "s3://bucket/meld"],
                 ["pretrain", "--store", "s3://bucket/meld", "--out", str(tmp_path / "r")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "no credentials" in result.output and "Traceback" not in result.output
    fault_log("S3 without credentials (store info, pretrain)", runs=2,
              outcome="exit 2: no credentials, how to give them")


def test_a_weights_file_that_is_no_state_dict_is_refused_before_any_work(
        tmp_path: Path, no_work: None, fault_log: Callable) -> None:
    text = tmp_path / "audio_model.pth"
    text.write_text("this is not a checkpoint")
    result = runner.invoke(app, ["extract", "--dataset", "meld", "--root", str(tmp_path / "raw"),
                                 "--out", str(tmp_path / "out"), "--weights", f"audio={text}",
                                 "--modalities", "audio", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    text_out = " ".join(result.output.split())
    assert f"audio: {text}: cannot be read as a PyTorch state dict" in text_out
    assert "Traceback" not in result.output and "weights_only=False" not in text_out
    assert not (tmp_path / "out").exists()
    fault_log("bad option: --weights audio=FILE of text", lost=0, duplicates=0,
              outcome="exit 2 naming the file, before any work")


def test_an_unreachable_scheduler_is_one_message(meld_sample: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 fault_log: Callable) -> None:
    import pipeline.cluster

    monkeypatch.setattr(pipeline.cluster, "SCHEDULER_TIMEOUT_S", 2)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    result = runner.invoke(app, ["extract", "--dataset", "meld", "--root", str(meld_sample),
                                 "--out", str(tmp_path / "out"), "--weights", "random",
                                 "--modalities", "audio,text", "--device", "cpu", "--limit", "2",
                                 "--scheduler", address])
    assert result.exit_code == 2, result.output
    assert f"--scheduler {address}: no Dask scheduler answers there" in " ".join(
        result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "store.json").exists()
    fault_log("bad option: an unreachable --scheduler", lost=0, duplicates=0,
              outcome="exit 2 naming the address; nothing extracted")
