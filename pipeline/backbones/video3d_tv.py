"""Lighter motion features: torchvision's ``r3d_18`` / ``r2plus1d_18`` (``frames_3d``, 512-d).

Alternatives to the paper's 3D ResNet-101 with published, downloadable Kinetics-400 weights
(``KINETICS400_V1``). Same windowing rule and pooling as :mod:`pipeline.backbones.resnet3d`
(16-frame windows at 16 fps, mean over windows); mean and std are those of the torchvision
weights' transforms, input 112 px. torchvision's transforms resize to 128x171 and centre-crop
112; face crops are square and already centred, so they are resized straight to 112.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipeline.backbones.encoder import UnitEncoder, freeze, resolve_device
from pipeline.backbones.random_init import RESIDUAL_CNN, he_init_, init_fields, state_sha256
from pipeline.backbones.resnet3d import (
    KINETICS_MEAN, KINETICS_STD, window_encoder, window_preprocessing)
from pipeline.backbones.torchvision_trunk import torchvision_trunk
from pipeline.backbones.weights import WeightsSource, in_background


@dataclass(frozen=True)
class TorchvisionVideoSpec:
    """A torchvision video ResNet as a window encoder.

    Attributes:
        name: registry name.
        arch: torchvision constructor (``r3d_18`` or ``r2plus1d_18``).
        key: store key.
        dim: output dimension.
        default_weights: torchvision weights enum member loaded when none is given.
        image_size: frames are resized to ``image_size x image_size``.
        mean: per-channel RGB mean (``KINETICS400_V1.transforms().mean``).
        std: per-channel RGB std.
        fps: frame rate extraction samples the clip at.
        window: frames per window.
        min_tail: shortest trailing partial window kept in a clip longer than ``window``.
        batch_size: windows per backbone call.
    """

    name: str
    arch: str
    key: str = "frames_3d"
    dim: int = 512
    default_weights: str | None = "KINETICS400_V1"
    image_size: int = 112
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    fps: float = 16.0
    window: int = 16
    min_tail: int = 8
    batch_size: int = 16

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing parameters recorded in provenance."""
        return window_preprocessing(self)


R3D_18 = TorchvisionVideoSpec(name="r3d_18", arch="r3d_18")
R2PLUS1D_18 = TorchvisionVideoSpec(name="r2plus1d_18", arch="r2plus1d_18")


def build(spec: TorchvisionVideoSpec, weights: str | WeightsSource | None = None,
          device: str = "cpu") -> UnitEncoder:
    """Build the frozen window encoder.

    Args:
        spec: the backbone's spec.
        weights: ``None`` (``KINETICS400_V1``), a torchvision weights name, ``"random"``
            (:data:`~pipeline.backbones.random_init.RESIDUAL_CNN`), a state-dict file or an
            http(s) URL (torchvision key names).
        device: ``"cpu"`` or ``"cuda[:i]"``.

    Returns:
        An encoder mapping ``uint8 [T, H, W, 3]`` at 16 fps to ``float32 [spec.dim]``.
    """

    dev = resolve_device(device)
    model, source, sha, enum = torchvision_trunk(spec, weights)
    init = None
    if source.kind == "random":
        from torchvision.models.video.resnet import BasicBlock, Bottleneck

        he_init_(model, residual_blocks=(BasicBlock, Bottleneck))
        sha, init = in_background(state_sha256, model.state_dict()), init_fields(RESIDUAL_CNN)
    if source.identifier in {member.name for member in enum}:
        _check_constants(spec, enum[source.identifier].transforms())
    return window_encoder(spec, freeze(model, dev), dev, weights=source.identifier, sha256=sha,
                          init=init, architecture=f"torchvision {spec.arch}, fc removed")


def _check_constants(spec: TorchvisionVideoSpec, transforms: Any) -> None:
    """The spec's constants must be the weights' own (guards against a silent mismatch)."""
    expected = (list(transforms.mean), list(transforms.std), list(transforms.crop_size))
    actual = (list(spec.mean), list(spec.std), [spec.image_size, spec.image_size])
    if expected != actual:
        raise ValueError(f"{spec.name}: preprocessing (mean, std, size) {actual} differs from "
                         f"the torchvision weights' {expected}")
