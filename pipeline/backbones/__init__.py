"""Frozen backbones: one module per backbone, one registry, one loader.

Every module exposes a frozen dataclass spec (name, store key, output dim, default weights,
preprocessing constants) and ``build(spec, weights, device) -> Encoder``. The registry
(:mod:`pipeline.backbones.registry`) holds one entry per backbone with its spec, its build and
its published checkpoints; :func:`load_encoder` looks a name up there and builds it::

    enc = load_encoder("resnet152")                       # torchvision IMAGENET1K_V2
    enc = load_encoder("resdavenet")                      # ResDAVEnet-VQ RDVQ_00000
    enc = load_encoder("davenet", weights="audio_model.pth")
    enc = load_encoder("distilbert-sst2", weights="random")
    enc = load_encoder("hf:org/model")                    # any Hugging Face text encoder
    vectors = enc.encode_batch(clips)                     # float32 [n, enc.dim]
    enc.provenance()                                      # for the store's store.json

Published checkpoints are fetched into the weights folder and verified
(:mod:`pipeline.backbones.download`; ``cli weights``).

Importing this package imports torch; torchvision, torchaudio and transformers are imported
only when a backbone that needs them is built.
"""

from __future__ import annotations

from pipeline.backbones.encoder import Encoder
from pipeline.backbones.registry import (
    BACKBONES, DEFAULT_BACKBONES, REGISTRY, BackboneError, BackboneSpec, get_backbone, get_spec,
    load_encoder)
from pipeline.backbones.weights import RANDOM, WeightsError

__all__ = ["BACKBONES", "DEFAULT_BACKBONES", "RANDOM", "REGISTRY", "BackboneError",
           "BackboneSpec", "Encoder", "WeightsError", "get_backbone", "get_spec",
           "load_encoder"]
