"""Progress without a terminal: periodic log lines with rate, ETA and the extra fields."""

from __future__ import annotations

import logging

import pytest

from pipeline.progress import Progress


def test_log_lines_say_how_far_the_work_got(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="progress")
    with Progress("extract", 200, "clips", terminal=False, interval_s=0.0, initial=50,
                  failed=0) as bar:
        bar.update(100, failed=3)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, "one line per update past the interval, one at the end"
    assert lines[0].startswith("extract: 100/200 clips (50.0 %), ")
    assert "clips/s" in lines[0] and "ETA " in lines[0] and lines[0].endswith("failed 3")
    assert "ETA ?" not in lines[0], "50 clips done in this run give a rate"


def test_no_line_before_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="progress")
    bar = Progress("pretrain", 10, "steps", terminal=False, interval_s=3600.0, loss=float("nan"))
    for _ in range(10):
        bar.update(advance=1, loss=0.5)
    assert not caplog.records
    bar.close()
    (record,) = caplog.records
    assert record.getMessage().startswith("pretrain: 10/10 steps (100.0 %)")
    assert record.getMessage().endswith("loss 0.5000")
