"""The console the commands print to (standard output), and a value shortened for a cell."""

from __future__ import annotations

from rich.console import Console

console = Console()


def short(value: object, width: int = 60) -> str:
    """``value`` as text, cut to ``width`` characters with an ellipsis."""
    text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"
