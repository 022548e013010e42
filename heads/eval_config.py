"""The evaluation configuration of the heads (:class:`EvalConfig`, with the CLEF and AVCE
protocols' sections), a frozen dataclass resolved strictly from YAML.

``manifests/evaluate.yaml`` holds ``defaults`` and named ``presets`` (``paper``, ``reference``,
``cpu``; :mod:`pipeline.presets`); a dataset's manifest adds
its learning rate, weight decay and class weights. An evaluation's config is ``defaults <-
dataset <- presets[preset] <- overrides``, merged key by key (:func:`heads.config.deep_merge`),
then checked by :func:`pipeline.config.from_dict`: an unknown key or a wrong type is an error
naming the key path. The resolved config is written into every ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import manifests
from heads.config import OptimConfig, deep_merge, expand_dotted, plain, preset_layers
from pipeline.config import ConfigError, from_dict, load_yaml
from pipeline.manifest import load_manifest, manifest_path
from pipeline.presets import Preset, parse_preset

EVAL_CONFIG = manifests.path("evaluate.yaml")  # shipped with the package

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClefConfig:
    """The CLEF protocol (:mod:`heads.evaluation.clef`; Zhang et al., ICCV 2023) on fixed
    features: text prototypes of the label names, described in ``docs/CHOICES.md``.

    ``projection_dim``: the joint space both sides are projected into; ``temperature``: the
    learnable temperature's start; ``instance_weight``: lambda of ``L_fine = (lambda L_IN +
    L_DN) / 2``. The schedule is the paper's (as docs/PAPER-NOTES.md records it): AdamW (``lr``
    2e-4, the fine-tuning rate; 1e-4 the paper's other; ``weight_decay`` 0.01), ``batch_size`` 64,
    ``warmup_epochs`` 1 then cosine to ``min_lr`` 1e-6, for stage 1 over ``weak_epochs`` (5)
    and for fine-tuning over ``epochs`` (not stated: this project's). ``weak``: stage 1 (``auto``:
    on ``stage1_store`` when given, else the downstream train split's sentiment sign where the
    store has it, labelled a fallback; ``store``: ``stage1_store`` required; ``sentiment``: the
    fallback required; ``none``); ``stage1_store``: a store with activity-like labels other
    than the downstream ones, in the same feature space; ``weak_*``: stage 1's fixed
    temperature, epochs and the feature dropout that makes its two views; ``zero_shot``: also
    score the prototypes of a pretraining run's MMS text head, untrained.
    """

    projection_dim: int = 512
    temperature: float = 0.07
    instance_weight: float = 2.0
    lr: float = 2e-4
    weight_decay: float = 0.01
    batch_size: int = 64
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    epochs: int = 20
    standardize: bool = True
    weak: Literal["auto", "none", "sentiment", "store"] = "auto"
    stage1_store: str | None = None
    weak_temperature: float = 0.25
    weak_epochs: int = 5
    weak_view_dropout: float = 0.2
    zero_shot: bool = True


@dataclass(frozen=True)
class AvceConfig:
    """The AVCE protocol (:mod:`heads.evaluation.avce`; Kim & Song, ECCV 2022) on fixed
    features: sizes of the compressor C (``latent``), the regressor R and head H
    (``hidden``), the head H1 (``view_hidden`` -> ``view_dim``), ``batch_norm`` in the heads;
    the similarity's ``mu``; the AVCE weights ``alpha``, ``beta``, ``gamma`` and its weight in
    the first step (``avce_weight``); the triplet's ``delta1``, ``delta2``.

    ``optimizer``: ``paper`` (Adam at ``lr`` over C and R, SGD at ``heads_lr`` with momentum
    ``momentum`` over H and H1, the rates x ``lr_step_gamma`` at the fractions ``lr_steps`` of
    a run of ``epochs`` epochs at ``batch_size``) or ``adamw`` (AdamW at ``lr``, ``weight_decay``,
    over every module, the evaluation schedule and ``epochs`` of the evaluation config).
    ``single_target``: with one target (CMU-MOSEI's valence) the angle term of f is degenerate;
    ``valence_only`` runs and labels the variant, ``refuse`` stops. ``with_text``: the store's
    text features among the default inputs.
    """

    latent: int = 32
    hidden: int = 256
    view_hidden: int = 64
    view_dim: int = 8
    batch_norm: bool = True
    mu: float = 0.75
    alpha: float = 0.5
    beta: float = 0.005
    gamma: float = 0.5
    avce_weight: float = 1.0
    delta1: float = 1.0
    delta2: float = 0.8
    optimizer: Literal["paper", "adamw"] = "paper"
    lr: float = 1e-4
    heads_lr: float = 1e-2
    momentum: float = 0.9
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs: int = 40
    lr_steps: tuple[float, ...] = (0.1, 0.2, 0.4)
    lr_step_gamma: float = 0.8
    single_target: Literal["valence_only", "refuse"] = "valence_only"
    with_text: bool = False
    standardize: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """One downstream evaluation, fully resolved (see ``manifests/evaluate.yaml``);
    ``preset``: the ``--preset`` it was resolved with (``"reference,cpu"``), for the record."""

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
    train_views: Literal["augmented", "clean"] = "augmented"
    preset: str = "paper"
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
        return plain(dataclasses.asdict(self))


def _protocol_problems(clef: ClefConfig, avce: AvceConfig) -> list[str]:
    problems = []
    if min(clef.projection_dim, clef.batch_size, clef.epochs, avce.batch_size,
           avce.epochs) < 1 or clef.weak_epochs < 0:
        problems.append("clef.projection_dim, clef.batch_size, clef.epochs, avce.batch_size "
                        "and avce.epochs must be >= 1, clef.weak_epochs >= 0")
    if min(clef.temperature, clef.weak_temperature, clef.lr, avce.lr, avce.heads_lr) <= 0:
        problems.append("clef.temperature, clef.weak_temperature, clef.lr, avce.lr and "
                        "avce.heads_lr must be > 0")
    if not 0.0 <= clef.weak_view_dropout < 1.0:
        problems.append(f"clef.weak_view_dropout must be in [0, 1), got "
                        f"{clef.weak_view_dropout}")
    if not 0 <= clef.min_lr <= clef.lr or clef.warmup_epochs < 0:
        problems.append("clef.min_lr must be in [0, clef.lr], clef.warmup_epochs >= 0")
    if clef.weak == "store" and not clef.stage1_store:
        problems.append("clef.weak=store needs clef.stage1_store (a store with activity-like "
                        "labels)")
    if min(avce.latent, avce.hidden, avce.view_hidden, avce.view_dim) < 1:
        problems.append("avce: latent, hidden, view_hidden and view_dim must be >= 1")
    if any(not 0 < f < 1 for f in avce.lr_steps) or not 0 < avce.lr_step_gamma <= 1:
        problems.append("avce.lr_steps must be fractions of the run in (0, 1), "
                        "avce.lr_step_gamma in (0, 1]")
    if not 0 <= avce.momentum < 1 or not all(0 <= b < 1 for b in avce.betas):
        problems.append("avce.momentum and avce.betas must be in [0, 1)")
    if min(clef.instance_weight, clef.weight_decay, avce.weight_decay, avce.mu, avce.alpha,
           avce.beta, avce.gamma, avce.avce_weight, avce.delta1, avce.delta2) < 0:
        problems.append("clef.instance_weight, the weight decays and avce's mu, alpha, beta, "
                        "gamma, avce_weight, delta1, delta2 must be >= 0")
    return problems


def resolve_eval_config(dataset: str, *, preset: str | Preset | None = None,
                        overrides: Mapping[str, Any] | None = None,
                        config: str | Path | None = None) -> EvalConfig:
    """``defaults <- the dataset manifest's eval block <- presets[preset] <- overrides``.

    Args:
        dataset: the store's dataset name; ``manifests/<dataset>.yaml`` supplies the paper's lr
            and weight decay (and the dataset's class weights, where it names them) when it
            exists and has an ``eval`` block.
        preset: ``--preset``'s value (``"reference"``, ``"cpu"``, ``"reference,cpu"``): each
            name's layer of the file's ``presets``, then that layer's ``datasets: {dataset:
            ...}`` values.
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
    for layer in preset_layers(data.get("presets") or {}, preset, path):
        # a preset's per-dataset values (``datasets: {caer: {...}}``) after its general ones
        per_dataset = (layer.get("datasets") or {}).get(dataset) or {}
        merged = deep_merge(merged, {k: v for k, v in layer.items() if k != "datasets"})
        merged = deep_merge(merged, per_dataset)
    merged = deep_merge(merged, expand_dotted(overrides or {}))
    if preset is not None:  # recorded with the values it chose (metrics.json's config)
        merged["preset"] = parse_preset(preset).name
    return from_dict(EvalConfig, merged, str(path))


def _dataset_layer(dataset: str) -> dict[str, Any]:
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
