"""What the command line prints of the heads' results: metric tables, predictions, a study,
the recorded runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from heads.runs import diff_runs, list_runs
from pipeline.commands.console import short

PAPER_METRICS = ("accuracy", "f1_weighted", "precision_weighted", "recall_weighted", "f1_macro")
REGRESSION_METRICS = ("ccc", "pcc", "rmse", "sagr")


def print_metrics(console: Console, result: dict[str, Any], title: str) -> None:
    """Val and test metrics (mean ± std over seeds) as the paper's tables report them (a
    regression's: CCC, PCC, RMSE and SAGR, the means over its targets)."""
    summary = result.get("summary", {})
    names = REGRESSION_METRICS if result.get("task") == "regression" else PAPER_METRICS
    table = Table("split", *names, title=title)
    for split in ("val", "test"):
        if split not in summary:
            continue
        cells = []
        for name in names:
            value = summary[split].get(name) or {}
            mean, std = value.get("mean"), value.get("std")
            cells.append("-" if mean is None else f"{mean:.4f}" + (
                f" ± {std:.4f}" if std is not None else ""))
        table.add_row(split, *cells)
    console.print(table)


def print_evaluation(console: Console, result: dict[str, Any], protocol: str) -> None:
    """An evaluation's metric table and where its files are."""
    print_metrics(console, result, f"{protocol} evaluation " + (
        "(means over the targets)" if result.get("task") == "regression"
        else "(weighted by class support)"))
    if "out" in result:
        console.print(f"metrics.json, confusion matrices and the embedding plot in "
                      f"[bold]{result['out']}[/]")


def print_prediction(console: Console, result: dict[str, Any], video: Path) -> None:
    """A prediction: class probabilities, most likely first (a regression: each target)."""
    if result["task"] == "regression":
        table = Table("target", "prediction", title=str(video))
        for name, value in result["predictions"].items():
            table.add_row(name, f"{value:+.4f}")
        console.print(table)
        return
    predicted = result["predicted"]
    chosen = set(predicted) if isinstance(predicted, list) else {predicted}
    table = Table("class", "probability", title=str(video))
    for name, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{p:.4f}", style="bold" if name in chosen else None)
    console.print(table)
    console.print(f"predicted: [bold]{escape(str(result['predicted']))}[/]")


def print_study(console: Console, folder: Path) -> None:
    """A finished study's results.md and the files beside it."""
    console.print((folder / "results.md").read_text(), markup=False, highlight=False)
    console.print(f"[bold green]study complete[/]: {folder / 'results.md'} (every table), "
                  f"{folder / 'results.csv'}; per dataset: {folder}/<dataset>/results.md, "
                  ".csv, .png" + (f"; regression: {folder / 'results_regression.csv'}"
                                  if (folder / "results_regression.csv").is_file() else ""))


def print_runs_list(console: Console, folder: Path) -> None:
    """``cli runs list``: one row per recorded run, evaluation and study under ``folder``."""
    rows = list_runs(folder)
    table = Table("folder", "kind", "name", "stores", "start", "wall-clock", "headline",
                  title=f"{len(rows)} recorded under {escape(str(folder))}")
    for r in rows:
        table.add_row(escape(str(r.folder.relative_to(folder))), r.kind, r.name,
                      escape(", ".join(r.stores)), r.start, f"{r.wall_clock_s:.1f} s",
                      r.headline + (" [red](random weights)[/]" if r.random_weights else ""))
    console.print(table)


def print_runs_diff(console: Console, a: Path, b: Path) -> None:
    """``cli runs diff``: the config, store, software, device and metric differences."""
    diff = diff_runs(a, b)
    table = Table("field", "A", "B", title=f"A = {diff.a}\nB = {diff.b}")
    for d in diff.differences:
        table.add_row(escape(d.path), escape(short(d.a)), escape(short(d.b)))
    if diff.differences:
        console.print(table)
    else:
        console.print("no differences in config, stores, software, device or metrics")
    if not diff.same_stores:
        console.print("[yellow]they read different stores[/]")
