"""The interface every backbone returns, and the batched run-time the backbones share.

An :class:`Encoder` maps one clip's input for its modality to one float32 vector ``[dim]``
(:meth:`Encoder.encode`) and several clips to ``[n, dim]`` with one set of batched backbone
calls (:meth:`Encoder.encode_batch`, the path extraction uses). :class:`UnitEncoder` implements
it for clips made of fixed-shape units, frames (2D) or frame windows (3D): the units of all
clips are concatenated, run through the backbone in chunks, and mean-pooled back per clip.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from pipeline.devices import resolve_device
from pipeline.failures import ClipError, Reason, Stage

log = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """A frozen backbone with its preprocessing: clip input -> ``float32 [dim]``."""

    key: str
    dim: int

    def validate(self, x: Any) -> None:
        """Raise :class:`ClipError` if this clip's input cannot be encoded (checked per clip)."""

    def encode(self, x: Any) -> np.ndarray:
        """One clip -> ``float32 [dim]``."""

    def encode_batch(self, xs: Sequence[Any]) -> np.ndarray:
        """Several clips -> ``float32 [n, dim]``, batching backbone calls across clips."""

    def provenance(self) -> dict[str, Any]:
        """JSON-able description: backbone, weights and sha256, dim, dtype, preprocessing."""


def resolved(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance`` with its pending values (a weights sha256 still being computed in the
    background, see :func:`pipeline.backbones.weights.in_background`) waited for."""
    return {k: v.result() if isinstance(v, Future) else v for k, v in provenance.items()}


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def freeze(module: ModuleT, device: torch.device) -> ModuleT:
    """Eval mode, no gradients, moved to ``device`` once."""
    module.eval().requires_grad_(False)
    return module.to(device)


def compute_dtype(device: torch.device) -> str:
    """The arithmetic the backbone runs in: bf16 autocast on CUDA, float32 elsewhere."""
    return "bfloat16-autocast" if device.type == "cuda" else "float32"


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """``torch.inference_mode`` plus bf16 autocast on CUDA."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


def finite_rows(features: np.ndarray, backbone: str) -> np.ndarray:
    """Return ``features`` (float32 ``[n, dim]``) or raise naming the first non-finite row."""
    bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad.size:
        raise ClipError(Stage.BACKBONE, Reason.BACKBONE_ERROR,
                        f"{backbone}: non-finite features for clip {int(bad[0])} of the batch")
    return features


def check_frames(x: Any, what: str) -> np.ndarray:
    """Check a clip of frames: ``uint8 [T, H, W, 3]`` RGB with ``T >= 1``."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        shape = getattr(x, "shape", None)
        dtype = getattr(x, "dtype", type(x).__name__)
        raise ValueError(f"{what}: expected uint8 RGB frames [T, H, W, 3], got {dtype} {shape}")
    if x.shape[0] == 0:
        raise ClipError(Stage.BACKBONE, Reason.TOO_SHORT, f"{what}: the clip has no frames")
    return x


# A clip's units: one or more blocks, each ``[n, *unit_shape]`` with one shape per block.
UnitSplitter = Callable[[np.ndarray], list[np.ndarray]]
# A chunk of uint8 units on the device -> the backbone's float input.
UnitPreparer = Callable[[torch.Tensor], torch.Tensor]


class UnitEncoder:
    """Encoder for clips made of fixed-shape units (frames, frame windows), mean-pooled.

    Args:
        name: registry name, for messages.
        key: store key (``frames_2d`` / ``frames_3d``).
        dim: output dimension of ``model``.
        model: frozen module mapping a prepared batch to ``[N, dim]``.
        device: where ``model`` lives.
        batch_size: units per backbone call.
        split: clip -> unit blocks (uint8; views of the clip where possible).
        prepare: uint8 unit chunk on the device -> model input (float, normalised, resized).
        provenance: the JSON-able description :meth:`provenance` returns.
        channels_last: on CUDA, run the model and its 4-D inputs in ``channels_last`` memory
            format (NHWC: the layout tensor cores' convolutions use, so cuDNN does not
            transpose around every layer). Ignored elsewhere.
    """

    def __init__(self, *, name: str, key: str, dim: int, model: torch.nn.Module,
                 device: torch.device, batch_size: int, split: UnitSplitter,
                 prepare: UnitPreparer, provenance: dict[str, Any],
                 channels_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be >= 1, got {batch_size}")
        self.name, self.key, self.dim = name, key, dim
        self.model, self.device, self.batch_size = model, device, batch_size
        self._split, self._prepare, self._provenance = split, prepare, provenance
        self.channels_last = channels_last and device.type == "cuda"
        if self.channels_last:
            self.model = nhwc(model)

    def validate(self, x: Any) -> None:
        """Raise if ``x`` is not a non-empty ``uint8 [T, H, W, 3]`` clip."""
        check_frames(x, self.name)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """One clip ``uint8 [T, H, W, 3]`` -> ``float32 [dim]``."""
        return self.encode_batch([x])[0]

    def encode_batch(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        """Clips ``uint8 [T_i, H_i, W_i, 3]`` -> ``float32 [n, dim]`` (mean over each clip's units).

        Units of equal shape from all clips are stacked and run together in chunks of
        ``batch_size``; a clip's vector is the mean of its units' vectors.
        """
        if not len(xs):
            return np.empty((0, self.dim), dtype=np.float32)
        blocks = [self._split(check_frames(x, self.name)) for x in xs]
        counts = np.array([sum(len(b) for b in clip) for clip in blocks], dtype=np.int64)
        features = np.empty((int(counts.sum()), self.dim), dtype=np.float32)
        for rows, members in _group_by_shape(blocks, counts):
            features[rows] = self._run(members)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pooled = np.add.reduceat(features, starts, axis=0) / counts[:, None]
        return finite_rows(pooled.astype(np.float32), self.name)

    def provenance(self) -> dict[str, Any]:
        """JSON-able description of backbone, weights and preprocessing."""
        self._provenance = resolved(self._provenance)
        return dict(self._provenance)

    def _run(self, blocks: list[np.ndarray]) -> np.ndarray:
        """Unit blocks of one shape -> ``float32 [total units, dim]``, in block order.

        On CUDA each chunk goes up from pinned memory without blocking and the outputs stay on
        the device until the last chunk, so the host prepares and queues the next chunk while
        the GPU computes (one synchronisation per call, not one per chunk).
        """
        out = []
        with inference(self.device):
            for chunk in _chunks(blocks, self.batch_size):
                x = self._prepare(to_device(chunk, self.device))
                if self.channels_last and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(self.model(x).float())
        return torch.cat(out).cpu().numpy()


def nhwc(model: ModuleT) -> ModuleT:
    """``model`` with its 4-D weights in ``channels_last`` memory format (in place)."""
    moved: Any = model  # torch's stubs do not list the memory_format argument of Module.to
    return moved.to(memory_format=torch.channels_last)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` on ``device``; to a GPU through pinned memory, without blocking the host."""
    tensor = torch.from_numpy(array)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _group_by_shape(blocks: list[list[np.ndarray]], counts: np.ndarray,
                    ) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Pair each unit shape with (output rows, its blocks) across all clips."""
    offsets = np.concatenate([[0], np.cumsum(counts)])
    groups: dict[tuple[int, ...], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for clip, clip_blocks in enumerate(blocks):
        row = int(offsets[clip])
        for block in clip_blocks:
            rows, members = groups.setdefault(block.shape[1:], ([], []))
            rows.append(np.arange(row, row + len(block)))
            members.append(block)
            row += len(block)
    return [(np.concatenate(rows), members) for rows, members in groups.values()]


def _chunks(blocks: list[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of ``size`` units across ``blocks``, copying one chunk at a time."""
    pending: list[np.ndarray] = []
    filled = 0
    for block in blocks:
        start = 0
        while start < len(block):
            take = min(size - filled, len(block) - start)
            pending.append(block[start:start + take])
            filled, start = filled + take, start + take
            if filled == size:
                yield _joined(pending)
                pending, filled = [], 0
    if pending:
        yield _joined(pending)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(parts[0]) if len(parts) == 1 else np.concatenate(parts)


def normaliser(mean: Sequence[float], std: Sequence[float], device: torch.device,
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``uint8`` channels-first images -> ``(x / 255 - mean) / std``, constants built once.

    The returned function takes ``[N, 3, ...]`` uint8 and returns float32 of the same shape.
    """
    shape = (1, 3)
    scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).to(device)
    shift = (torch.tensor(mean, dtype=torch.float32) / torch.tensor(std)).to(device)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        extra = (1,) * (x.ndim - 2)
        return x.float() * scale.view(*shape, *extra) - shift.view(*shape, *extra)

    return normalise


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float images ``[N, C, H, W]`` to ``size x size`` (bilinear, antialiased).

    A no-op when they already have that size (the face cropper's 180 px crops for 2D).
    """
    if x.shape[-2:] == (size, size):
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                           antialias=True, align_corners=False)
