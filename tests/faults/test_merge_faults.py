"""`store merge` as safe as extraction: one merge at a time per destination, and a merge that
stops (a refused checksum, a full disk, a kill) never leaves a destination that its own advice
then refuses."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.store import Location, StoreError, open_store, write_arrays
from pipeline.store import merge as ops
from pipeline.store.lock import StoreLock

runner = CliRunner()


def _stores(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for name, prefix in (("a", "x"), ("b", "y")):
        write_arrays(tmp_path / name, dataset="toy", sample_ids=[f"{prefix}{i}" for i in range(8)],
                     splits=["train"] * 8, labels=np.arange(8) % 2, label_names=["p", "q"],
                     shard_size=3, feature_space="toy-space",
                     features={"text": rng.standard_normal((8, 1, 4)).astype(np.float32)})
    return tmp_path / "a", tmp_path / "b"


def _merge(a: Path, b: Path, out: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["store", "merge", str(a), str(b), "--out", str(out)])
    return result.exit_code, result.output


def test_a_second_merge_into_one_destination_is_refused(tmp_path: Path,
                                                        fault_log: Callable) -> None:
    a, b = _stores(tmp_path)
    out = tmp_path / "merged"
    with StoreLock(Location.parse(str(out)), purpose="merge"):  # a live merge holds it
        code, output = _merge(a, b, out)
    assert code == 2, output
    assert "is being merged into by another run" in " ".join(output.split())
    assert "Traceback" not in output
    assert sorted(p.name for p in out.iterdir()) == [], "nothing written beside the lock"
    code, output = _merge(a, b, out)
    assert code == 0, output
    assert open_store(out).manifest.counts.samples == 16
    fault_log("two merges into one --out", outcome="the second refused (exit 2); then merged")


@pytest.mark.parametrize("fault", ["a refused checksum", "a full disk"])
def test_a_merge_that_stops_cleans_up_and_reruns(tmp_path: Path, fault: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 fault_log: Callable) -> None:
    a, b = _stores(tmp_path)
    out = tmp_path / "merged"
    real, calls = ops._copy_shard, []

    def failing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 4:
            if fault == "a full disk":
                from pipeline.store.filesystem import storage_errors

                with storage_errors(str(out / "shards"), "write"):
                    raise OSError(errno.ENOSPC, "No space left on device")
            raise StoreError(f"{a}/shards/shard-00000.h5: checksum mismatch")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(ops, "_copy_shard", failing)
        code, output = _merge(a, b, out)
    assert code == 2 and "Traceback" not in output, output
    assert sorted(p.name for p in out.iterdir()) == [], "its writes and its lock removed"
    code, output = _merge(a, b, out)  # what the message advises: the same command again
    assert code == 0, output
    assert open_store(out).manifest.counts.samples == 16
    fault_log(f"store merge stopped by {fault}", runs=2,
              outcome="its writes removed; the same command then merges")


def test_a_killed_merge_is_started_again_by_the_same_command(tmp_path: Path,
                                                             fault_log: Callable) -> None:
    a, b = _stores(tmp_path)
    out = tmp_path / "merged"
    code, _ = _merge(a, b, out)
    assert code == 0
    plan_store = open_store(out)
    # What `kill -9` after the second shard leaves: the marker, shards, no store.json.
    (out / "store.json").unlink()
    (out / "index.parquet").unlink()
    stores = [open_store(a), open_store(b)]
    from pipeline.store.filesystem import redact_url
    from pipeline.store.manifest import canonical_json

    plan = canonical_json({"merge_of": [s.store_id for s in stores],
                           "sources": [redact_url(s.url) for s in stores]}).encode()
    (out / ops.MERGE_MARKER).write_bytes(plan)
    code, output = _merge(a, b, out)
    assert code == 0, output
    assert open_store(out).store_id == plan_store.store_id
    assert not (out / ops.MERGE_MARKER).exists()
    # A stopped merge of other stores is not cleared
    (out / "store.json").unlink()
    (out / ops.MERGE_MARKER).write_bytes(b'{"merge_of":["other"]}')
    code, output = _merge(a, b, out)
    assert code == 2 and "stopped merge of other stores" in output, output
    fault_log("store merge killed (kill -9) midway", runs=2,
              outcome="the same command clears its leftovers and merges; others' refused")
