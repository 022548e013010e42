"""Prediction on a new video: the real end to end on the generated MELD sample (the features it
extracts are the store's, so its probabilities are the classifier's on the stored features), and
the refusals that need no extraction."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from heads.checkpoint import CheckpointError
from heads.classifier import decide
from heads.data import read_modality
from heads.evaluate import run_eval
from heads.predict import (PredictError, _check_same_weights, extract_video, extraction_config,
                           load_classifier,
                           run_predict, weights_problem)
from heads.train import run_pretrain
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
    model, meta = load_classifier(classifier)
    with open_store(meld_store) as fs:
        pos = np.flatnonzero(np.array(fs.index.column("sample_id").to_pylist()) == sample_id)
        batch = {m: torch.from_numpy(read_modality(fs, keys, pos, all_views=False)).float()
                 for m, keys in meta["layout"].items()}
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
                                                       meld_run: Path) -> None:
    row = _test_clip(meld_sample, meld_store)
    classifier = meld_run / "eval" / "linear-video" / "classifier.pt"
    out = run_predict(row["media_path"], run=meld_run, classifier=classifier, device="cpu")
    assert out["modalities"] == ["video"]
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    expected = _stored_probabilities(classifier, meld_store, row["sample_id"])
    assert [out["probabilities"][n] for n in MELD_LABELS] == pytest.approx(expected.tolist(),
                                                                          abs=1e-4)


def _provenance(**overrides: object) -> dict:
    """What store.json records for an extraction of MELD with random weights."""
    from pipeline.extract import load_extract_config
    from pipeline.manifest import load_manifest
    from pipeline.run import feature_identity

    cfg = load_extract_config(weights={k: "random" for k in ("frames_2d", "frames_3d",
                                                             "audio", "text")}, **overrides)
    return {"store_id": "0" * 64, "identity": feature_identity(cfg, load_manifest("meld"))}


def test_text_without_transcript_is_refused(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(PredictError, match="pass a transcript"):
        extract_video(video, _provenance(), ["text"], transcript="  ", device="cpu")


def test_extraction_config_repeats_the_store() -> None:
    provenance = _provenance(fps_3d=8.0)
    cfg, policy = extraction_config(provenance, ["frames_2d", "frames_3d"])
    extraction = provenance["identity"]["extraction"]
    assert cfg.modalities == ("frames_2d", "frames_3d") and cfg.views == 1
    assert cfg.weights == {"frames_2d": "random", "frames_3d": "random"}
    assert cfg.backbones == {"frames_2d": "resnet152", "frames_3d": "resnet3d101"}
    assert cfg.fps_3d == 8.0 == extraction["fps_3d"]
    assert (cfg.faces.size, cfg.faces.min_prob) == (extraction["faces"]["size"],
                                                    extraction["faces"]["min_prob"])
    assert policy.crop is True


def test_a_store_written_from_arrays_cannot_be_repeated(store_1view: str) -> None:
    with pytest.raises(PredictError, match="arrays"):
        extraction_config(open_store(store_1view).manifest, ["audio"])


def test_weights_that_need_a_download_are_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    assert weights_problem("resnet152", "random") is None
    local = tmp_path / "audio_model.pth"
    local.write_bytes(b"weights")
    assert weights_problem("davenet", str(local)) is None
    assert "no longer exists" in weights_problem("davenet", str(tmp_path / "gone.pth"))
    assert "without recorded weights" in weights_problem("davenet", "none")
    from torchvision.models import ResNet152_Weights

    name = Path(ResNet152_Weights.IMAGENET1K_V2.url).name
    problem = weights_problem("resnet152", "IMAGENET1K_V2")
    assert "need a download" in problem and name in problem
    cached = tmp_path / "hub" / "checkpoints"
    cached.mkdir(parents=True)
    (cached / name).write_bytes(b"cached")
    assert weights_problem("resnet152", "IMAGENET1K_V2") is None
    assert "Hugging Face cache" in weights_problem("distilbert-sst2", "nobody/no-such-model")


def test_other_weights_than_the_stores_are_refused() -> None:
    encoder = SimpleNamespace(provenance=lambda: {"weights_sha256": "b" * 64})
    provenance = {"modalities": {"audio": {"weights_sha256": "a" * 64}}}
    with pytest.raises(PredictError, match="not those that made the store"):
        _check_same_weights({"audio": encoder}, provenance)
    _check_same_weights({"audio": encoder}, {"modalities": {"audio": {"weights_sha256":
                                                                      "b" * 64}}})


def test_missing_video_or_classifier_is_named(tmp_path: Path) -> None:
    with pytest.raises(PredictError, match="no such video"):
        run_predict(tmp_path / "none.mp4", run=tmp_path)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no classifier"):
        run_predict(video, run=tmp_path / "run")
