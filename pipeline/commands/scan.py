"""``cli scan``: read a raw dataset, print its counts and failures, write its table."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pipeline.commands.console import console
from pipeline.commands.options import OptionError
from pipeline.datasets import dataset_source, scan
from pipeline.datasets.table import SampleTable
from pipeline.datasets.video_list import write_list
from pipeline.manifest import DatasetManifest


def run_scan(dataset: str, root: Path | None, *, annotations: Path | None = None,
             transcripts: Path | None = None, out: Path | None = None,
             list_file: Path | None = None) -> None:
    """Read a raw dataset, print counts per split and label and the failures, write the table
    (``out``: a videos list ``.csv`` that ``extract --dataset videos --list`` takes back, or
    the sample table as ``.parquet``)."""
    if out is not None and out.suffix not in (".csv", ".parquet"):
        raise OptionError(f"--out {out}: .csv (a videos list) or .parquet (the sample table)")
    root, manifest = dataset_source(dataset, root, list_file=list_file, transcripts=transcripts,
                                    annotations=annotations)
    table = scan(dataset, root, manifest=manifest, annotations=annotations,
                 transcripts=transcripts)
    print_scan(table, manifest)
    if out is not None and out.suffix == ".csv":
        rows = write_list(table, manifest.labels, root.resolve(), out)
        console.print(f"videos list of {rows} clips written to [bold]{out}[/]; extract it with "
                      f"`cli extract --dataset videos --list {out} --root {root.resolve()}`")
    elif out is not None:
        table.write(out)
        console.print(f"sample table written to [bold]{out}[/] "
                      f"(failures beside it: {out.with_name(out.stem + '.failures.parquet').name})")


def print_scan(table: SampleTable, manifest: DatasetManifest) -> None:
    """Clips per split and label, then one row per failure."""
    samples = table.samples.to_pandas()
    counts = Table(title=f"{table.dataset}: {len(samples)} clips", show_lines=False)
    counts.add_column("split")
    names = list(manifest.labels) if manifest.labels else ["unlabeled"]
    for name in names:
        counts.add_column(name, justify="right")
    counts.add_column("total", justify="right")
    for split, group in samples.groupby("split", sort=False):
        if table.multilabel:
            per = [int(sum(v[i] > 0 for v in group["labels"])) for i in range(len(names))]
        elif manifest.labels:
            per = [int((group["label"] == i).sum()) for i in range(len(names))]
        else:
            per = [len(group)]
        counts.add_row(str(split), *map(str, per), str(len(group)))
    console.print(counts)
    failures = table.failures.to_pandas()
    if len(failures):
        fails = Table("split", "sample_id", "reason", "message", title=f"{len(failures)} failures")
        for row in failures.itertuples():
            fails.add_row(row.split, row.sample_id, row.reason, row.message)
        console.print(fails)
