"""The benchmark scripts and the GPU suite run end to end, so they cannot rot between the sessions
that have a GPU. Nothing here checks a figure: timings are never assertions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_dry_run_runs_every_section() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", "benchmarks/gpu_suite.sh", "--dry-run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    sections = re.findall(r"^==== (\d)\. ", out, flags=re.MULTILINE)
    assert sections == ["1", "2", "3", "4", "5", "6", "7", "8"]
    for figure in ("start-up, real cold", "start-up, real warm", "start-up, random weights",
                   "model alone", "encode_batch", "(a) training samples/s",
                   "store, streamed from shards", "(b) loader samples/s", "(c) conclugen",
                   "ratio end-to-end / backbone-only", "prefetch on / off",
                   "projected for MELD's 13708 clips", "frames/s",
                   "ratio transcription / extraction per clip",
                   "clips/s per GPU (from the GPU suite", "(measured)", " 8 GPU(s): projected"):
        assert figure in out, figure
    assert "FAILED" not in out and "==== done: 0 failed" in out


def test_gpu_wheels_are_pinned_in_the_lock() -> None:
    result = subprocess.run(["bash", "benchmarks/gpu_wheels.sh", "--print"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pins = result.stdout.split()
    names = {p.split("==")[0].lower() for p in pins}
    assert {"dask", "distributed", "av", "facenet-pytorch", "pytest"} <= names
    lock = (ROOT / "requirements.lock").read_text().lower().splitlines()
    assert all(p.lower() in lock for p in pins)


def test_gpu_suite_refuses_unknown_arguments() -> None:
    result = subprocess.run(["bash", "benchmarks/gpu_suite.sh", "--fast"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.mark.slow
def test_the_monitor_benchmark_prints_its_ratios() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "benchmarks/monitor_cost.py", "--epochs", "2",
                             "--scale", "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    ratios = re.findall(r"ratio monitor / epoch (\d+\.\d+)", result.stdout)
    assert len(ratios) == 4, result.stdout
