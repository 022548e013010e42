"""Run folders as safe as stores: claimed (never a store, never another's files), locked,
records written atomically and read tolerantly."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from heads.outputs import (OutputError, claim_output, disk_errors, output_state, read_jsonl,
                           remove_temporaries, write_json_atomic)
from pipeline.store import LockedError, write_arrays


def test_new_empty_and_own_folders(tmp_path: Path) -> None:
    assert output_state(tmp_path / "missing", "pretrain") == "new"
    (tmp_path / "empty").mkdir()
    assert output_state(tmp_path / "empty", "eval") == "new"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("a: 1\n")
    assert output_state(run, "pretrain") == "own"
    with pytest.raises(OutputError, match="holds no eval output"):
        output_state(run, "eval")


def test_a_store_or_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    write_arrays(tmp_path / "store", dataset="toy", sample_ids=["a"], splits=["train"],
                 features={"text": np.ones((1, 1, 2), np.float32)}, labels=np.zeros(1, int),
                 label_names=["x"])
    for kind in ("pretrain", "eval", "study"):
        with pytest.raises(OutputError, match="is a feature store"):
            output_state(tmp_path / "store", kind)  # type: ignore[arg-type]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(OutputError, match=r"holds no study output \(notes.txt\)"):
        output_state(mine, "study")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        output_state(tmp_path / "file", "pretrain")


def test_a_second_run_into_a_claimed_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with claim_output(out, "pretrain") as state:
        assert state == "new"
        (out / "config.yaml").write_text("a: 1\n")
        with pytest.raises(LockedError, match="is being trained into by another run"):
            with claim_output(out, "pretrain"):
                pass
    with claim_output(out, "pretrain") as state:  # released: the next run continues it
        assert state == "own"
    assert not list(out.glob("pretrain.lock.*"))


def test_a_refusal_inside_the_claim_leaves_no_folder_it_created(tmp_path: Path) -> None:
    new, kept = tmp_path / "runs" / "new", tmp_path / "existing"
    kept.mkdir()
    for out in (new, kept):
        with pytest.raises(ValueError, match="bad --set"):
            with claim_output(out, "pretrain"):
                raise ValueError("bad --set")
    assert not new.exists()  # created by the claim and still empty: removed
    assert kept.is_dir()  # the user's own (empty) folder stays
    with pytest.raises(ValueError, match="late"):
        with claim_output(new, "pretrain"):
            (new / "config.yaml").write_text("objective: conclugen\n")
            raise ValueError("late")
    assert (new / "config.yaml").is_file()  # what was written stays, for --resume to read


def test_temporaries_of_killed_writes_are_removed_when_claimed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.yaml").write_text("a: 1\n")
    left = [out / "checkpoints" / "epoch-0003.pt.k2j4h5.tmp", out / "metrics.json.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    (out / "checkpoints" / "epoch-0002.pt").write_bytes(b"a checkpoint")
    with claim_output(out, "pretrain"):
        assert not any(p.exists() for p in left)
    assert (out / "checkpoints" / "epoch-0002.pt").exists()
    assert remove_temporaries(out) == []


def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_named(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert read_jsonl(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(OutputError, match="metrics.jsonl line 2: not JSON"):
        read_jsonl(log)


def test_json_is_written_atomically_and_a_full_disk_is_one_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "study-pretrained.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_text", full)
        with pytest.raises(OutputError, match="study-pretrained.json: no space left on the"):
            write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}, "the old file is intact"
    with pytest.raises(OSError, match="Permission"):
        with disk_errors(path):
            raise PermissionError(errno.EACCES, "Permission denied")
