"""Downstream evaluation: how good are the representations for facial expression recognition?

:func:`run_eval` trains a classifier on the train split of a labelled store, keeps the epoch
that is best on the validation split, and scores train, val and test with the paper's metrics
(accuracy, precision, recall, F1 weighted by support; macro-F1; per class; confusion matrix;
CMU-MOSEI's weighted accuracy for multi-label stores). Protocols (:mod:`heads.classifier`):
``linear`` (frozen pretrained heads), ``finetune`` (pretrained heads trained too) and
``supervised`` (the same architecture from scratch, no run). ``seeds`` repeats the training
with seeds ``seed, seed+1, ...`` and reports mean and standard deviation. The settings are an
:class:`EvalConfig` resolved from ``manifests/evaluate.yaml`` and the dataset's manifest.

Outputs, in ``RUN/eval/<protocol>[-<modalities>][-mean]/`` (or ``out``)::

    metrics.json         every metric per split and seed, their mean/std, config, store_id
    confusion_<split>.png  row-normalised confusion matrix with counts (first seed)
    embedding_test.png   t-SNE of the test representations coloured by label (first seed)
    classifier.pt        the first seed's classifier (plain tensors; used by heads.predict)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from heads.checkpoint import check_store, load_model
from heads.classifier import (FUSIONS, PROTOCOLS, LabelledSplit, ProbeModel, ProbeSpec, decide,
                              encoder_heads, fit, fit_standardization, freeze_heads, make_loss,
                              predict, represent_split)
from heads.config import deep_merge, expand_dotted
from heads.data import DataError, assemble_modalities, read_modality
from heads.metrics import (HEADLINE, classification_metrics, json_safe, multilabel_metrics,
                           summarize)
from heads.models import ConCluGenHeads
from heads.predict import CLASSIFIER, checkpoint_of, run_folder, save_classifier
from heads.train import resolve_device
from pipeline.config import ConfigError, from_dict, load_yaml

if TYPE_CHECKING:
    from pipeline.store import FeatureStore

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "manifests" / "evaluate.yaml"
FORMAT = "conclugen-eval/1"
METRICS = "metrics.json"
SPLITS = ("train", "val", "test")
SELECTION = {"val_f1": "the epoch with the best val weighted F1 (ties: lower val loss)",
             "val_loss": "the epoch with the lowest val loss"}


# ------------------------------------------------------------------------------------ config

@dataclass(frozen=True)
class EvalConfig:
    """One downstream evaluation, fully resolved (see ``manifests/evaluate.yaml``)."""

    epochs: int = 65
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    warmup_epochs: int = 5
    restart_epochs: float = 20.0
    restart_mult: int = 2
    min_lr: float = 0.0
    heads_lr_scale: float = 1.0
    batch_size: int = 4096
    dropout: float = 0.5
    standardize: bool = True
    class_weights: Literal["inverse", "none"] = "inverse"
    selection: Literal["val_f1", "val_loss"] = "val_f1"
    representation_dim: int = 4096
    modality_keys: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "video": ("frames_2d", "frames_3d"), "audio": ("audio",), "text": ("text",)})
    tsne_max_points: int = 5000

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 1 or self.representation_dim < 1:
            problems.append("epochs, batch_size and representation_dim must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.heads_lr_scale < 0:
            problems.append("lr must be > 0, weight_decay and heads_lr_scale >= 0")
        if self.warmup_epochs < 0 or self.restart_epochs <= 0 or self.restart_mult < 1:
            problems.append("warmup_epochs >= 0, restart_epochs > 0, restart_mult >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if problems:
            raise ConfigError("evaluation config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe mapping (tuples as lists)."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        data["modality_keys"] = {m: list(k) for m, k in self.modality_keys.items()}
        return data


def resolve_eval_config(dataset: str, *, preset: str | None = None,
                        overrides: Mapping[str, Any] | None = None,
                        config: str | Path | None = None) -> EvalConfig:
    """``defaults <- the dataset manifest's eval block <- presets[preset] <- overrides``.

    Args:
        dataset: the store's dataset name; ``manifests/<dataset>.yaml`` supplies the paper's lr
            and weight decay when it exists and has an ``eval`` block.
        preset: a key of the file's ``presets`` (``"cpu"``).
        overrides: merged last; nested mappings or dotted keys.
        config: another layered file instead of ``manifests/evaluate.yaml``.

    Raises:
        ConfigError: unknown preset or key, wrong type, invalid value.
    """
    path = Path(config) if config is not None else DEFAULT_CONFIG
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


def _dataset_layer(dataset: str) -> dict[str, float]:
    from pipeline.manifest import load_manifest, manifest_path

    if not manifest_path(dataset).is_file():
        log.info("dataset %r has no manifest: the default lr and weight decay apply", dataset)
        return {}
    defaults = load_manifest(dataset).eval
    if defaults is None:
        return {}
    return {"lr": defaults.lr, "weight_decay": defaults.weight_decay}


def modality_order(requested: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """The modalities a probe uses: ``requested`` (checked against ``available``) or all."""
    if requested is None:
        return tuple(available)
    requested = tuple(requested)
    unknown = [m for m in requested if m not in available]
    if unknown or not requested or len(set(requested)) != len(requested):
        raise ConfigError(f"modalities {list(requested)}: must be distinct and among "
                          f"{list(available)}")
    return requested


# -------------------------------------------------------------------------------- evaluation

@dataclass
class _Setup:
    """What one evaluation works with, shared by its seeds."""

    protocol: str
    cfg: EvalConfig
    spec: ProbeSpec
    input_dims: dict[str, int]
    layout: dict[str, tuple[str, ...]]
    label_names: tuple[str, ...]
    pretrained: ConCluGenHeads | None
    payload: dict[str, Any] | None
    checkpoint: Path | None
    device: torch.device


def eval_name(protocol: str, modalities: Sequence[str], all_modalities: Sequence[str],
              fusion: str) -> str:
    """``linear``, ``linear-video``, ``finetune-video-audio-mean``: the output folder's name."""
    name = protocol
    if tuple(modalities) != tuple(all_modalities):
        name += "-" + "-".join(modalities)
    return name if fusion == "concat" else f"{name}-{fusion}"


def run_eval(store: str, *, run: str | Path | None, protocol: str, out: Path | None = None,
             modalities: Sequence[str] | None = None, fusion: str = "concat",
             preset: str | None = None, overrides: dict | None = None, seeds: int = 1,
             device: str = "auto", progress: bool = True) -> dict:
    """Evaluate representations on a labelled store; write metrics, figures and the classifier.

    Args:
        store: the feature store (folder or fsspec URL) with train, val (and test) splits.
        run: the pretraining run folder (or a checkpoint file); None for ``supervised``.
        protocol: ``linear``, ``finetune`` or ``supervised``.
        out: the output folder (default ``RUN/eval/<name>``; required for ``supervised``
            without a run).
        modalities: the modalities the classifier sees (default: all the run's; for
            ``supervised`` all the store has). ``["video"]`` gives "ConCluGen (vision)".
        fusion: ``concat`` (the paper) or ``mean`` of the modality representations.
        preset: a preset of ``manifests/evaluate.yaml`` (``"cpu"``).
        overrides: config values merged last (``{"epochs": 10, "lr": 1e-3}``).
        seeds: how many seeds to train with (mean and std reported).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        progress: show a progress bar per seed.

    Returns:
        the content of ``metrics.json``; ``summary[split][metric]["mean"]`` holds the numbers
        of the paper's tables.

    Raises:
        ConfigError: bad protocol, fusion, modalities, preset or overrides.
        CheckpointError: no checkpoint, or the store's store_id differs from the run's.
        DataError: the store lacks a train or val split, or labels.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; valid: {list(PROTOCOLS)}")
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; valid: {list(FUSIONS)}")
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    if protocol != "supervised" and run is None:
        raise ConfigError(f"protocol {protocol!r} evaluates a pretraining run: pass run")
    from pipeline.store import open_store

    with open_store(store) as fs:
        setup = _setup(fs, store, run=run, protocol=protocol, modalities=modalities,
                       fusion=fusion, preset=preset, overrides=overrides, device=device)
        all_modalities = (list(setup.payload["layout"]) if setup.payload is not None
                          else list(setup.spec.modalities))
        if out is None:
            if run is None:
                raise ConfigError("supervised evaluation without a run needs out")
            out = run_folder(run) / "eval" / eval_name(protocol, setup.spec.modalities,
                                                        all_modalities, fusion)
        data = {name: split for name in SPLITS
                if (split := load_split(fs, setup.layout, name, setup.device)) is not None}
        _check_splits(fs, data)
        result = _evaluate(fs, setup, data, seeds=seeds, out=Path(out), run=run,
                           progress=progress)
    return result


def _setup(fs: FeatureStore, store: str, *, run: str | Path | None, protocol: str,
           modalities: Sequence[str] | None, fusion: str, preset: str | None,
           overrides: dict | None, device: str) -> _Setup:
    cfg = resolve_eval_config(fs.dataset, preset=preset, overrides=overrides)
    dev = resolve_device(device)
    pretrained = payload = ckpt = None
    if protocol == "supervised":
        present = [m for m, keys in cfg.modality_keys.items() if set(keys) & set(fs.keys)]
        mods = modality_order(modalities, present)
        layout = assemble_modalities(fs, cfg.modality_keys, mods)
        keys, dims, dim = dict(layout.keys), dict(layout.dims), cfg.representation_dim
    else:
        assert run is not None
        ckpt = checkpoint_of(run)
        pretrained, payload = load_model(ckpt, device="cpu")
        check_store(payload, fs.store_id, checkpoint=ckpt, store=str(store))
        mods = modality_order(modalities, list(payload["layout"]))
        keys = {m: tuple(payload["layout"][m]) for m in mods}
        dims = {m: int(payload["model_spec"]["input_dims"][m]) for m in mods}
        dim = int(payload["model_spec"]["representation_dim"])
    outputs = len(fs.label_names)
    if outputs < 2 and not fs.multilabel:
        raise DataError(f"{fs.url}: {outputs} class(es) {list(fs.label_names)}; a classifier "
                        "needs at least 2")
    spec = ProbeSpec(tuple(mods), fusion, dim, outputs, cfg.dropout, fs.multilabel)
    return _Setup(protocol, cfg, spec, {m: dims[m] for m in mods}, keys, fs.label_names,
                  pretrained, payload, ckpt, dev)


def load_split(fs: FeatureStore, layout: Mapping[str, Sequence[str]], split: str,
               device: torch.device) -> LabelledSplit | None:
    """The labelled rows of ``split`` on ``device`` (None if it has none).

    Unlabeled rows (label -1) are left out; multi-label targets are 1 where the stored value is
    > 0 (CMU-MOSEI intensities), rows with a non-finite value are left out.

    Raises:
        DataError: a label outside the store's classes (names the sample).
    """
    pos = fs.positions(split)
    labels = fs.labels(pos)
    if fs.multilabel:
        keep = np.isfinite(labels).all(axis=1)
        targets = torch.from_numpy((labels[keep] > 0).astype(np.float32))
    else:
        keep = labels >= 0
        bad = np.flatnonzero(labels >= len(fs.label_names))
        if bad.size:
            sid = fs.index.column("sample_id")[int(pos[bad[0]])].as_py()
            raise DataError(f"{fs.url}: sample {sid} has label {int(labels[bad[0]])}, but the "
                            f"store names {len(fs.label_names)} classes")
        targets = torch.from_numpy(labels[keep].astype(np.int64))
    pos = pos[keep]
    if len(pos) == 0:
        return None
    # float16 on a GPU (half the memory), float32 on the CPU (no fast float16 math there).
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    inputs = {m: torch.from_numpy(read_modality(fs, keys, pos, all_views=False))
              .to(device=device, dtype=dtype) for m, keys in layout.items()}
    ids = fs.index.column("sample_id").take(pos).to_pylist()
    return LabelledSplit(split, inputs, targets.to(device), ids)


def _check_splits(fs: FeatureStore, data: Mapping[str, LabelledSplit]) -> None:
    missing = [s for s in ("train", "val") if s not in data]
    if missing:
        raise DataError(f"{fs.url}: no labelled rows in split(s) {missing} (it has "
                        f"{list(fs.splits)}); training needs train, model selection needs val")
    if "test" not in data:
        log.warning("%s: no labelled test split; only train and val are scored", fs.url)


def _build(setup: _Setup, seed: int) -> ProbeModel:
    heads = encoder_heads(setup.input_dims, setup.spec.representation_dim, seed=seed,
                          pretrained=setup.pretrained)
    torch.manual_seed(seed)  # the linear layer's init and the dropout masks
    model = ProbeModel(setup.spec, heads).to(setup.device)
    if setup.protocol == "linear":
        freeze_heads(model)
    return model


def _evaluate(fs: FeatureStore, setup: _Setup, data: dict[str, LabelledSplit], *, seeds: int,
              out: Path, run: str | Path | None, progress: bool) -> dict[str, Any]:
    cfg, represented = setup.cfg, setup.protocol == "linear"
    runs, first = [], None
    for k in range(seeds):
        seed = cfg.seed + k
        model = _build(setup, seed)
        inputs = ({n: represent_split(model, s, cfg.batch_size) for n, s in data.items()}
                  if represented else data)
        if cfg.standardize:
            fit_standardization(model, inputs["train"], represented=represented,
                                inputs=setup.protocol == "supervised",
                                batch_size=cfg.batch_size)
        loss_fn, weights = make_loss(data["train"].targets, setup.spec.outputs,
                                     multilabel=setup.spec.multilabel,
                                     class_weights=cfg.class_weights)
        result = fit(model, inputs["train"], inputs["val"], cfg, loss_fn=loss_fn,
                     represented=represented, seed=seed, progress=progress)
        scored = {n: _score(model, s, setup, represented) for n, s in inputs.items()}
        runs.append({"seed": seed, "best_epoch": result.best_epoch + 1,
                     "seconds": round(result.seconds, 3), "history": result.history,
                     "splits": {n: m for n, (m, _) in scored.items()}})
        if first is None:
            first = (model, scored, weights, seed, result.best_epoch + 1)
    assert first is not None
    model, scored, weights, seed, best_epoch = first
    out.mkdir(parents=True, exist_ok=True)
    files = _figures(setup, scored, data, out, seed)
    files["classifier"] = CLASSIFIER
    save_classifier(out / CLASSIFIER, model, protocol=setup.protocol,
                    checkpoint=_checkpoint_ref(setup), store_id=fs.store_id, store_url=fs.url,
                    layout=setup.layout, label_names=setup.label_names,
                    config=setup.cfg.to_dict(), seed=seed, best_epoch=best_epoch)
    metrics = _report(fs, setup, runs, weights=weights, run=run, files=files,
                      counts={n: len(s) for n, s in data.items()})
    metrics["out"] = str(out)
    write_json(out / METRICS, metrics)
    log.info("%s: test %s", out, _headline(metrics))
    return metrics


def _score(model: ProbeModel, split: LabelledSplit, setup: _Setup,
           represented: bool) -> tuple[dict[str, Any], np.ndarray]:
    """The split's metrics and its fused representations [n, F] (for the t-SNE map)."""
    logits, fused = predict(model, split, represented=represented,
                            batch_size=setup.cfg.batch_size)
    _, decisions = decide(logits.cpu(), setup.spec.multilabel)
    truth = split.targets.cpu().numpy()
    score = (multilabel_metrics if setup.spec.multilabel else classification_metrics)
    return score(truth, decisions, setup.label_names), fused.cpu().numpy()


def _figures(setup: _Setup, scored: Mapping[str, tuple[dict[str, Any], np.ndarray]],
             data: Mapping[str, LabelledSplit], out: Path, seed: int) -> dict[str, Any]:
    from heads.plots import evaluation_figures

    test = ((scored["test"][1], data["test"].targets.cpu().numpy()) if "test" in scored
            else None)
    return evaluation_figures(out, confusions={n: m["confusion"] for n, (m, _) in scored.items()},
                              label_names=setup.label_names, multilabel=setup.spec.multilabel,
                              test=test, what=f"{setup.protocol} "
                              f"({'+'.join(setup.spec.modalities)})", seed=seed,
                              max_points=setup.cfg.tsne_max_points)


def _report(fs: FeatureStore, setup: _Setup, runs: list[dict[str, Any]], *,
            weights: list[float], run: str | Path | None, files: dict[str, Any],
            counts: dict[str, int]) -> dict[str, Any]:
    payload = setup.payload
    splits = list(runs[0]["splits"])
    keys = [*HEADLINE, *(("subset_accuracy", "weighted_accuracy") if setup.spec.multilabel
                         else ())]
    return {
        "format": FORMAT,
        "protocol": setup.protocol,
        "objective": payload["objective"] if payload is not None else "supervised",
        "modalities": list(setup.spec.modalities),
        "fusion": setup.spec.fusion,
        "dataset": fs.dataset,
        "label_names": list(setup.label_names),
        "multilabel": setup.spec.multilabel,
        "store": fs.url,
        "store_id": fs.store_id,
        "run": str(run_folder(run)) if run is not None else None,
        "checkpoint": _checkpoint_ref(setup),
        "config": setup.cfg.to_dict(),
        "selection": SELECTION[setup.cfg.selection],
        "class_weights": {"kind": setup.cfg.class_weights,
                          "kind_multilabel": "pos_weight = negatives / positives",
                          "values": weights},
        "counts": counts,
        "seeds": [r["seed"] for r in runs],
        "summary": {s: summarize([r["splits"][s] for r in runs], keys) for s in splits},
        "runs": runs,
        "files": files,
    }


def _checkpoint_ref(setup: _Setup) -> dict[str, Any] | None:
    if setup.payload is None or setup.checkpoint is None:
        return None
    return {"path": str(setup.checkpoint), "step": int(setup.payload["step"]),
            "epoch": int(setup.payload["epoch"])}


def _headline(metrics: Mapping[str, Any]) -> str:
    test = metrics["summary"].get("test") or metrics["summary"].get("val", {})
    return ", ".join(f"{k} {v['mean']:.4f}" for k, v in test.items() if k in HEADLINE)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write strict JSON (NaN as null) atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
