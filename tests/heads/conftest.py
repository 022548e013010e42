"""Synthetic feature stores with learnable structure, shared by the head tests.

Every sample has a latent vector: its class mean plus its own noise. Each store key is a fixed
random linear map of that latent plus key-specific noise, so the modalities of one sample agree
(cross-modal contrast is learnable) and classes form clusters. Extra views add small noise to
view 0 (the clean one), as augmented views would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.store import FeatureStore, write_arrays

DIMS = {"frames_2d": 64, "frames_3d": 64, "audio": 32, "text": 24}

# A CPU-sized run: small heads, batch 64, clustering from epoch 1, no TensorBoard.
CPU = {
    "model": {"representation_dim": 64, "projection_dim": 16, "reconstruction_dim": 32},
    "clustering": {"start_epoch": 1, "queue_batches": 2, "iterations": 5},
    "optim": {"lr": 1e-3, "restart_epochs": 100},
    "data": {"batch_size": 64, "chunk_rows": 96, "shuffle_chunks": 2},
    "output": {"tensorboard": False},
}


def make_store(path: Path, *, n: int = 384, views: int = 1, keys: Sequence[str] = tuple(DIMS),
               classes: int = 4, seed: int = 0, val_every: int = 4) -> FeatureStore:
    """Write a synthetic store; every ``val_every``-th sample is in ``val``, the rest in train."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    latent = 8
    means = rng.normal(size=(classes, latent)) * 2.0
    z = means[labels] + rng.normal(size=(n, latent))
    features = {}
    for key in keys:
        w = rng.normal(size=(latent, DIMS[key])) / np.sqrt(latent)
        base = z @ w + 0.3 * rng.normal(size=(n, DIMS[key]))
        extra = [base + 0.3 * rng.normal(size=base.shape) for _ in range(views - 1)]
        features[key] = np.stack([base, *extra], axis=1).astype(np.float16)
    splits = ["val" if i % val_every == 0 else "train" for i in range(n)]
    return write_arrays(path, dataset="synthetic", sample_ids=[f"s{i:05d}" for i in range(n)],
                        splits=splits, features=features, labels=labels,
                        label_names=[f"class{c}" for c in range(classes)], shard_size=128)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # Two shared cores: more threads only contend, and results stay reproducible.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def store_1view(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("store1") / "store"
    make_store(path)
    return str(path)


@pytest.fixture(scope="session")
def store_views(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The clean view and two augmented ones (Instance-Cont contrasts the augmented two)."""
    path = tmp_path_factory.mktemp("store3") / "store"
    make_store(path, views=3)
    return str(path)


@pytest.fixture(scope="session")
def store_no3d(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("store_no3d") / "store"
    make_store(path, keys=("frames_2d", "audio", "text"))
    return str(path)


@pytest.fixture
def cpu() -> dict:
    """The CPU-sized overrides (a fresh copy per test)."""
    import copy

    return copy.deepcopy(CPU)


@pytest.fixture
def store_maker():
    """:func:`make_store`, for tests that need a store of their own."""
    return make_store
