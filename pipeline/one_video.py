"""One video extracted exactly as a store's clips were: the library function prediction uses.

:func:`extract_like_store` reads the store's typed manifest (its extraction config, face
policy and backbones), loads the same backbones with the same weights (refusing weights that
cannot be loaded here, and weights whose sha256 differs from what made the store), and runs the
same per-clip extraction as :mod:`pipeline.run` does for a shard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import UserError
from pipeline.extract_config import ExtractConfig, RunSettings
from pipeline.manifest import FacePolicy
from pipeline.store.manifest import StoreManifest


class VideoError(UserError, ValueError):
    """The video cannot be extracted as the store was; the message says why."""


def extraction_settings(manifest: StoreManifest,
                        keys: Sequence[str]) -> tuple[ExtractConfig, FacePolicy]:
    """The extraction config that made ``manifest``'s store, for ``keys`` only and one view,
    and the store's face policy.

    Every setting comes from the store (face detection rate, crop size, sampling rates, ...):
    only the modalities, views and batch size are narrowed to one clip's needs.

    Raises:
        VideoError: the store was written from arrays (no extraction to repeat), or lacks a key.
    """
    ident = manifest.identity
    if manifest.choices is None or ident.extraction is None or ident.dataset.faces is None:
        raise VideoError(f"store {manifest.store_id[:16]}... was not extracted from videos by "
                         "this project's backbones (its features were written from arrays): "
                         "there is no extraction to repeat")
    choices = manifest.choices
    missing = [k for k in keys if k not in choices.modalities]
    if missing:
        raise VideoError(f"the store has no {missing} features (it has "
                         f"{list(choices.modalities)})")
    wanted = tuple(m for m in choices.modalities if m in keys)
    # The weights as given (a local path is recorded by name and sha256 in the identity);
    # the identity's for keys left at their default, and for stores of the first release.
    weights = {k: choices.weights.get(k) or ident.modalities[k].weights for k in wanted}
    narrowed = ExtractConfig(
        choices=dataclasses.replace(choices, modalities=wanted, weights=weights, views=1,
                                    backbones={k: choices.backbones[k] for k in wanted}),
        features=ident.extraction,
        run=dataclasses.replace(manifest.run or RunSettings(), batch_clips=1))
    return narrowed, ident.dataset.faces


def extract_like_store(video: str | Path, manifest: StoreManifest, keys: Sequence[str], *,
                       transcript: str | None, device: str) -> dict[str, np.ndarray]:
    """The store keys ``keys`` of one video, extracted as the store's clips were.

    Args:
        video: the media file.
        manifest: the store's manifest.
        keys: the store keys wanted.
        transcript: what is said in the video (for the text key).
        device: ``cpu``, ``cuda``, ...

    Returns:
        per key float32 [1, dim], rounded through the store's dtype (heads trained on float16
        features see the same rounding).

    Raises:
        VideoError: weights that cannot be loaded here or differ from the store's, a missing
            transcript where the store required one, or the extraction failing on the video.
    """
    from pipeline.backbones.registry import weights_problem
    from pipeline.extract import extract_clips
    from pipeline.models import load_models

    video = Path(video)
    cfg, policy = extraction_settings(manifest, keys)
    if "text" in keys and not (transcript or "").strip() and cfg.features.empty_text == "fail":
        raise VideoError("the classifier uses the text modality: pass a transcript, or use a "
                         "classifier evaluated without text (modalities video,audio); the "
                         "store treated clips without transcript as failures (empty_text: "
                         "fail)")
    for key in cfg.choices.modalities:
        problem = weights_problem(cfg.choices.backbones[key], cfg.choices.weights[key])
        if problem is None:
            problem = _other_local_file(cfg.choices.weights[key],
                                        manifest.identity.modalities[key].weights_file_sha256)
        if problem:
            raise VideoError(f"the store's {key} features were extracted with {problem}")
    models = load_models(cfg, policy, device)
    for key, encoder in models.encoders.items():
        loaded = encoder.provenance().get("weights_sha256")
        recorded = manifest.modalities[key].weights_sha256
        if loaded != recorded:
            raise VideoError(f"{key}: the weights loaded now (sha256 {str(loaded)[:16]}...) "
                             f"are not those that made the store ({str(recorded)[:16]}...)")
    row = {"sample_id": video.stem, "split": "predict", "media_path": str(video.resolve()),
           "start_s": None, "end_s": None, "transcript": transcript}
    _, feats, failures = extract_clips([row], cfg, models, policy)
    if failures:
        f = failures[0]
        raise VideoError(f"{video}: extraction failed at stage {f.stage}: {f.reason}: "
                         f"{f.message}")
    dtype = np.dtype(cfg.features.dtype)
    return {k: feats[k][:, 0].astype(dtype).astype(np.float32) for k in keys}


def _other_local_file(weights: str, recorded: str | None) -> str | None:
    """A local weights file whose content is not the one that made the store, found by its
    sha256 before anything loads it (a path in store.json may name any file)."""
    from pipeline.config import file_sha256

    path = Path(weights).expanduser()
    if recorded is None or not path.is_file():
        return None
    found = file_sha256(path)
    if found != recorded:
        return (f"{path}, whose content is not what made the store (sha256 {found[:16]}..., "
                f"the store's {recorded[:16]}...)")
    return None


__all__ = ["VideoError", "extract_like_store", "extraction_settings"]
