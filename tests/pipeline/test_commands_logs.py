"""The command line's logging: Dask's and its web server's records go to a log file; the
console gets the first line of each distinct unexpected warning, once."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from pipeline.commands.logs import library_log, log_file_beside


@pytest.fixture
def console_log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The root logger at INFO with one handler writing to a string, as the CLI sets it up."""
    stream = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler(stream)])
    monkeypatch.setattr(root, "level", logging.INFO)
    return stream


def test_library_records_go_to_the_file_and_new_warnings_once_to_the_console(
        console_log: io.StringIO, tmp_path: Path) -> None:
    log_file = tmp_path / "store.extract.log"
    with library_log(log_file):
        logging.getLogger("bokeh.server.util").warning(
            "Host wildcard '*' will allow connections originating from multiple (or possibly "
            "all) hostnames or IPs. Use non-wildcard values to restrict access explicitly")
        nanny = logging.getLogger("distributed.nanny")
        nanny.warning("Worker process still alive after %.1f seconds, killing", 4.0)
        nanny.info("Worker process 123 was killed by signal 15")
        for _ in range(3):
            logging.getLogger("distributed.worker").warning("Compute failed\nline two\nthree")
        logging.getLogger("pipeline.run").info("our own record")
    console = console_log.getvalue().splitlines()
    assert console == ["Compute failed", "our own record"]
    written = log_file.read_text()
    for text in ("Host wildcard", "still alive after 4.0 seconds", "killed by signal 15",
                 "distributed.worker WARNING Compute failed"):
        assert text in written
    assert written.count("Compute failed") == 3 and "our own record" not in written


def test_the_loggers_are_restored_after_the_run(console_log: io.StringIO,
                                                tmp_path: Path) -> None:
    nanny = logging.getLogger("distributed.nanny")
    before = (nanny.level, nanny.propagate, list(nanny.handlers))
    with library_log(tmp_path / "a.log"):
        pass
    assert (nanny.level, nanny.propagate, list(nanny.handlers)) == before
    nanny.warning("after the run")
    assert not (tmp_path / "a.log").exists()


def test_verbose_keeps_everything_on_the_console(console_log: io.StringIO, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "level", logging.DEBUG)
    with library_log(tmp_path / "a.log"):
        logging.getLogger("distributed.nanny").warning("Worker process still alive after 4.0")
    assert "still alive" in console_log.getvalue() and not (tmp_path / "a.log").exists()


def test_the_log_file_is_beside_a_local_store_and_in_tmp_for_a_remote_one(
        tmp_path: Path) -> None:
    assert log_file_beside(str(tmp_path / "meld"), ".extract.log") == \
        tmp_path / "meld.extract.log"
    assert log_file_beside(f"file://{tmp_path}/meld", ".extract.log") == \
        tmp_path / "meld.extract.log"
    remote = log_file_beside("s3://bucket/meld", ".extract.log")
    assert remote.name.endswith(".extract.log") and "bucket" not in str(remote)


def test_no_record_no_file_and_a_missing_folder_is_made(console_log: io.StringIO,
                                                        tmp_path: Path) -> None:
    with library_log(tmp_path / "quiet.log"):
        pass
    assert not (tmp_path / "quiet.log").exists()
    nested = tmp_path / "new" / "folder" / "store.extract.log"
    with library_log(nested):
        logging.getLogger("distributed.scheduler").info("a record")
    assert "a record" in nested.read_text()


def test_a_terminal_gets_iso_dates_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    import sys

    from pipeline.commands.logs import log_handler

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    handler = log_handler()
    handler.handle(logging.LogRecord("progress", logging.INFO, __file__, 1, "extract: 1/2", (),
                                     None))
    shown = sys.stderr.getvalue()
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", shown) and "extract: " in shown, shown
