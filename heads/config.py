"""The pretraining configuration of the heads (:class:`TrainConfig`), a frozen dataclass resolved
strictly from YAML, and the layer merging it shares with the evaluation's
(:mod:`heads.eval_config`).

``manifests/pretrain.yaml`` holds the paper appendix's defaults in three layers::

    defaults:    every objective            (AdamW, batch 4096, D 4096, k-means settings, ...)
    objectives:  per objective              (learning rate, modalities)
    presets:     named overrides            (``paper``, ``reference``: whose choices;
                                             ``cpu``: a small model for laptops, tests, demos)

A run's config is ``defaults <- objectives[name] <- presets[fidelity] <- presets[size] <- config
file <- overrides
<- explicit arguments``, merged key by key, then checked by :func:`pipeline.config.from_dict`:
an unknown key or a wrong type is an error naming the key path. The resolved config is written
next to every run (``RUN/config.yaml``) and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import manifests
from pipeline.config import ConfigError, from_dict, load_yaml
from pipeline.presets import Preset, parse_preset

DEFAULT_CONFIG = manifests.path("pretrain.yaml")  # shipped with the package
LAYER_KEYS = frozenset({"defaults", "objectives", "presets"})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    """Head sizes (D representation, P projection, R decoder hidden) and the heads' shape
    choices (``docs/CHOICES.md``; see :class:`heads.models.ModelSpec`)."""

    representation_dim: int = 4096
    projection_dim: int = 512
    reconstruction_dim: int = 1024
    shared_projection: bool = False
    projection_activation: Literal["relu", "none"] = "relu"
    cluster_input: Literal["projection", "normalized"] = "projection"
    audio_head: Literal["geu_linear", "geu"] = "geu_linear"
    decoder_activation: Literal["none", "relu"] = "none"


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and hyper-parameters; ``combine`` merges the weighted parts.

    ``sum`` is the paper's formula; ``mean`` is what the reference code computes (a weighted
    mean of the active losses).
    """

    weights: dict[str, float] = field(default_factory=lambda: {
        "mms": 1.0, "clustering": 1.0, "reconstruction": 1.0, "info_nce": 1.0})
    combine: Literal["sum", "mean"] = "sum"
    mms_margin: float = 0.001
    mms_temperature: float = 1.0
    cluster_margin: float = 0.001
    info_nce_temperature: float = 0.07


@dataclass(frozen=True)
class ClusteringConfig:
    """Online k-means: clusters, queue length in batches, first epoch of the loss, and how the
    centroids are made (:class:`heads.pretrain.kmeans.CosineKMeans`)."""

    clusters: int = 8
    queue_batches: int = 4
    start_epoch: int = 12
    iterations: int = 10
    mode: Literal["joint", "individual"] = "joint"
    centroids: Literal["mean", "normalized"] = "mean"
    warm_start: bool = True
    reset_each_epoch: bool = False


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a linear warm-up (``warmup_steps`` plus ``warmup_epochs`` worth of steps),
    then ``schedule``: cosine annealing with warm restarts (periods in epochs) or
    ``exponential`` (``decay`` per epoch, the reference code's pretraining), see
    :func:`heads.runtime.lr_at`. Shared by pretraining and every evaluation protocol."""

    lr: float = 3.6e-4
    weight_decay: float = 3.2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    restart_epochs: float = 20.0
    restart_mult: int = 2
    min_lr: float = 1e-6
    grad_clip: float | None = None
    schedule: Literal["cosine_restarts", "exponential"] = "cosine_restarts"
    decay: float = 0.75


@dataclass(frozen=True)
class DataConfig:
    """Which splits train and validate, the batch size and where the features live.

    ``contrast_views``: which stored views an objective that contrasts views draws its pair
    from: ``augmented`` (views 1.., never the clean view 0; a store with >= 3 views) or ``all``.
    """

    splits: tuple[str, ...] = ("train",)
    val_splits: tuple[str, ...] = ("val",)
    batch_size: int = 4096
    contrast_views: Literal["augmented", "all"] = "augmented"
    drop_last: bool = True
    placement: Literal["auto", "memory", "stream"] = "auto"
    chunk_rows: int = 16384
    shuffle_chunks: int = 4
    memory_fraction: float = 0.8


@dataclass(frozen=True)
class OutputConfig:
    """Checkpoint cadence and retention (``keep_checkpoints: 0`` keeps every epoch's)."""

    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    tensorboard: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """One pretraining run, fully resolved; ``preset``: the ``--preset`` it was resolved with
    (``"reference,cpu"``), for the record."""

    objective: str
    modalities: tuple[str, ...]
    epochs: int
    seed: int = 0
    preset: str = "paper"
    modality_keys: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "video": ("frames_2d", "frames_3d"), "audio": ("audio",), "text": ("text",)})
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        problems = []
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            problems.append(f"modalities {list(self.modalities)} must be non-empty and distinct")
        unknown = [m for m in self.modalities if m not in self.modality_keys]
        if unknown:
            problems.append(f"modalities {unknown} have no entry in modality_keys "
                            f"{sorted(self.modality_keys)}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.data.batch_size < 2:
            problems.append(f"data.batch_size must be >= 2, got {self.data.batch_size}")
        if self.optim.lr <= 0 or self.optim.restart_epochs <= 0 or self.optim.restart_mult < 1:
            problems.append("optim: lr and restart_epochs must be > 0, restart_mult >= 1")
        if not 0 < self.optim.decay <= 1:
            problems.append(f"optim.decay must be in (0, 1], got {self.optim.decay}")
        bad_weights = sorted(set(self.loss.weights) - {"mms", "clustering", "reconstruction",
                                                       "info_nce"})
        if bad_weights:
            problems.append(f"loss.weights: unknown part(s) {bad_weights}")
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe mapping (tuples as lists) that :func:`config_from_dict` reads."""
        return plain(dataclasses.asdict(self))


def warmup_steps(optim: OptimConfig, steps_per_epoch: int) -> int:
    """Warm-up length in optimizer steps."""
    return optim.warmup_steps + round(optim.warmup_epochs * steps_per_epoch)


def schedule_of(optim: OptimConfig, steps_per_epoch: int, *,
                min_lr: float | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`heads.runtime.lr_at` but ``step`` and ``base_lr``."""
    return {"steps_per_epoch": steps_per_epoch, "restart_epochs": optim.restart_epochs,
            "restart_mult": optim.restart_mult,
            "min_lr": optim.min_lr if min_lr is None else min_lr,
            "warmup_steps": warmup_steps(optim, steps_per_epoch),
            "schedule": optim.schedule, "decay": optim.decay}


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> TrainConfig:
    """A :class:`TrainConfig` from a resolved mapping (``RUN/config.yaml``, a checkpoint)."""
    return from_dict(TrainConfig, dict(data), where)


def resolve_config(objective: str, *, config: str | Path | None = None,
                   preset: str | Preset | None = None,
                   overrides: Mapping[str, Any] | None = None,
                   modalities: Sequence[str] | None = None, epochs: int | None = None,
                   seed: int | None = None) -> TrainConfig:
    """Merge the layers into one checked :class:`TrainConfig`.

    Args:
        objective: the objective's name; its layer of the config file is merged. The names are
            checked in :mod:`heads.pretrain` (``resolve_objective_config``), which owns them.
        config: a YAML file: either layered like ``manifests/pretrain.yaml`` (it replaces the
            default file) or a partial/complete TrainConfig mapping merged over the defaults
            (a run's ``config.yaml`` reproduces that run).
        preset: ``--preset``'s value (:func:`pipeline.presets.parse_preset`: ``"reference"``,
            ``"cpu"``, ``"reference,cpu"``); each name's layer of the file's ``presets``.
        overrides: merged last; nested mappings or dotted keys (``{"model.representation_dim":
            64}``).
        modalities: overrides ``modalities`` (the paper's ablations: without text/audio).
        epochs: overrides ``epochs``.
        seed: overrides ``seed``.

    Raises:
        ConfigError: unknown preset, unknown key, wrong type, invalid value.
    """
    base_path, partial = DEFAULT_CONFIG, {}
    if config is not None:
        data = load_yaml(config)
        if LAYER_KEYS & set(data):
            base_path = Path(config)
        else:
            partial = data
    layers = _layers(base_path)
    merged = dict(layers.get("defaults") or {})
    merged = deep_merge(merged, (layers.get("objectives") or {}).get(objective) or {})
    for layer in preset_layers(layers.get("presets") or {}, preset, base_path):
        merged = deep_merge(merged, layer)
    merged = deep_merge(merged, partial)
    merged = deep_merge(merged, expand_dotted(overrides or {}))
    explicit = {"objective": objective, "modalities": None if modalities is None
                else list(modalities), "epochs": epochs, "seed": seed,
                "preset": None if preset is None else parse_preset(preset).name}
    if merged.get("objective", objective) != objective:
        raise ConfigError(f"{config}: written for objective {merged['objective']!r}, "
                          f"not {objective!r}")
    merged.update({k: v for k, v in explicit.items() if v is not None})
    return from_dict(TrainConfig, merged, str(config or base_path))


def _layers(path: Path) -> dict[str, Any]:
    data = load_yaml(path)
    unknown = sorted(set(data) - LAYER_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; valid: "
                          f"{sorted(LAYER_KEYS)}")
    return data


def preset_layers(presets: Mapping[str, Any], preset: str | Preset | None,
                  where: str | Path) -> list[Mapping[str, Any]]:
    """The ``presets:`` layers of a config file that ``preset`` names, fidelity then size.

    Raises:
        ConfigError: a malformed ``--preset``, or a name the file has no layer for.
    """
    if preset is None:
        return []
    layers = []
    for name in parse_preset(preset).layers:
        if name not in presets:
            raise ConfigError(f"{where}: no preset {name!r}; it has {sorted(presets)}")
        layers.append(presets[name] or {})
    return layers


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in; nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def expand_dotted(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": {...}}`` -> ``{"a": {"b": 1}, "c": {...}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = str(key).split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with a non-mapping value")
        node[leaf] = deep_merge(node[leaf], value) if isinstance(node.get(leaf), dict) \
            and isinstance(value, Mapping) else value
    return out


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
