"""The study's tables: per downstream dataset, our numbers beside the paper's.

:func:`write_study` writes, for each dataset, Table 2 and Tables 3-5 as the paper lays them out
(its rows in its order, then this project's rows below a rule), each metric as ours, the
paper's and the difference, in Markdown (``results.md``), CSV (``results.csv``) and a chart
(``results.png``); and, at the top of the study folder, one ``results.md`` holding every
dataset's tables with links to their files and one ``results.csv`` with every row.

Cells: ours in percent (``mean +- std (n=N)`` over N pretraining x probe seeds when N > 1);
the paper's as printed; ``n/a``
where the paper reports nothing for the dataset; ``-`` where its table has no such column (Table
2 reports accuracy only); ``skipped`` where a row could not run (the Notes column says why).

Below them, the other systems' rows (none has numbers in the paper, so none has a paper column):
CLEF's in a table of the same metrics (and in ``results.csv`` and the chart), AVCE's regression
in its own table, CCC, PCC, RMSE and SAGR (as fractions, not percent) averaged over the targets
and per target, also written to ``results_regression.csv``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heads.study.chart import chart
from heads.study.details import detail_lines
from heads.study.paper import PaperResults, paper_results
from heads.study.presets import preset_lines
from heads.study.types import GROUPS, SHOWN, StudySettings, TableRow, Target
from pipeline.presets import Preset

log = logging.getLogger(__name__)

#: Further metrics in the CSV files only.
CSV_ONLY = ("f1_macro", "weighted_accuracy", "subset_accuracy")
RULE = "not in the paper"
#: The regression table's metrics (AVCE): key -> header; each also per target.
REGRESSION = {"ccc": "CCC", "pcc": "PCC", "rmse": "RMSE", "sagr": "SAGR"}
OTHER_SYSTEMS = ("Other systems on the same features: CLEF (Zhang et al., \"Weakly Supervised "
                 "Text-driven Contrastive Learning for Facial Behavior Understanding\", ICCV "
                 "2023) and AVCE (Kim & Song, \"Emotion-aware Multi-view Contrastive Learning "
                 "for Facial Emotion Recognition\", ECCV 2022). The ConCluGen paper reports no "
                 "numbers for them: ours only, no paper column.")


def write_study(out: Path, targets: Sequence[Target],
                results: Mapping[str, Mapping[str, Sequence[TableRow]]], *, quick: bool,
                seeds: int, epochs: int, pretrain_seeds: int = 1,
                preset: Preset = Preset()) -> None:
    """Write every dataset's files and the study's ``results.md`` and ``results.csv`` (and
    ``results_regression.csv`` when AVCE ran).

    Args:
        out: the study folder.
        targets: the downstream datasets, in the order given.
        results: target name -> group (:data:`GROUPS`, and ``regression``) -> its rows.
        quick: the study ran with the cpu presets (said in every caption).
        seeds: seeds per evaluation.
        epochs: pretraining epochs of a quick study.
        pretrain_seeds: pretraining runs per objective (the rows pool them).
        preset: the study's ``--preset`` (named in every caption, with what the stores' and
            views differ from it).
    """
    paper = paper_results()
    how = StudySettings(quick=quick, seeds=seeds, epochs=epochs, pretrain_seeds=pretrain_seeds,
                        preset=preset)
    index = ["# ConCluGen study", "", *_overview(targets, paper), ""]
    every: list[dict[str, Any]] = []
    every_regression: list[dict[str, Any]] = []
    for target in targets:
        groups = results[target.name]
        target.folder.mkdir(parents=True, exist_ok=True)
        files = _write_dataset(target, groups, paper, how)
        every += files.rows
        every_regression += files.regression
        links = ", ".join(f"[{target.name}/{name}]({target.name}/{name})"
                          for name in files.names)
        index += [f"## {target.name}", "", f"Files: {links}", "",
                  *dataset_tables(target, groups, paper, level=3, how=how, links_from=out), ""]
    (out / "results.md").write_text("\n".join(index).rstrip() + "\n", encoding="utf-8")
    write_csv(out / "results.csv", every)
    if every_regression:
        write_csv(out / REGRESSION_CSV, every_regression)


@dataclass(frozen=True)
class DatasetFiles:
    """What :func:`_write_dataset` wrote: the file names and the CSV rows."""

    names: tuple[str, ...]
    rows: list[dict[str, Any]]
    regression: list[dict[str, Any]]


def _write_dataset(target: Target, groups: Mapping[str, Sequence[TableRow]],
                   paper: PaperResults, how: StudySettings) -> DatasetFiles:
    """One dataset's ``results.md``, ``results.csv``, ``results.png`` (when it has
    classification rows) and ``results_regression.csv`` (when it has regression rows)."""
    rows = [r for group in GROUPS
            for r in _csv_rows(target, group, groups.get(group, ()), paper)]
    write_csv(target.folder / "results.csv", rows)
    names = ["results.md", "results.csv"]
    drawn = chart(target, groups, paper, how)
    if drawn:
        names.append("results.png")
    regression = regression_csv_rows(target, groups.get("regression", ()))
    if regression:
        write_csv(target.folder / REGRESSION_CSV, regression)
        names.append(REGRESSION_CSV)
    lines = [f"# ConCluGen study: {target.name}", "",
             *dataset_tables(target, groups, paper, level=2, how=how,
                             links_from=target.folder)]
    if drawn:
        lines += ["", "![ours (bars) and the paper's (ticks)](results.png)"]
    (target.folder / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return DatasetFiles(tuple(names), rows, regression)


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
            "data of this project (`heads/study/paper_results.yaml`)."]


def _caption(target: Target, paper: PaperResults, how: StudySettings) -> list[str]:
    s, pre = target.store, target.pretrain
    if target.own:
        trained = ("Heads pretrained on the downstream store itself, not on VoxCeleb2 as in "
                   "the paper: not the paper's protocol.")
    else:
        times = "once" if how.pretrain_seeds == 1 else f"{how.pretrain_seeds} times (seeds)"
        trained = (f"Heads pretrained {times} per objective on `{pre.url}` (dataset "
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
    runs = how.seeds * how.pretrain_seeds
    pooled = (f"mean over {how.pretrain_seeds} pretraining x {how.seeds} probe seed(s) of each "
              "row's runs" if how.pretrain_seeds > 1 else f"mean over {how.seeds} seed(s)")
    plus = " +- sample std (n=classifiers)" if runs > 1 else ""
    tested = s.labelled if s.classes_reason is None else s.with_targets
    lines = [trained, "",
             f"Test split: {tested.get('test', 0)} clips. Metrics in percent, weighted by "
             f"class support as in the paper; ours: {pooled}{plus}; "
             "Δ = ours - paper, in points. " + source]
    random = sorted(set(s.random_weights) | set(pre.random_weights))
    if random:
        lines += ["", f"Random backbone weights ({', '.join(random)}): the numbers show that "
                      "the pipeline runs, not what the methods achieve."]
    lines += ["", *preset_lines(how.preset, target)]
    if how.quick:
        lines += ["", f"Quick: the cpu presets and {how.epochs} pretraining epochs; the numbers "
                      "show that the pipeline runs, not what the methods achieve."]
    return lines


def dataset_tables(target: Target, groups: Mapping[str, Sequence[TableRow]],
                   paper: PaperResults, *, level: int, how: StudySettings,
                   links_from: Path) -> list[str]:
    """One dataset's caption and tables (Table 2, Tables 3-5, the other systems' tables, the
    per-row details with links relative to ``links_from``), headings at ``level``; a group
    without rows (a system not run) has no table."""
    h, dataset = "#" * level, target.store.dataset
    two, objectives = paper.tables["baselines"], paper.tables["objectives"]
    lines = _caption(target, paper, how)
    if groups.get("baselines"):
        lines += ["", f"{h} {two.source}: {two.caption}", "",
                  *table_lines(groups["baselines"], "baselines", dataset, paper)]
    if groups.get("objectives"):
        lines += ["", f"{h} {objectives.source}: {objectives.caption}", "",
                  *table_lines(groups["objectives"], "objectives", dataset, paper,
                               extras=groups.get("extras", ()))]
    if groups.get("systems") or groups.get("regression"):
        lines += ["", OTHER_SYSTEMS]
    if groups.get("systems"):
        lines += ["", f"{h} Other systems: CLEF's text prototypes (test split)", "",
                  *system_lines(groups["systems"])]
    if groups.get("regression"):
        lines += ["", f"{h} Other systems: valence/arousal regression (test split)", "",
                  *regression_lines(groups["regression"], target.store.targets)]
    lines += detail_lines([r for g in GROUPS for r in groups.get(g, ())], links_from,
                          level=level)
    return [*lines, "",
            "n/a: the paper reports nothing for this dataset; -: not in the paper's table; "
            "skipped: the row could not run (see Notes)."]


def system_lines(rows: Sequence[TableRow]) -> list[str]:
    """The other systems' classifiers: Method, the paper's metrics (ours only), Notes."""
    return _ours_only(rows, SHOWN, lambda row, key: _percent(*row.ours(key)))


def regression_lines(rows: Sequence[TableRow], targets: Sequence[str]) -> list[str]:
    """The regression table: Method, CCC, PCC, RMSE, SAGR (means over the targets), then
    each per target, Notes."""
    return _ours_only(rows, regression_keys(targets), lambda row, key: _fraction(*row.raw(key)))


def _ours_only(rows: Sequence[TableRow], columns: Mapping[str, str],
               cell: Callable[[TableRow, str], str]) -> list[str]:
    """A Markdown table without the paper's columns: Method, ``columns``, Notes."""
    lines = ["| " + " | ".join(["Method", *columns.values(), "Notes"]) + " |",
             "|---|" + "---:|" * len(columns) + "---|"]
    for row in rows:
        cells = ["skipped" if row.metrics is None else cell(row, key) for key in columns]
        lines.append("| " + " | ".join([row.label, *cells, _notes(row)]) + " |")
    return lines


def regression_keys(targets: Sequence[str]) -> dict[str, str]:
    """Metric key -> header: the means over the targets, then per target
    (``ccc_valence`` -> ``valence CCC``)."""
    return {**REGRESSION, **{f"{k}_{t}": f"{t} {h}" for t in targets
                             for k, h in REGRESSION.items()}}


def _notes(row: TableRow) -> str:
    return f"skipped: {row.reason}" if row.reason else ""


def _fraction(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f}" + (f" +- {std:.4f}" if std is not None else "")


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
        theirs = paper.cell(table, row.key, dataset, metric)
        cells += ["skipped" if row.metrics is None else _percent(mean, std, row.runs),
                  theirs if isinstance(theirs, str) else str(theirs),  # as printed
                  f"{mean - theirs:+.2f}" if mean is not None and not isinstance(theirs, str)
                  else ""]
    notes = f"skipped: {row.reason}" if row.reason else ""
    if row.metrics is not None and table == "extras":
        notes = "this project's row"
    return "| " + " | ".join(cells) + f" | {notes} |"


def _percent(mean: float | None, std: float | None, runs: int = 1) -> str:
    if mean is None:
        return "n/a"
    return (f"{mean:.2f}" + (f" +- {std:.2f}" if std is not None else "")
            + (f" (n={runs})" if runs > 1 else ""))


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
            "seeds": len(m.get("seeds", [])) or "",
            "pretrain_seeds": len(row.pooled) or "", "classifiers": row.runs or "",
            "wall_clock_s": _num(row.seconds)}
        for metric in (*SHOWN, *CSV_ONLY):
            mean, std = row.ours(metric)
            line[metric], line[f"{metric}_std"] = _num(mean), _num(std)
            if metric in SHOWN:
                theirs = paper.cell(group, row.key, target.store.dataset, metric)
                known = isinstance(theirs, float)
                line[f"paper_{metric}"] = theirs if known else ""
                line[f"delta_{metric}"] = (_num(mean - theirs) if isinstance(theirs, float)
                                           and mean is not None else "")
        line["eval"] = ";".join(e.get("out", "") for e in row.pooled)
        line["run"] = ";".join(e.get("run") or "" for e in row.pooled)
        out.append(line)
    return out


def _num(value: float | None) -> str | float:
    return "" if value is None else round(value, 4)


REGRESSION_CSV = "results_regression.csv"


def regression_csv_rows(target: Target, rows: Sequence[TableRow]) -> list[dict[str, Any]]:
    """The regression rows with each evaluation's identity; metrics as fractions, per target
    under ``<metric>_<target>``."""
    out = []
    for row in rows:
        m = row.metrics or {}
        line: dict[str, Any] = {
            "dataset": target.name, "key": row.key, "method": row.label,
            "status": "skipped" if row.metrics is None else "ok", "reason": row.reason or "",
            "protocol": m.get("protocol", ""), "modalities": "+".join(m.get("modalities", [])),
            "targets": "+".join(target.store.targets), "store_id": m.get("store_id", ""),
            "test_clips": (m.get("counts") or {}).get("test", ""),
            "seeds": len(m.get("seeds", [])) or ""}
        for key in regression_keys(target.store.targets):
            mean, std = row.raw(key)
            line[key], line[f"{key}_std"] = _num(mean), _num(std)
        line["eval"] = m.get("out", "")
        out.append(line)
    return out


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """The rows with a header (every column any row has, in order of appearance; empty
    where a row has none)."""
    fields = list(dict.fromkeys(k for r in rows for k in r)) if rows else ["dataset", "method"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
