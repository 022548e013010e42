"""The trunk of a torchvision classifier (its ``fc`` head removed) with the weights resolved for
it: shared by the 2D ResNet and the torchvision 3D backbones, so both resolve a torchvision
weights name, ``"random"``, a file or a URL the same way and load it with the same strict
checks."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from pipeline.backbones.weights import (WeightsSource, fit_state_dict, load_state_dict,
                                        resolve_weights, skeleton, warn_random)

if TYPE_CHECKING:
    import torch


def torchvision_trunk(spec: Any, weights: str | WeightsSource | None,
                      ) -> tuple[torch.nn.Module, WeightsSource, str | Future[str], Any]:
    """A torchvision classifier without its ``fc`` head, with the weights ``weights`` resolves to.

    Shared by the 2D ResNet and the torchvision 3D backbones: the same resolution (a torchvision
    weights name, ``"random"``, a file or a URL) and the same strict loading. For ``"random"``
    the model's memory is allocated but not initialised: the caller applies its random scheme,
    which sets every parameter and buffer.

    Args:
        spec: a backbone spec with ``arch``, ``name``, ``key`` and ``default_weights``.
        weights: the user's weights argument.

    Returns:
        ``(model, source, sha256 (pending) or "random", torchvision weights enum of the
        architecture)``.
    """
    import torch
    import torchvision

    enum = torchvision.models.get_model_weights(spec.arch)
    named = {member.name: member.url for member in enum}
    source = resolve_weights(weights, backbone=spec.name, key=spec.key,
                             default=spec.default_weights, named=named)
    if source.kind != "random":  # read first: the file is hashed while the model is built
        state, sha = load_state_dict(source, check_hash=source.identifier in named)
    with skeleton():
        model = torchvision.models.get_model(spec.arch, weights=None)
    model.fc = torch.nn.Identity()
    if source.kind == "random":
        warn_random(spec.name)
        # Uninitialised memory: the caller's random scheme sets every tensor.
        return model.to_empty(device="cpu"), source, "random", enum
    fit_state_dict(model, state, source=source.location, backbone=spec.name,
                   ignore_prefixes=("fc.",))
    return model, source, sha, enum
