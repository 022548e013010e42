"""Frame features: torchvision ResNet-152 up to global average pooling (``frames_2d``, 2048-d).

Input: the face crops of one clip sampled at 1 fps, ``uint8 [T, H, W, 3]`` RGB. Each frame is
resized to the spec's 180 px (a no-op for the face cropper's output), normalised with the
ImageNet statistics in RGB order, encoded to ``[2048]``; the clip's vector is the mean over
frames. (The paper's reference configs swap ImageNet mean and std; this module does not.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.backbones.encoder import (
    UnitEncoder, compute_dtype, freeze, normaliser, resize, resolve_device)
from pipeline.backbones.random_init import RESIDUAL_CNN, he_init_, init_fields, state_sha256
from pipeline.backbones.torchvision_trunk import torchvision_trunk
from pipeline.backbones.weights import WeightsSource, in_background

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Resnet2dSpec:
    """A torchvision 2D ResNet as a frame encoder, with its preprocessing constants.

    Attributes:
        name: registry name.
        arch: torchvision constructor (``resnet152``).
        key: store key.
        dim: output dimension (channels after global average pooling).
        default_weights: torchvision weights enum member loaded when none is given.
        image_size: frames are resized to ``image_size x image_size``.
        mean: per-channel RGB mean of the weights' training data.
        std: per-channel RGB std.
        fps: frame rate extraction samples the clip at.
        batch_size: frames per backbone call.
    """

    name: str = "resnet152"
    arch: str = "resnet152"
    key: str = "frames_2d"
    dim: int = 2048
    default_weights: str | None = "IMAGENET1K_V2"
    image_size: int = 180
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    fps: float = 1.0
    batch_size: int = 64

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing parameters recorded in provenance."""
        return {"input": "uint8 RGB face crops [T, H, W, 3]", "fps": self.fps,
                "image_size": self.image_size, "resize": "bilinear, antialiased",
                "mean": list(self.mean), "std": list(self.std),
                "pooling": "mean over frames of the global-average-pooled features"}


RESNET152 = Resnet2dSpec()


def build(spec: Resnet2dSpec, weights: str | WeightsSource | None = None,
          device: str = "cpu") -> UnitEncoder:
    """Build the frozen frame encoder.

    Args:
        spec: the backbone's spec.
        weights: ``None`` (the spec's torchvision weights), a torchvision weights name,
            ``"random"`` (:data:`~pipeline.backbones.random_init.RESIDUAL_CNN`), a state-dict
            file or an http(s) URL (torchvision key names).
        device: ``"cpu"`` or ``"cuda[:i]"``.

    Returns:
        An encoder mapping ``uint8 [T, H, W, 3]`` to ``float32 [spec.dim]``.
    """

    dev = resolve_device(device)
    model, source, sha, _ = torchvision_trunk(spec, weights)
    init: dict[str, Any] = {}
    if source.kind == "random":
        from torchvision.models.resnet import BasicBlock, Bottleneck

        he_init_(model, residual_blocks=(BasicBlock, Bottleneck))
        sha, init = in_background(state_sha256, model.state_dict()), init_fields(RESIDUAL_CNN)
    model = freeze(model, dev)
    normalise = normaliser(spec.mean, spec.std, dev)

    def prepare(frames: torch.Tensor) -> torch.Tensor:
        # [N, H, W, 3] uint8 -> [N, 3, S, S] float, normalised (affine and resize commute).
        return resize(normalise(frames.permute(0, 3, 1, 2)), spec.image_size)

    provenance = {"backbone": spec.name, "architecture": f"torchvision {spec.arch}, fc removed",
                  "weights": source.identifier, "weights_sha256": sha, **init, "dim": spec.dim,
                  "dtype": "float32", "compute_dtype": compute_dtype(dev),
                  **spec.preprocessing()}
    return UnitEncoder(name=spec.name, key=spec.key, dim=spec.dim, model=model, device=dev,
                       batch_size=spec.batch_size, split=_frames, prepare=prepare,
                       provenance=provenance, channels_last=True)


def _frames(clip: np.ndarray) -> list[np.ndarray]:
    """Every frame is a unit: one block ``[T, H, W, 3]`` (the clip itself, no copy)."""
    return [clip]

