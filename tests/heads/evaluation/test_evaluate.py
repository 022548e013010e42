"""Downstream evaluation end to end on CPU: the three protocols learn a learnable store, the
epoch is chosen on val (never on test), outputs are complete, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from heads.checkpoint import CheckpointError
from heads.evaluation.classifier import load_classifier
from heads.evaluation.fit import decide, make_loss
from heads.data import DataError, read_modality
from heads.evaluation.run import eval_name, resolve_eval_config, run_eval
from heads.pretrain.train import run_pretrain
from pipeline.config import ConfigError
from pipeline.store import FeatureStore, open_store, write_arrays

DIMS = {"frames_2d": 48, "frames_3d": 48, "audio": 24, "text": 16}
SPLIT_CYCLE = ("train", "train", "train", "val", "test")


def labelled_store(path: Path, *, n: int = 400, classes: int = 4, multilabel: bool = False,
                   seed: int = 0, unlabeled: int = 0, permute_test: bool = False,
                   splits: tuple[str, ...] = SPLIT_CYCLE) -> FeatureStore:
    """A store whose features are noisy linear maps of the labels (learnable by a probe)."""
    rng = np.random.default_rng(seed)
    if multilabel:
        labels = (rng.random((n, classes)) < 0.35).astype(np.float32)
        z = labels @ rng.normal(size=(classes, 8)) * 2.0 + rng.normal(size=(n, 8))
    else:
        labels = rng.integers(0, classes, n)
        z = rng.normal(size=(classes, 8))[labels] * 2.0 + rng.normal(size=(n, 8))
    features = {k: (z @ rng.normal(size=(8, d)) / np.sqrt(8)
                    + 0.3 * rng.normal(size=(n, d)))[:, None].astype(np.float16)
                for k, d in DIMS.items()}
    split = np.array([splits[i % len(splits)] for i in range(n)])
    if unlabeled:
        labels[np.flatnonzero(split == "train")[:unlabeled]] = -1
    if permute_test:
        test = np.flatnonzero(split == "test")
        labels[test] = labels[rng.permutation(test)]
    return write_arrays(path, dataset="synthetic", sample_ids=[f"s{i:05d}" for i in range(n)],
                        splits=list(split), features=features, labels=labels,
                        label_names=[f"class{c}" for c in range(classes)],
                        multilabel=multilabel, shard_size=160)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("eval") / "store"
    labelled_store(path)
    return str(path)


@pytest.fixture(scope="module")
def run(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return run_pretrain(store, "conclugen", tmp_path_factory.mktemp("eval") / "run",
                        preset="cpu", epochs=2, device="cpu", progress=False)


def _eval(store: str, **kw) -> dict:
    kw.setdefault("preset", "cpu")
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    kw.setdefault("overwrite", True)  # these tests evaluate one run again and again
    return run_eval(store, **kw)


def test_an_evaluation_is_never_silently_replaced(store: str, run: Path, tmp_path: Path) -> None:
    from heads.outputs import OutputError

    out = tmp_path / "eval"
    first = _eval(store, run=run, protocol="linear", out=out, overwrite=False)
    kept = (out / "metrics.json").read_bytes()
    with pytest.raises(OutputError, match=r"already holds another evaluation \(it differs in "
                       r"config.epochs: 20 -> 1\); --overwrite replaces"):
        _eval(store, run=run, protocol="linear", out=out, overwrite=False,
              overrides={"epochs": 1})
    assert (out / "metrics.json").read_bytes() == kept
    (out / "stale.png").write_bytes(b"a figure of the replaced evaluation")
    again = _eval(store, run=run, protocol="linear", out=out, overrides={"epochs": 1})
    assert not (out / "stale.png").exists(), "--overwrite replaces the whole evaluation"
    assert again["config"] != first["config"]


def _test_accuracy(metrics: dict) -> float:
    return metrics["summary"]["test"]["accuracy"]["mean"]


# ------------------------------------------------------------------------------ the protocols

def test_linear_probe_beats_chance_and_writes_every_output(store: str, run: Path) -> None:
    metrics = _eval(store, run=run, protocol="linear")
    assert _test_accuracy(metrics) > 0.6  # 4 balanced classes: chance is 0.25
    out = run / "eval" / "linear"
    for name in ("metrics.json", "classifier.pt", "confusion_train.png", "confusion_val.png",
                 "confusion_test.png", "embedding_test.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["store_id"] == open_store(store).store_id
    assert saved["modalities"] == ["video", "audio", "text"] and saved["fusion"] == "concat"
    assert saved["counts"] == {"train": 240, "val": 80, "test": 80}
    test = saved["runs"][0]["splits"]["test"]
    assert list(test["per_class"]) == ["class0", "class1", "class2", "class3"]
    assert np.array(test["confusion"]).sum() == 80
    assert saved["summary"]["test"]["f1_weighted"]["mean"] == pytest.approx(test["f1_weighted"])
    assert saved["config"]["batch_size"] == 64 and saved["seeds"] == [0]


@pytest.mark.parametrize("protocol", ["finetune", "supervised"])
def test_finetune_and_supervised_beat_chance(protocol: str, store: str, run: Path,
                                             tmp_path: Path) -> None:
    kw = {"run": run} if protocol == "finetune" else {"run": None, "out": tmp_path / "sup"}
    metrics = _eval(store, protocol=protocol, **kw)
    assert _test_accuracy(metrics) > 0.6
    assert metrics["objective"] == ("conclugen" if protocol == "finetune" else "supervised")
    folder = run / "eval" / "finetune" if protocol == "finetune" else tmp_path / "sup"
    assert (folder / "classifier.pt").is_file()


def test_classifier_file_rebuilds_the_probe(store: str, run: Path) -> None:
    metrics = _eval(store, run=run, protocol="linear")
    model, meta = load_classifier(run / "eval" / "linear" / "classifier.pt")
    assert meta.label_names == ("class0", "class1", "class2", "class3")
    with open_store(store) as fs:
        pos = fs.positions("test")
        batch = {m: torch.from_numpy(read_modality(fs, keys, pos, all_views=False)).float()
                 for m, keys in meta.layout.items()}
        truth = fs.labels(pos)
    with torch.no_grad():
        _, decisions = decide(model(batch), multilabel=False)
    assert (decisions == truth).mean() == pytest.approx(_test_accuracy(metrics))


def test_vision_only_probe_with_mean_fusion(store: str, run: Path) -> None:
    metrics = _eval(store, run=run, protocol="linear", modalities=["video"], fusion="mean")
    assert metrics["modalities"] == ["video"]
    assert _test_accuracy(metrics) > 0.4
    model, _ = load_classifier(run / "eval" / "linear-video-mean" / "classifier.pt")
    assert model.linear.weight.shape == (4, 64)  # mean fusion: D, not M * D
    assert eval_name("linear", ["video", "audio"], ["video", "audio", "text"], "concat") == \
        "linear-video-audio"


# ----------------------------------------------------------------------------- model selection

def test_the_epoch_is_chosen_on_val_and_test_labels_change_nothing(tmp_path: Path) -> None:
    a = labelled_store(tmp_path / "a", n=250)
    b = labelled_store(tmp_path / "b", n=250, permute_test=True)
    ma = _eval(str(a.loc.url), run=None, protocol="supervised", out=tmp_path / "ea",
               overrides={"epochs": 8})
    mb = _eval(str(b.loc.url), run=None, protocol="supervised", out=tmp_path / "eb",
               overrides={"epochs": 8})
    ra, rb = ma["runs"][0], mb["runs"][0]
    history = ra["history"]
    best = max(history, key=lambda h: (h["val_f1"], -h["val_loss"]))
    assert ra["best_epoch"] == best["epoch"] + 1
    assert rb["best_epoch"] == ra["best_epoch"]
    assert [h["val_loss"] for h in rb["history"]] == pytest.approx(
        [h["val_loss"] for h in history])
    assert rb["splits"]["val"] == ra["splits"]["val"]
    assert rb["splits"]["test"]["accuracy"] < ra["splits"]["test"]["accuracy"]


def test_seeds_repeat_training_and_report_mean_and_std(store: str, tmp_path: Path) -> None:
    metrics = _eval(store, run=None, protocol="supervised", out=tmp_path / "s", seeds=2,
                    overrides={"epochs": 4})
    assert metrics["seeds"] == [0, 1] and len(metrics["runs"]) == 2
    acc = metrics["summary"]["test"]["accuracy"]
    values = [r["splits"]["test"]["accuracy"] for r in metrics["runs"]]
    assert acc["mean"] == pytest.approx(np.mean(values))
    assert acc["std"] == pytest.approx(np.std(values, ddof=1))


# ------------------------------------------------------------------------- targets and weights

def test_multilabel_store_is_scored_per_label(tmp_path: Path) -> None:
    store = labelled_store(tmp_path / "ml", multilabel=True, classes=3)
    metrics = _eval(str(store.loc.url), run=None, protocol="supervised", out=tmp_path / "e")
    test = metrics["runs"][0]["splits"]["test"]
    assert set(test["per_label"]) == {"class0", "class1", "class2"}
    assert np.array(test["confusion"]).shape == (3, 2, 2)
    assert metrics["summary"]["test"]["f1_weighted"]["mean"] > 0.6
    assert 0.5 < metrics["summary"]["test"]["weighted_accuracy"]["mean"] <= 1.0
    assert (tmp_path / "e" / "confusion_test.png").is_file()
    assert len(metrics["class_weights"]["values"]) == 3
    assert metrics["class_weights"]["meaning"].startswith("BCE pos_weight = negatives")


def test_class_weights_are_inverse_train_frequencies() -> None:
    loss, weights = make_loss(torch.tensor([0, 0, 0, 1]), 3, multilabel=False,
                              class_weights="inverse")
    # n / (classes present * n_c) = 4 / (2 * 3), 4 / (2 * 1); class 2 is absent: 0
    assert weights == pytest.approx([2 / 3, 2.0, 0.0])
    assert loss.weight.tolist() == pytest.approx(weights)
    _, plain = make_loss(torch.tensor([0, 0, 1]), 2, multilabel=False, class_weights="none")
    assert plain == [1.0, 1.0]
    bce, pos_weight = make_loss(torch.tensor([[1.0, 0], [0, 0], [1, 1], [0, 0]]), 2,
                                multilabel=True, class_weights="inverse")
    assert pos_weight == pytest.approx([2 / 2, 3 / 1])  # negatives / positives
    assert bce.pos_weight.tolist() == pytest.approx(pos_weight)


def test_class_weights_frequency_and_fixed() -> None:
    # frequency: the paper's reference code for CAER (n_c / n; a switch, not the default)
    _, freq = make_loss(torch.tensor([0, 0, 0, 1]), 3, multilabel=False,
                        class_weights="frequency")
    assert freq == pytest.approx([3 / 4, 1 / 4, 0.0])
    # fixed: the dataset's own weights (MELD's published ones), in label order
    ce, fixed = make_loss(torch.tensor([0, 1]), 3, multilabel=False, class_weights="fixed",
                          values=(4.0, 15.0, 1.0))
    assert fixed == [4.0, 15.0, 1.0] and ce.weight.tolist() == fixed
    bce, pos = make_loss(torch.tensor([[1.0, 0]]), 2, multilabel=True, class_weights="fixed",
                         values=[1.5, 20.0])
    assert pos == [1.5, 20.0] and bce.pos_weight.tolist() == pos
    with pytest.raises(ConfigError, match="2 values.*3 classes"):
        make_loss(torch.tensor([0, 1]), 3, multilabel=False, class_weights="fixed",
                  values=(1.0, 2.0))
    with pytest.raises(ConfigError, match="class_weight_values"):
        resolve_eval_config("synthetic", overrides={"class_weights": "fixed"})


def test_unlabeled_rows_are_left_out(tmp_path: Path) -> None:
    store = labelled_store(tmp_path / "u", n=200, unlabeled=10)
    metrics = _eval(str(store.loc.url), run=None, protocol="supervised", out=tmp_path / "e",
                    overrides={"epochs": 2})
    assert metrics["counts"]["train"] == 120 - 10


def test_dataset_manifest_supplies_the_papers_lr_and_the_class_weights() -> None:
    meld = resolve_eval_config("meld")
    assert (meld.optim.lr, meld.optim.weight_decay) == (9.67e-3, 4e-5)
    assert resolve_eval_config("caer").optim.weight_decay == 8.216e-2
    assert resolve_eval_config("mosei", preset="cpu").optim.lr == 9.96e-3
    assert resolve_eval_config("synthetic", overrides={"optim.lr": 0.5}).optim.lr == 0.5
    assert (meld.batch_size, meld.dropout, meld.optim.warmup_epochs) == (4096, 0.5, 5)
    # MELD's published weights and the reference code's CMU-MOSEI pos_weight; CAER inverse.
    assert (meld.class_weights, meld.class_weight_values) == \
        ("fixed", (4.0, 15.0, 15.0, 3.0, 1.0, 6.0, 3.0))
    mosei = resolve_eval_config("mosei")
    assert mosei.class_weights == "fixed" and len(mosei.class_weight_values) == 6
    assert resolve_eval_config("caer").class_weights == "inverse"


# ----------------------------------------------------------- the paper's probe (CHOICES.md)

def test_the_probe_is_dropout_and_linear_on_the_raw_representation(store: str, run: Path,
                                                                   tmp_path: Path) -> None:
    cfg = resolve_eval_config("meld")
    assert (cfg.standardize, cfg.dropout, cfg.classifier_init) == (False, 0.5, "kaiming_normal")
    metrics = _eval(store, run=run, protocol="linear", out=tmp_path / "raw")
    assert metrics["config"]["standardize"] is False
    model, _ = load_classifier(tmp_path / "raw" / "classifier.pt")
    # Nothing was fitted between the representations and the Linear.
    assert torch.equal(model.feature_norm.mean, torch.zeros_like(model.feature_norm.mean))
    assert torch.equal(model.feature_norm.std, torch.ones_like(model.feature_norm.std))
    _eval(store, run=run, protocol="linear", out=tmp_path / "std",
          overrides={"standardize": True})
    fitted, _ = load_classifier(tmp_path / "std" / "classifier.pt")
    assert not torch.equal(fitted.feature_norm.std, torch.ones_like(fitted.feature_norm.std))


def test_the_classifier_starts_from_kaiming_normal_weights() -> None:
    from heads.evaluation.probe import ProbeModel, ProbeSpec, encoder_heads

    heads = encoder_heads({"video": 8}, 2048, seed=0)
    torch.manual_seed(0)
    model = ProbeModel(ProbeSpec(("video",), "concat", 2048, 64, 0.5, False), heads)
    default_std = float(model.linear.weight.detach().std())
    model.init_classifier("kaiming_normal")
    assert float(model.linear.weight.detach().std()) == pytest.approx((2 / 2048) ** 0.5, rel=0.05)
    assert default_std == pytest.approx((1 / (3 * 2048)) ** 0.5, rel=0.05)  # PyTorch's


def test_early_stopping_ends_a_run_once_val_loss_stalls(tmp_path: Path) -> None:
    store = labelled_store(tmp_path / "s", n=250)
    metrics = _eval(str(store.loc.url), run=None, protocol="supervised", out=tmp_path / "e",
                    overrides={"epochs": 200, "patience": 3, "optim.lr": 0.05})
    losses = [h["val_loss"] for h in metrics["runs"][0]["history"]]
    assert len(losses) < 200
    best = min(range(len(losses)), key=losses.__getitem__)
    assert len(losses) - 1 - best == 3  # stopped 3 epochs after the lowest val loss
    assert resolve_eval_config("meld").patience == 15


# ------------------------------------------------------------------------------------ refusals

def test_refuses_a_store_with_other_features(store_no3d: str, run: Path) -> None:
    with pytest.raises(CheckpointError, match="not in the feature space.*frames_3d"):
        _eval(store_no3d, run=run, protocol="linear")


def test_refuses_bad_options(store: str, run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown protocol"):
        _eval(store, run=run, protocol="probe")
    with pytest.raises(ConfigError, match=r"pass --run \(run=RUN\)"):
        _eval(store, run=None, protocol="linear")
    with pytest.raises(ConfigError, match=r"without --run needs --out \(out=FOLDER\)"):
        _eval(store, run=None, protocol="supervised")
    with pytest.raises(ConfigError, match="among"):
        _eval(store, run=run, protocol="linear", modalities=["smell"])
    with pytest.raises(ConfigError, match="fusion"):
        _eval(store, run=run, protocol="linear", fusion="max")
    with pytest.raises(ConfigError, match="unknown preset"):
        _eval(store, run=run, protocol="linear", preset="huge")


def test_refuses_a_store_without_val(tmp_path: Path) -> None:
    store = labelled_store(tmp_path / "noval", n=60, splits=("train", "test"))
    with pytest.raises(DataError, match="val"):
        _eval(str(store.loc.url), run=None, protocol="supervised", out=tmp_path / "e")


def test_a_classifier_refuses_heads_of_another_step(store: str, run: Path,
                                                    tmp_path: Path) -> None:
    _eval(store, run=run, protocol="linear", out=tmp_path / "probe")
    again = run_pretrain(store, "conclugen", tmp_path / "run2", preset="cpu", epochs=1,
                         device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="step"):
        load_classifier(tmp_path / "probe" / "classifier.pt", run=again)
