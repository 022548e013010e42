"""What the command line prints of the heads' results: metric tables, predictions, a study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
