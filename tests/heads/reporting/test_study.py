"""The whole study on a tiny synthetic store: every row, its tables and chart; skipped rows
are named; a second call resumes instead of refusing the existing runs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from heads.reporting.study import METHODS, Method, run_study, skip_reason
from pipeline.store import write_arrays

DIMS = {"frames_2d": 16, "frames_3d": 16, "audio": 8, "text": 8}


def tiny_store(path: Path, *, views: int, n: int = 120, keys: tuple[str, ...] = tuple(DIMS)
               ) -> str:
    """3 learnable classes, splits train/train/train/val/test."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    z = rng.normal(size=(3, 4))[labels] * 2.0 + rng.normal(size=(n, 4))
    features = {}
    for k in keys:
        base = z @ rng.normal(size=(4, DIMS[k])) + 0.3 * rng.normal(size=(n, DIMS[k]))
        extra = [base + 0.3 * rng.normal(size=base.shape) for _ in range(views - 1)]
        features[k] = np.stack([base, *extra], axis=1).astype(np.float16)
    splits = [("train", "train", "train", "val", "test")[i % 5] for i in range(n)]
    write_arrays(path, dataset="synthetic", sample_ids=[f"s{i:04d}" for i in range(n)],
                 splits=splits, features=features, labels=labels,
                 label_names=["calm", "happy", "angry"])
    return str(path)


@pytest.mark.slow
def test_quick_study_writes_every_row(tmp_path: Path) -> None:
    store = tiny_store(tmp_path / "store", views=2)
    out = run_study(store, tmp_path / "study", quick=True, device="cpu", progress=False)
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == [m.label for m in METHODS]
    for row in rows:
        for key in ("accuracy", "f1_weighted", "precision_weighted", "recall_weighted",
                    "f1_macro"):
            assert 0.0 <= float(row[key]) <= 1.0, (row["method"], key)
    by_name = {r["method"]: r for r in rows}
    assert by_name["Supervised"]["protocol"] == "supervised"
    assert by_name["ConCluGen (vision)"]["modalities"] == "video"
    assert by_name["ConCluGen w/o text"]["modalities"] == "video+audio"
    assert by_name["Instance-Cont"]["modalities"] == "video"
    assert float(by_name["Supervised"]["accuracy"]) > 0.5  # 3 classes: chance is 1/3
    table = (out / "results.md").read_text()
    assert "| Method | Acc | F1 | Prec | Recall | Macro-F1 |" in table
    assert table.count("\n| ") == len(METHODS) + 1  # header + one line per method
    assert "quick" in table
    assert (out / "results.png").stat().st_size > 0
    assert (out / "runs" / "conclugen" / "eval" / "linear-video" / "metrics.json").is_file()
    assert (out / "supervised" / "metrics.json").is_file()

    # a second call resumes the finished runs and keeps the evaluations that are up to date
    probe = out / "runs" / "conclugen" / "eval" / "linear" / "metrics.json"
    before = probe.stat().st_mtime_ns
    (out / "results.csv").unlink()
    run_study(store, tmp_path / "study", quick=True, device="cpu", progress=False)
    assert (out / "results.csv").is_file()
    assert probe.stat().st_mtime_ns == before


@pytest.mark.slow
def test_study_names_the_rows_a_store_cannot_run(tmp_path: Path) -> None:
    store = tiny_store(tmp_path / "store", views=1, keys=("frames_2d", "audio"))
    out = run_study(store, tmp_path / "study", quick=True, device="cpu", progress=False)
    table = (out / "results.md").read_text()
    assert "Instance-Cont: skipped, the store holds 1 view" in table
    assert "ConCluGen w/o audio: skipped, the store has no text features" in table
    assert "ConCluGen w/o text: skipped" in table  # it would repeat the ConCluGen run
    with (out / "results.csv").open() as f:
        methods = [r["method"] for r in csv.DictReader(f)]
    assert "ConCluGen" in methods and "Instance-Cont" not in methods


def test_skip_reasons() -> None:
    full = ("video", "audio", "text")
    assert skip_reason(Method("x", "conclugen"), full, views=1) is None
    assert skip_reason(Method("x", None), ("video",), views=1) is None
    assert "2 modalities" in skip_reason(Method("x", "multi_cont"), ("video",), views=1)
    assert "view" in skip_reason(Method("x", "instance_cont"), full, views=1)
    assert skip_reason(Method("x", "instance_cont"), full, views=2) is None
