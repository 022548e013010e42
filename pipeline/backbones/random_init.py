"""How ``--weights random`` weights are made: seeded, bitwise reproducible, at a trained scale.

Random weights are for tests and smoke runs, but their features still go down the whole chain
(a store, a pretraining loss, a probe), so they must have the scale of a trained network's
features: non-negative with a mean of order 0.1-1 and maxima of a few units for the CNNs (a
trained ResNet-152's pooled features), unit-ish for the transformers. A library's default
initialisation does not give that on its own: BatchNorm in eval mode keeps the running
statistics of a fresh layer (mean 0, variance 1) and so normalises nothing. Kaiming fan-out
convolutions through the 33 bottlenecks of a 3D ResNet-101 then grow activations to about
10^3 (a pretraining loss on them read 7.7e5); zero-initialised residual branches alone leave a
ResNet-152 at a tenth of the trained scale (fan-out init shrinks every widening projection);
the audio networks see log-mel decibels (-80..0) unscaled.

Schemes, recorded in provenance as ``init_scheme`` with ``init_seed``. A scheme that changes
gets a new identifier, so stores made with other random weights stay distinguishable (stores
written before schemes were recorded have neither field and ``weights_sha256: "random"``):

- :data:`RESIDUAL_CNN` (2D/3D ResNets): every convolution He-normal with fan-in
  (``std = sqrt(2 / fan_in)``, zero bias), so a convolution followed by ReLU keeps the second
  moment of its input; every BatchNorm at identity (gamma 1, beta 0, running mean 0 and
  variance 1); the last BatchNorm of every residual branch with gamma 0 (Goyal et al. 2017,
  torchvision's ``zero_init_residual``), so each block starts as its shortcut and depth does
  not compound. The pooled features then have the second moment of the normalised input.
- :data:`AUDIO_CNN` (DAVEnet, ResDAVEnet): :data:`RESIDUAL_CNN`, plus the input standardised
  from the front end's known range: the log-mel is floored at ``-top_db`` dB below the clip's
  maximum, so ``(x + top_db / 2) / (top_db / 4)`` maps ``[-top_db, 0]`` to ``[-2, 2]`` (speech
  measures about -45 +- 24 dB at ``top_db`` 80). DAVEnet's input BatchNorm holds these
  statistics; ResDAVEnet never applies its input BatchNorm, so they are folded through its
  first convolution (linear, no bias) into ``bn1``.
- :data:`TRANSFORMER` (text): the ``transformers`` library's own initialisation (normal with
  ``initializer_range`` 0.02, LayerNorm at identity); LayerNorm keeps every token at unit
  scale, so the mean-pooled vectors already are.

Every draw comes from torch's CPU generator seeded with :data:`SEED`, in module order, on the
CPU, and no step depends on a reduction order, so the same code and library versions give
bitwise the same weights on every machine of one CPU architecture (torch's normal sampler is
vectorised per instruction set, so x86-64 and ARM may differ in the last bits). For random
weights ``weights_sha256`` is :func:`state_sha256` of the initialised model, which pins exactly
that: workers that made other weights cannot be mixed into one store, and ``predict`` refuses
a random store whose weights it does not reproduce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pipeline.backbones.weights import seeded_init

SEED = 0
RESIDUAL_CNN = "he-fan-in+zero-residual/1"
AUDIO_CNN = "he-fan-in+zero-residual+logmel-standardised/1"
TRANSFORMER = "transformers-default/1"

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def he_init_(model: nn.Module, residual_blocks: tuple[type[nn.Module], ...] = ()) -> None:
    """Initialise ``model`` in place with :data:`RESIDUAL_CNN`, seeded with :data:`SEED`.

    Args:
        model: a convolutional network on the CPU.
        residual_blocks: the classes of its residual blocks; the last BatchNorm of each one's
            branch (not of its ``downsample`` shortcut) gets gamma 0.

    Raises:
        ValueError: a residual block without a BatchNorm in its branch.
    """
    with seeded_init(SEED), torch.no_grad():
        for module in model.modules():
            if isinstance(module, _CONVS):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, _BatchNorm):
                module.reset_parameters()  # gamma 1, beta 0, running stats (0, 1)
        for block in model.modules():
            if isinstance(block, residual_blocks):
                nn.init.zeros_(branch_end(block).weight)


def branch_end(block: nn.Module) -> _BatchNorm:
    """The last BatchNorm of a residual block's branch (its ``downsample`` excluded)."""
    shortcut = getattr(block, "downsample", None)
    skip = set(shortcut.modules()) if shortcut is not None else set()
    norms = [m for m in block.modules() if isinstance(m, _BatchNorm) and m not in skip]
    if not norms:
        raise ValueError(f"{type(block).__name__}: no BatchNorm in the residual branch")
    return norms[-1]


def state_sha256(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 of a model's state dict (or of a state dict): every entry's name, dtype, shape
    and bytes, in order."""
    state: Mapping[str, Any] = model.state_dict() if isinstance(model, nn.Module) else model
    digest = hashlib.sha256()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def init_fields(scheme: str) -> dict[str, Any]:
    """The provenance fields that say how random weights were made."""
    return {"init_scheme": scheme, "init_seed": SEED}


def random_provenance(model: nn.Module, scheme: str) -> dict[str, Any]:
    """Provenance fields of randomly initialised weights (``model`` still on the CPU)."""
    return {"weights_sha256": state_sha256(model), **init_fields(scheme)}
