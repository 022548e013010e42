"""The study's run record: ``OUT/run.json`` names the request, the stores (with their
random-weights keys) and exactly the evaluation folders its tables read; a store of random
weights is warned about once for the whole study."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from heads.run_record import read_run_record
from heads.study.run import run_study
from pipeline.store import write_arrays


@pytest.mark.slow
def test_the_study_records_its_stores_and_the_evaluations_its_tables_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    n = 100
    z = rng.normal(size=(n, 4))
    store = write_arrays(tmp_path / "afewva", dataset="afewva",
                         sample_ids=[f"v{i}" for i in range(n)],
                         splits=[("train", "train", "train", "val", "test")[i % 5]
                                 for i in range(n)],
                         features={"frames_2d": (z @ rng.normal(size=(4, 16)))[:, None]
                                   .astype(np.float16)},
                         labels=np.full(n, -1), label_names=[],
                         targets=np.tanh(z[:, :2] / 2), target_names=("valence", "arousal"),
                         feature_space="random")  # store.json: random weights in frames_2d
    assert store.manifest.random_weights == ["frames_2d"]
    with caplog.at_level(logging.WARNING):
        out = run_study([store.url], tmp_path / "study", quick=True, device="cpu",
                        progress=False, systems=["avce"])
    warnings = [r.getMessage() for r in caplog.records if "RANDOM WEIGHTS" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("study: RANDOM WEIGHTS in frames_2d")

    record = read_run_record(out)
    assert record.kind == "study" and record.device == "cpu"
    assert record.config["systems"] == ["avce"] and record.config["quick"] is True
    assert [(s.role, s.store_id) for s in record.stores] == [("downstream", store.store_id)]
    assert record.random_weights == {store.url: ["frames_2d"]}
    assert record.evaluations == ("afewva/eval/avce",)
    evaluation = read_run_record(out / "afewva" / "eval" / "avce")
    assert evaluation.kind == "eval" and evaluation.name == "avce"
    assert (out / "afewva" / "eval" / "avce" / "metrics.json").is_file()
