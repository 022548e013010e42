"""The fault-injection suite: tampered stores, crashed and concurrent extractions, a full disk,
bad options and unreachable stores (``pytest tests/faults``; part of the normal suite).

Every fault test records one row (fault, runs, samples lost, duplicates, outcome) with
:func:`fault_log`; at the end of the session the rows are printed as one table. Samples lost
and duplicates are counted against the clips the run was asked for: every clip must end up
exactly once in ``index.parquet`` or ``failures.parquet``. Tampered stores are not extractions,
so those two columns show ``-`` there and the outcome says what refused the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

AUDIO_TEXT = ("audio", "text")  # the fast backbones: these tests are about the store


@dataclass(frozen=True)
class FaultRow:
    fault: str
    runs: int
    lost: int | None
    duplicates: int | None
    outcome: str
    run_id: str | None = None
    touched: int | None = None   # user files (or a store) changed by a run that was refused
    outside: int | None = None   # reads of a file outside the store (its content seen)


_ROWS: list[FaultRow] = []

Record = Callable[..., None]


@pytest.fixture
def fault_log() -> Record:
    """``fault_log(fault, runs=1, lost=None, duplicates=None, outcome="", run_id=None)`` adds a
    row; for extraction faults both counts must be 0 (the calling test asserts it before
    recording). Faults injected together into one extraction (several bad clips in one run)
    each get a row and share a ``run_id``: the run counts once in the total."""
    def record(fault: str, *, runs: int = 1, lost: int | None = None,
               duplicates: int | None = None, outcome: str = "",
               run_id: str | None = None, touched: int | None = None,
               outside: int | None = None) -> None:
        _ROWS.append(FaultRow(fault, runs, lost, duplicates, outcome, run_id, touched, outside))
    return record


def _account(store: Path, expected: set[str]) -> tuple[int, int]:
    ids = pq.read_table(store / "index.parquet").column("sample_id").to_pylist()
    failed = pq.read_table(store / "failures.parquet").column("sample_id").to_pylist()
    seen = ids + failed
    return len(expected - set(seen)), len(seen) - len(set(seen))


@pytest.fixture
def account() -> Callable[[Path, set[str]], tuple[int, int]]:
    """``account(store, expected)``: ``(samples lost, duplicates)`` of a finished store
    against the clips asked for (each must be in the index or the failures, once)."""
    return _account


@pytest.fixture(scope="session")
def meld_clips(meld_sample: Path) -> list[str]:
    """The sample table's clip ids in order: ``--limit N`` asks for the first N."""
    from pipeline.datasets import scan

    return scan("meld", meld_sample).samples.column("sample_id").to_pylist()


@pytest.fixture(scope="session")
def scheduler() -> Iterator[str]:
    """An in-process Dask cluster (one worker thread) on TCP: extraction runs in this process,
    so a fault can be injected with monkeypatch, the models load once for the whole suite, and
    drivers in other processes (``--scheduler``) can use it, as they would a SLURM cluster."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _ROWS:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    header = ("fault", "runs", "samples lost", "duplicates", "files touched", "reads outside",
              "outcome")

    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    cells = [(r.fault, str(r.runs), count(r.lost), count(r.duplicates), count(r.touched),
              count(r.outside), r.outcome) for r in _ROWS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(w) if i in (0, 6) else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    reporter.write_sep("=", f"fault injection: {len(_ROWS)} faults")
    reporter.write_line(line(header))
    reporter.write_line(line(tuple("-" * w for w in widths)))
    for row in cells:
        reporter.write_line(line(row))
    counted = [r for r in _ROWS if r.lost is not None]
    runs = {r.run_id or id(r): r.runs for r in counted}  # a shared run counts once
    reporter.write_line(f"samples lost {sum(r.lost or 0 for r in counted)}, duplicates "
                        f"{sum(r.duplicates or 0 for r in counted)} over "
                        f"{sum(runs.values())} extraction runs; user files touched "
                        f"{sum(r.touched or 0 for r in _ROWS)} over "
                        f"{sum(r.touched is not None for r in _ROWS)} refusals, reads outside "
                        f"the store {sum(r.outside or 0 for r in _ROWS)} over "
                        f"{sum(r.outside is not None for r in _ROWS)} tampered stores")


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled store written from arrays (48 clips: 32 train, 8 val, 8 test; audio 16-d
    and text 8-d; shards of 16), for faults of the head trainer. Tests copy it to change it."""
    import numpy as np

    from pipeline.store import write_arrays

    rng = np.random.default_rng(0)
    n = 48
    path = tmp_path_factory.mktemp("toy") / "store"
    write_arrays(path, dataset="toy", sample_ids=[f"c{i}" for i in range(n)],
                 splits=["train"] * 32 + ["val"] * 8 + ["test"] * 8, labels=np.arange(n) % 3,
                 label_names=["a", "b", "c"], feature_space="toy-space", shard_size=16,
                 features={"audio": rng.standard_normal((n, 1, 16)).astype(np.float32),
                           "text": rng.standard_normal((n, 1, 8)).astype(np.float32)})
    return path


@pytest.fixture
def small_trainer() -> list[str]:
    """Command-line options for a pretraining run of seconds on :func:`toy_store`."""
    return ["--preset", "cpu", "--device", "cpu", "--set", "data.batch_size=16",
            "--set", "output.tensorboard=false", "--set", "model.representation_dim=16",
            "--set", "model.projection_dim=8", "--set", "model.reconstruction_dim=8"]
