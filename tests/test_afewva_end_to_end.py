"""AFEW-VA end to end from the command line: a generated sample (folders of frames with
per-frame valence and arousal) extracted through face cropping and both video backbones (random
weights, the small r3d_18 for frames_3d), the clip means stored as the targets, and `eval
--protocol avce` scoring CCC, PCC, RMSE and SAGR per target (the saved head, run again on the
stored test features, gives the same CCC by Lin's formula)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from heads.evaluation.classifier import load_predictor
from heads.evaluation.predict import run_predict
from heads.evaluation.run import load_split
from pipeline.store import open_store

runner = CliRunner()
CLIPS = 8


def annotated_means(raw: Path) -> dict[str, tuple[float, float]]:
    """Per clip folder with its JSON and frames: the mean valence and arousal of its frames,
    divided by 10 (the release's -10..10 scale into [-1, 1])."""
    means = {}
    for meta in sorted(raw.glob("*/*.json")):
        if not any(meta.parent.glob("*.png")):
            continue  # the sample's JSON without frames: a failure, not a sample
        frames = json.loads(meta.read_text())["frames"].values()
        means[meta.parent.name] = (float(np.mean([f["valence"] for f in frames])) / 10,
                                   float(np.mean([f["arousal"] for f in frames])) / 10)
    return means


@pytest.mark.slow  # about a minute on two cores: extraction with two backbones, then training
def test_afewva_sample_extracts_its_clip_means_and_avce_scores_each_target(
        tmp_path: Path) -> None:
    raw, store, out = tmp_path / "raw", tmp_path / "store", tmp_path / "avce"
    made = runner.invoke(app, ["sample-data", str(raw), "--dataset", "afewva", "--clips",
                               str(CLIPS)])
    assert made.exit_code == 0, made.output
    extracted = runner.invoke(app, [
        "extract", "--dataset", "afewva", "--root", str(raw), "--out", str(store),
        "--modalities", "frames_2d,frames_3d", "--backbone", "frames_3d=r3d_18",
        "--weights", "random", "--device", "cpu", "--workers", "1"])
    assert extracted.exit_code == 0, extracted.output

    meta = json.loads((store / "store.json").read_text())
    assert meta["identity"]["dataset"]["targets"] == ["valence", "arousal"]
    index = pq.read_table(store / "index.parquet").to_pylist()
    expected = annotated_means(raw)
    assert len(expected) == CLIPS and {r["sample_id"] for r in index} == set(expected)
    for row in index:
        assert row["targets"] == pytest.approx(expected[row["sample_id"]], abs=1e-6)
    assert {r["split"] for r in index} == {"train", "val", "test"}

    result = runner.invoke(app, ["eval", "--store", str(store), "--protocol", "avce", "--out",
                                 str(out), "--preset", "cpu", "--set", "epochs=3", "--set",
                                 "batch_size=4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "avce" and metrics["targets"] == ["valence", "arousal"]
    tested = sum(r["split"] == "test" for r in index)
    assert metrics["counts"]["test"] == tested
    per_target = metrics["runs"][0]["splits"]["test"]["per_target"]
    assert set(per_target) == {"valence", "arousal"}
    for name in ("valence", "arousal"):
        ccc = metrics["summary"]["test"][f"ccc_{name}"]["mean"]
        assert ccc == pytest.approx(per_target[name]["ccc"])
        assert math.isfinite(ccc) and -1 <= ccc <= 1
    assert metrics["summary"]["test"]["ccc"]["mean"] == pytest.approx(
        np.mean([per_target[n]["ccc"] for n in ("valence", "arousal")]))
    pred, truth = saved_predictions(out / "classifier.pt", store)
    np.testing.assert_allclose(truth, [expected[r["sample_id"]] for r in index
                                       if r["split"] == "test"], atol=1e-6)
    for k, name in enumerate(("valence", "arousal")):
        assert per_target[name]["ccc"] == pytest.approx(concordance(pred[:, k], truth[:, k]),
                                                        abs=1e-5)

    # A new clip as AFEW-VA releases it (a folder of frames) through predict: the saved head
    # on the folder's features extracted again as the store did = on the stored features.
    first = next(r for r in index if r["split"] == "test")
    folder = next(m.parent for m in raw.glob("*/*.json") if m.parent.name == first["sample_id"])
    predicted = run_predict(folder, classifier=out / "classifier.pt", device="cpu")
    stored = pred[[r["sample_id"] for r in index if r["split"] == "test"].index(
        first["sample_id"])]
    assert predicted["task"] == "regression"
    assert [predicted["predictions"][n] for n in ("valence", "arousal")] == pytest.approx(
        stored.tolist(), abs=0.02)
    shown = runner.invoke(app, ["predict", str(folder), "--classifier",
                                str(out / "classifier.pt"), "--device", "cpu"])
    assert shown.exit_code == 0 and "valence" in shown.output, shown.output


def saved_predictions(classifier: Path, store: Path) -> tuple[np.ndarray, np.ndarray]:
    """The saved AVCE head on the stored test features, and the stored test targets."""
    model, meta = load_predictor(classifier)
    with open_store(store) as fs:
        test = load_split(fs, meta.layout, "test", torch.device("cpu"), task="regression")
    assert test is not None
    with torch.no_grad():
        pred = model({m: x.float() for m, x in test.inputs.items()})
    return pred.numpy().astype(np.float64), test.targets.numpy().astype(np.float64)


def concordance(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance: 2 cov / (var x + var y + (mean x - mean y)^2), population moments."""
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return float(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))
