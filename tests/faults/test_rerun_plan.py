"""A rerun into a complete store: the same plan is nothing to do; another plan (more clips
than ``--limit`` gave, another root) is refused naming the difference, never reported as
complete with clips missing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.extract_config import load_extract_config
from pipeline.run import ClusterOptions, run_extract
from pipeline.store import StoreError, open_store

LIMIT = 4


def _run(root: Path, out: Path, scheduler: str, limit: int | None) -> None:
    cfg = load_extract_config(weights={"audio": "random", "text": "random"},
                              modalities=["audio", "text"])
    run_extract("meld", root, str(out), cfg=cfg, limit=limit, shard_size=2, device="cpu",
                cluster=ClusterOptions(scheduler=scheduler))


def _ids(out: Path) -> set[str]:
    store = open_store(out)
    return set(store.index.column("sample_id").to_pylist()) | set(
        store.failures.column("sample_id").to_pylist())


def test_a_complete_store_is_compared_with_the_plan(meld_sample: Path, meld_clips: list[str],
                                                    scheduler: str, tmp_path: Path,
                                                    account: Callable,
                                                    fault_log: Callable) -> None:
    out = tmp_path / "store"
    _run(meld_sample, out, scheduler, LIMIT)
    first = (out / "store.json").read_bytes()
    assert _ids(out) == set(meld_clips[:LIMIT])

    _run(meld_sample, out, scheduler, LIMIT)  # the same plan: nothing to do
    assert (out / "store.json").read_bytes() == first

    with pytest.raises(StoreError) as err:
        _run(meld_sample, out, scheduler, None)  # the whole dataset into the limited store
    message = str(err.value)
    assert "holds other clips than this run plans" in message
    assert "--limit 4" in message and "--limit None" in message
    from pipeline.datasets import scan

    table = scan("meld", meld_sample)
    everything = set(table.samples.column("sample_id").to_pylist()) | set(
        table.failures.column("sample_id").to_pylist())
    missing = sorted(everything - set(meld_clips[:LIMIT]))
    assert f"{len(missing)} clips ({missing[0]}, " in message
    assert (out / "store.json").read_bytes() == first, "the store is left as it was"
    fault_log("rerun without --limit into a store made with --limit 4", runs=2, lost=0,
              duplicates=0, outcome="refused naming the clips missing (was: 'already complete')")

    other = tmp_path / "other-root"
    shutil.copytree(meld_sample, other)
    for name in ("train_sent_emo.csv",):
        lines = (other / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (other / name).write_text("".join(lines[:1] + lines[3:]), encoding="utf-8")
    with pytest.raises(StoreError, match="in it but not planned"):
        _run(other, out, scheduler, LIMIT)
    fault_log("rerun from another root (other clips) into a complete store", lost=0,
              duplicates=0, outcome="refused naming the clips that differ")
