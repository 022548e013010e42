"""A store's identity and provenance, computed on the driver from the extraction config.

:func:`feature_identity` is what determines the feature values (its sha256 is the
``store_id``); :func:`modalities_from_shards` what the workers' loaded encoders reported;
:func:`software_versions` the versions recorded beside them. No Dask and no decoding here:
the extraction run, prediction and the store tools all read a store's identity through this
module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, file_sha256
from pipeline.extract_config import AugmentSpec, ExtractConfig, FeatureSettings
from pipeline.manifest import DatasetManifest
from pipeline.store import ShardResult, StoreError
from pipeline.store.manifest import (BackboneChoice, DatasetInfo, ModalityInfo, StoreIdentity,
                                     TranscriptSource)



def feature_identity(cfg: ExtractConfig, manifest: DatasetManifest,
                     transcripts: TranscriptSource | None = None) -> StoreIdentity:
    """What determines the feature values; its sha256 is the store_id.

    ``transcripts``: where the text key's transcripts come from (dataset level; None without
    a text key).

    Per modality: the backbone, its weights (the default identifier when none is given; a local
    file or model folder by its name and sha256, so a changed checkpoint at the same path is
    another store and the same one at another path is not) and the backbone's whole spec
    (every preprocessing constant).
    """
    from pipeline.backbones import get_spec

    modalities = {}
    for key in cfg.choices.modalities:
        spec = get_spec(cfg.choices.backbones[key])
        check_rate(cfg, key, spec)
        weights = cfg.choices.weights.get(key) or getattr(spec, "default_weights", None) or "none"
        recorded, sha = _weights_identity(weights)
        modalities[key] = BackboneChoice(
            backbone=cfg.choices.backbones[key], weights=recorded, spec=dataclasses.asdict(spec),
            weights_file_sha256=sha)
    return StoreIdentity(
        dataset=DatasetInfo(manifest.name, tuple(manifest.labels), manifest.multilabel,
                            manifest.sha256, tuple(manifest.targets), transcripts,
                            manifest.faces),
        modalities=modalities, views=cfg.choices.views, extraction=_applied(cfg))


def _applied(cfg: ExtractConfig) -> FeatureSettings:
    """The feature settings as they shape the features: with one view the augmented views'
    transforms are never applied, so the identity records the default ones (the same store
    whatever ``augment`` says)."""
    if cfg.choices.views == 1:
        return dataclasses.replace(cfg.features, augment=AugmentSpec())
    return cfg.features


def _weights_identity(weights: str) -> tuple[str, str | None]:
    """The weights as the identity records them: a local file or model folder by its name and
    the sha256 of its content (so the same weights at another path, on another person's
    machine, make the same store); anything else (a named checkpoint, a URL, ``random``) as
    given. The path itself stays in the store's extraction config."""
    from pipeline.backbones.weights import folder_weights_sha256

    path = Path(weights).expanduser()
    if path.is_file():
        return f"file:{path.name}", file_sha256(path)
    if path.is_dir():
        return f"folder:{path.name}", folder_weights_sha256(path)
    return weights, None


#: store key -> (the backbone spec's rate field, the extraction config's rate field)
RATE_FIELDS = {"frames_2d": ("fps", "fps_2d"), "frames_3d": ("fps", "fps_3d"),
               "audio": ("sample_rate", "sample_rate")}


def check_rate(cfg: ExtractConfig, key: str, spec: Any) -> None:
    """One source for sampling rates: the backbone's spec declares the rate it is made for,
    the extraction config decides the rate decoding uses; a mismatch is refused by name rather
    than recorded as a rate the features were not made at.

    Raises:
        ConfigError: the two rates differ.
    """
    if key not in RATE_FIELDS:
        return
    spec_field, cfg_field = RATE_FIELDS[key]
    declared, used = getattr(spec, spec_field, None), getattr(cfg.features, cfg_field)
    if declared is not None and float(declared) != float(used):
        raise ConfigError(f"{cfg_field} is {used}, but backbone "
                          f"{cfg.choices.backbones[key]!r} ({key}) "
                          f"is made for {spec_field} {declared}: set {cfg_field}: {declared} "
                          "in the extraction config, or choose a backbone made for that rate")


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("conclugen", "torch", "torchvision", "torchaudio", "transformers",
                "facenet-pytorch", "av", "h5py", "pyarrow", "dask", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    out["git_commit"] = _git_commit()
    return out


def _git_commit() -> str:
    import subprocess

    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, check=False, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return res.stdout.strip() or "unknown"



def modalities_from_shards(identity: StoreIdentity, shards: Sequence[ShardResult],
                dtype: str) -> dict[str, ModalityInfo]:
    """Per key: what the loaded encoder reports (dim, weights sha256, every preprocessing
    parameter)."""
    encoders: dict[str, Any] = {}
    for shard in shards:
        encoders = encoders or dict(shard.info.get("encoders", {}))
    out = {}
    for key, choice in identity.modalities.items():
        reported = dict(encoders.get(key, {}))
        dim = reported.pop("dim", None) or choice.spec["dim"]
        sha = reported.pop("weights_sha256", None)
        for planned in ("backbone", "weights", "dtype"):
            reported.pop(planned, None)
        out[key] = ModalityInfo(dim=int(dim), dtype=dtype, weights_sha256=sha, encoder=reported)
    return out


def check_same_weights(shards: Sequence[ShardResult]) -> None:
    """Every shard must come from the same weights (a worker with other weights is a bug)."""
    seen: dict[str, set[str]] = {}
    for shard in shards:
        for key, prov in shard.info.get("encoders", {}).items():
            seen.setdefault(key, set()).add(str(prov.get("weights_sha256")))
    mixed = {k: sorted(v) for k, v in seen.items() if len(v) > 1}
    if mixed:
        raise StoreError(f"shards were extracted with different weights: {mixed}")


__all__ = ["RATE_FIELDS", "check_rate", "check_same_weights", "feature_identity",
           "modalities_from_shards", "software_versions"]
