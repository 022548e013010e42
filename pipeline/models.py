"""The model cache: what a worker process loads once and reuses for every shard.

:func:`load_models` builds the encoders of the extracted modalities and the face detector for
one extraction config, face policy and device, and keeps them for the life of the process
(Dask workers run many shard tasks; prediction runs one video). It is its own module so that
prediction (:mod:`pipeline.one_video`) and the Dask orchestration (:mod:`pipeline.run`) share it
without one importing the other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.extract_config import ExtractConfig
from pipeline.manifest import FacePolicy

if TYPE_CHECKING:
    from pipeline.faces import FaceDetector


@dataclass
class Models:
    """What a worker loads once: the encoders of the extracted modalities and the detector,
    on ``device``."""

    encoders: dict[str, Any]
    detector: FaceDetector | None
    device: str = "cpu"


_MODELS: dict[str, Models] = {}
# One load at a time per process: a worker with several threads would otherwise build the
# same models twice, and transformers' lazy imports are not thread-safe (two threads importing
# a model class at once can fail with "cannot import name ...Config").
_LOAD_LOCK = threading.Lock()


def load_models(cfg: ExtractConfig, policy: FacePolicy, device: str) -> Models:
    """Load (once per process, one load at a time) the encoders and the face detector for
    ``cfg``."""
    key = repr((cfg, policy, device))
    with _LOAD_LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load_models(cfg, policy, device)
        return _MODELS[key]


def _load_models(cfg: ExtractConfig, policy: FacePolicy, device: str) -> Models:
    from pipeline.backbones import load_encoder
    from pipeline.faces import FaceDetector

    encoders = {}
    for modality in cfg.choices.modalities:
        encoders[modality] = load_encoder(cfg.choices.backbones[modality],
                                          weights=cfg.choices.weights.get(modality), device=device,
                                          batch_size=cfg.run.units(modality, device))
    detector = FaceDetector(cfg.features.faces, device=device) if (
        policy.crop and cfg.choices.needs_video) else None
    return Models(encoders, detector, device)


__all__ = ["Models", "load_models"]
