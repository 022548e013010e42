"""The study's tables: per downstream dataset, our numbers beside the paper's.

:func:`write_study` writes, for each dataset, Table 2 and Tables 3-5 as the paper lays them out
(its rows in its order, then this project's rows below a rule), each metric as ours, the
paper's and the difference, in Markdown (``results.md``), CSV (``results.csv``) and a chart
(``results.png``); and, at the top of the study folder, one ``results.md`` holding every
dataset's tables with links to their files and one ``results.csv`` with every row.

Cells: ours in percent (``mean +- std`` with several seeds); the paper's as printed; ``n/a``
where the paper reports nothing for the dataset; ``-`` where its table has no such column (Table
2 reports accuracy only); ``skipped`` where a row could not run (the Notes column says why).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heads.reporting.paper import PaperResults, paper_results

if TYPE_CHECKING:
    from heads.reporting.study import Target

log = logging.getLogger(__name__)

#: The paper's columns: metric key -> header (test split, weighted by class support).
SHOWN = {"accuracy": "Acc", "f1_weighted": "F1", "precision_weighted": "Prec",
         "recall_weighted": "Rec"}
#: Further metrics in the CSV files only.
CSV_ONLY = ("f1_macro", "weighted_accuracy", "subset_accuracy")
#: The groups of rows of one dataset, in order: which of the paper's tables each comes from.
GROUPS = {"baselines": "Table 2", "objectives": "Tables 3-5", "extras": "not in the paper"}
RULE = "not in the paper"


@dataclass(frozen=True)
class TableRow:
    """One row: its evaluation's ``metrics.json`` content, or why it was skipped."""

    key: str
    label: str
    metrics: Mapping[str, Any] | None
    reason: str | None = None

    def ours(self, metric: str) -> tuple[float | None, float | None]:
        """Test mean and std in percent (None: skipped, not computed or undefined)."""
        test = (self.metrics or {}).get("summary", {}).get("test") or {}
        found = test.get(metric)
        if found is None or found["mean"] is None or math.isnan(found["mean"]):
            return None, None
        std = found.get("std")
        return 100 * found["mean"], None if std is None else 100 * std


def write_study(out: Path, targets: Sequence[Target],
                results: Mapping[str, Mapping[str, Sequence[TableRow]]], *, quick: bool,
                seeds: int, epochs: int) -> None:
    """Write every dataset's files and the study's ``results.md`` and ``results.csv``.

    Args:
        out: the study folder.
        targets: the downstream datasets, in the order given.
        results: target name -> group (:data:`GROUPS`) -> its rows.
        quick: the study ran with the cpu presets (said in every caption).
        seeds: seeds per evaluation.
        epochs: pretraining epochs of a quick study.
    """
    from heads.reporting.plots import plot_study

    paper = paper_results()
    index = ["# ConCluGen study", "", *_overview(targets, paper), ""]
    every = []
    for target in targets:
        groups = results[target.name]
        target.folder.mkdir(parents=True, exist_ok=True)
        lines = [f"# ConCluGen study: {target.name}", "",
                 *dataset_tables(target, groups, paper, level=2, quick=quick, seeds=seeds,
                                 epochs=epochs), "",
                 "![ours (bars) and the paper's (ticks)](results.png)"]
        (target.folder / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        rows = [r for group in GROUPS for r in _csv_rows(target, group, groups[group], paper)]
        write_csv(target.folder / "results.csv", rows)
        every += rows
        labels, ours, theirs = _chart_data(target, groups, paper)
        starts = [len(groups["baselines"]), len(groups["baselines"]) + len(groups["objectives"])]
        plot_study(ours, labels, SHOWN, target.folder / "results.png",
                   paper=theirs if any(not math.isnan(v) for p in theirs for v in p.values())
                   else None, groups=[k for k in starts if 0 < k < len(labels)],
                   title=f"{target.name}: test, ours (bars) and the paper's (ticks)")
        link = f"{target.name}/results"
        index += [f"## {target.name}", "",
                  f"Files: [{link}.md]({link}.md), [{link}.csv]({link}.csv), "
                  f"[{link}.png]({link}.png)", "",
                  *dataset_tables(target, groups, paper, level=3, quick=quick, seeds=seeds,
                                  epochs=epochs), ""]
    (out / "results.md").write_text("\n".join(index).rstrip() + "\n", encoding="utf-8")
    write_csv(out / "results.csv", every)


def _overview(targets: Sequence[Target], paper: PaperResults) -> list[str]:
    first = targets[0]
    if first.own:
        how = ("Each downstream store pretrains its own heads: pretrained on the downstream "
               "store itself, not on VoxCeleb2 as in the paper.")
    else:
        how = (f"Every objective pretrained once on `{first.pretrain.url}` (dataset "
               f"`{first.pretrain.dataset}`) and evaluated on every downstream store below, "
               "the paper's protocol.")
    stores = ", ".join(f"{t.name} (`{t.store.url}`)" for t in targets)
    return [how, "", f"Downstream stores: {stores}.", "",
            f"The paper: {paper.source.citation()}; {paper.source.tables}. Its numbers are "
            "data of this project (`heads/reporting/paper_results.yaml`)."]


def _caption(target: Target, paper: PaperResults, *, quick: bool, seeds: int,
             epochs: int) -> list[str]:
    s, pre = target.store, target.pretrain
    if target.own:
        trained = ("Heads pretrained on the downstream store itself, not on VoxCeleb2 as in "
                   "the paper: not the paper's protocol.")
    else:
        trained = (f"Heads pretrained once per objective on `{pre.url}` (dataset "
                   f"`{pre.dataset}`, store_id `{pre.store_id[:12]}`, "
                   f"{pre.rows.get('train', 0)} train clips), evaluated on "
                   f"`{s.url}` (store_id `{s.store_id[:12]}`), a store in the same feature "
                   "space.")
        if pre.dataset != paper.source.pretrained_on:
            trained += (f" The paper pretrained on {paper.source.pretrained_on}, this study "
                        f"on `{pre.dataset}`.")
    column = paper.column(s.dataset)
    source = (f"Paper: the {column} column of {paper.source.citation()}." if column else
              f"Paper: n/a, it reports no results on dataset `{s.dataset}` (only on "
              f"{', '.join(paper.datasets)}).")
    plus = " +- std" if seeds > 1 else ""
    lines = [trained, "",
             f"Test split: {s.labelled.get('test', 0)} clips. Metrics in percent, weighted by "
             f"class support as in the paper; ours: mean over {seeds} seed(s){plus}; "
             "Δ = ours - paper, in points. " + source]
    random = sorted(set(s.random_weights) | set(pre.random_weights))
    if random:
        lines += ["", f"Random backbone weights ({', '.join(random)}): the numbers show that "
                      "the pipeline runs, not what the methods achieve."]
    if quick:
        lines += ["", f"Quick: the cpu presets and {epochs} pretraining epochs; the numbers "
                      "show that the pipeline runs, not what the methods achieve."]
    return lines


def dataset_tables(target: Target, groups: Mapping[str, Sequence[TableRow]],
                   paper: PaperResults, *, level: int, quick: bool, seeds: int,
                   epochs: int) -> list[str]:
    """One dataset's caption and tables (Table 2, Tables 3-5), headings at ``level``."""
    h, dataset = "#" * level, target.store.dataset
    two, objectives = paper.tables["baselines"], paper.tables["objectives"]
    return [*_caption(target, paper, quick=quick, seeds=seeds, epochs=epochs), "",
            f"{h} {two.source}: {two.caption}", "",
            *table_lines(groups["baselines"], "baselines", dataset, paper), "",
            f"{h} {objectives.source}: {objectives.caption}", "",
            *table_lines(groups["objectives"], "objectives", dataset, paper,
                         extras=groups.get("extras", ())), "",
            "n/a: the paper reports nothing for this dataset; -: not in the paper's table; "
            "skipped: the row could not run (see Notes)."]


def table_lines(rows: Sequence[TableRow], table: str, dataset: str, paper: PaperResults, *,
                extras: Sequence[TableRow] = ()) -> list[str]:
    """A Markdown table: Method, per metric ours | paper | Δ, Notes; ``extras`` below a
    rule row."""
    header = ["Method", *[c for label in SHOWN.values() for c in (label, "paper", "Δ")],
              "Notes"]
    lines = ["| " + " | ".join(header) + " |",
             "|---|" + "---:|" * (len(header) - 2) + "---|"]
    lines += [_line(r, table, dataset, paper) for r in rows]
    if extras:
        lines.append(f"| **{RULE}** |" + " |" * (len(header) - 1))
        lines += [_line(r, "extras", dataset, paper) for r in extras]
    return lines


def _line(row: TableRow, table: str, dataset: str, paper: PaperResults) -> str:
    cells = [row.label]
    for metric in SHOWN:
        mean, std = row.ours(metric)
        theirs = _paper(paper, table, row.key, dataset, metric)
        cells += ["skipped" if row.metrics is None else _percent(mean, std),
                  theirs if isinstance(theirs, str) else str(theirs),  # as printed
                  f"{mean - theirs:+.2f}" if mean is not None and not isinstance(theirs, str)
                  else ""]
    notes = f"skipped: {row.reason}" if row.reason else ""
    if row.metrics is not None and table == "extras":
        notes = "this project's row"
    return "| " + " | ".join(cells) + f" | {notes} |"


def _paper(paper: PaperResults, table: str, key: str, dataset: str,
           metric: str) -> float | str:
    """The paper's number, ``n/a`` (dataset not reported) or ``-`` (not in its table)."""
    if paper.column(dataset) is None:
        return "n/a"
    if table not in paper.tables:
        return "-"
    value = paper.number(table, key, dataset, metric)
    return "-" if value is None else value


def _percent(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.2f}" + (f" +- {std:.2f}" if std is not None else "")


def _csv_rows(target: Target, group: str, rows: Sequence[TableRow],
              paper: PaperResults) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        m = row.metrics or {}
        pretrained = m.get("pretrained_on") or {}
        line: dict[str, Any] = {
            "dataset": target.name, "table": GROUPS[group], "key": row.key,
            "method": row.label, "status": "skipped" if row.metrics is None else "ok",
            "reason": row.reason or "", "objective": m.get("objective", ""),
            "protocol": m.get("protocol", ""), "modalities": "+".join(m.get("modalities", [])),
            "pretrained_on": pretrained.get("dataset", ""),
            "pretrain_store_id": pretrained.get("store_id", ""),
            "store_id": m.get("store_id", ""),
            "test_clips": (m.get("counts") or {}).get("test", ""),
            "seeds": len(m.get("seeds", [])) or ""}
        for metric in (*SHOWN, *CSV_ONLY):
            mean, std = row.ours(metric)
            line[metric], line[f"{metric}_std"] = _num(mean), _num(std)
            if metric in SHOWN:
                theirs = _paper(paper, group, row.key, target.store.dataset, metric)
                known = isinstance(theirs, float)
                line[f"paper_{metric}"] = theirs if known else ""
                line[f"delta_{metric}"] = (_num(mean - theirs) if isinstance(theirs, float)
                                           and mean is not None else "")
        line["eval"], line["run"] = m.get("out", ""), m.get("run") or ""
        out.append(line)
    return out


def _num(value: float | None) -> str | float:
    return "" if value is None else round(value, 4)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """The rows with a header; numbers in percent."""
    fields = list(rows[0]) if rows else ["dataset", "method"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _chart_data(target: Target, groups: Mapping[str, Sequence[TableRow]],
                paper: PaperResults) -> tuple[list[str], list[dict[str, float]],
                                              list[dict[str, float]]]:
    labels, ours, theirs = [], [], []
    for group in GROUPS:
        for row in groups.get(group, ()):
            labels.append(row.label + (" (skipped)" if row.metrics is None else ""))
            ours.append({k: _or_nan(row.ours(k)[0]) for k in SHOWN})
            found = {k: _paper(paper, group, row.key, target.store.dataset, k) for k in SHOWN}
            theirs.append({k: math.nan if isinstance(v, str) else v for k, v in found.items()})
    return labels, ours, theirs


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
