"""Prediction on a new video: the real end to end on the generated MELD sample (the features it
extracts are the store's, so its probabilities are the classifier's on the stored features),
with the paper's probes and with CLEF's prototypes (no run), and the refusals that need no
extraction."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from heads.checkpoint import CheckpointError
from heads.evaluation.classifier import load_predictor
from heads.data import read_modality
from heads.evaluation.predict import PredictError, run_predict
from heads.evaluation.fit import decide
from heads.evaluation.run import run_eval
from heads.pretrain.train import run_pretrain
from pipeline.store import open_store

MELD_LABELS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]


@pytest.fixture(scope="module")
def meld_run(meld_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conclugen run on the sample store, probed with all modalities and with video only."""
    torch.set_num_threads(1)
    run = run_pretrain(str(meld_store), "conclugen", tmp_path_factory.mktemp("predict") / "run",
                       preset="cpu", epochs=2, device="cpu", progress=False)
    for modalities in (None, ["video"]):
        run_eval(str(meld_store), run=run, protocol="linear", modalities=modalities,
                 preset="cpu", overrides={"epochs": 5}, device="cpu", progress=False)
    return run


def _test_clip(meld_sample: Path, meld_store: Path) -> dict:
    from pipeline.datasets import scan

    stored = set(open_store(meld_store).index.column("sample_id").to_pylist())
    return next(r for r in scan("meld", meld_sample).samples.to_pylist()
                if r["split"] == "test" and r["sample_id"] in stored)


def _stored_probabilities(classifier: Path, meld_store: Path, sample_id: str) -> np.ndarray:
    model, meta = load_predictor(classifier)
    with open_store(meld_store) as fs:
        pos = np.flatnonzero(np.array(fs.index.column("sample_id").to_pylist()) == sample_id)
        batch = {m: torch.from_numpy(read_modality(fs, keys, pos, all_views=False)).float()
                 for m, keys in meta.layout.items()}
    with torch.no_grad():
        return decide(model(batch), multilabel=False)[0][0]


@pytest.mark.slow
def test_predict_a_sample_clip_as_the_store_saw_it(meld_sample: Path, meld_store: Path,
                                                   meld_run: Path) -> None:
    row = _test_clip(meld_sample, meld_store)
    out = run_predict(row["media_path"], run=meld_run, transcript=row["transcript"],
                      device="cpu")
    probs = out["probabilities"]
    assert list(probs) == MELD_LABELS
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert out["predicted"] == max(probs, key=probs.get)
    assert out["modalities"] == ["video", "audio", "text"] and out["protocol"] == "linear"
    # same decoding, faces and (seeded random) backbones as the store: same probabilities
    expected = _stored_probabilities(Path(out["classifier"]), meld_store, row["sample_id"])
    assert [probs[n] for n in MELD_LABELS] == pytest.approx(expected.tolist(), abs=1e-4)


@pytest.mark.slow
def test_a_classifier_without_text_needs_no_transcript(meld_sample: Path, meld_store: Path,
                                                       meld_run: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    row = _test_clip(meld_sample, meld_store)
    classifier = meld_run / "eval" / "linear-video" / "classifier.pt"
    with caplog.at_level(logging.WARNING):
        out = run_predict(row["media_path"], run=meld_run, classifier=classifier, device="cpu")
    assert out["modalities"] == ["video"]
    # the sample store was extracted with random weights: said once (beside the backbones'
    # own warnings as they load), and in the result
    random = open_store(meld_store).manifest.random_weights
    assert random and list(out["random_weights"].values()) == [random]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "heads.run_record"]
    assert warning.startswith(f"predict: RANDOM WEIGHTS in {', '.join(random)} of ")
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    expected = _stored_probabilities(classifier, meld_store, row["sample_id"])
    assert [out["probabilities"][n] for n in MELD_LABELS] == pytest.approx(expected.tolist(),
                                                                          abs=1e-4)


@pytest.mark.slow
def test_clefs_prototypes_predict_a_sample_clip_without_a_run(meld_sample: Path,
                                                              meld_store: Path,
                                                              tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run_eval(str(meld_store), run=None, protocol="clef", out=tmp_path / "clef", preset="cpu",
             overrides={"epochs": 3}, device="cpu", progress=False)
    row = _test_clip(meld_sample, meld_store)
    classifier = tmp_path / "clef" / "classifier.pt"
    out = run_predict(row["media_path"], classifier=classifier, transcript=row["transcript"],
                      device="cpu")
    assert out["protocol"] == "clef" and out["task"] == "classification"
    assert out["modalities"] == ["video", "audio", "text"]
    probs = out["probabilities"]
    assert list(probs) == MELD_LABELS and out["predicted"] == max(probs, key=probs.get)
    expected = _stored_probabilities(classifier, meld_store, row["sample_id"])
    assert [probs[n] for n in MELD_LABELS] == pytest.approx(expected.tolist(), abs=1e-4)


def test_missing_video_or_classifier_is_named(tmp_path: Path) -> None:
    with pytest.raises(PredictError, match="no such video"):
        run_predict(tmp_path / "none.mp4", run=tmp_path)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no classifier"):
        run_predict(video, run=tmp_path / "run")
    with pytest.raises(PredictError, match=r"give --classifier .* or --run \(run=\)"):
        run_predict(video)
