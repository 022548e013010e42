"""The sample table: one row per clip, the contract between adapters and extraction.

Columns (pyarrow):

- ``sample_id`` (string, unique across the table): the dataset's clip id, split-qualified
  where the release reuses ids across splits (MELD ``train/dia0_utt0``).
- ``split`` (string): ``train``, ``val`` or ``test``.
- ``media_path`` (string): absolute path of the media file.
- ``start_s`` / ``end_s`` (float64, null = whole file): the clip's interval in the file.
- ``transcript`` (string, null = none available).
- ``label`` (int64, -1 = unlabeled) for single-label datasets, or
  ``labels`` (list<float32>, one entry per label name) for multi-label datasets.
- ``targets`` (list<float32>, one entry per name of the manifest's ``targets``, each scaled to
  [-1, 1]; null = none) for datasets with continuous targets (valence, arousal).

An adapter returns a :class:`SampleTable`: the usable clips plus the typed failures it found
(``missing_file``, ``known_bad``), which extraction carries into ``failures.parquet``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.failures import FAILURE_SCHEMA, Failure, failures_table


class DatasetError(UserError, ValueError):
    """The raw dataset or its annotations cannot be read; the message names file, row, column."""

    def __init__(self, file: str | Path, message: str, *, row: int | None = None,
                 column: str | None = None) -> None:
        where = str(file)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
        self.file, self.row, self.column = str(file), row, column


BASE_FIELDS = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("media_path", pa.string(), nullable=False),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("transcript", pa.string()),
]


def sample_schema(multilabel: bool, targets: bool = False) -> pa.Schema:
    label = (pa.field("labels", pa.list_(pa.float32()), nullable=False) if multilabel
             else pa.field("label", pa.int64(), nullable=False))
    extra = [pa.field("targets", pa.list_(pa.float32()))] if targets else []
    return pa.schema([*BASE_FIELDS, label, *extra])


@dataclass(frozen=True)
class SampleTable:
    """What an adapter returns: usable clips and the clips it had to drop, with reasons."""

    dataset: str
    samples: pa.Table
    failures: pa.Table

    @property
    def multilabel(self) -> bool:
        return "labels" in self.samples.column_names

    def write(self, path: str | Path) -> None:
        """Write the sample table (and its failures beside it) as Parquet."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.samples, path)
        pq.write_table(self.failures, path.with_name(path.stem + ".failures.parquet"))


def build_table(dataset: str, rows: list[dict[str, Any]], failures: list[Failure], *,
                multilabel: bool, source: str | Path, targets: bool = False) -> SampleTable:
    """Validate rows and build the :class:`SampleTable` (with a ``targets`` column when
    ``targets``).

    Raises:
        DatasetError: duplicate ``sample_id`` values (named, with their count).
    """
    counts = Counter(row["sample_id"] for row in rows)
    dupes = sorted(sid for sid, n in counts.items() if n > 1)
    if dupes:
        raise DatasetError(source, f"duplicate sample_id(s) {dupes[:10]}", column="sample_id")
    samples = pa.Table.from_pylist(rows, schema=sample_schema(multilabel, targets))
    fails = failures_table(failures) if failures else FAILURE_SCHEMA.empty_table()
    return SampleTable(dataset, samples, fails)
