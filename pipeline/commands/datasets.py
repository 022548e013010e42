"""``cli datasets``: the supported datasets, their labels and continuous targets."""

from __future__ import annotations

from rich.table import Table

from pipeline.commands.console import console
from pipeline.datasets import DATASETS
from pipeline.manifest import load_manifest


def print_datasets() -> None:
    """One row per dataset: its name, title, labels (or targets) and whether faces are cropped."""
    table = Table("name", "dataset", "labels", "faces cropped")
    for name in DATASETS:
        m = load_manifest(name)
        labels = ", ".join(m.labels) + (" (multi-label)" if m.multilabel else "")
        targets = ", ".join(m.targets) + " (continuous)" if m.targets else ""
        table.add_row(name, m.title, "; ".join(filter(None, (labels, targets))) or "unlabeled",
                      "yes" if m.faces.crop else "no")
    console.print(table)
