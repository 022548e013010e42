"""The CLEF protocol end to end on CPU: text prototypes learn a MELD-like store, the weakly
supervised stage runs on CMU-MOSEI's sentiment sign (and is refused on MELD), the zero-shot row
comes from a pretraining run's MMS text head, and a store without label texts says how to add
them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from heads.eval_config import ClefConfig
from heads.evaluation import PROTOCOLS
from heads.evaluation.clef import ClefModel
from heads.evaluation.predict import outputs
from heads.evaluation.run import run_eval
from heads.pretrain.train import run_pretrain
from pipeline.config import ConfigError
from pipeline.label_texts import LabelTextsError, texts_for, write_label_texts
from pipeline.store import write_arrays
from pipeline.store.errors import StoreError

MELD = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
MOSEI = ["happy", "sad", "anger", "surprise", "disgust", "fear"]
CAER = ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
DIMS = {"frames_2d": 48, "audio": 24, "text": 16}
SPLIT_CYCLE = ("train", "train", "train", "val", "test")


def labelled_store(path: Path, *, dataset: str = "meld", n: int = 560, seed: int = 0,
                   texts: bool = True, dims: dict[str, int] | None = None,
                   space: str = "clef-toy") -> str:
    """Features are noisy linear maps of class means (MELD-like) or of the positive labels
    (CMU-MOSEI-like, with the sentiment as valence); label texts with random vectors in the
    store's 16-d "text space"."""
    rng = np.random.default_rng(seed)
    targets, names = None, ()
    if dataset == "mosei":
        labels = (rng.random((n, len(MOSEI))) < 0.3).astype(np.float32)
        z = labels @ rng.normal(size=(len(MOSEI), 8)) * 2.0 + rng.normal(size=(n, 8))
        targets = np.tanh(labels[:, :1] - labels[:, 1:3].max(1, keepdims=True)
                          + 0.2 * rng.normal(size=(n, 1)))
        names, label_names = ("valence",), MOSEI
    else:
        label_names = CAER if dataset == "caer" else MELD
        labels = rng.integers(0, len(label_names), n)
        z = rng.normal(size=(len(label_names), 8))[labels] * 2.0 + rng.normal(size=(n, 8))
    dims = dims or DIMS
    features = {k: (z @ rng.normal(size=(8, d)) / np.sqrt(8)
                    + 0.3 * rng.normal(size=(n, d)))[:, None].astype(np.float16)
                for k, d in dims.items()}
    fs = write_arrays(path, dataset=dataset, sample_ids=[f"s{i:04d}" for i in range(n)],
                      splits=[SPLIT_CYCLE[i % 5] for i in range(n)], features=features,
                      labels=labels, label_names=label_names, multilabel=dataset == "mosei",
                      targets=targets, target_names=names, shard_size=200,
                      feature_space=space)
    if texts:
        made = texts_for(dataset, label_names, names)
        vectors = rng.normal(size=(len(made.texts), dims["text"])).astype(np.float32)
        write_label_texts(fs.loc, fs.manifest, made, vectors,
                          vectors + 0.1 * rng.normal(size=vectors.shape).astype(np.float32),
                          backbone="arrays", weights_sha256=None)
    return fs.url


@pytest.fixture(scope="module")
def meld_like(tmp_path_factory: pytest.TempPathFactory) -> str:
    return labelled_store(tmp_path_factory.mktemp("clef") / "meld")


def _eval(store: str, out: Path, **kw) -> dict:
    torch.set_num_threads(1)
    kw.setdefault("run", None)
    return run_eval(store, protocol="clef", out=out, preset="cpu", progress=False,
                    device="cpu", **kw)


def test_learns_a_meld_like_store_above_chance_and_writes_every_output(meld_like: str,
                                                                       tmp_path: Path) -> None:
    metrics = _eval(meld_like, tmp_path / "out")
    assert metrics["summary"]["test"]["accuracy"]["mean"] > 3 / len(MELD)
    details = metrics["details"]
    assert "reparametrised linear" in details["note"]
    assert details["prompts"][4] == "a photo of a person with joy"
    assert details["weak"]["ran"] is False and details["zero_shot"]["ran"] is False
    assert "--run" in details["zero_shot"]["reason"]
    assert metrics["config"]["clef"]["instance_weight"] == 2.0
    assert metrics["config"]["clef"]["weak_temperature"] == 0.25
    history = metrics["runs"][0]["history"][0]
    assert {"train_in", "train_dn", "train_tau", "val_f1", "val_loss"} <= set(history)
    for name in ("metrics.json", "classifier.pt", "confusion_test.png", "embedding_test.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["protocol"] == "clef"


def test_the_saved_prototypes_give_back_the_scored_classes(meld_like: str, tmp_path: Path,
                                                           classifier_outputs) -> None:
    metrics = _eval(meld_like, tmp_path / "out", overrides={"clef.epochs": 3})
    saved = tmp_path / "out" / "classifier.pt"
    logits, labels, meta = classifier_outputs(saved, meld_like, "test")
    assert meta.task == "classification" and meta.multilabel is False
    assert metrics["summary"]["test"]["accuracy"]["mean"] == pytest.approx(
        float((logits.argmax(1) == labels).mean()))
    said = outputs(torch.from_numpy(logits), meta)
    probs = torch.softmax(torch.from_numpy(logits[0]), 0).numpy()
    assert said["predicted"] == MELD[int(probs.argmax())]
    assert list(said["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-6)
    # a file written before the spec recorded multilabel is read as single-label
    payload = torch.load(saved, weights_only=True)
    del payload["spec"]["multilabel"]
    torch.save(payload, tmp_path / "old.pt")
    assert classifier_outputs(tmp_path / "old.pt", meld_like, "test")[2].multilabel is False


def test_a_run_adds_the_zero_shot_row(meld_like: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = run_pretrain(meld_like, "multi_cont", tmp_path / "run", preset="cpu", epochs=2,
                       device="cpu", progress=False)
    metrics = _eval(meld_like, tmp_path / "out", run=run, overrides={"clef.epochs": 3})
    zero = metrics["details"]["zero_shot"]
    assert zero["ran"] is True and zero["objective"] == "multi_cont"
    assert set(zero["splits"]) == {"train", "val", "test"}
    assert 0.0 <= zero["splits"]["test"]["accuracy"] <= 1.0
    assert zero["modalities"] == ["video", "audio"]
    assert metrics["objective"] == "multi_cont"


def test_weak_stage_runs_on_the_mosei_sentiment_sign(tmp_path: Path,
                                                     classifier_outputs) -> None:
    store = labelled_store(tmp_path / "mosei", dataset="mosei", n=400)
    metrics = _eval(store, tmp_path / "out", overrides={"clef.epochs": 5})
    weak = metrics["details"]["weak"]
    assert weak["ran"] is True and weak["group"] == "sentiment" and weak["epochs"] == 5
    assert weak["source"] == "sentiment_fallback" and weak["note"].startswith("fallback")
    assert {"train_image", "train_text"} <= set(weak["history"][0])
    assert metrics["multilabel"] is True
    assert "weighted_accuracy" in metrics["summary"]["test"]
    logits, labels, meta = classifier_outputs(tmp_path / "out" / "classifier.pt", store, "test")
    assert meta.multilabel is True and logits.shape == labels.shape == (80, len(MOSEI))
    said = outputs(torch.from_numpy(logits), meta)
    assert said["predicted"] == [n for n, x in zip(MOSEI, logits[0]) if x >= 0]
    none = _eval(store, tmp_path / "none", overrides={"clef.epochs": 2, "clef.weak": "none"})
    assert none["details"]["weak"] == {"ran": False, "reason": "clef.weak=none"}


def test_stage1_runs_on_another_stores_activity_like_labels(meld_like: str,
                                                             tmp_path: Path) -> None:
    caer_like = labelled_store(tmp_path / "caer", dataset="caer", n=200, seed=3)
    metrics = _eval(meld_like, tmp_path / "out",
                    overrides={"clef.epochs": 2, "clef.weak_epochs": 2,
                               "clef.stage1_store": caer_like})
    weak = metrics["details"]["weak"]
    assert weak["ran"] is True and weak["source"] == "stage1_store"
    assert weak["group"] == "caer" and weak["classes"] == len(CAER)
    assert weak["rows"] == 120 and weak["epochs"] == 2  # the stage-1 store's train split
    assert weak["history"][0]["train_text"] > 0
    assert metrics["config"]["clef"]["stage1_store"] == caer_like


def test_stage1_store_must_be_another_dataset_in_the_same_feature_space(
        meld_like: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels other than the downstream ones"):
        _eval(meld_like, tmp_path / "same", overrides={"clef.stage1_store": meld_like})
    other_space = labelled_store(tmp_path / "caer", dataset="caer", n=40,
                                 dims={"frames_2d": 40, "audio": 24, "text": 16}, space="other")
    with pytest.raises(StoreError, match="not in the feature space.*frames_2d"):
        _eval(meld_like, tmp_path / "space", overrides={"clef.stage1_store": other_space})
    with pytest.raises(ConfigError, match="clef.weak=store needs clef.stage1_store"):
        _eval(meld_like, tmp_path / "none", overrides={"clef.weak": "store"})


def test_refuses_melds_sentiment_as_coarse_labels(meld_like: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="supervision by the target"):
        _eval(meld_like, tmp_path / "out", overrides={"clef.weak": "sentiment"})


def test_a_store_without_label_texts_says_how_to_add_them(tmp_path: Path) -> None:
    store = labelled_store(tmp_path / "bare", n=40, texts=False)
    with pytest.raises(LabelTextsError, match="cli store add-label-texts"):
        _eval(store, tmp_path / "out")


def test_logits_are_scaled_cosines_of_the_projected_prototypes() -> None:
    torch.manual_seed(0)
    names, descriptions = torch.randn(3, 5), torch.randn(3, 5)
    model = ClefModel({"video": 4}, ["video"], names, descriptions,
                      ClefConfig(projection_dim=6, temperature=0.5))
    x = torch.randn(2, 4)
    z = torch.nn.functional.normalize(model.sample_projection(x), dim=1)
    p = torch.nn.functional.normalize(model.text_projection(names), dim=1)
    assert torch.allclose(model({"video": x}), z @ p.T / 0.5, atol=1e-5)
    with torch.no_grad():
        model.log_scale.fill_(10.0)
    assert model.scale.item() == pytest.approx(100.0)  # CLIP's bound on 1 / tau
    assert math.isfinite(model.description_loss().item())
    assert PROTOCOLS["clef"].needs_run is False
