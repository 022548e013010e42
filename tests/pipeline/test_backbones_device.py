"""The device-side settings of extraction: units per backbone call and clips per batch by
device, and the GPU path's memory format, which must not change a feature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backbones.encoder import UnitEncoder, nhwc, to_device
from pipeline.config import ConfigError
from pipeline.extract_config import load_extract_config
from pipeline.extract_config import BATCH_CLIPS, GPU_UNITS_PER_CALL


def test_units_per_call_and_clips_per_batch_follow_the_device() -> None:
    cfg = load_extract_config()
    assert cfg.run.batch_clips is None and cfg.run.units_per_call == {}
    assert cfg.run.clips_per_batch("cpu") == BATCH_CLIPS["cpu"] == 8
    assert cfg.run.clips_per_batch("cuda:1") == BATCH_CLIPS["cuda"] == 64
    assert cfg.run.units("frames_2d", "cpu") is None  # the backbone's own
    assert cfg.run.units("frames_3d", "cuda:0") == GPU_UNITS_PER_CALL["frames_3d"]
    chosen = load_extract_config(batch_clips=3, units_per_call={"frames_2d": 17})
    assert chosen.run.clips_per_batch("cuda") == 3
    assert chosen.run.units("frames_2d", "cpu") == chosen.run.units("frames_2d", "cuda") == 17
    with pytest.raises(ConfigError, match="units_per_call: invalid"):
        load_extract_config(units_per_call={"video": 4})
    with pytest.raises(ConfigError, match="batch_clips must be at least 1"):
        load_extract_config(batch_clips=0)


def test_units_per_call_reaches_the_encoder() -> None:
    from pipeline.manifest import FacePolicy
    from pipeline.models import load_models

    cfg = load_extract_config(modalities=["audio"], weights={"audio": "random"},
                              units_per_call={"audio": 5})
    models = load_models(cfg, FacePolicy(crop=False), "cpu")
    assert models.device == "cpu" and models.encoders["audio"].spec.batch_size == 5


def _tiny_resnet() -> UnitEncoder:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=8).eval()
    return UnitEncoder(name="tiny", key="frames_2d", dim=8, model=model,
                       device=torch.device("cpu"), batch_size=3,
                       split=lambda clip: [clip], prepare=lambda x: x.permute(0, 3, 1, 2) / 255,
                       provenance={}, channels_last=True)


def test_channels_last_gives_the_same_features() -> None:
    """The 2D ResNets run NHWC on CUDA; the layout may not change a vector (checked on the
    CPU, where the NHWC kernels run when forced)."""
    clip = np.random.default_rng(1).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    encoder = _tiny_resnet()
    assert not encoder.channels_last  # asked for, but only on CUDA
    want = encoder.encode(clip)
    encoder.model = nhwc(encoder.model)
    encoder.channels_last = True
    np.testing.assert_allclose(encoder.encode(clip), want, rtol=1e-4, atol=1e-5)


def test_to_device_on_the_cpu_is_a_view() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    tensor = to_device(array, torch.device("cpu"))
    assert tensor.data_ptr() == array.ctypes.data


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_gpu_path_matches_the_cpu() -> None:
    """Pinned, non-blocking copies, outputs kept on the device, NHWC: the CPU's vectors."""
    clip = np.random.default_rng(2).integers(0, 255, (7, 64, 64, 3), dtype=np.uint8)
    cpu = _tiny_resnet()
    want = cpu.encode(clip)
    gpu = _tiny_resnet()
    gpu.model, gpu.device = nhwc(gpu.model.cuda()), torch.device("cuda")
    gpu.channels_last = True
    np.testing.assert_allclose(gpu.encode(clip), want, rtol=0.05, atol=0.05)  # bf16
