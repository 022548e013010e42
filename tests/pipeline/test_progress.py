"""Progress: periodic log lines without a terminal (rate, ETA, the extra fields), and per-clip
progress from the workers to the driver."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

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


def test_clips_move_with_the_workers_reports() -> None:
    """Running shards count what their workers reported; a finished shard counts its result;
    a shard run again after its worker died starts again from its new attempt's reports."""
    from pipeline.progress import ClipTally, failures_text

    tally = ClipTally(initial=10)
    tally.on_event((0.0, {"shard": 1, "attempt": "a", "done": 8, "reasons": {"no_face": 1}}))
    tally.on_event((0.0, {"shard": 2, "attempt": "b", "done": 8, "reasons": {}}))
    assert tally.counts() == (26, {"no_face": 1})
    tally.on_event((0.0, {"shard": 1, "attempt": "c", "done": 2, "reasons": {}}))  # rerun
    assert tally.counts() == (20, {})
    tally.shard_done(2, 12, {"corrupt_media": 2})
    tally.on_event((0.0, {"shard": 2, "attempt": "b", "done": 8, "reasons": {}}))  # late
    done, failed = tally.counts()
    assert (done, failed) == (24, {"corrupt_media": 2})
    assert failures_text(failed) == "2 (corrupt_media 2)"
    assert failures_text({"no_face": 1, "corrupt_media": 3}) == "4 (corrupt_media 3, no_face 1)"
    assert failures_text({}) == "0"


def test_a_worker_reports_its_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a Dask task, report_clips sends the shard's count as an event the driver's
    tally receives; outside a worker it does nothing."""
    from distributed import Client, LocalCluster

    from pipeline.progress import CLIPS_TOPIC, ClipTally, report_clips

    report_clips(0, "x", 1, {})  # not in a worker: no error, nothing sent
    tally = ClipTally()
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.subscribe_topic(CLIPS_TOPIC, tally.on_event)
        client.submit(report_clips, 3, "a", 5, {"no_face": 2}).result()
        deadline = time.monotonic() + 10
        while tally.counts()[0] != 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert tally.counts() == (5, {"no_face": 2})


def test_a_batch_log_gets_whole_lines_with_iso_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a terminal, the command line logs one unwrapped line per record, dated."""
    import io
    import re
    import sys

    from pipeline.commands.logs import log_handler

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    handler = log_handler()
    path = "/a/very/long/path/" + "x" * 150 + "/shard-00000.h5"
    handler.handle(logging.LogRecord("progress", logging.INFO, __file__, 1, "extract: %s",
                                     (path,), None))
    (line,) = stream.getvalue().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} INFO extract: ", line), line
    assert line.endswith(path)


class _Length:
    """A stand-in text encoder: each transcript's length, dim 1."""

    dim = 1

    def encode_batch(self, texts: list[str]) -> Any:
        import numpy as np

        return np.array([[len(t)] for t in texts], np.float32)


def test_extraction_reports_each_batch_of_clips(meld_sample: Path) -> None:
    """A shard's clips are reported batch by batch (what its worker sends the driver), the
    failed ones with their reasons."""
    from pipeline.datasets import scan
    from pipeline.extract import extract_clips
    from pipeline.extract_config import load_extract_config
    from pipeline.models import Models
    from pipeline.manifest import FacePolicy

    rows = scan("meld", meld_sample).samples.to_pylist()[:4]
    rows.insert(1, {**rows[0], "sample_id": "train/gone", "media_path": "/no/such.mp4"})
    cfg = load_extract_config(modalities=["text"], batch_clips=2)
    reports: list[tuple[int, list[str]]] = []
    kept, _, failures = extract_clips(
        rows, cfg, Models({"text": _Length()}, None), FacePolicy(),
        on_batch=lambda clips, failed: reports.append((clips, [f.reason for f in failed])))
    assert reports == [(2, ["missing_file"]), (2, []), (1, [])]
    assert len(kept) == 4 and [f.sample_id for f in failures] == ["train/gone"]
