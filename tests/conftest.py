"""Test-wide settings (offline model hubs, the GPU marker) and the shared fixtures: one
generated MELD sample dataset and one store extracted from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the suite may reach a model hub: weights are made by the tests themselves.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------ shared fixtures: one sample, one store

SAMPLE_CLIPS = 10


@pytest.fixture(scope="session")
def meld_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated MELD sample (10 usable clips plus the release's defects)."""
    from pipeline.sample_data import generate

    return generate("meld", tmp_path_factory.mktemp("meld") / "raw", clips=SAMPLE_CLIPS, seed=0)


@pytest.fixture(scope="session")
def meld_store(meld_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample extracted with random weights by two local Dask workers, 3 clips a shard."""
    from pipeline.extract import load_extract_config
    from pipeline.run import ClusterOptions, run_extract

    out = tmp_path_factory.mktemp("stores") / "meld"
    cfg = load_extract_config(weights={m: "random" for m in
                                       ("frames_2d", "frames_3d", "audio", "text")},
)
    run_extract("meld", meld_sample, str(out), cfg=cfg, shard_size=3, device="cpu",
                cluster=ClusterOptions(workers=2))
    return out
