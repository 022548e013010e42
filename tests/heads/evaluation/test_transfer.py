"""The paper's protocol: heads pretrained on one store (unlabelled, like VoxCeleb2) and
evaluated on another store in the same feature space (labelled, extracted by someone else);
stores of another feature space are refused with the differing fields named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from heads.checkpoint import CheckpointError
from heads.evaluation.run import run_eval
from heads.pretrain.train import run_pretrain
from pipeline.store import FeatureStore, write_arrays

DIMS = {"frames_2d": 32, "audio": 16, "text": 12}
CPU = {"model": {"representation_dim": 32, "projection_dim": 8, "reconstruction_dim": 16},
       "data": {"batch_size": 64}, "output": {"tensorboard": False}}


def _store(path: Path, *, seed: int, labelled: bool, space: str = "synthetic-v1",
           dims: dict[str, int] = DIMS, n: int = 320) -> FeatureStore:
    """Samples of 4 latent classes seen through fixed per-key maps: the maps (seed 0) are the
    feature space, shared by every store of the same ``space``; ``seed`` draws the samples."""
    maps = np.random.default_rng(0)
    means = maps.normal(size=(4, 8)) * 2.0
    weights = {k: maps.normal(size=(8, d)) / np.sqrt(8) for k, d in dims.items()}
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    z = means[labels] + rng.normal(size=(n, 8))
    features = {k: (z @ w + 0.3 * rng.normal(size=(n, w.shape[1])))[:, None].astype(np.float16)
                for k, w in weights.items()}
    splits = ["train" if i % 5 < 3 else "val" if i % 5 == 3 else "test" for i in range(n)]
    return write_arrays(path, dataset="labelled" if labelled else "unlabelled",
                        sample_ids=[f"{seed}-{i}" for i in range(n)], splits=splits,
                        features=features,
                        labels=labels if labelled else np.full(n, -1),
                        label_names=[f"c{c}" for c in range(4)] if labelled else [],
                        feature_space=space)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureStore]:
    root = tmp_path_factory.mktemp("transfer")
    source = _store(root / "vox", seed=1, labelled=False)
    run = run_pretrain(source.url, "multi_cont", root / "run", modalities=["video", "audio",
                                                                          "text"],
                       overrides=CPU, preset="cpu", epochs=3, device="cpu", progress=False)
    return run, source


def test_heads_pretrained_on_one_store_evaluate_on_another(
        pretrained: tuple[Path, FeatureStore], tmp_path: Path) -> None:
    run, source = pretrained
    target = _store(tmp_path / "meld", seed=2, labelled=True)
    assert target.store_id != source.store_id
    metrics = run_eval(target.url, run=run, protocol="linear", preset="cpu",
                       overrides={"epochs": 15}, device="cpu", progress=False)
    assert metrics["store_id"] == target.store_id
    assert metrics["pretrained_on"]["store_id"] == source.store_id
    assert metrics["pretrained_on"]["dataset"] == "unlabelled"
    assert metrics["summary"]["test"]["accuracy"]["mean"] > 0.5  # 4 classes: chance 0.25


def test_another_feature_space_is_refused_naming_the_fields(
        pretrained: tuple[Path, FeatureStore], tmp_path: Path) -> None:
    run, _ = pretrained
    other = _store(tmp_path / "other", seed=2, labelled=True, space="synthetic-v2")
    with pytest.raises(CheckpointError) as err:
        run_eval(other.url, run=run, protocol="linear", preset="cpu", device="cpu",
                 progress=False)
    message = str(err.value)
    for key in ("frames_2d", "audio", "text"):
        assert f"{key}: weights: synthetic-v1 -> synthetic-v2" in message
    wider = _store(tmp_path / "wider", seed=2, labelled=True, dims={**DIMS, "audio": 20})
    with pytest.raises(CheckpointError, match=r"audio: dim: 16 -> 20") as err:
        run_eval(wider.url, run=run, protocol="linear", preset="cpu", device="cpu",
                 progress=False)
    assert "frames_2d" not in str(err.value).split("fields per store key:")[1]


def test_only_the_keys_the_heads_read_are_compared(tmp_path: Path) -> None:
    source = _store(tmp_path / "vox", seed=1, labelled=False)
    run = run_pretrain(source.url, "multi_cont", tmp_path / "run", modalities=["audio", "text"],
                       overrides=CPU, preset="cpu", epochs=1, device="cpu", progress=False)
    # frames_2d is in another space, but these heads never read it
    target = _store(tmp_path / "meld", seed=2, labelled=True, space="synthetic-v1")
    mixed = _store(tmp_path / "mixed", seed=3, labelled=True,
                   dims={**DIMS, "frames_2d": 40})
    for store in (target, mixed):
        metrics = run_eval(store.url, run=run, protocol="linear", preset="cpu",
                           out=tmp_path / "eval" / store.dataset / store.url.split("/")[-1],
                           overrides={"epochs": 2}, device="cpu", progress=False)
        assert metrics["modalities"] == ["audio", "text"]


def test_resuming_pretraining_needs_the_exact_store(pretrained: tuple[Path, FeatureStore],
                                                   tmp_path: Path) -> None:
    run, _ = pretrained
    target = _store(tmp_path / "meld", seed=2, labelled=True)
    with pytest.raises(CheckpointError, match="resuming needs the store the run was trained"):
        run_pretrain(target.url, "multi_cont", run, resume=True, epochs=4, device="cpu",
                     progress=False)
