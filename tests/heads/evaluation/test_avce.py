"""The AVCE protocol end to end on CPU: it learns continuous targets of synthetic stores
shaped like AFEW-VA (valence and arousal) and CMU-MOSEI (labels plus valence), writes the
same outputs as the other protocols, and refuses a store without continuous targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from heads.data import DataError
from heads.evaluation import PROTOCOLS, get_protocol
from heads.evaluation.avce import DEGENERATE, AvceModel, _optimizers
from heads.evaluation.predict import outputs
from heads.evaluation.run import run_eval
from heads.eval_config import AvceConfig
from pipeline.config import ConfigError
from pipeline.store import write_arrays

SPLIT_CYCLE = ("train", "train", "train", "val", "test")


def continuous_store(path: Path, *, targets: tuple[str, ...] = ("valence", "arousal"),
                     n: int = 400, seed: int = 0, multilabel: bool = False,
                     keys: dict[str, int] | None = None) -> str:
    """Features are noisy linear maps of a latent; each target a squashed linear function of
    it (so learnable), in [-1, 1]."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    values = np.tanh(latent @ rng.normal(size=(8, len(targets))) / np.sqrt(4))
    keys = keys or {"frames_2d": 48, "audio": 24}
    features = {k: (latent @ rng.normal(size=(8, d)) / np.sqrt(8)
                    + 0.3 * rng.normal(size=(n, d)))[:, None].astype(np.float16)
                for k, d in keys.items()}
    labels: np.ndarray = (((latent[:, :3] > 0.5).astype(np.float32)) if multilabel
                          else np.full(n, -1))
    values[5] = np.nan  # a clip without a target is left out
    write_arrays(path, dataset="synthetic", sample_ids=[f"s{i:04d}" for i in range(n)],
                 splits=[SPLIT_CYCLE[i % 5] for i in range(n)], features=features,
                 labels=labels, label_names=["happy", "sad", "anger"] if multilabel else [],
                 multilabel=multilabel, targets=values, target_names=targets, shard_size=160)
    return str(path)


def _eval(store: str, out: Path, **kw) -> dict:
    torch.set_num_threads(1)
    return run_eval(store, run=None, protocol="avce", out=out, preset="cpu", progress=False,
                    device="cpu", **kw)


def test_avce_is_registered() -> None:
    assert get_protocol("avce") is PROTOCOLS["avce"]
    assert PROTOCOLS["avce"].needs_run is False


def test_learns_valence_and_arousal_and_writes_every_output(tmp_path: Path) -> None:
    store = continuous_store(tmp_path / "afewva-like")
    # the paper's Adam and SGD; the encoder side at 1e-3, for 240 clips and 30 epochs
    metrics = _eval(store, tmp_path / "out", overrides={"avce.epochs": 30, "avce.lr": 1e-3})
    test = metrics["summary"]["test"]
    assert test["ccc_valence"]["mean"] > 0.3 and test["ccc_arousal"]["mean"] > 0.3
    assert test["pcc"]["mean"] > 0.6
    assert metrics["task"] == "regression" and metrics["targets"] == ["valence", "arousal"]
    assert metrics["counts"]["train"] == 239  # the row without a target is left out
    assert metrics["class_weights"]["kind"] == "none"
    assert "val CCC" in metrics["selection"]
    assert metrics["config"]["avce"]["mu"] == 0.75 and metrics["config"]["avce"]["delta2"] == 0.8
    assert "variant" not in metrics["details"]  # two targets: the angle term is live
    assert metrics["details"]["optimizer"] == "paper"
    assert len(metrics["runs"][0]["history"]) == 30
    out = tmp_path / "out"
    for name in ("metrics.json", "classifier.pt", "scatter_test.png", "scatter_val.png",
                 "confusion_test.png", "embedding_test.png"):
        assert (out / name).is_file(), name
    written = json.loads((out / "metrics.json").read_text())
    per = written["runs"][0]["splits"]["test"]["per_target"]
    assert set(per) == {"valence", "arousal"} and set(per["valence"]) == {"rmse", "pcc", "ccc",
                                                                           "sagr"}
    history = written["runs"][0]["history"][0]
    assert {"train_av", "train_avce", "train_dis", "val_ccc", "val_loss"} <= set(history)
    payload = torch.load(out / "classifier.pt", weights_only=True)
    assert payload["protocol"] == "avce" and payload["spec"]["latent"] == 32


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance: 2 cov / (var x + var y + (mean x - mean y)^2), population moments."""
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return float(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))


def test_the_saved_classifier_gives_back_the_scored_predictions(tmp_path: Path,
                                                                classifier_outputs) -> None:
    store = continuous_store(tmp_path / "afewva-like", n=200)
    metrics = _eval(store, tmp_path / "out", overrides={"avce.epochs": 4})
    pred, truth, meta = classifier_outputs(tmp_path / "out" / "classifier.pt", store, "test")
    assert meta.task == "regression" and meta.multilabel is False
    assert meta.label_names == ("valence", "arousal") and pred.shape == (40, 2)
    for k, name in enumerate(("valence", "arousal")):
        assert metrics["summary"]["test"][f"ccc_{name}"]["mean"] == pytest.approx(
            _ccc(pred[:, k], truth[:, k]), abs=1e-5)
    assert outputs(torch.from_numpy(pred), meta) == {
        "predictions": {"valence": float(pred[0, 0]), "arousal": float(pred[0, 1])}}


def test_one_target_runs_as_the_labelled_valence_only_variant_or_is_refused(
        tmp_path: Path) -> None:
    store = continuous_store(tmp_path / "mosei-like", targets=("valence",), multilabel=True,
                             seed=1, keys={"frames_2d": 48, "audio": 24, "text": 16})
    metrics = _eval(store, tmp_path / "out",
                    overrides={"avce.epochs": 30, "avce.optimizer": "adamw", "avce.lr": 1e-3,
                               "epochs": 30})
    assert metrics["targets"] == ["valence"]
    assert metrics["summary"]["test"]["ccc"]["mean"] > 0.3
    details = metrics["details"]
    assert details["variant"] == "valence_only" and details["degenerate"] == DEGENERATE
    assert details["optimizer"] == "adamw" and len(metrics["runs"][0]["history"]) == 30
    # the default inputs leave out the (sentiment-trained) text; asked for, it is kept
    assert details["inputs"] == ["video", "audio"] and metrics["modalities"] == ["video", "audio"]
    with_text = _eval(store, tmp_path / "text",
                      overrides={"avce.epochs": 1, "avce.with_text": True})
    assert with_text["details"]["inputs"] == ["video", "audio", "text"]
    with pytest.raises(ConfigError, match="single_target=refuse.*valence.*zero gradient"):
        _eval(store, tmp_path / "refused", overrides={"avce.single_target": "refuse"})


def test_refuses_a_store_without_continuous_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = write_arrays(tmp_path / "meld-like", dataset="meld", sample_ids=["a", "b", "c"],
                         splits=["train", "val", "test"],
                         features={"audio": rng.normal(size=(3, 1, 4)).astype(np.float16)},
                         labels=np.array([0, 1, 0]), label_names=["neutral", "joy"])
    with pytest.raises(DataError, match="continuous targets"):
        _eval(store.url, tmp_path / "out")


def test_the_model_has_the_reference_sizes_and_the_papers_batch_norm() -> None:
    model = AvceModel({"video": 10}, ["video"], 2, AvceConfig(), dropout=0.5)
    z = model.compress({"video": torch.randn(4, 10)})
    assert z.shape == (4, 32) and (z >= 0).all()
    assert model.regressor(z).shape == (4, 2)
    assert model.disentangle_head(z).shape == (4, 8)
    assert (model.view_head(z).abs() <= 1).all()
    for head, width in ((model.regressor, 256), (model.view_head, 256),
                        (model.disentangle_head, 64)):
        norms = [m for m in head if isinstance(m, torch.nn.BatchNorm1d)]
        assert [n.num_features for n in norms] == [width]
    plain = AvceModel({"video": 10}, ["video"], 2, AvceConfig(batch_norm=False), dropout=0.5)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    assert AvceModel.from_spec(model.spec).spec == model.spec


def test_the_papers_optimisers_and_stepped_schedule() -> None:
    model = AvceModel({"video": 10}, ["video"], 2, AvceConfig(), dropout=0.5)
    encoder, heads, plan = _optimizers(model, AvceConfig(batch_size=10, epochs=10), rows=100)
    assert isinstance(encoder, torch.optim.Adam) and isinstance(heads, torch.optim.SGD)
    assert encoder.param_groups[0]["lr"] == 1e-4 and encoder.param_groups[0]["betas"] == (0.5, 0.9)
    assert heads.param_groups[0]["lr"] == 1e-2 and heads.param_groups[0]["momentum"] == 0.9
    ids = {id(p) for p in encoder.param_groups[0]["params"]}
    assert ids == {id(p) for m in (model.compressor, model.regressor) for p in m.parameters()}
    assert plan["epochs"] == 10 and plan["batch_size"] == 10
    # 100 steps: x0.8 after steps 10, 20 and 40 (5K, 10K, 20K of 50K)
    factor = plan["schedule"]
    assert [factor(s) for s in (0, 9, 10, 19, 20, 39, 40, 99)] == pytest.approx(
        [1, 1, 0.8, 0.8, 0.64, 0.64, 0.512, 0.512])
    first, second, plan = _optimizers(model, AvceConfig(optimizer="adamw"), rows=100)
    assert isinstance(first, torch.optim.AdamW) and isinstance(second, torch.optim.AdamW)
    assert plan == {}  # the evaluation's epochs, batch and schedule
