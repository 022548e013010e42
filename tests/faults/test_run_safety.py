"""Runs as safe as stores, through the command line: pretrain, eval and study never write into
a feature store or over a user's files, one run at a time per folder, and the records a kill
or a full disk leaves (a torn metrics line, a half-written checkpoint) never stop the next
run."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.store import Location, write_arrays
from pipeline.store.lock import StoreLock

runner = CliRunner()


@pytest.fixture
def store(toy_store: Path) -> Path:
    return toy_store


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _pretrain(store: Path, out: Path, small: list[str], *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["pretrain", "--store", str(store), "--out", str(out),
                                 "--objective", "multi_cont", "--modalities", "audio,text",
                                 "--epochs", "2", *small, *extra])
    return result.exit_code, result.output


def test_no_run_writes_into_a_store_or_over_a_users_files(small_trainer: list[str],
        store: Path, tmp_path: Path, fault_log: Callable) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"my": "results"}')  # looks like an evaluation...
    (mine / "notes.txt").write_text("my notes")
    before_store, before_mine = _snapshot(store), _snapshot(mine)
    cases = {
        "pretrain --out STORE": (["pretrain", "--store", str(store), "--out", str(store),
                                  "--objective", "multi_cont", *small_trainer],
                                 "is a feature store"),
        "pretrain --out a folder of other files": (
            ["pretrain", "--store", str(store), "--out", str(mine), "--objective",
             "multi_cont", *small_trainer], "holds no pretrain output"),
        "eval --out STORE": (["eval", "--store", str(store), "--protocol", "supervised",
                              "--out", str(store), "--preset", "cpu", "--device", "cpu"],
                             "is a feature store"),
        "eval --out an evaluation": (["eval", "--store", str(store), "--protocol",
                                      "supervised", "--out", str(mine), "--preset", "cpu",
                                      "--device", "cpu"], "already holds an evaluation"),
        "study --out STORE": (["study", "--store", str(store), "--out", str(store), "--quick",
                               "--device", "cpu"], "is a feature store"),
    }
    for name, (args, message) in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output[-2000:])
        assert message in " ".join(result.output.split()), (name, result.output[-2000:])
        assert "Traceback" not in result.output
        assert _snapshot(store) == before_store and _snapshot(mine) == before_mine, name
        fault_log(f"run safety: {name}", touched=0, outcome=f"exit 2 ({message})")


def test_one_run_at_a_time_and_no_evaluation_of_a_run_being_trained(small_trainer: list[str],
        store: Path, tmp_path: Path, fault_log: Callable) -> None:
    run = tmp_path / "run"
    code, output = _pretrain(store, run, small_trainer)
    assert code == 0, output
    with StoreLock(Location.parse(str(run)), purpose="pretrain"):  # a live run trains it
        code, output = _pretrain(store, run, small_trainer, "--resume", "--epochs", "3")
        assert code == 2 and "is being trained into by another run" in " ".join(output.split())
        evaluated = runner.invoke(app, ["eval", "--store", str(store), "--run", str(run),
                                        "--protocol", "linear", "--preset", "cpu", "--device",
                                        "cpu"])
        assert evaluated.exit_code == 2 and "is still being trained" in evaluated.output
    fault_log("run safety: two pretrainings into one --out, and eval of a run being trained",
              outcome="the second and the eval refused (exit 2), naming the first")


def test_what_a_kill_leaves_does_not_stop_the_next_run(small_trainer: list[str], store: Path,
        tmp_path: Path, fault_log: Callable) -> None:
    run = tmp_path / "run"
    code, output = _pretrain(store, run, small_trainer)
    assert code == 0, output
    log = run / "metrics.jsonl"
    log.write_text(log.read_text() + '{"kind": "step", "step": 99, "lo')  # a torn last line
    leftover = run / "checkpoints" / "epoch-0003.pt.x1y2z3.tmp"  # a killed checkpoint write
    leftover.write_bytes(b"\0" * 1024)
    code, output = _pretrain(store, run, small_trainer, "--resume", "--epochs", "3")
    assert code == 0, output
    assert not leftover.exists()
    lines = log.read_text().splitlines()
    assert all(line.startswith("{") and line.endswith("}") for line in lines)
    fault_log("run safety: a torn metrics line and a half-written checkpoint after a kill",
              outcome="--resume drops the line, removes the file and completes")


def test_a_full_disk_at_a_checkpoint_is_one_message(small_trainer: list[str], store: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_log: Callable) -> None:
    import torch

    def full(*args: object, **kwargs: object) -> None:
        # what torch's writer raises when the disk fills
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed (errno 28: "
                           "No space left on device)")

    monkeypatch.setattr(torch, "save", full)
    code, output = _pretrain(store, tmp_path / "run", small_trainer)
    assert code == 2, output
    assert "no space left on the device" in output and "Traceback" not in output
    assert not list((tmp_path / "run").rglob("*.tmp"))
    fault_log("run safety: a full disk at a checkpoint",
              outcome="exit 2 naming the checkpoint file; no temporary left")
