"""Pretraining of the ConCluGen heads on a feature store: build, loop, evaluate, checkpoint.

:func:`run_pretrain` is the whole program: it resolves the config, reads the store's features
onto the device (or streams them), builds the heads and the objective, and runs AdamW with a
cosine schedule with warm restarts (:func:`lr_at`, a pure function of the step). Each step logs
every loss part, the lr, samples/s, the feature std per modality and the cluster occupancy;
each epoch evaluates the validation split, logs epoch means and writes a checkpoint. A killed run
resumed with ``resume=True`` ends with the same weights as an uninterrupted one (same seed and
device): every random draw comes from generators whose states the checkpoint carries.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from heads.checkpoint import (LAST, CheckpointError, HeadsCheckpoint, check_same_store, epoch_file,
                              link_checkpoint, load_checkpoint, prune_epochs, restore_rng,
                              rng_state, save_checkpoint)
from heads.config import TrainConfig, config_from_dict, schedule_of
from heads.data import (Batch, DataError, FeatureSource, assemble_modalities, check_views,
                        load_features)
from heads.metrics_log import MetricsLog, ProgressBar
from heads.models import ConCluGenHeads
from heads.outputs import claim_output, disk_errors
from heads.pretrain.monitor import Monitor, MonitorSettings, open_monitor
from heads.pretrain.objectives import (Objective, get_objective, model_spec,
                                      resolve_objective_config)
from heads.pretrain.record import run_header, write_pretrain_record
from heads.run_record import one_warning, start_clock, warn_random_weights
from heads.runtime import autocast, lr_at, resolve_device
from pipeline.errors import UserError
from pipeline.store import FeatureStore, open_store
from pipeline.presets import Preset

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss part became NaN or infinite; the run stops before the weights are touched."""

    def __init__(self, step: int, epoch: int, parts: Mapping[str, float],
                 checkpoint: Path | None) -> None:
        names = ", ".join(f"{k}={v}" for k, v in parts.items())
        where = checkpoint if checkpoint is not None else "none (no epoch had finished)"
        super().__init__(f"non-finite loss at step {step} (epoch {epoch}): {names}; "
                         f"last good checkpoint: {where}")
        self.step, self.epoch, self.parts, self.checkpoint = step, epoch, dict(parts), checkpoint


def train_step(model: ConCluGenHeads, objective: Objective, optimizer: torch.optim.Optimizer,
               batch: Batch, *, step: int, epoch: int, lr: float, grad_clip: float | None = None,
               last_checkpoint: Path | None = None) -> dict[str, float]:
    """One optimizer step on ``batch``; returns the loss parts' values.

    Args:
        step: the number of this step (1-based), for the error message.
        last_checkpoint: named in the error message.

    Raises:
        NonFiniteLossError: a loss part is NaN/Inf; raised before any gradient is applied.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(next(model.parameters()).device):
        parts = objective(model, batch, epoch=epoch)
    optimizer.zero_grad(set_to_none=True)
    parts["loss"].backward()
    # The step's one read on the host, after the backward pass is queued (on a GPU, reading
    # the loss before it would leave the GPU idle while the host queues the backward pass).
    values = dict(zip(parts, torch.stack([v.detach().float() for v in parts.values()]).tolist()))
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(step, epoch, bad, last_checkpoint)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return values


@torch.no_grad()
def evaluate(model: ConCluGenHeads, objective: Objective, data: FeatureSource, *,
             epoch: int) -> dict[str, float]:
    """Mean loss parts over ``data`` (in index order), without touching any training state."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    rows = 0
    device = next(model.parameters()).device
    for batch in data.ordered():
        n = len(next(iter(batch.values())))
        if n < 2:
            continue
        with autocast(device):
            parts = objective(model, batch, epoch=epoch, train=False)
        for k, v in parts.items():
            sums[k] += float(v) * n
        rows += n
    model.train()
    return {f"val/{k}": v / rows for k, v in sums.items()} if rows else {}


def run_pretrain(store: str, objective: str, out: str | Path, *, config: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, modalities: Sequence[str] | None = None,
                 preset: str | Preset | None = None, device: str = "auto", resume: bool = False,
                 seed: int | None = None, epochs: int | None = None,
                 progress: bool = True, monitor: MonitorSettings | None = None) -> Path:
    """Pretrain the heads with ``objective`` on the features in ``store``.

    Args:
        store: the feature store (folder or fsspec URL).
        objective: a key of :data:`heads.pretrain.objectives.OBJECTIVES`.
        out: the run folder (created; refused if it holds a run and ``resume`` is False).
        config: a YAML config, layered or partial (see :func:`heads.config.resolve_config`).
        overrides: config values merged last (``{"model.representation_dim": 64}``).
        modalities: train on these modalities only (the paper's ablations).
        preset: ``--preset`` (``"reference"``, ``"cpu"``: small and fast, ``"reference,cpu"``):
            layers of the config file; recorded in the run's config (``preset``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        resume: continue the run in ``out`` from ``checkpoints/last.pt``; only ``epochs`` may
            change (to extend it), other settings must match the checkpoint's.
        seed: seeds model init, batch order and k-means (default: the config's, 0).
        epochs: total epochs (default: the config's).
        progress: show a progress bar with samples/s.
        monitor: log the k-NN (and linear) accuracy of the representations on a labelled
            store every few epochs (:mod:`heads.pretrain.monitor`); None: no monitor.

    Returns:
        the run folder, holding ``config.yaml``, ``metrics.jsonl`` (its first record, kind
        ``run``, names the store and its keys with random weights), ``checkpoints/`` and
        ``run.json`` (:mod:`heads.run_record`).

    Raises:
        ConfigError, DataError, CheckpointError: bad settings, store or run folder.
        MonitorError: the monitor store is in another feature space, unlabelled or lacks a
            train or val split (checked before the first step).
        NonFiniteLossError: a loss part became NaN/Inf (names the step, part and checkpoint).
    """
    run_dir = Path(out)
    clock = start_clock()
    # The folder is checked (never a store, never another's files) and locked for the run.
    with one_warning(), claim_output(run_dir, "pretrain"):
        payload = _resume_payload(run_dir, resume)
        cfg = _run_config(payload, objective, config=config, preset=preset, overrides=overrides,
                          modalities=modalities, epochs=epochs, seed=seed)
        with open_store(store) as fs:
            if payload is not None:
                check_same_store(payload, fs.store_id, checkpoint=run_dir / "checkpoints" / LAST,
                                 store=str(store))
            warn_random_weights(fs.url, fs.manifest.random_weights, command="pretrain")
            run = _build(fs, cfg, resolve_device(device), payload)
            try:
                watch = None if monitor is None else _monitor(monitor, run, fs)
                with disk_errors(run_dir / "config.yaml"):
                    (run_dir / "config.yaml").write_text(yaml.safe_dump(run.cfg.to_dict(),
                                                                        sort_keys=False))
                _train(run, run_dir, progress=progress, resumed=payload is not None,
                       monitor=watch)
            finally:
                run.close()
            write_pretrain_record(run_dir, fs, run.cfg.to_dict(), run.static, clock)
    return run_dir


@dataclass
class _Run:
    """Everything a training run holds between steps."""

    cfg: TrainConfig
    model: ConCluGenHeads
    optimizer: torch.optim.Optimizer
    objective: Objective
    generator: torch.Generator
    train_data: FeatureSource
    val_data: FeatureSource | None
    static: dict[str, Any]  # the checkpoint entries that never change during the run
    step: int = 0
    epoch: int = 0

    def close(self) -> None:
        self.train_data.close()
        if self.val_data is not None:
            self.val_data.close()


def _build(fs: FeatureStore, cfg: TrainConfig, dev: torch.device,
           payload: HeadsCheckpoint | None) -> _Run:
    """Features on the device, the heads, AdamW, the objective; restored from ``payload``."""
    spec = get_objective(cfg.objective)
    check_views(fs, spec.needs_views, cfg.data.contrast_views)
    layout = assemble_modalities(fs, cfg.modality_keys, cfg.modalities)
    # The config records the keys actually used (a store may lack some of the asked ones).
    cfg = dataclasses.replace(cfg, modality_keys={**cfg.modality_keys, **layout.keys})
    train_data = load_features(fs, layout, cfg.data.splits, cfg.data, device=dev,
                               pair_views=spec.needs_views)
    if train_data is None:
        raise DataError(f"{fs.url}: no rows in splits {list(cfg.data.splits)}")
    val_data = load_features(fs, layout, cfg.data.val_splits, cfg.data, device=dev,
                             pair_views=spec.needs_views) if cfg.data.val_splits else None
    torch.manual_seed(cfg.seed)
    mspec = model_spec(cfg, layout.dims)
    model = ConCluGenHeads(mspec).to(dev)
    # fused on CUDA: the same update in one kernel instead of one per parameter tensor.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr,
                                  weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas,
                                  fused=dev.type == "cuda")
    static = {"objective": cfg.objective, "config": cfg.to_dict(),
              "store_id": fs.store_id, "store_url": fs.url, "dataset": fs.dataset,
              # What evaluation compares: any store with these vectors for these keys.
              "feature_space": {k: dict(fs.manifest.feature_space[k])
                                for ks in layout.keys.values() for k in ks},
              "layout": dict(layout.keys), "model_spec": mspec, "device": str(dev)}
    run = _Run(cfg, model, optimizer, Objective(cfg), torch.Generator().manual_seed(cfg.seed),
               train_data, val_data, static)
    if payload is not None:
        model.load_state_dict(payload.model)
        optimizer.load_state_dict(payload.optimizer)
        run.objective.load_state_dict(payload.objective_state, dev)
        restore_rng(payload.rng, run.generator)
        run.step, run.epoch = payload.step, payload.epoch
        log.info("resuming at epoch %d, step %d", run.epoch, run.step)
    return run


def _monitor(settings: MonitorSettings, run: _Run, fs: FeatureStore) -> Monitor:
    """The monitor store checked against the run's feature space and read onto its device."""
    with open_store(settings.store) as store:
        return open_monitor(settings, store, layout=run.static["layout"],
                            feature_space=run.static["feature_space"], pretrain_store=fs.url,
                            pretrain_store_id=fs.store_id,
                            device=next(run.model.parameters()).device)


def _train(run: _Run, run_dir: Path, *, progress: bool, resumed: bool,
           monitor: Monitor | None = None) -> None:
    """The loop: epochs of steps, then evaluation, metrics and a checkpoint per epoch."""
    cfg, ckpt_dir = run.cfg, run_dir / "checkpoints"
    metrics = MetricsLog(run_dir, tensorboard=cfg.output.tensorboard,
                         resume_step=run.step if resumed else None)
    last_good = ckpt_dir / LAST if resumed else None
    if not resumed:  # the run's first record: what its features are (kept on resume)
        metrics.log(run_header(run.static))
    steps_per_epoch = len(run.train_data)
    bar = ProgressBar(progress, total=steps_per_epoch * max(0, cfg.epochs - run.epoch))
    try:
        for epoch in range(run.epoch, cfg.epochs):
            run.model.train()
            sums: dict[str, float] = defaultdict(float)
            epoch_start, seen = time.perf_counter(), 0
            for batch in run.train_data.epoch(run.generator):
                lr = lr_at(run.step, base_lr=cfg.optim.lr,
                           **schedule_of(cfg.optim, steps_per_epoch))
                t0, n = time.perf_counter(), len(next(iter(batch.values())))
                parts = train_step(run.model, run.objective, run.optimizer, batch,
                                   step=run.step + 1, epoch=epoch, lr=lr,
                                   grad_clip=cfg.optim.grad_clip, last_checkpoint=last_good)
                run.step += 1
                seen += n
                record = _step_record(parts, run.objective.monitors, epoch=epoch, step=run.step,
                                      lr=lr, samples_per_s=n / (time.perf_counter() - t0))
                metrics.log(record)
                for k, v in record.items():
                    if k in parts or k.startswith("std/"):
                        sums[k] += v * n
                bar.advance(epoch, record["samples_per_s"], record["loss"])

            # ---- evaluate
            elapsed = time.perf_counter() - epoch_start
            summary = {"kind": "epoch", "epoch": epoch, "step": run.step,
                       **{k: v / max(seen, 1) for k, v in sums.items()},
                       "samples_per_s": seen / elapsed, "time_s": elapsed}
            if run.val_data is not None:
                summary.update(evaluate(run.model, run.objective, run.val_data, epoch=epoch))
            if monitor is not None and monitor.settings.due(epoch, cfg.epochs):
                summary.update(monitor.evaluate(run.model))
            metrics.log(summary)
            log.info("epoch %d: loss %.4f, %.0f samples/s", epoch, summary.get("loss", math.nan),
                     summary["samples_per_s"])

            # ---- checkpoint
            run.epoch = epoch + 1
            last_good = _save(ckpt_dir, _checkpoint(run).to_payload(), run.epoch, cfg)
    finally:
        bar.close()
        metrics.close()


def _checkpoint(run: _Run) -> HeadsCheckpoint:
    return HeadsCheckpoint(**run.static, model=dict(run.model.state_dict()),
                           optimizer=run.optimizer.state_dict(),
                           scheduler={"kind": "cosine_warm_restarts", "step": run.step},
                           objective_state=run.objective.state_dict(), step=run.step,
                           epoch=run.epoch, rng=rng_state(run.generator))


def _resume_payload(run_dir: Path, resume: bool) -> HeadsCheckpoint | None:
    last = run_dir / "checkpoints" / LAST
    if not resume:
        if (run_dir / "config.yaml").exists() or last.exists():
            raise CheckpointError(f"{run_dir} already holds a run: --resume (resume=True) "
                                  "continues it; or choose another --out")
        return None
    if not last.exists():
        log.warning("%s has no checkpoint to resume from: starting from the beginning", run_dir)
        return None
    return load_checkpoint(last)


def _run_config(payload: HeadsCheckpoint | None, objective: str, *,
                epochs: int | None, seed: int | None, **layers: Any) -> TrainConfig:
    """The run's config: resolved fresh, or the checkpoint's (only ``epochs`` may change)."""
    if payload is None:
        return resolve_objective_config(objective, epochs=epochs, seed=seed, **layers)
    saved = config_from_dict(payload.config, "checkpoint config")
    if objective != saved.objective:
        raise CheckpointError(f"the run to resume trained {saved.objective!r}, not {objective!r}")
    asked = saved
    if any(v is not None for v in layers.values()) or seed is not None:
        asked = resolve_objective_config(objective, seed=seed, **layers)
        asked = dataclasses.replace(asked, modality_keys={**asked.modality_keys,
                                                          **{m: saved.modality_keys[m]
                                                             for m in saved.modalities}})
    diff = _diff({**saved.to_dict(), "epochs": None}, {**asked.to_dict(), "epochs": None})
    if diff:
        raise CheckpointError(f"resume: settings differ from the checkpoint's: {diff}; only "
                              "epochs may change when resuming")
    return dataclasses.replace(saved, epochs=epochs if epochs is not None else saved.epochs)


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def _step_record(parts: Mapping[str, float], monitors: Mapping[str, Tensor], *, epoch: int,
                 step: int, lr: float, samples_per_s: float) -> dict[str, Any]:
    record: dict[str, Any] = {"kind": "step", "epoch": epoch, "step": step, "lr": lr,
                              "samples_per_s": samples_per_s}
    record.update(parts)
    for k, v in monitors.items():
        record[k] = v.tolist() if v.ndim else float(v)
    return record


def _save(ckpt_dir: Path, state: Mapping[str, Any], epochs_done: int, cfg: TrainConfig) -> Path:
    """Write ``last.pt`` every epoch and keep every ``checkpoint_every``-th epoch's file too."""
    last = ckpt_dir / LAST
    every = cfg.output.checkpoint_every
    if every > 0 and (epochs_done % every == 0 or epochs_done == cfg.epochs):
        kept = save_checkpoint(ckpt_dir / epoch_file(epochs_done), state)
        link_checkpoint(kept, last)
        prune_epochs(ckpt_dir, cfg.output.keep_checkpoints)
    else:
        save_checkpoint(last, state)
    return last
