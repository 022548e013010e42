"""``cli weights``: the backbones' published checkpoints listed and fetched."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from pipeline.backbones.download import weights_dir
from pipeline.backbones.registry import fetch_weights, weights_rows
from pipeline.commands.console import console


def print_weights_list() -> None:
    """Per backbone: the checkpoint's source, checksum, size, licence, and whether it is
    fetched (the weights folder: $CONCLUGEN_WEIGHTS_DIR or ~/.cache/conclugen/weights)."""
    console.print(f"weights folder: {escape(str(weights_dir()))}")
    for row in weights_rows():
        default = ", default" if row.default else ""
        console.print(f"\n[bold]{row.backbone}[/] ({row.key}{default}): {escape(row.weights)}",
                      soft_wrap=True)
        for label, value in (("source", row.source), ("url", row.url),
                             ("checksum", row.checksum), ("size", row.size),
                             ("licence", row.licence), ("fetched", row.cached),
                             ("note", row.note)):
            if value:
                console.print(f"  {label:<9} {escape(value)}", soft_wrap=True)


def run_weights_fetch(backbones: list[str] | None, *, to: Path | None, every: bool) -> None:
    """Download and verify checkpoints, one line each."""
    for identifier, path, fetched in fetch_weights(backbones, to=to, every=every):
        state = "fetched and verified" if fetched else "already there, verified"
        console.print(f"{identifier}: {state}: {escape(str(path))}", soft_wrap=True)
