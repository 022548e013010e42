"""What a reader looks for after the headline numbers, per row of a dataset's classification
tables: how many classifiers the numbers pool (pretraining x probe seeds), the wall-clock of the
runs and evaluations the row used, the F1 of each class on the test split (mean over the pooled
classifiers), and relative links to each evaluation's test confusion matrix."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from heads.study.types import TableRow

HEADING = "Per row: per-class F1 (test), classifiers, wall-clock, confusion matrices"
NOTE = ("n: classifiers pooled (pretraining seeds x probe seeds); wall-clock: seconds of the "
        "pretraining runs and evaluations the row used (a run shared by rows counts in each; "
        "n/a: not timed by this study); F1 per class in percent, mean over the n classifiers "
        "(n/a: no test clip of the class, where F1 is undefined).")


def detail_lines(rows: Sequence[TableRow], links_from: Path, *, level: int) -> list[str]:
    """The per-row table under a heading at ``level`` (none when no row ran); links are
    relative to ``links_from``, the folder of the Markdown file."""
    ran = [r for r in rows if r.metrics is not None]
    if not ran:
        return []
    names = list(dict.fromkeys(n for r in ran for n in (r.metrics or {}).get("label_names", [])))
    header = ["Method", "n", "Wall-clock (s)", *[f"F1 {n}" for n in names], "Confusion (test)"]
    lines = ["", f"{'#' * level} {HEADING}", "", NOTE, "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|"]
    for row in ran:
        f1 = per_class_f1(row)
        cells = [row.label, str(row.runs),
                 "n/a" if row.seconds is None else f"{row.seconds:.1f}",
                 *[_percent(f1.get(n)) for n in names], confusion_links(row, links_from)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_class_f1(row: TableRow) -> dict[str, float | None]:
    """Class name -> test F1 (fraction), mean over every seed of every pooled evaluation
    (None: a seed did not report it, or the test split has no clip of the class: its F1 is
    undefined, not 0)."""
    found: dict[str, list[Any]] = {}
    for metrics in row.pooled:
        for run in metrics.get("runs", []):
            test = (run.get("splits") or {}).get("test") or {}
            # single-label metrics have per_class, multi-label ones per_label
            for name, scores in (test.get("per_class") or test.get("per_label") or {}).items():
                found.setdefault(name, []).append(
                    scores.get("f1") if scores.get("support", 1) else None)
    return {name: statistics.fmean(v) if all(isinstance(x, int | float) for x in v) else None
            for name, v in found.items()}


def confusion_links(row: TableRow, links_from: Path) -> str:
    """Links to the test confusion matrix of each pooled evaluation (``n/a``: none drawn)."""
    paths = [_confusion(m) for m in row.pooled]
    found = [os.path.relpath(p, links_from) for p in paths if p is not None]
    if not found:
        return "n/a"
    if len(found) == 1:
        return f"[test]({Path(found[0]).as_posix()})"
    return " ".join(f"[{k}]({Path(p).as_posix()})" for k, p in enumerate(found, start=1))


def _confusion(metrics: Mapping[str, Any]) -> Path | None:
    name = ((metrics.get("files") or {}).get("confusion") or {}).get("test")
    out = metrics.get("out")
    return Path(out) / name if name and out else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"
