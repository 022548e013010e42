"""Faults of the head trainer, through its command line: a pretraining run killed with SIGKILL
and resumed ends bit-exactly where an uninterrupted run ends; a diverging loss stops the run
naming the step; a store of another feature space and a checkpoint carrying a pickled object
are refused with one message (exit 2) and nothing run.

The runs are CPU-sized (the ``cpu`` preset on a small synthetic store: three steps an epoch).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from heads.checkpoint import FORMAT, load_checkpoint
from heads.pretrain.train import run_pretrain
from heads.metrics_log import read_metrics
from pipeline.store import write_arrays

REPO = Path(__file__).resolve().parents[2]
DIMS = {"frames_2d": 16, "frames_3d": 16, "audio": 8, "text": 8}
EPOCHS = 3
OBJECTIVE = "conclugen"  # every part: MMS, clustering (from epoch 1), reconstruction
runner = CliRunner()

# The killed run: the CLI, held (marker written, then asleep) after it wrote epoch 2's
# checkpoint and before last.pt points at it; the test SIGKILLs it there. By then the
# metrics of epoch 2 are logged past the checkpoint that the resume starts from.
KILLABLE = """
import os, sys, time
import heads.pretrain.train as train
link, marker = train.link_checkpoint, os.environ["PAUSE_MARKER"]
def held(source, target):
    if source.name == "epoch-0002.pt":
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        time.sleep(300)
    link(source, target)
train.link_checkpoint = held
from cli import main
sys.argv = ["cli", *sys.argv[1:]]
main()
"""


def _store(path: Path, space: str) -> str:
    rng = np.random.default_rng(0)
    n = 256
    write_arrays(path, dataset="synthetic", sample_ids=[f"s{i:04d}" for i in range(n)],
                 splits=["val" if i % 4 == 0 else "train" for i in range(n)],
                 features={k: rng.standard_normal((n, 1, d)).astype(np.float16)
                           for k, d in DIMS.items()},
                 labels=rng.integers(0, 4, n), label_names=["a", "b", "c", "d"],
                 shard_size=128, feature_space=space)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The training store and one of the same shape in another feature space."""
    root = tmp_path_factory.mktemp("trainer_faults")
    return {"train": _store(root / "train", "fault-space"),
            "other": _store(root / "other", "another-space")}


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One thread, as the killed run's process has: bit-exact comparisons need the same
    reduction order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def straight(stores: dict[str, str], one_thread: None,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of EPOCHS epochs."""
    return run_pretrain(stores["train"], OBJECTIVE, tmp_path_factory.mktemp("straight") / "run",
                        preset="cpu", epochs=EPOCHS, device="cpu", progress=False)


def _assert_identical(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys(), b)
        for key in a:
            _assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}/{i}")
    else:
        assert a == b, (where, a, b)


def _untimed(run: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("samples_per_s", "time_s")}
            for r in read_metrics(run)]


def test_sigkill_of_pretraining_then_resume_is_bit_exact(
        stores: dict[str, str], straight: Path, tmp_path: Path, fault_log: Callable) -> None:
    run, marker = tmp_path / "run", tmp_path / "held"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, "pretrain", "--store", stores["train"], "--out",
         str(run), "--objective", OBJECTIVE, "--preset", "cpu", "--epochs", str(EPOCHS),
         "--device", "cpu"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.time() < deadline, "the run never reached epoch 2's checkpoint"
            time.sleep(0.05)
        os.kill(int(marker.read_text()), signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    checkpoints = run / "checkpoints"
    assert load_checkpoint(checkpoints / "last.pt").epoch == 1  # the resume starts here
    assert load_checkpoint(checkpoints / "epoch-0002.pt").epoch == 2
    logged = max(r["epoch"] for r in read_metrics(run))
    assert logged == 1, "epoch 2 (0-based 1) was logged past the checkpoint"

    run_pretrain(stores["train"], OBJECTIVE, run, resume=True, device="cpu", progress=False)
    want, got = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (straight, run))
    _assert_identical(want.to_payload(), got.to_payload())  # weights, optimizer, k-means, RNG, step: every byte
    assert _untimed(run) == _untimed(straight)
    fault_log("SIGKILL of pretraining (epoch-2 checkpoint written, last.pt not yet), resume",
              runs=2, outcome="resumed from epoch 1: checkpoint and metrics bit-exact")


def test_a_diverging_loss_stops_the_run_naming_the_step(stores: dict[str, str], one_thread: None,
                                                        tmp_path: Path,
                                                        fault_log: Callable) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["pretrain", "--store", stores["train"], "--out", str(run),
                                 "--objective", OBJECTIVE, "--preset", "cpu", "--set",
                                 "optim.lr=1.0e+30", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    found = re.search(r"error: non-finite loss at step (\d+) \(epoch 0\): (.+); last good "
                      r"checkpoint: none \(no epoch had finished\)\n", result.output)
    assert found, result.output
    parts = dict(p.split("=") for p in found.group(2).split(", "))
    assert parts and all(v in ("nan", "inf", "-inf") for v in parts.values()), parts
    assert "Traceback" not in result.output
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    fault_log("non-finite loss (a diverging lr, 1e30)",
              outcome=f"stopped at step {found.group(1)}, exit 2, naming "
                      f"{len(parts)} non-finite parts; no checkpoint")


def test_a_store_of_another_feature_space_is_refused(stores: dict[str, str], straight: Path,
                                                     tmp_path: Path,
                                                     fault_log: Callable) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--store", stores["other"], "--run", str(straight),
                                 "--out", str(out), "--preset", "cpu", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert (f"error: {stores['other']} is not in the feature space "
            f"{straight / 'checkpoints' / 'last.pt'} was trained in; differing fields per "
            "store key: ") in result.output, result.output
    assert "fault-space" in result.output and "another-space" in result.output
    assert not out.exists(), "refused before any work"
    fault_log("checkpoint evaluated on a store of another feature space",
              outcome="exit 2 naming the differing fields; nothing written")


class Payload:
    """Unpickling this creates a folder: code run by merely loading a checkpoint."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.mkdir, (self.folder,)


def test_a_checkpoint_carrying_a_pickle_payload_is_refused(
        stores: dict[str, str], straight: Path, tmp_path: Path, fault_log: Callable) -> None:
    run, ran = tmp_path / "run", tmp_path / "payload-ran"
    shutil.copytree(straight, run)
    last = run / "checkpoints" / "last.pt"
    last.unlink()  # a hard link to epoch-0003.pt: replace it, not the file behind it
    torch.save({"format": FORMAT, "model": Payload(ran)}, last)
    commands = {
        "pretrain --resume": ["pretrain", "--store", stores["train"], "--out", str(run),
                              "--objective", OBJECTIVE, "--resume", "--device", "cpu"],
        "eval": ["eval", "--store", stores["train"], "--run", str(run), "--out",
                 str(tmp_path / "eval"), "--preset", "cpu", "--device", "cpu"],
    }
    for args in commands.values():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert (f"error: {last}: not a readable file of plain tensors and values (pickled "
                "objects are refused): Trying to load unsupported GLOBAL posix.mkdir") \
            in result.output, result.output
        assert "Traceback" not in result.output and "weights_only" not in result.output
        assert not ran.exists(), "the payload ran"
    assert _untimed(run) == _untimed(straight), "the run is untouched"
    fault_log("checkpoint carrying a pickle payload (os.mkdir)", runs=len(commands),
              outcome=f"refused by {' and '.join(commands)} (weights-only), exit 2; "
                      "the payload never ran")
