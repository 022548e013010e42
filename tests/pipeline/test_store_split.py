"""The store's splits as arrays and a PyTorch dataset: the public reading API for code outside
the head trainer (``open_store(url).split("train")``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.store import StoreError, StoreSplit, open_store, write_arrays

N = 20
SPLITS = ["train"] * 12 + ["val"] * 4 + ["test"] * 4


def _features(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"frames_2d": rng.standard_normal((N, 2, 6)).astype(np.float32),
            "audio": rng.standard_normal((N, 2, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("split") / "s"
    targets = np.linspace(-1, 1, N, dtype=np.float32)[:, None]
    targets[3] = np.nan
    write_arrays(path, dataset="toy", sample_ids=[f"c{i:02d}" for i in range(N)],
                 splits=SPLITS, features=_features(), labels=np.arange(N) % 3,
                 label_names=["a", "b", "c"], shard_size=7, targets=targets,
                 target_names=["valence"])
    return str(path)


def test_a_split_reads_the_features_labels_and_ids_written(store_url: str) -> None:
    train = open_store(store_url).split("train")
    assert isinstance(train, StoreSplit) and len(train) == 12
    assert train.sample_ids == [f"c{i:02d}" for i in range(12)]
    np.testing.assert_array_equal(train.labels, np.arange(12) % 3)
    written = _features()
    feats = train.features()
    assert set(feats) == {"frames_2d", "audio"}
    assert feats["audio"].dtype == np.float32 and feats["audio"].shape == (12, 3)
    np.testing.assert_allclose(feats["audio"], written["audio"][:12, 0], atol=2e-3)  # float16
    views = train.features("frames_2d", view=None)["frames_2d"]
    assert views.shape == (12, 2, 6)
    np.testing.assert_allclose(views[:, 1], written["frames_2d"][:12, 1], atol=2e-3)
    np.testing.assert_allclose(train.features("frames_2d", view=1)["frames_2d"],
                               written["frames_2d"][:12, 1], atol=2e-3)
    assert train.features("audio", dtype=None)["audio"].dtype == np.float16
    targets = train.targets
    assert targets is not None and targets.shape == (12, 1) and np.isnan(targets[3, 0])


def test_several_splits_and_every_row(store_url: str) -> None:
    store = open_store(store_url)
    assert len(store.split("val", "test")) == 8
    everything = store.split()
    assert everything.names == ("test", "train", "val") and len(everything) == N


def test_batches_cover_the_split_in_order_with_bounded_size(store_url: str) -> None:
    train = open_store(store_url).split("train")
    seen_ids, chunks = [], []
    for ids, feats, labels in train.batches(5, ["audio"]):
        assert len(ids) <= 5 and feats["audio"].shape == (len(ids), 3) and len(labels) == len(ids)
        seen_ids += ids
        chunks.append(feats["audio"])
    assert seen_ids == train.sample_ids
    np.testing.assert_array_equal(np.concatenate(chunks), train.features("audio")["audio"])


def test_a_torch_dataset_works_with_a_data_loader(store_url: str) -> None:
    dataset = open_store(store_url).split("train").to_torch(["frames_2d", "audio"])
    assert len(dataset) == 12
    features, label = dataset[4]
    assert features["frames_2d"].shape == (6,) and int(label) == 4 % 3
    batch_features, batch_labels = next(iter(DataLoader(dataset, batch_size=8)))
    assert batch_features["audio"].shape == (8, 3) and batch_features["audio"].dtype == \
        torch.float32
    assert batch_labels.tolist() == [i % 3 for i in range(8)]


def test_what_a_store_does_not_hold_is_named(store_url: str) -> None:
    store = open_store(store_url)
    with pytest.raises(StoreError, match=r"no split \['dev'\]; it has \['test', 'train', 'val'\]"):
        store.split("dev")
    with pytest.raises(StoreError, match=r"no features \['text'\]"):
        store.split("train").features("text")
    with pytest.raises(StoreError, match="view 2 out of range: it holds 2 view"):
        store.split("train").features(view=2)


def test_a_remote_store_and_multi_label_labels(tmp_path: Path) -> None:
    labels = (np.random.default_rng(1).random((N, 2)) > 0.5).astype(np.float32)
    write_arrays("memory://split-api/s", dataset="toy", sample_ids=[f"m{i}" for i in range(N)],
                 splits=SPLITS, features={"text": np.ones((N, 1, 4), np.float32)},
                 labels=labels, label_names=["x", "y"], multilabel=True)
    test = open_store("memory://split-api/s").split("test")
    np.testing.assert_array_equal(test.labels, labels[16:])
    assert test.to_torch()[0][1].shape == (2,)
    assert test.targets is None
