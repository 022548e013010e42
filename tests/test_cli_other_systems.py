"""The heads of the other systems from the command line: a CMU-MOSEI sample extracted (audio
and text) gets its valence target and its label texts, which `store add-label-texts` remakes
exactly; `eval --protocol avce|clef` run on it, and `predict` runs each saved head on a video
without a pretraining run; a store without continuous targets is refused with exit code 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app
from heads.evaluation.predict import run_predict
from pipeline.store import write_arrays

runner = CliRunner()
MOSEI_LABELS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]


def test_avce_on_a_store_without_continuous_targets_exits_2(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = write_arrays(tmp_path / "meld", dataset="meld", sample_ids=["a", "b", "c"],
                         splits=["train", "val", "test"],
                         features={"audio": rng.normal(size=(3, 1, 4)).astype(np.float16)},
                         labels=np.array([0, 1, 0]), label_names=["neutral", "joy"])
    result = runner.invoke(app, ["eval", "--store", store.url, "--protocol", "avce", "--out",
                                 str(tmp_path / "out"), "--preset", "cpu", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "continuous targets" in said and "Traceback" not in result.output


@pytest.mark.slow
def test_mosei_sample_gets_targets_and_label_texts_and_both_protocols_run(
        tmp_path: Path) -> None:
    raw, store = tmp_path / "raw", tmp_path / "store"
    assert runner.invoke(app, ["sample-data", str(raw), "--dataset", "mosei", "--clips",
                               "20"]).exit_code == 0
    made = runner.invoke(app, ["extract", "--dataset", "mosei", "--root", str(raw), "--out",
                               str(store), "--modalities", "audio,text", "--weights", "random",
                               "--device", "cpu", "--workers", "1"])
    assert made.exit_code == 0, made.output
    meta = json.loads((store / "store.json").read_text())
    assert meta["identity"]["dataset"]["targets"] == ["valence"]
    index = pq.read_table(store / "index.parquet")
    valence = np.array(index.column("targets").to_pylist())[:, 0]
    assert ((valence >= -1) & (valence <= 1)).all() and len(set(valence.round(3))) > 1

    texts = meta["label_texts"]
    assert texts["coarse"] == {"sentiment": "valence"} and texts["rows"] == 6 + 2
    assert texts["weights_sha256"] == meta["modalities"]["text"]["weights_sha256"]
    before = pq.read_table(store / "label_texts.parquet")
    del meta["label_texts"]  # a store extracted before label texts existed
    (store / "store.json").write_text(json.dumps(meta))
    (store / "label_texts.parquet").unlink()
    added = runner.invoke(app, ["store", "add-label-texts", str(store)])
    assert added.exit_code == 0, added.output
    after = pq.read_table(store / "label_texts.parquet")
    assert after.column("prompt").to_pylist() == before.column("prompt").to_pylist()
    np.testing.assert_allclose(np.array(after.column("prompt_vector").to_pylist()),
                               np.array(before.column("prompt_vector").to_pylist()), atol=1e-6)

    for protocol in ("avce", "clef"):
        out = tmp_path / protocol
        result = runner.invoke(app, ["eval", "--store", str(store), "--protocol", protocol,
                                     "--out", str(out), "--preset", "cpu", "--set", "epochs=3",
                                     "--set", "batch_size=8", "--set", "avce.epochs=3",
                                     "--set", "clef.epochs=3", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["protocol"] == protocol and (out / "confusion_test.png").is_file()
    assert "ccc" in json.loads((tmp_path / "avce" / "metrics.json").read_text())["summary"]["test"]
    clef = json.loads((tmp_path / "clef" / "metrics.json").read_text())
    assert clef["details"]["weak"]["ran"] is True
    _predict_a_clip_with_each_head(raw, tmp_path)


def _predict_a_clip_with_each_head(raw: Path, tmp_path: Path) -> None:
    """`cli predict` with each saved head and no run: AVCE's valence, CLEF's per-label
    probabilities. A CMU-MOSEI sample is an interval of its video and predict reads the whole
    video, so the numbers are not the stored clip's (tests/heads/evaluation checks that the
    saved heads give back the scored outputs; test_predict that predict repeats the store's
    extraction)."""
    from pipeline.datasets import scan

    clip = next(r for r in scan("mosei", raw).samples.to_pylist() if r["split"] == "test")
    said = {}
    for protocol in ("avce", "clef"):
        classifier = tmp_path / protocol / "classifier.pt"
        result = runner.invoke(app, ["predict", clip["media_path"], "--classifier",
                                     str(classifier), "--transcript", clip["transcript"],
                                     "--device", "cpu"])
        assert result.exit_code == 0, result.output
        said[protocol] = run_predict(clip["media_path"], classifier=classifier,
                                     transcript=clip["transcript"], device="cpu")
        assert said[protocol]["protocol"] == protocol, said[protocol]
        # AVCE's default inputs leave out the sentiment-trained text for a sentiment target
        assert said[protocol]["modalities"] == (["audio"] if protocol == "avce"
                                                else ["audio", "text"])
        shown = " ".join(result.output.split())
        if protocol == "avce":
            valence = said[protocol]["predictions"]["valence"]
            assert said[protocol]["task"] == "regression" and math.isfinite(valence)
            assert list(said[protocol]["predictions"]) == ["valence"]
            assert f"{valence:+.4f}" in shown
        else:
            probs = said[protocol]["probabilities"]
            assert list(probs) == MOSEI_LABELS and all(0 < p < 1 for p in probs.values())
            assert said[protocol]["predicted"] == [n for n, p in probs.items() if p >= 0.5]
            assert "predicted:" in shown
