"""The paper's reported numbers, read from data: what a reproduction is compared with.

``paper_results.yaml`` (installed beside this module) holds Table 2 and Tables 3-5 of the
ConCluGen paper (Halawa et al., CVPR 2024 workshops) with their source, one row per method, the
values per downstream dataset in the order of the table's metrics. :func:`paper_results` loads
it strictly (an unknown key, a wrong type or a row of the wrong length is an error naming it),
and :meth:`PaperResults.number` answers "what did the paper report for this row, dataset and
metric?" with ``None`` where it reported nothing (a dataset it did not use, a metric a table
leaves out).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from pipeline.config import ConfigError, from_dict

FILE = "paper_results.yaml"


@dataclass(frozen=True)
class PaperSource:
    """Where the numbers come from."""

    title: str
    authors: tuple[str, ...]
    venue: str
    year: int
    arxiv: str
    code: str
    tables: str
    pretrained_on: str
    units: str

    def citation(self) -> str:
        """``Halawa et al., "Title", Venue 2024 (arXiv 2404.10904)``."""
        who = f"{self.authors[0].split()[-1]} et al." if len(self.authors) > 1 else self.authors[0]
        return f'{who}, "{self.title}", {self.venue} {self.year} (arXiv {self.arxiv})'


@dataclass(frozen=True)
class PaperRow:
    """One row of a table: per store dataset name, the values in the table's metric order."""

    key: str
    label: str
    values: dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's tables (or a group of them with one layout)."""

    source: str
    caption: str
    metrics: tuple[str, ...]
    rows: tuple[PaperRow, ...]

    def row(self, key: str) -> PaperRow | None:
        return next((r for r in self.rows if r.key == key), None)


@dataclass(frozen=True)
class PaperResults:
    """The paper's tables and the store dataset names they report.

    Attributes:
        source: title, authors, venue, tables.
        datasets: store dataset name (``meld``) -> the paper's column (``MELD``).
        tables: ``baselines`` (Table 2) and ``objectives`` (Tables 3-5).
    """

    source: PaperSource
    datasets: dict[str, str]
    tables: dict[str, PaperTable]

    def __post_init__(self) -> None:
        problems = []
        for name, table in self.tables.items():
            keys = [r.key for r in table.rows]
            if len(set(keys)) != len(keys):
                problems.append(f"tables.{name}: duplicate row keys {keys}")
            for row in table.rows:
                for dataset, values in row.values.items():
                    where = f"tables.{name}.{row.key}.{dataset}"
                    if dataset not in self.datasets:
                        problems.append(f"{where}: not one of datasets {sorted(self.datasets)}")
                    if len(values) != len(table.metrics):
                        problems.append(f"{where}: {len(values)} values for the metrics "
                                        f"{list(table.metrics)}")
        if problems:
            raise ConfigError(f"{FILE}: " + "; ".join(problems))

    def column(self, dataset: str) -> str | None:
        """The paper's name for a store's dataset (None: the paper did not report it)."""
        return self.datasets.get(dataset)

    def cell(self, table: str, key: str, dataset: str, metric: str) -> float | str:
        """The paper's number as a table shows it: the value, ``n/a`` (dataset not reported)
        or ``-`` (not in its table)."""
        if self.column(dataset) is None:
            return "n/a"
        if table not in self.tables:
            return "-"
        value = self.number(table, key, dataset, metric)
        return "-" if value is None else value

    def number(self, table: str, key: str, dataset: str, metric: str) -> float | None:
        """The paper's value in percent, or None where it reported none.

        Args:
            table: ``baselines`` or ``objectives``.
            key: the row's key (``conclugen``, ``multi_cont_no_text``, ...).
            dataset: the store's dataset name (``meld``, ``caer``, ``mosei``).
            metric: ``accuracy``, ``f1_weighted``, ``precision_weighted``, ``recall_weighted``.
        """
        found = self.tables.get(table)
        if found is None:
            return None
        row = found.row(key)
        if row is None or dataset not in row.values or metric not in found.metrics:
            return None
        return row.values[dataset][found.metrics.index(metric)]


@functools.cache
def paper_results() -> PaperResults:
    """The shipped ``paper_results.yaml``, parsed and checked (read once)."""
    text = resources.files("heads.study").joinpath(FILE).read_text(encoding="utf-8")
    return parse_paper_results(yaml.safe_load(text), FILE)


def parse_paper_results(data: Any, where: str = FILE) -> PaperResults:
    """A mapping shaped like ``paper_results.yaml`` as :class:`PaperResults`.

    Raises:
        ConfigError: an unknown or missing key, a wrong type, a row of the wrong length.
    """
    return from_dict(PaperResults, data, where)
