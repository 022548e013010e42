"""SIGINT and SIGTERM during a long command: one line saying how to go on, exit code 130 or
143, no traceback, the store's lock released, and the same command then finishes the work."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.store import write_arrays

LIMIT = 3
"""Clips of the extraction, one a shard: the signal comes after the first, the resumed run
extracts the rest (two shards still to do when the signal comes: the run cannot end first)."""


def _extract(root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "cli", "extract", "--dataset", "meld", "--root", str(root),
            "--out", str(out), "--weights", "random", "--modalities", "audio,text",
            "--device", "cpu", "--workers", "1", "--shard-size", "1", "--limit", str(LIMIT)]


def _interrupt(args: list[str], ready: Callable[[], bool], signum: int,
               timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``args``; once ``ready()`` holds, send ``signum``; the finished process."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"never got ready (exit {proc.returncode}):\n{err[-3000:]}")
        time.sleep(0.2)
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 120 s after the signal:\n{err[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_extraction_stops_on_a_signal_and_resumes(signum: int, meld_sample: Path,
                                                  meld_clips: list[str], tmp_path: Path,
                                                  account: Callable,
                                                  fault_log: Callable) -> None:
    out = tmp_path / "store"

    def one_shard_done() -> bool:
        return any((out / "shards").glob("shard-*.h5"))

    stopped = _interrupt(_extract(meld_sample, out), one_shard_done, signum)
    name = signal.Signals(signum).name
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    assert f"interrupted ({name}); run the same command to resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr + stopped.stdout, stopped.stderr[-3000:]
    assert not list(out.glob("extract.lock*")), "the lock is released"
    assert not (out / "store.json").exists()
    if signum != signal.SIGINT:  # one resumed run is enough: the resume is the same code
        fault_log(f"{name} during extraction", lost=0, duplicates=0,
                  outcome=f"exit {128 + signum}, one line, lock released")
        return

    again = subprocess.run(_extract(meld_sample, out), capture_output=True, text=True,
                           timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    lost, duplicates = account(out, set(meld_clips[:LIMIT]))
    assert (lost, duplicates) == (0, 0)
    fault_log(f"{name} during extraction", runs=2, lost=lost, duplicates=duplicates,
              outcome=f"exit {128 + signum}, one line, lock released; the rerun completes")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pretraining_stops_on_sigterm(tmp_path: Path, fault_log: Callable) -> None:
    rng = np.random.default_rng(0)
    n = 64
    write_arrays(tmp_path / "s", dataset="toy", sample_ids=[f"c{i}" for i in range(n)],
                 splits=["train"] * n, labels=np.zeros(n, int), label_names=["x"],
                 features={"audio": rng.standard_normal((n, 1, 16)).astype(np.float32),
                           "text": rng.standard_normal((n, 1, 8)).astype(np.float32)})
    run = tmp_path / "run"
    args = [sys.executable, "-m", "cli", "pretrain", "--store", str(tmp_path / "s"), "--out",
            str(run), "--objective", "multi_cont", "--modalities", "audio,text", "--preset",
            "cpu", "--epochs", "100000", "--device", "cpu", "--set", "data.batch_size=16",
            "--set", "output.tensorboard=false", "--set", "model.representation_dim=16",
            "--set", "model.projection_dim=8", "--set", "model.reconstruction_dim=8"]

    def training() -> bool:
        log = run / "metrics.jsonl"
        return log.exists() and log.read_text().count("\n") >= 3

    stopped = _interrupt(args, training, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "interrupted (SIGTERM)" in stopped.stderr
    assert "Traceback" not in stopped.stderr + stopped.stdout, stopped.stderr[-3000:]
    fault_log("SIGTERM during pretraining", outcome="exit 143, one line, no traceback")
