"""The configurations of the heads: pretraining (:class:`TrainConfig`) and evaluation
(:class:`EvalConfig`), frozen dataclasses resolved strictly from YAML.

``manifests/pretrain.yaml`` holds the paper appendix's defaults in three layers::

    defaults:    every objective            (AdamW, batch 4096, D 4096, k-means settings, ...)
    objectives:  per objective              (learning rate, modalities)
    presets:     named overrides            (``cpu``: a small model for laptops, tests, demos)

A run's config is ``defaults <- objectives[name] <- presets[preset] <- config file <- overrides
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

DEFAULT_CONFIG = manifests.path("pretrain.yaml")  # shipped with the package
EVAL_CONFIG = manifests.path("evaluate.yaml")
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
    then cosine annealing with warm restarts (periods in epochs, see
    :func:`heads.runtime.lr_at`). Shared by pretraining and every evaluation protocol."""

    lr: float = 3.6e-4
    weight_decay: float = 3.2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    restart_epochs: float = 20.0
    restart_mult: int = 2
    min_lr: float = 1e-6
    grad_clip: float | None = None


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
    """One pretraining run, fully resolved."""

    objective: str
    modalities: tuple[str, ...]
    epochs: int
    seed: int = 0
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
        bad_weights = sorted(set(self.loss.weights) - {"mms", "clustering", "reconstruction",
                                                       "info_nce"})
        if bad_weights:
            problems.append(f"loss.weights: unknown part(s) {bad_weights}")
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe mapping (tuples as lists) that :func:`config_from_dict` reads."""
        return _plain(dataclasses.asdict(self))


def warmup_steps(optim: OptimConfig, steps_per_epoch: int) -> int:
    """Warm-up length in optimizer steps."""
    return optim.warmup_steps + round(optim.warmup_epochs * steps_per_epoch)


@dataclass(frozen=True)
class ClefConfig:
    """The CLEF protocol (:mod:`heads.evaluation.clef`; Zhang et al., ICCV 2023) on fixed
    features: text prototypes of the label names, described in ``docs/CHOICES.md``.

    ``projection_dim``: the joint space both sides are projected into; ``temperature``: the
    learnable temperature's start; ``instance_weight``: lambda of ``L_fine = (lambda L_IN +
    L_DN) / 2``; ``weak``: the weakly supervised stage 1 (``auto``: when the store has coarse
    labels, CMU-MOSEI's sentiment sign; ``sentiment``: required; ``none``); ``weak_*``: its
    fixed temperature, epochs and the feature dropout that makes its two views;
    ``zero_shot``: also score the prototypes of a pretraining run's MMS text head, untrained.
    """

    projection_dim: int = 512
    temperature: float = 0.07
    instance_weight: float = 2.0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    standardize: bool = True
    weak: Literal["auto", "none", "sentiment"] = "auto"
    weak_temperature: float = 0.25
    weak_epochs: int = 10
    weak_view_dropout: float = 0.2
    zero_shot: bool = True


@dataclass(frozen=True)
class AvceConfig:
    """The AVCE protocol (:mod:`heads.evaluation.avce`; Kim & Song, ECCV 2022) on fixed
    features: sizes of the compressor C (``latent``), the regressor R and head H
    (``hidden``), the head H1 (``view_hidden`` -> ``view_dim``); the similarity's ``mu``; the
    AVCE weights ``alpha``, ``beta``, ``gamma`` and its weight in the first step
    (``avce_weight``); the triplet's ``delta1``, ``delta2``; the optimiser's lr and weight
    decay (both steps)."""

    latent: int = 32
    hidden: int = 256
    view_hidden: int = 64
    view_dim: int = 8
    mu: float = 0.75
    alpha: float = 0.5
    beta: float = 0.005
    gamma: float = 0.5
    avce_weight: float = 1.0
    delta1: float = 1.0
    delta2: float = 0.8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    standardize: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """One downstream evaluation, fully resolved (see ``manifests/evaluate.yaml``)."""

    epochs: int = 1000
    patience: int | None = 15
    seed: int = 0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=1e-3, weight_decay=1e-4, warmup_epochs=5.0, min_lr=1e-6))
    heads_lr_scale: float = 1.0
    batch_size: int = 4096
    dropout: float = 0.5
    standardize: bool = False
    classifier_init: Literal["kaiming_normal", "pytorch"] = "kaiming_normal"
    class_weights: Literal["inverse", "frequency", "fixed", "none"] = "inverse"
    class_weight_values: tuple[float, ...] = ()
    selection: Literal["val_f1", "val_loss"] = "val_f1"
    representation_dim: int = 4096
    modality_keys: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "video": ("frames_2d", "frames_3d"), "audio": ("audio",), "text": ("text",)})
    tsne_max_points: int = 5000
    clef: ClefConfig = field(default_factory=ClefConfig)
    avce: AvceConfig = field(default_factory=AvceConfig)

    def __post_init__(self) -> None:
        problems = _protocol_problems(self.clef, self.avce)
        o = self.optim
        if self.epochs < 1 or self.batch_size < 1 or self.representation_dim < 1:
            problems.append("epochs, batch_size and representation_dim must be >= 1")
        if o.lr <= 0 or o.weight_decay < 0 or self.heads_lr_scale < 0:
            problems.append("optim.lr must be > 0, optim.weight_decay and heads_lr_scale >= 0")
        if (o.warmup_epochs < 0 or o.warmup_steps < 0 or o.restart_epochs <= 0
                or o.restart_mult < 1):
            problems.append("optim: warmup >= 0, restart_epochs > 0, restart_mult >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.patience is not None and self.patience < 1:
            problems.append(f"patience must be >= 1 or null, got {self.patience}")
        if self.class_weights == "fixed" and not self.class_weight_values:
            problems.append("class_weights: fixed needs class_weight_values (one per class)")
        if any(w < 0 for w in self.class_weight_values):
            problems.append(f"class_weight_values must be >= 0, got "
                            f"{list(self.class_weight_values)}")
        if problems:
            raise ConfigError("evaluation config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe mapping (tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def _protocol_problems(clef: ClefConfig, avce: AvceConfig) -> list[str]:
    problems = []
    if clef.projection_dim < 1 or clef.weak_epochs < 0:
        problems.append("clef.projection_dim must be >= 1, clef.weak_epochs >= 0")
    if min(clef.temperature, clef.weak_temperature, clef.lr, avce.lr) <= 0:
        problems.append("clef.temperature, clef.weak_temperature, clef.lr and avce.lr must "
                        "be > 0")
    if not 0.0 <= clef.weak_view_dropout < 1.0:
        problems.append(f"clef.weak_view_dropout must be in [0, 1), got "
                        f"{clef.weak_view_dropout}")
    if min(avce.latent, avce.hidden, avce.view_hidden, avce.view_dim) < 1:
        problems.append("avce: latent, hidden, view_hidden and view_dim must be >= 1")
    if min(clef.instance_weight, clef.weight_decay, avce.weight_decay, avce.mu, avce.alpha,
           avce.beta, avce.gamma, avce.avce_weight, avce.delta1, avce.delta2) < 0:
        problems.append("clef.instance_weight, the weight decays and avce's mu, alpha, beta, "
                        "gamma, avce_weight, delta1, delta2 must be >= 0")
    return problems


def resolve_eval_config(dataset: str, *, preset: str | None = None,
                        overrides: Mapping[str, Any] | None = None,
                        config: str | Path | None = None) -> EvalConfig:
    """``defaults <- the dataset manifest's eval block <- presets[preset] <- overrides``.

    Args:
        dataset: the store's dataset name; ``manifests/<dataset>.yaml`` supplies the paper's lr
            and weight decay (and the dataset's class weights, where it names them) when it
            exists and has an ``eval`` block.
        preset: a key of the file's ``presets`` (``"cpu"``).
        overrides: merged last; nested mappings or dotted keys (``{"optim.lr": 1e-3}``).
        config: another layered file instead of ``manifests/evaluate.yaml``.

    Raises:
        ConfigError: unknown preset or key, wrong type, invalid value.
    """
    path = Path(config) if config is not None else EVAL_CONFIG
    data = load_yaml(path)
    unknown = sorted(set(data) - {"defaults", "presets"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; valid: defaults, presets")
    merged = dict(data.get("defaults") or {})
    merged = deep_merge(merged, _dataset_layer(dataset))
    if preset is not None:
        presets = data.get("presets") or {}
        if preset not in presets:
            raise ConfigError(f"{path}: unknown preset {preset!r}; valid: {sorted(presets)}")
        merged = deep_merge(merged, presets[preset])
    merged = deep_merge(merged, expand_dotted(overrides or {}))
    return from_dict(EvalConfig, merged, str(path))


def _dataset_layer(dataset: str) -> dict[str, Any]:
    from pipeline.manifest import load_manifest, manifest_path

    if not manifest_path(dataset).is_file():
        log.info("dataset %r has no manifest: the default lr and weight decay apply", dataset)
        return {}
    defaults = load_manifest(dataset).eval
    if defaults is None:
        return {}
    layer: dict[str, Any] = {"optim": {"lr": defaults.lr, "weight_decay": defaults.weight_decay}}
    if defaults.class_weights is not None:
        layer["class_weights"] = defaults.class_weights
    if defaults.class_weight_values is not None:
        layer["class_weight_values"] = list(defaults.class_weight_values)
    return layer


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> TrainConfig:
    """A :class:`TrainConfig` from a resolved mapping (``RUN/config.yaml``, a checkpoint)."""
    return from_dict(TrainConfig, dict(data), where)


def resolve_config(objective: str, *, config: str | Path | None = None, preset: str | None = None,
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
        preset: a key of the layered file's ``presets`` (``"cpu"``).
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
    if preset is not None:
        presets = layers.get("presets") or {}
        if preset not in presets:
            raise ConfigError(f"{base_path}: unknown preset {preset!r}; valid: {sorted(presets)}")
        merged = deep_merge(merged, presets[preset])
    merged = deep_merge(merged, partial)
    merged = deep_merge(merged, expand_dotted(overrides or {}))
    explicit = {"objective": objective, "modalities": None if modalities is None
                else list(modalities), "epochs": epochs, "seed": seed}
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


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
