"""The command line's logging: where records go, and Dask's narration kept out of it."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(verbose: bool) -> None:
    """INFO (DEBUG with ``verbose``) to stderr, through :func:`log_handler`."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(message)s", handlers=[log_handler()])


def log_handler() -> logging.Handler:
    """Rich's handler in a terminal; elsewhere (a batch job's log, CI) plain lines with an ISO
    date, never wrapped: a path or a progress line stays whole, for grep."""
    if sys.stderr.isatty():
        return RichHandler(console=Console(stderr=True), show_path=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    return handler


def quiet_dask() -> None:
    """Dask's scheduler runs in this process and narrates every worker start and stop; its
    logging config sets levels on the sub-loggers, so each one is lowered, after the import
    (not with ``--verbose``: the root logger then logs DEBUG)."""
    import distributed  # noqa: F401 - importing it installs the loggers to quiet

    if logging.getLogger().level <= logging.DEBUG:
        return
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
