"""The paper's six self-supervised objectives, as one literal registry.

=============== ======================================== ==================================
name            loss parts                               modalities
=============== ======================================== ==================================
conclugen       MMS + clustering + reconstruction        >= 2 (video, audio, text)
conclu          MMS + clustering                         >= 2
congen          MMS + reconstruction                     >= 2
multi_cont      MMS                                      >= 2
generative      reconstruction                           >= 1
instance_cont   InfoNCE between two views of a modality  >= 1 (video); the store needs >= 2 views
=============== ======================================== ==================================

An :class:`Objective` computes ``dict[str, Tensor]``: the weighted total under ``"loss"``, each
part (``"mms"``, ``"clustering"``, ...) and its pieces (``"mms/video-audio"``,
``"reconstruction/text"``), so every term is logged and a non-finite one is named. The
supervised baseline trains a classifier on labels and lives with the evaluation code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from heads import losses
from heads.config import TrainConfig, resolve_config
from heads.models import ConCluGenHeads, HeadOutputs, ModelSpec
from heads.pretrain.kmeans import OnlineClustering, occupancy
from heads.runtime import full_precision
from pipeline.config import ConfigError
from pipeline.presets import Preset


@dataclass(frozen=True)
class ObjectiveSpec:
    """What an objective computes and needs.

    Attributes:
        parts: loss parts, a subset of ``mms``, ``clustering``, ``reconstruction``, ``info_nce``.
        min_modalities: fewest modalities it can train on.
        needs_views: batches carry two views per sample ([N, 2, E]) instead of view 0 ([N, E]).
        summary: one line for help texts.
    """

    parts: tuple[str, ...]
    min_modalities: int
    needs_views: bool = False
    summary: str = ""


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "conclugen": ObjectiveSpec(("mms", "clustering", "reconstruction"), 2,
                               summary="multi-modal contrast + clustering + reconstruction"),
    "conclu": ObjectiveSpec(("mms", "clustering"), 2,
                            summary="multi-modal contrast + clustering"),
    "congen": ObjectiveSpec(("mms", "reconstruction"), 2,
                            summary="multi-modal contrast + reconstruction"),
    "multi_cont": ObjectiveSpec(("mms",), 2, summary="multi-modal contrast only"),
    "generative": ObjectiveSpec(("reconstruction",), 1, summary="reconstruction only"),
    "instance_cont": ObjectiveSpec(("info_nce",), 1, needs_views=True,
                                   summary="InfoNCE between two augmented views (SimCLR)"),
}


def get_objective(name: str) -> ObjectiveSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown objective {name!r}; valid: {list(OBJECTIVES)}") from None


def resolve_objective_config(objective: str, *, config: str | Path | None = None,
                             preset: str | Preset | None = None,
                             overrides: Mapping[str, Any] | None = None,
                             modalities: Sequence[str] | None = None, epochs: int | None = None,
                             seed: int | None = None) -> TrainConfig:
    """:func:`heads.config.resolve_config` for an objective of :data:`OBJECTIVES` (the config
    knows the objectives' layers, not the objectives).

    Raises:
        ConfigError: an unknown objective (the valid ones are named), or anything
            :func:`~heads.config.resolve_config` refuses.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; valid: {list(OBJECTIVES)}")
    return resolve_config(objective, config=config, preset=preset, overrides=overrides,
                          modalities=modalities, epochs=epochs, seed=seed)


def model_spec(cfg: TrainConfig, input_dims: Mapping[str, int]) -> ModelSpec:
    """The heads ``cfg.objective`` needs, for modalities with the given input dims."""
    parts = get_objective(cfg.objective).parts
    contrastive = "mms" in parts or "info_nce" in parts
    return ModelSpec(
        input_dims=dict(input_dims),
        representation_dim=cfg.model.representation_dim,
        projection_dim=cfg.model.projection_dim if contrastive else None,
        clusters=cfg.clustering.clusters if "clustering" in parts else None,
        reconstruction_dim=cfg.model.reconstruction_dim if "reconstruction" in parts else None,
        shared_projection=cfg.model.shared_projection,
        projection_activation=cfg.model.projection_activation,
        cluster_input=cfg.model.cluster_input,
        audio_head=cfg.model.audio_head,
        decoder_activation=cfg.model.decoder_activation,
    )


class Objective:
    """Computes one objective's loss parts and holds its state (the online k-means).

    Args:
        cfg: the resolved run config (objective, modalities, loss and clustering settings).

    Raises:
        ValueError: too few modalities for the objective.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.name = cfg.objective
        self.spec = get_objective(cfg.objective)
        self.cfg = cfg
        if len(cfg.modalities) < self.spec.min_modalities:
            raise ValueError(f"objective {self.name!r} needs at least {self.spec.min_modalities}"
                             f" modalities, got {list(cfg.modalities)}")
        c = cfg.clustering
        self.clustering = (OnlineClustering(c.clusters, queue_batches=c.queue_batches,
                                            iterations=c.iterations, seed=cfg.seed,
                                            centroids=c.centroids, warm_start=c.warm_start)
                           if "clustering" in self.spec.parts else None)
        #: the epoch of the last training call (``reset_each_epoch`` acts when it changes).
        self._epoch: int | None = None
        #: detached per-step monitors of the last call: feature std, cluster occupancy.
        self.monitors: dict[str, Tensor] = {}

    def clustering_active(self, epoch: int) -> bool:
        return self.clustering is not None and epoch >= self.cfg.clustering.start_epoch

    def __call__(self, model: ConCluGenHeads, batch: Mapping[str, Tensor], *, epoch: int,
                 train: bool = True) -> dict[str, Tensor]:
        """Forward ``batch`` and compute every active loss part.

        Args:
            model: the heads.
            batch: per modality [N, E_m] features ([N, 2, E_m] two views for instance_cont).
            epoch: the current epoch (the clustering loss starts at ``clustering.start_epoch``).
            train: update the k-means state (False for evaluation: assign only).

        Returns:
            ``{"loss": [], part: [], "part/piece": [], ...}``.
        """
        self.monitors = {}
        if self.spec.needs_views:
            parts = self._instance_parts(model, batch)
        else:
            out = model(batch)
            with full_precision(next(iter(batch.values())).device):
                parts = self._parts(out, batch, epoch=epoch, train=train)
        return {"loss": self._combine(parts), **parts}

    def _parts(self, out: HeadOutputs, batch: Mapping[str, Tensor], *, epoch: int,
               train: bool) -> dict[str, Tensor]:
        lc = self.cfg.loss
        proj = {m: p.float() for m, p in out.projections.items()}
        parts: dict[str, Tensor] = {}
        if "mms" in self.spec.parts:
            pairs = losses.mms_pairs(proj, margin=lc.mms_margin, temperature=lc.mms_temperature)
            parts["mms"] = torch.stack(list(pairs.values())).sum()
            parts.update({f"mms/{k}": v for k, v in pairs.items()})
        if self.clustering_active(epoch):
            parts.update(self._clustering_parts(out, epoch=epoch, train=train))
        if "reconstruction" in self.spec.parts:
            rec = losses.reconstruction_losses(
                {m: r.float() for m, r in out.reconstructions.items()},
                {m: batch[m].float() for m in out.reconstructions})
            parts["reconstruction"] = torch.stack(list(rec.values())).sum()
            parts.update({f"reconstruction/{k}": v for k, v in rec.items()})
        self._monitor_std(out.representations)
        return parts

    def _clustering_parts(self, out: HeadOutputs, *, epoch: int,
                          train: bool) -> dict[str, Tensor]:
        assert self.clustering is not None
        logits = {m: g.float() for m, g in out.cluster_logits.items()}
        fused = torch.stack(list(logits.values())).mean(dim=0)
        if train and self.cfg.clustering.reset_each_epoch and epoch != self._epoch:
            self.clustering.reset()  # the reference code's queue, zeroed at each epoch
        if train:
            self._epoch = epoch
            fitted = self.clustering.step(fused)
            if fitted is None:  # fewer points than clusters so far (a tiny dataset)
                return {}
            centroids, labels = fitted
        elif self.clustering.kmeans.centroids is not None:
            centroids, labels = self.clustering.kmeans.centroids, \
                self.clustering.kmeans.predict(fused)
        else:  # evaluation before the first k-means fit: nothing to compare against
            return {}
        self.monitors["occupancy"] = occupancy(labels, self.cfg.clustering.clusters)
        margin = self.cfg.loss.cluster_margin
        if self.cfg.clustering.mode == "joint":
            return {"clustering": losses.clustering_loss(fused, centroids, labels, margin=margin)}
        pieces = {m: losses.clustering_loss(g, centroids, labels, margin=margin)
                  for m, g in logits.items()}
        return {"clustering": torch.stack(list(pieces.values())).sum(),
                **{f"clustering/{m}": v for m, v in pieces.items()}}

    def _instance_parts(self, model: ConCluGenHeads,
                        batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        pieces = {}
        reps = {}
        for m, x in batch.items():
            if x.ndim != 3 or x.shape[1] != 2:
                raise ValueError(f"instance_cont: expected {m} as [N, 2, E] (two views), "
                                 f"got {tuple(x.shape)}")
            n = x.shape[0]
            # Both views through the heads together: BatchNorm sees the 2N samples, as in SimCLR.
            flat = {m: x.transpose(0, 1).reshape(2 * n, x.shape[2])}
            rep = model.represent(flat)
            proj = model.project(rep)[m].float()
            with full_precision(x.device):
                pieces[m] = losses.info_nce(proj[:n], proj[n:],
                                            temperature=self.cfg.loss.info_nce_temperature)
            reps[m] = rep[m][:n]
        self._monitor_std(reps)
        parts = {"info_nce": torch.stack(list(pieces.values())).sum()}
        if len(pieces) > 1:
            parts.update({f"info_nce/{m}": v for m, v in pieces.items()})
        return parts

    def _combine(self, parts: Mapping[str, Tensor]) -> Tensor:
        weights = self.cfg.loss.weights
        top = [weights.get(p, 1.0) * parts[p] for p in self.spec.parts if p in parts]
        total = torch.stack(top).sum()
        return total / len(top) if self.cfg.loss.combine == "mean" else total

    def _monitor_std(self, reps: Mapping[str, Tensor]) -> None:
        # Std over the batch of unit-normalised representations, averaged over dimensions:
        # about 1/sqrt(D) for spread-out features, near 0 when they collapse to one point.
        with torch.no_grad():
            for m, r in reps.items():
                self.monitors[f"std/{m}"] = F.normalize(r.float(), dim=1).std(dim=0).mean()

    def state_dict(self) -> dict[str, Any]:
        return {"clustering": None if self.clustering is None else self.clustering.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device | str) -> None:
        if self.clustering is not None and state.get("clustering") is not None:
            self.clustering.load_state_dict(state["clustering"], device)
