"""Frozen backbones: one module per backbone, one literal registry, one loader.

Every module exposes a frozen dataclass spec (name, store key, output dim, default weights,
preprocessing constants) and ``build(spec, weights, device) -> Encoder``. :func:`load_encoder`
looks a name up in :data:`BACKBONES` and builds it::

    enc = load_encoder("resnet152")                       # torchvision IMAGENET1K_V2
    enc = load_encoder("davenet", weights="audio_model.pth")
    enc = load_encoder("distilbert-sst2", weights="random")
    vectors = enc.encode_batch(clips)                     # float32 [n, enc.dim]
    enc.provenance()                                      # for the store's store.json

Importing this package imports torch; torchvision, torchaudio and transformers are imported
only when a backbone that needs them is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.backbones import davenet, resnet2d, resnet3d, text, video3d_tv
from pipeline.backbones.encoder import Encoder
from pipeline.backbones.weights import RANDOM, WeightsError

BackboneSpec = (resnet2d.Resnet2dSpec | resnet3d.Resnet3dSpec
                | video3d_tv.TorchvisionVideoSpec | davenet.DavenetSpec | text.TextSpec)

BACKBONES: dict[str, BackboneSpec] = {
    "resnet152": resnet2d.RESNET152,
    "resnet3d101": resnet3d.RESNET3D101,
    "r3d_18": video3d_tv.R3D_18,
    "r2plus1d_18": video3d_tv.R2PLUS1D_18,
    "davenet": davenet.DAVENET,
    "resdavenet": davenet.RESDAVENET,
    "distilbert-sst2": text.DISTILBERT_SST2,
    "emotion-distilroberta": text.EMOTION_DISTILROBERTA,
}

DEFAULT_BACKBONES: dict[str, str] = {
    "frames_2d": "resnet152",
    "frames_3d": "resnet3d101",
    "audio": "davenet",
    "text": "distilbert-sst2",
}

_BUILDERS: dict[type, Callable[[Any, str | None, str], Encoder]] = {
    resnet2d.Resnet2dSpec: resnet2d.build,
    resnet3d.Resnet3dSpec: resnet3d.build,
    video3d_tv.TorchvisionVideoSpec: video3d_tv.build,
    davenet.DavenetSpec: davenet.build,
    text.TextSpec: text.build,
}

__all__ = ["BACKBONES", "DEFAULT_BACKBONES", "RANDOM", "BackboneSpec", "Encoder",
           "WeightsError", "get_spec", "load_encoder"]


def get_spec(name: str) -> BackboneSpec:
    """The spec registered under ``name``.

    A name outside the registry that is a Hugging Face id (``org/model``) or an existing
    folder is a text encoder for that model.

    Raises:
        ValueError: unknown name, listing the valid ones.
    """
    if name in BACKBONES:
        return BACKBONES[name]
    if _is_hub_id(name) or Path(name).is_dir():
        return text.hub_spec(name)
    raise ValueError(f"unknown backbone '{name}'; valid names: {', '.join(BACKBONES)} "
                     "(or, for text, a Hugging Face id 'org/model' or a local model folder)")


def load_encoder(name: str, *, weights: str | None = None, device: str = "cpu",
                 batch_size: int | None = None) -> Encoder:
    """Build the frozen encoder registered under ``name``.

    Args:
        name: a key of :data:`BACKBONES`, or a Hugging Face id / folder for text.
        weights: ``None`` for the backbone's default weights (an error for backbones without
            one, e.g. ``davenet``); ``"random"`` for random weights (logged loudly, provenance
            ``weights="random"``); a named identifier (``IMAGENET1K_V2``); a local state-dict
            file, or for text a ``save_pretrained`` folder; an http(s) URL.
        device: ``"cpu"`` or ``"cuda[:i]"`` (bf16 autocast on CUDA).
        batch_size: units per backbone call (frames, windows, clips) instead of the spec's.

    Returns:
        An :class:`Encoder` whose ``encode`` maps one clip to ``float32 [dim]``.

    Raises:
        ValueError: unknown name or bad batch size.
        WeightsError: weights that cannot be resolved, read, or do not fit.
    """
    spec = get_spec(name)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        spec = dataclasses.replace(spec, batch_size=batch_size)
    return _BUILDERS[type(spec)](spec, weights, device)


def _is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
