"""The command line: ``cli <command> --help`` for each.

Thin by design: every command parses its options and calls one importable ``run_*`` function
(or the library function it names); all logic lives in :mod:`pipeline` and :mod:`heads`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Emotion-video feature stores and the ConCluGen head trainer.")
console = Console()

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d",
                                         help="meld | caer | mosei | voxceleb2")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                 help="Debug logging.")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


@app.command("datasets")
def datasets_cmd() -> None:
    """List the supported datasets and their labels."""
    from pipeline.datasets import DATASETS
    from pipeline.manifest import load_manifest

    table = Table("name", "dataset", "labels", "faces cropped")
    for name in DATASETS:
        m = load_manifest(name)
        labels = ", ".join(m.labels) + (" (multi-label)" if m.multilabel else "") or "unlabeled"
        table.add_row(name, m.title, labels, "yes" if m.faces.crop else "no")
    console.print(table)


@app.command("sample-data")
def sample_data_cmd(
    out: Annotated[Path, typer.Argument(help="New folder for the dataset's raw layout.")],
    dataset: DatasetOpt = "meld",
    clips: Annotated[int, typer.Option(help="Number of usable clips.")] = 48,
    seed: Annotated[int, typer.Option(help="Same seed, same dataset.")] = 0,
) -> None:
    """Generate the small deterministic sample dataset in a dataset's official raw layout."""
    from pipeline.sample_data import generate

    try:
        root = generate(dataset, out, clips=clips, seed=seed)
    except (ValueError, FileExistsError) as err:
        raise _fail(str(err)) from None
    console.print(f"wrote the {dataset} sample dataset to [bold]{root}[/]")


def run_scan(dataset: str, root: Path, *, annotations: Path | None = None,
             transcripts: Path | None = None, out: Path | None = None) -> None:
    """Read a raw dataset, print counts per split and label and the failures, write the table."""
    from pipeline.datasets import scan

    table = scan(dataset, root, annotations=annotations, transcripts=transcripts)
    _print_scan(table)
    if out is not None:
        table.write(out)
        console.print(f"sample table written to [bold]{out}[/] "
                      f"(failures beside it: {out.with_name(out.stem + '.failures.parquet').name})")


def _print_scan(table: object) -> None:
    from pipeline.datasets.table import SampleTable
    from pipeline.manifest import load_manifest

    assert isinstance(table, SampleTable)
    manifest = load_manifest(table.dataset)
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


@app.command("scan")
def scan_cmd(
    dataset: DatasetOpt,
    root: Annotated[Path, typer.Option(help="Dataset root in its official raw layout.")],
    annotations: Annotated[Path | None, typer.Option(
        help="Folder with the annotation files, if they are not under --root.")] = None,
    transcripts: Annotated[Path | None, typer.Option(
        help="Transcript sidecar CSV (sample_id,transcript) for datasets without text.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the sample table (Parquet).")] = None,
) -> None:
    """Read a raw dataset: counts per split and label, the failures, the sample table."""
    from pipeline.config import ConfigError
    from pipeline.datasets import DatasetError

    try:
        run_scan(dataset, root, annotations=annotations, transcripts=transcripts, out=out)
    except (DatasetError, ConfigError, ValueError) as err:
        raise _fail(str(err)) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
