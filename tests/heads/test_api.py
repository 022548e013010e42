"""The Python API's run half, through its public entry point: ``load_run(run).encode(...)``
maps a store split (or arrays) to the run's representations, the same the heads compute; a
store in another feature space is refused naming both."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from heads.api import load_run
from heads.checkpoint import load_model
from heads.data import DataError
from heads.files import CheckpointError
from heads.pretrain.train import run_pretrain
from pipeline.store import open_store


@pytest.fixture(scope="module")
def run(store_1view: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    overrides = {"model": {"representation_dim": 32, "projection_dim": 8,
                           "reconstruction_dim": 16},
                 "data": {"batch_size": 64}, "output": {"tensorboard": False}}
    return run_pretrain(store_1view, "multi_cont", tmp_path_factory.mktemp("api") / "run",
                        overrides=overrides, epochs=1, device="cpu", progress=False)


def test_encode_maps_a_split_to_the_runs_representations(run: Path, store_1view: str) -> None:
    pretrained = load_run(run)
    assert pretrained.modalities == ("video", "audio", "text") and pretrained.dim == 32
    test = open_store(store_1view).split("val")
    z = pretrained.encode(test, batch_size=50)  # several batches
    assert z.shape == (len(test), 3 * 32) and z.dtype == np.float32

    model, _ = load_model(run / "checkpoints" / "last.pt")
    x = test.features()
    with torch.no_grad():
        expected = model.represent({
            "video": torch.from_numpy(np.concatenate([x["frames_2d"], x["frames_3d"]], 1)),
            "audio": torch.from_numpy(x["audio"]), "text": torch.from_numpy(x["text"])})
    np.testing.assert_allclose(z, torch.cat(list(expected.values()), 1).numpy(), atol=1e-5)

    np.testing.assert_allclose(pretrained.encode(x), z, atol=1e-6)  # arrays, keyed by store key
    audio = pretrained.represent(test, modalities=["audio"])
    np.testing.assert_allclose(audio["audio"], expected["audio"].numpy(), atol=1e-5)
    tensor = pretrained.encode_torch(test, modalities=["text", "audio"])
    assert torch.allclose(tensor, torch.cat([expected["text"], expected["audio"]], 1), atol=1e-5)


def test_a_store_of_another_feature_space_is_refused_naming_both(run: Path, store_maker,
                                                                  tmp_path: Path) -> None:
    other = store_maker(tmp_path / "other", n=64)  # its own content: another feature space
    with pytest.raises(CheckpointError, match=re.escape(f"{other.url} is not in the feature "
                                                        f"space {run / 'checkpoints' / 'last.pt'}")):
        load_run(run).encode(other.split("train"))


def test_arrays_missing_a_key_or_of_another_width_are_named(run: Path) -> None:
    pretrained = load_run(run)
    arrays = {"frames_2d": np.zeros((3, 64)), "frames_3d": np.zeros((3, 64)),
              "audio": np.zeros((3, 32)), "text": np.zeros((3, 24))}
    with pytest.raises(DataError, match=r"no features \['text'\]"):
        pretrained.encode({k: v for k, v in arrays.items() if k != "text"})
    with pytest.raises(DataError, match=r"audio: the heads of .* read \[n, 32\] \(audio\), "
                                        r"got \(3, 31\)"):
        pretrained.encode({**arrays, "audio": np.zeros((3, 31))})
    with pytest.raises(DataError, match=r"no heads for modalities \['depth'\]"):
        pretrained.encode(arrays, modalities=["depth"])
