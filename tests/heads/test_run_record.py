"""The run record (``run.json``): written atomically with every field, read strictly, and the
random-weights warning said once per command."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from heads.run_record import (FORMAT, RunRecordError, StoreRecord, one_warning,
                              read_run_record, start_clock, warn_random_weights,
                              write_run_record)

STORE = StoreRecord("train", "mem://s", "a" * 64, "meld", {"audio": {"weights": "random"}},
                    ("audio",))


def _write(folder: Path) -> None:
    write_run_record(folder, kind="pretrain", name="conclugen", config={"epochs": 3},
                     stores=[STORE], device="cpu", clock=start_clock(),
                     metrics={"loss": 1.5, "val/loss": None})


def test_a_record_holds_every_field_and_reads_back(tmp_path: Path) -> None:
    _write(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["format"] == FORMAT and list(data)[0] == "format"
    assert {"command", "config", "stores", "software", "git_commit", "host", "device", "start",
            "end", "wall_clock_s", "metrics", "evaluations"} <= set(data)
    assert "torch" in data["software"] and "git_commit" not in data["software"]
    assert not list(tmp_path.glob("*.tmp"))  # written through a renamed temporary file
    record = read_run_record(tmp_path)
    assert record.stores == (STORE,) and record.config == {"epochs": 3}
    assert record.random_weights == {"mem://s": ["audio"]}
    assert record.wall_clock_s >= 0 and record.start <= record.end


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="conclugen-run/9"), "format 'conclugen-run/9'"),
    (lambda d: d.update(extra=1), "unknown key(s) ['extra']"),
    (lambda d: d.pop("host"), "missing required key 'host'"),
    (lambda d: d.update(wall_clock_s="soon"), "wall_clock_s: expected float"),
])
def test_the_reader_is_strict(tmp_path: Path, change, message: str) -> None:
    _write(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    change(data)
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(RunRecordError, match=re.escape(message)):
        read_run_record(tmp_path)


def test_no_record_is_one_message(tmp_path: Path) -> None:
    with pytest.raises(RunRecordError, match="no run record"):
        read_run_record(tmp_path)


def test_random_weights_are_warned_once_per_store_within_a_command(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), one_warning():
        for _ in range(3):
            with one_warning():  # an inner command (a study's evaluation) shares the once
                warn_random_weights("mem://a", ["audio", "text"], command="eval")
        warn_random_weights("mem://b", ["text"], command="eval")
        warn_random_weights("mem://c", [], command="eval")
    lines = [r.getMessage() for r in caplog.records if "RANDOM WEIGHTS" in r.getMessage()]
    assert len(lines) == 2
    assert "audio, text of mem://a" in lines[0] and "text of mem://b" in lines[1]
