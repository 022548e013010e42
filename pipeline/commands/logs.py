"""The command line's logging: where records go, and Dask's narration kept out of it."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(verbose: bool) -> None:
    """INFO (DEBUG with ``verbose``) to stderr, through :func:`log_handler`."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(message)s", handlers=[log_handler()])


def log_handler() -> logging.Handler:
    """Rich's handler in a terminal (ISO dates, not its default ``12/06/26``); elsewhere (a
    batch job's log, CI) plain lines with an ISO date, never wrapped: a path or a progress
    line stays whole, for grep."""
    if sys.stderr.isatty():
        return RichHandler(console=Console(stderr=True), show_path=False,
                           log_time_format="%Y-%m-%dT%H:%M:%S")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    return handler


#: The libraries whose loggers narrate a Dask run in this process (the scheduler, the nannies
#: of local workers, the dashboard's web server).
LIBRARIES = ("distributed", "bokeh", "tornado")

#: Warnings that are expected in every run and ask nothing of the user: they go to the log
#: file only. The dashboard (on a random local port) accepts any host name; a worker that
#: takes longer than 4 s to exit at the end of a run (a process that imported torch) is
#: killed by its nanny after its results are in.
EXPECTED = ("Host wildcard '*' will allow connections",
            "Worker process still alive after")


class FirstLinesOnce(logging.Handler):
    """Forwards to ``target`` the first line of each distinct warning (or error) once, except
    the :data:`EXPECTED` ones."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(logging.WARNING)
        self.target = target
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        lines = record.getMessage().splitlines()
        first = lines[0] if lines else ""
        if first in self.seen or first.startswith(EXPECTED):
            return
        self.seen.add(first)
        self.target.handle(logging.makeLogRecord(
            {**record.__dict__, "msg": first, "args": None, "exc_info": None,
             "exc_text": None, "stack_info": None}))


class FileOnFirstRecord(logging.FileHandler):
    """A file handler that makes its file (and folder) only with the first record: a run
    refused before its cluster starts writes nothing."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:  # opened by the first emit (delay)
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        super().emit(record)


def log_file_beside(out: str, suffix: str) -> Path:
    """Where a run's library log goes: beside a local ``out`` (``stores/meld`` ->
    ``stores/meld.extract.log``; a store's folder holds only the store), else (a remote
    store) in the temporary folder."""
    if "://" in out and not out.startswith("file://"):
        return Path(tempfile.gettempdir()) / f"conclugen-{os.getpid()}{suffix}"
    path = Path(out.removeprefix("file://")).absolute()
    return path.with_name(path.name + suffix)


@contextlib.contextmanager
def library_log(path: Path) -> Iterator[None]:
    """While a Dask run lasts, the :data:`LIBRARIES`' log records (INFO and up) go to ``path``
    (appended, ISO-dated) and only the first line of each distinct unexpected warning to the
    console, once. With ``--verbose`` (the root logger at DEBUG) everything stays on the
    console, as it is."""
    import distributed  # noqa: F401 - importing it configures the loggers replaced here

    root = logging.getLogger()
    if root.level <= logging.DEBUG:
        yield
        return
    to_file = FileOnFirstRecord(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    forward = [FirstLinesOnce(handler) for handler in root.handlers]
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in LIBRARIES]
    loggers = [logging.getLogger(n) for n in sorted({*names, *LIBRARIES})]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    for lg in loggers:
        top = lg.name in LIBRARIES
        lg.handlers = [to_file, *forward] if top else []
        lg.setLevel(logging.INFO if top else logging.NOTSET)
        lg.propagate = not top
    try:
        yield
    finally:
        for lg, level, propagate, handlers in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
        to_file.close()
