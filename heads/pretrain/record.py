"""A pretraining run's records: the first line of ``metrics.jsonl`` and ``run.json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heads.metrics_log import read_metrics
from heads.run_record import Clock, random_keys, store_record, write_run_record
from pipeline.store import FeatureStore

#: The epoch entries ``run.json`` keeps as the run's metrics (of its last epoch).
LAST_EPOCH = ("loss", "val/loss")


def run_header(static: Mapping[str, Any]) -> dict[str, Any]:
    """The ``kind: run`` record a run's ``metrics.jsonl`` starts with: the store it trains on
    and, as ``metrics.json`` has it (store url -> keys), the keys it reads that hold random
    backbone weights: a reader of the metrics alone sees that its numbers say nothing about
    the methods. (A mapping, not a list: TensorBoard takes the lists of a record as series.)"""
    keys = list(random_keys(static["feature_space"]))
    return {"kind": "run", "epoch": 0, "step": 0, "store": static["store_url"],
            "store_id": static["store_id"],
            "random_weights": {static["store_url"]: keys} if keys else {}}


def write_pretrain_record(run_dir: Path, fs: FeatureStore, config: Mapping[str, Any],
                          static: Mapping[str, Any], clock: Clock) -> None:
    """``run.json`` of a run that finished its epochs (a resumed run: of this invocation)."""
    epochs = read_metrics(run_dir, "epoch")
    last = epochs[-1] if epochs else {}
    keys = [k for ks in static["layout"].values() for k in ks]
    write_run_record(run_dir, kind="pretrain", name=static["objective"], config=config,
                     stores=[store_record("train", fs.manifest, fs.url, keys)],
                     device=static["device"], clock=clock,
                     metrics={k: last.get(k) for k in LAST_EPOCH if k in last})
