"""The study's ``run.json``: its request, the stores it read and the evaluations its tables
read (:mod:`heads.run_record`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from heads.run_record import Clock, StoreRecord, warn_random_weights, write_run_record
from heads.study.types import StoreFacts


def study_stores(pre: StoreFacts | None, downstream: Sequence[StoreFacts]) -> list[StoreRecord]:
    """The pretraining store (if any) and the downstream stores, as the record lists them."""
    roles = [("pretrain", pre)] if pre is not None else []
    return [StoreRecord(role, s.url, s.store_id, s.dataset, dict(s.feature_space),
                        tuple(s.random_weights))
            for role, s in [*roles, *(("downstream", d) for d in downstream)]]


def warn_study_stores(stores: Sequence[StoreRecord]) -> None:
    """One warning per store with random weights, before anything is trained."""
    for s in stores:
        warn_random_weights(s.url, s.random_weights, command="study")


def write_study_record(out: Path, request: Mapping[str, Any], stores: Sequence[StoreRecord],
                       evaluations: Collection[Path], *, device: str, clock: Clock) -> None:
    """``OUT/run.json``: ``evaluations`` are the folders the tables read, relative to ``out``."""
    used = sorted(p.relative_to(out).as_posix() if p.is_relative_to(out) else str(p)
                  for p in evaluations)
    write_run_record(out, kind="study", name="study", config=request, stores=stores,
                     device=device, clock=clock, metrics={}, evaluations=used)
