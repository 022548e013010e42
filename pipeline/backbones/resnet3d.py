"""Motion features: a Hara-style 3D ResNet-101 on 16-frame windows (``frames_3d``, 2048-d).

The architecture follows the 3D ResNets of Hara et al. (CVPR 2018) as published in
``alexandonian/pretorched-x`` (``resnet3d101``) and ``kenshohara/3D-ResNets-PyTorch``, so that
their Kinetics-400 checkpoint (``resnet3d101_kinetics-8d4c9d63.pth``) loads by name:
``conv1`` 3->64, kernel 7x7x7, stride (1, 2, 2), padding 3; ``bn1``; max pool 3x3x3 stride 2
padding 1; bottleneck blocks (1x1x1, 3x3x3 carrying the stride, 1x1x1 with expansion 4) in
``layer1..layer4`` = [3, 4, 23, 3] with widths 64, 128, 256, 512 and strides 1, 2, 2, 2;
shortcut type B (``downsample`` = 1x1x1 conv + BatchNorm where shape changes); adaptive global
average pooling -> 2048. The classifier (``fc`` / ``last_linear``) is not built and its
checkpoint keys are ignored on purpose.

Windowing rule (input: ``uint8 [T, H, W, 3]`` RGB at 16 fps): non-overlapping windows of 16
frames from the first frame. A clip of at most 16 frames is one window of its own length
(windows shrink to the clip). In a longer clip, a trailing partial window is kept when it has
at least ``min_tail`` (8) frames, half a window, and dropped otherwise, so no window is made
of padding or of a handful of frames. Windows are fed at 180 px, the face-crop size, as the
paper's reference code did (the Kinetics models were trained at 112 px; see docs/CHOICES.md;
face crops are square, so no centre crop), normalised with
the Kinetics statistics, encoded to ``[2048]`` each; the clip's vector is their mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from pipeline.backbones.encoder import (
    UnitEncoder, compute_dtype, freeze, normaliser, resize, resolve_device)
from pipeline.backbones.random_init import RESIDUAL_CNN, he_init_, init_fields, state_sha256
from pipeline.backbones.catalogue import RESNET3D101_KINETICS
from pipeline.backbones.weights import (
    WeightsSource, fit_state_dict, in_background, load_state_dict, resolve_weights, skeleton,
    warn_random)

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
#: Weights this module knows by name (pretorched-x's port of Hara et al.'s Kinetics-400 model).
KNOWN_WEIGHTS = {RESNET3D101_KINETICS.identifier: RESNET3D101_KINETICS.files[0].url}
CLASSIFIER_PREFIXES = ("fc.", "last_linear.")


@dataclass(frozen=True)
class Resnet3dSpec:
    """A Hara-style 3D ResNet as a window encoder, with its preprocessing constants.

    Attributes:
        name: registry name.
        key: store key.
        dim: output dimension (``512 * 4``).
        default_weights: identifier in :data:`KNOWN_WEIGHTS` loaded when none is given.
        layers: bottleneck blocks per stage.
        image_size: frames are resized to ``image_size x image_size``.
        mean: per-channel RGB mean (Kinetics).
        std: per-channel RGB std (Kinetics).
        fps: frame rate extraction samples the clip at.
        window: frames per window.
        min_tail: shortest trailing partial window kept in a clip longer than ``window``.
        batch_size: windows per backbone call.
    """

    name: str = "resnet3d101"
    key: str = "frames_3d"
    dim: int = 2048
    default_weights: str | None = "resnet3d101_kinetics-8d4c9d63"
    layers: tuple[int, int, int, int] = (3, 4, 23, 3)
    image_size: int = 180  # the paper's 180x180 face crops, as the reference code fed them
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    fps: float = 16.0
    window: int = 16
    min_tail: int = 8
    batch_size: int = 8

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing parameters recorded in provenance."""
        return window_preprocessing(self)


RESNET3D101 = Resnet3dSpec()


class WindowSpec(Protocol):
    """What :func:`window_encoder` needs from a 3D spec (read-only: the specs are frozen)."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    @property
    def mean(self) -> tuple[float, float, float]: ...

    @property
    def std(self) -> tuple[float, float, float]: ...

    @property
    def fps(self) -> float: ...

    @property
    def window(self) -> int: ...

    @property
    def min_tail(self) -> int: ...

    @property
    def batch_size(self) -> int: ...


def window_bounds(n_frames: int, window: int = 16, min_tail: int = 8) -> list[tuple[int, int]]:
    """``(start, stop)`` of each window of a clip under the module's windowing rule.

    Args:
        n_frames: frames in the clip (>= 1).
        window: frames per window.
        min_tail: shortest trailing partial window kept when a full window exists.

    Returns:
        Non-overlapping ``[start, stop)`` frame ranges, in order.
    """
    if n_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {n_frames}")
    if n_frames <= window:
        return [(0, n_frames)]
    full = n_frames // window
    bounds = [(i * window, (i + 1) * window) for i in range(full)]
    if n_frames - full * window >= min_tail:
        bounds.append((full * window, n_frames))
    return bounds


def split_windows(clip: np.ndarray, window: int, min_tail: int) -> list[np.ndarray]:
    """A clip ``[T, H, W, 3]`` as unit blocks: ``[n, window, H, W, 3]`` plus a tail block.

    The full windows are a reshaped view of the clip (no copy).
    """
    bounds = window_bounds(len(clip), window, min_tail)
    full = sum(1 for start, stop in bounds if stop - start == window)
    blocks = []
    if full:
        blocks.append(clip[:full * window].reshape(full, window, *clip.shape[1:]))
    if full < len(bounds):
        start, stop = bounds[-1]
        blocks.append(clip[None, start:stop])
    return blocks


def window_preprocessing(spec: WindowSpec) -> dict[str, Any]:
    """Preprocessing parameters of a window encoder, for provenance."""
    return {"input": "uint8 RGB face crops [T, H, W, 3]", "fps": spec.fps,
            "window": spec.window, "window_stride": spec.window, "min_tail": spec.min_tail,
            "image_size": spec.image_size, "resize": "bilinear, antialiased, no crop",
            "mean": list(spec.mean), "std": list(spec.std),
            "pooling": "mean over windows of the global-average-pooled features"}


def window_encoder(spec: WindowSpec, model: nn.Module, device: torch.device, *,
                   architecture: str, weights: str, sha256: str | Future[str],
                   init: Mapping[str, Any] | None = None) -> UnitEncoder:
    """Wrap a frozen 3D backbone (``[N, 3, t, S, S]`` -> ``[N, dim]``) as a window encoder.

    ``init`` carries the provenance fields of random weights (``init_scheme``, ``init_seed``);
    ``sha256`` may still be being computed (the encoder's ``provenance()`` waits for it).
    """
    normalise = normaliser(spec.mean, spec.std, device)

    def prepare(windows: torch.Tensor) -> torch.Tensor:
        # [N, t, H, W, 3] uint8 -> frames [N*t, 3, S, S] float -> clips [N, 3, t, S, S].
        n, t = windows.shape[:2]
        frames = normalise(windows.flatten(0, 1).permute(0, 3, 1, 2))
        frames = resize(frames, spec.image_size)
        return frames.unflatten(0, (n, t)).transpose(1, 2).contiguous()

    provenance = {"backbone": spec.name, "architecture": architecture, "weights": weights,
                  "weights_sha256": sha256, **(init or {}), "dim": spec.dim, "dtype": "float32",
                  "compute_dtype": compute_dtype(device), **window_preprocessing(spec)}
    return UnitEncoder(name=spec.name, key=spec.key, dim=spec.dim, model=model, device=device,
                       batch_size=spec.batch_size, prepare=prepare, provenance=provenance,
                       split=lambda clip: split_windows(clip, spec.window, spec.min_tail))


class Bottleneck3d(nn.Module):
    """1x1x1 -> 3x3x3 (strided) -> 1x1x1 x4 bottleneck with an optional projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet3d(nn.Module):
    """Hara-style 3D ResNet with bottlenecks, shortcut B, no classifier.

    Args:
        layers: bottleneck blocks in ``layer1..layer4`` (``(3, 4, 23, 3)`` for ResNet-101).
    """

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 23, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        channels = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stage = _stage(channels, planes, blocks, stride=1 if i == 1 else 2)
            self.add_module(f"layer{i}", stage)
            channels = planes * Bottleneck3d.expansion
        self.avgpool = nn.AdaptiveAvgPool3d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, t, S, S]`` normalised windows -> ``[N, 2048]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.avgpool(x).flatten(1)


def _stage(in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    out = planes * Bottleneck3d.expansion
    downsample = None
    if stride != 1 or in_channels != out:
        downsample = nn.Sequential(
            nn.Conv3d(in_channels, out, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm3d(out))
    first = Bottleneck3d(in_channels, planes, stride, downsample)
    return nn.Sequential(first, *(Bottleneck3d(out, planes) for _ in range(1, blocks)))


def build(spec: Resnet3dSpec, weights: str | WeightsSource | None = None,
          device: str = "cpu") -> UnitEncoder:
    """Build the frozen window encoder.

    Args:
        spec: the backbone's spec.
        weights: ``None`` (the spec's default, downloaded), a name in :data:`KNOWN_WEIGHTS`,
            ``"random"`` (:data:`~pipeline.backbones.random_init.RESIDUAL_CNN`), a state-dict
            file or an http(s) URL. Hara-style checkpoints (``{"state_dict":
            {"module.conv1.weight": ...}}``) and pretorched-x ones (plain state dict) both load.
        device: ``"cpu"`` or ``"cuda[:i]"``.

    Returns:
        An encoder mapping ``uint8 [T, H, W, 3]`` at 16 fps to ``float32 [spec.dim]``.
    """
    dev = resolve_device(device)
    source = resolve_weights(weights, backbone=spec.name, key=spec.key,
                             default=spec.default_weights, named=KNOWN_WEIGHTS)
    if source.kind != "random":  # read first: the file is hashed while the model is built
        state, sha = load_state_dict(source)
    with skeleton():  # no memory, no initialisation: the checkpoint or the scheme sets all
        model = ResNet3d(spec.layers)
    init = None
    if source.kind == "random":
        warn_random(spec.name)
        he_init_(model.to_empty(device="cpu"), residual_blocks=(Bottleneck3d,))
        sha, init = in_background(state_sha256, model.state_dict()), init_fields(RESIDUAL_CNN)
    else:
        fit_state_dict(model, state, source=source.location, backbone=spec.name,
                       ignore_prefixes=CLASSIFIER_PREFIXES)
    depth = 2 + 3 * sum(spec.layers)
    return window_encoder(spec, freeze(model, dev), dev, weights=source.identifier, sha256=sha,
                          init=init,
                          architecture=f"3D ResNet-{depth} (Hara et al. 2018; bottleneck, "
                                       "shortcut B), classifier removed")
