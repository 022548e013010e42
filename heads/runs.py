"""What ``cli runs list`` and ``cli runs diff`` show: the run records under a folder, and
what differs between two of them (config, stores, software, metrics).

Both read only ``run.json`` files (:mod:`heads.run_record`); a folder written before runs
were recorded has none and is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heads.run_record import RUN_JSON, RunRecord, RunRecordError, read_run_record
from pipeline.store.ops import ABSENT, Difference, flatten

#: The metric a listing shows per kind, first found first.
HEADLINE = {"eval": ("test/f1_weighted", "test/ccc", "val/f1_weighted", "val/ccc"),
            "pretrain": ("val/loss", "loss"),
            "study": ()}
#: The sections :func:`diff_runs` compares, in the order it reports them.
SECTIONS = ("kind", "name", "config", "stores", "software", "git_commit", "device", "metrics",
            "evaluations")


@dataclass(frozen=True)
class RunRow:
    """One line of ``cli runs list``."""

    folder: Path
    kind: str
    name: str
    stores: tuple[str, ...]
    start: str
    wall_clock_s: float
    headline: str
    random_weights: bool


def headline(record: RunRecord) -> str:
    """``test/f1_weighted 0.4312``: the record's first headline metric, or ``-``."""
    for key in HEADLINE.get(record.kind, ()):
        value = record.metrics.get(key)
        if value is not None:
            return f"{key} {value:.4f}"
    if record.kind == "study":
        return f"{len(record.evaluations)} evaluations"
    return "-"


def list_runs(folder: str | Path) -> list[RunRow]:
    """Every run, evaluation and study recorded under ``folder`` (itself included), oldest
    first.

    Raises:
        RunRecordError: ``folder`` is missing, or a ``run.json`` under it is unreadable
            (named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunRecordError(f"{folder}: no such folder")
    rows = []
    for path in sorted(folder.rglob(RUN_JSON)):
        record = read_run_record(path)
        rows.append(RunRow(path.parent, record.kind, record.name,
                           tuple(f"{s.role}:{s.dataset or s.store_id[:12]}"
                                 for s in record.stores),
                           record.start, record.wall_clock_s, headline(record),
                           bool(record.random_weights)))
    return sorted(rows, key=lambda r: (r.start, str(r.folder)))


@dataclass(frozen=True)
class RunDiff:
    """What :func:`diff_runs` reports: the differing fields (dotted paths, sections in
    :data:`SECTIONS` order) and whether the two read the same feature space."""

    a: Path
    b: Path
    differences: list[Difference]
    same_stores: bool

    def section(self, name: str) -> list[Difference]:
        return [d for d in self.differences if d.path.split(".")[0] == name]


def _comparable(record: RunRecord) -> dict[str, Any]:
    """The record as the nested mapping :func:`diff_runs` compares: stores by role."""
    data = record.to_json()
    data["stores"] = {s.role: {"url": s.url, "store_id": s.store_id, "dataset": s.dataset,
                               "feature_space": s.feature_space,
                               "random_weights": list(s.random_weights)}
                      for s in record.stores}
    return {k: data[k] for k in SECTIONS}


def diff_runs(a: str | Path, b: str | Path) -> RunDiff:
    """The differences between two recorded runs (or evaluations, or studies): config, the
    stores read, software, device and metrics; the command line, host and times are left
    out (they always differ).

    Raises:
        RunRecordError: either has no readable ``run.json``.
    """
    ra, rb = read_run_record(a), read_run_record(b)
    fa, fb = flatten(_comparable(ra)), flatten(_comparable(rb))
    order = {name: i for i, name in enumerate(SECTIONS)}
    paths = sorted(fa.keys() | fb.keys(), key=lambda p: (order[p.split(".")[0]], p))
    diffs = [Difference(p, fa.get(p, ABSENT), fb.get(p, ABSENT)) for p in paths
             if fa.get(p, ABSENT) != fb.get(p, ABSENT)]
    same = ({s.store_id for s in ra.stores} == {s.store_id for s in rb.stores})
    return RunDiff(Path(a), Path(b), diffs, same)


__all__ = ["RunDiff", "RunRow", "diff_runs", "headline", "list_runs"]
