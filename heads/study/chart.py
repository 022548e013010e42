"""A dataset's ``results.png``: ours as bars, the paper's as ticks, the caveats (random
weights, the quick preset, how few classifiers and clips) in the title."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from heads.study.paper import PaperResults
from heads.study.types import GROUPS, SHOWN, StudySettings, TableRow, Target


def chart(target: Target, groups: Mapping[str, Sequence[TableRow]], paper: PaperResults,
          how: StudySettings) -> bool:
    """``results.png``: the classification rows, a dashed line before Tables 3-5 and before
    the other systems, the caveats in its title; False (no file) when none of them ran."""
    # heads.plots imports matplotlib (about 2 s): only a study that draws its chart loads it
    from heads.plots import caveats, plot_study, with_caveats

    if all(row.metrics is None for g in GROUPS for row in groups.get(g, ())):
        return False
    labels, ours, theirs = _chart_data(target, groups, paper)
    sizes = [len(groups.get(g, ())) for g in GROUPS]
    starts = sorted({sum(sizes[:k]) for k in (1, 2, 3)})  # extras sit right below Tables 3-5
    runs = sorted({r.runs for g in GROUPS for r in groups.get(g, ()) if r.metrics is not None})
    n = str(runs[0]) if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
    note = caveats(sorted(set(target.store.random_weights) | set(target.pretrain.random_weights)),
                   preset="quick: cpu" if how.quick else None,
                   small=f"n={n} classifiers per row, "
                         f"{target.store.labelled.get('test', 0)} test clips")
    plot_study(ours, labels, SHOWN, target.folder / "results.png",
               paper=theirs if any(not math.isnan(v) for p in theirs for v in p.values())
               else None, groups=[k for k in starts if 0 < k < len(labels)],
               title=with_caveats(f"{target.name}: test, ours (bars) and the paper's (ticks)",
                                  note))
    return True


def _chart_data(target: Target, groups: Mapping[str, Sequence[TableRow]],
                paper: PaperResults) -> tuple[list[str], list[dict[str, float]],
                                              list[dict[str, float]]]:
    labels, ours, theirs = [], [], []
    for group in GROUPS:
        for row in groups.get(group, ()):
            labels.append(row.label + (" (skipped)" if row.metrics is None else ""))
            ours.append({k: _or_nan(row.ours(k)[0]) for k in SHOWN})
            found = {k: paper.cell(group, row.key, target.store.dataset, k) for k in SHOWN}
            theirs.append({k: math.nan if isinstance(v, str) else v for k, v in found.items()})
    return labels, ours, theirs


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
