"""AVCE on fixed features (Kim & Song, "Emotion-aware Multi-view Contrastive Learning for
Facial Emotion Recognition", ECCV 2022): valence/arousal regression with contrastive views.

The store's features of the chosen modalities (concatenated, standardised with train
statistics) go through:

- a compressor C: ``Dropout, Linear(E -> 32), ReLU``: z in R^32;
- a regressor R: ``Dropout, Linear(32 -> 256), BatchNorm, ReLU, Linear(256 -> T)``: the
  prediction x in the arousal-valence space (T = 1 for CMU-MOSEI's valence, 2 for AFEW-VA);
- two views of z, ``z_a = SparseMax(z)`` (:func:`heads.losses.sparsemax`, closed form) and
  ``z_n = SoftMax(z)``, mapped by one head H (``Linear(32 -> 256), BatchNorm, ReLU,
  Linear(256 -> T), tanh``) to y_a, y_n in the same space;
- a head H1 (``Linear(32 -> 64), BatchNorm, ReLU, Linear(64 -> 8), ReLU``) on z, z_a and z_n.

Each iteration takes two optimiser steps: ``L_AV - L_AVCE`` over C, R and H
(:func:`heads.losses.av_loss`, :func:`heads.losses.avce_objective`, which maximises the
similarity of x to y_a and minimises it to y_n), then ``L_dis`` over C and H1
(:func:`heads.losses.disentangle_loss`). The sizes are the reference code's
(``kdhht2334/AVCE_FER``, ``src/models.py``); the BatchNorm of the heads and the optimisers are
the paper's as docs/PAPER-NOTES.md records them (the reference code's heads have none; where
BatchNorm sits, after each hidden Linear, is this project's reading): Adam (1e-4) over the encoder
side, C and R, SGD (1e-2, the reference code's momentum 0.9) over the heads H and H1, the rates x0.8
at 5K, 10K and 20K of the paper's 50K iterations at batch 256. On fixed features the run is
scaled to the store: ``avce.epochs`` passes over its train split (40: the paper's 50K x 256
samples are 40 passes over 320k images), the steps at the same fractions of the run
(``avce.lr_steps``). ``avce.optimizer: adamw`` switches back to AdamW over every module with the
evaluation schedule. The constants alpha, beta, gamma, mu, delta1 and delta2 are the paper's
(``manifests/evaluate.yaml``, ``avce:``; ``docs/CHOICES.md``). The epoch kept is the one with
the best validation CCC (mean over the targets; ties: the lower validation L_AV); training
stops early on the validation L_AV like the other protocols.

One target (CMU-MOSEI's valence, its sentiment) makes the angle term of f degenerate: two
scalars are parallel or opposite, so the term is 1 or 0 (0.9995 or 0.0005 at the clamp) with
zero gradient, and the contrast reduces to the intensity term. By default such a run goes on as
a valence-only variant, named so in ``metrics.json`` (``details.variant``,
``details.degenerate``) and in the study's row; ``avce.single_target: refuse`` stops instead.
The default inputs leave out the store's text: its default text model is sentiment-trained
(DistilBERT SST-2), which for a sentiment target would make the row a sentiment regressor, and
the paper's input is the face (``avce.with_text``, or ``--modalities``, adds it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads.eval_config import AvceConfig, EvalConfig
from heads.evaluation.loop import Schedule, step_schedule, steps_per_epoch, train_epochs
from heads.evaluation.probe import LabelledSplit, Standardize
from heads.evaluation.protocol import EvalSetup, SavedModel, SeedResult, Task, state_of
from heads.losses import av_loss, avce_objective, disentangle_loss, sparsemax
from heads.metrics import ccc, regression_metrics
from pipeline.config import ConfigError

#: The validation metric the kept epoch maximises: the CCC, averaged over the targets.
SELECT_METRIC = "val_ccc"
SELECTION = "the epoch with the best val CCC (mean over the targets; ties: lower val L_AV)"
#: What ``metrics.json`` and the study's row say of a run with one target.
DEGENERATE = ("valence only: with one target the angle term (1 - theta / pi) of f is 1 or 0 "
              "(0.9995 or 0.0005 at the clamp) with zero gradient, so the contrast reduces "
              "to the intensity term")
#: The store modality the default inputs leave out (``avce.with_text`` keeps it).
TEXT = "text"


@dataclass(frozen=True)
class AvceSpec:
    """The sizes of an :class:`AvceModel`, from which it is rebuilt (a classifier file's
    ``spec``): the modalities concatenated and their widths, T outputs, the sizes of
    :class:`~heads.eval_config.AvceConfig`, the dropout and whether the heads have BatchNorm
    (False for files written before they had)."""

    modalities: tuple[str, ...]
    input_dims: dict[str, int]
    outputs: int
    latent: int
    hidden: int
    view_hidden: int
    view_dim: int
    dropout: float
    batch_norm: bool = False


class AvceModel(nn.Module):
    """C, R, H and H1 on the concatenated features of ``modalities``: [N, E] -> [N, T].

    Args:
        input_dims: per modality its feature width E_m.
        modalities: the modalities concatenated, in order.
        outputs: T, the continuous targets.
        cfg: the sizes (``latent``, ``hidden``, ``view_hidden``, ``view_dim``) and
            ``batch_norm``.
        dropout: before C's and R's linear layers (the reference code's).
    """

    def __init__(self, input_dims: Mapping[str, int], modalities: Sequence[str], outputs: int,
                 cfg: AvceConfig, dropout: float) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.spec = AvceSpec(self.modalities, {m: int(input_dims[m]) for m in self.modalities},
                             outputs, cfg.latent, cfg.hidden, cfg.view_hidden, cfg.view_dim,
                             dropout, cfg.batch_norm)
        width = sum(input_dims[m] for m in self.modalities)
        self.input_norm = Standardize(width)
        self.compressor = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, cfg.latent),
                                        nn.ReLU())
        self.regressor = nn.Sequential(nn.Dropout(dropout),
                                       *_hidden(cfg.latent, cfg.hidden, cfg.batch_norm),
                                       nn.Linear(cfg.hidden, outputs))
        self.view_head = nn.Sequential(*_hidden(cfg.latent, cfg.hidden, cfg.batch_norm),
                                       nn.Linear(cfg.hidden, outputs), nn.Tanh())
        self.disentangle_head = nn.Sequential(
            *_hidden(cfg.latent, cfg.view_hidden, cfg.batch_norm),
            nn.Linear(cfg.view_hidden, cfg.view_dim), nn.ReLU())

    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Per modality [N, E_m] -> the standardised concatenation [N, E]."""
        return self.input_norm(torch.cat([batch[m].float() for m in self.modalities], dim=1))

    def compress(self, batch: Mapping[str, Tensor]) -> Tensor:
        """z = C(features): [N, latent]."""
        return self.compressor(self.features(batch))

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """The prediction x = R(C(features)): [N, T]."""
        return self.regressor(self.compress(batch))

    @classmethod
    def from_spec(cls, spec: AvceSpec) -> AvceModel:
        """An untrained model of ``spec``'s sizes, for a saved state to be loaded into."""
        sizes = AvceConfig(latent=spec.latent, hidden=spec.hidden, view_hidden=spec.view_hidden,
                           view_dim=spec.view_dim, batch_norm=spec.batch_norm)
        return cls(spec.input_dims, spec.modalities, spec.outputs, sizes, spec.dropout)


def _hidden(width: int, hidden: int, batch_norm: bool) -> list[nn.Module]:
    """A head's hidden layer: ``Linear``, BatchNorm (the paper's heads), ``ReLU``."""
    return [nn.Linear(width, hidden), *([nn.BatchNorm1d(hidden)] if batch_norm else []),
            nn.ReLU()]


@dataclass(frozen=True)
class AvceProtocol:
    """The AVCE heads trained on a store's continuous targets (no pretraining run)."""

    name: str = "avce"
    needs_run: bool = False
    accepts_run: bool = False
    task: Task = "regression"
    summary: str = ("AVCE (Kim & Song, ECCV 2022): valence/arousal regression with SparseMax "
                    "and SoftMax views, on the store's continuous targets")

    def default_modalities(self, cfg: EvalConfig, present: list[str]) -> list[str]:
        """The inputs without ``--modalities``: the store's, less its text unless
        ``avce.with_text`` (or text is all it has)."""
        kept = [m for m in present if m != TEXT]
        return present if cfg.avce.with_text or not kept else kept

    def run_seed(self, setup: EvalSetup, data: Mapping[str, LabelledSplit], seed: int, *,
                 progress: bool) -> SeedResult:
        cfg, avce = setup.cfg, setup.cfg.avce
        details = _variant(setup)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AvceModel(setup.input_dims, setup.spec.modalities, setup.spec.outputs,
                              avce, cfg.dropout).to(setup.device)
        train = data["train"]
        if avce.standardize:
            with torch.no_grad():
                model.input_norm.fit(torch.cat([train.inputs[m].float()
                                                for m in model.modalities], 1))
        torch.manual_seed(seed)  # the dropout masks
        first, second, plan = _optimizers(model, avce, len(train))
        result = train_epochs(
            model, [first, second], rows=len(train), cfg=cfg, base_lr=avce.lr,
            step=lambda idx: _step(model, first, second, train, idx, avce),
            validate=lambda: _validate(model, data["val"], cfg.batch_size), select=SELECT_METRIC,
            min_batch=2, seed=seed, progress=progress, **plan)
        scored, predictions = {}, {}
        for name, split in data.items():
            pred, z = _predict(model, split, cfg.batch_size)
            truth = split.targets.cpu().numpy()
            scored[name] = (regression_metrics(pred, truth, setup.target_names), z)
            predictions[name] = (pred, truth)
        saved = SavedModel("avce", dataclasses.asdict(model.spec), state_of(model))
        return SeedResult(seed, model, saved, scored, result.best_epoch + 1, result.seconds,
                          result.history, [], predictions, details)


def _variant(setup: EvalSetup) -> dict[str, Any]:
    """What ``metrics.json`` says of the run: selection, optimiser, inputs and, with one
    target, the valence-only variant (or the refusal).

    Raises:
        ConfigError: one target with ``avce.single_target: refuse``.
    """
    avce = setup.cfg.avce
    details: dict[str, Any] = {"selection": SELECTION, "optimizer": avce.optimizer,
                               "inputs": list(setup.spec.modalities)}
    if setup.spec.outputs == 1:
        if avce.single_target == "refuse":
            raise ConfigError(f"avce.single_target=refuse: the store has one continuous target "
                              f"({', '.join(setup.target_names)}); {DEGENERATE}")
        details.update(variant="valence_only", degenerate=DEGENERATE)
    return details


def _optimizers(model: AvceModel, cfg: AvceConfig, rows: int
                ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, dict[str, Any]]:
    """The two optimisers and the run's length, batch size and schedule.

    ``paper``: Adam over the encoder side (C, R) and SGD over the heads (H, H1), both stepped
    in each of an iteration's two steps (a module without a gradient in a step is left alone);
    the rates x ``lr_step_gamma`` at ``lr_steps`` of ``epochs`` epochs. ``adamw``: AdamW over
    C, R, H (first step) and over C, H1 (second), the evaluation's epochs, batch and schedule.
    """
    if cfg.optimizer == "adamw":
        return (_adamw([model.compressor, model.regressor, model.view_head], cfg),
                _adamw([model.compressor, model.disentangle_head], cfg), {})
    encoder = torch.optim.Adam([*model.compressor.parameters(), *model.regressor.parameters()],
                               lr=cfg.lr, betas=cfg.betas)
    heads = torch.optim.SGD([*model.view_head.parameters(),
                             *model.disentangle_head.parameters()],
                            lr=cfg.heads_lr, momentum=cfg.momentum)
    total = cfg.epochs * steps_per_epoch(rows, cfg.batch_size)
    schedule: Schedule = step_schedule(total_steps=total, fractions=cfg.lr_steps,
                                       gamma=cfg.lr_step_gamma)
    return encoder, heads, {"epochs": cfg.epochs, "batch_size": cfg.batch_size,
                            "schedule": schedule}


def _adamw(modules: Sequence[nn.Module], cfg: AvceConfig) -> torch.optim.Optimizer:
    params = [p for m in modules for p in m.parameters()]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _step(model: AvceModel, first: torch.optim.Optimizer, second: torch.optim.Optimizer,
          data: LabelledSplit, idx: Tensor, cfg: AvceConfig) -> dict[str, float]:
    """The two optimiser steps of one AVCE iteration on the rows ``idx``: ``L_AV - L_AVCE``
    over C, R, H, then ``L_dis`` over C, H1 (with ``paper`` both optimisers step twice; the
    modules a loss does not reach have no gradient and stay)."""
    steppers = (first, second) if cfg.optimizer == "paper" else (first,)
    seconds = (first, second) if cfg.optimizer == "paper" else (second,)
    idx = idx.to(data.targets.device)
    batch = {m: data.inputs[m][idx] for m in model.modalities}
    target = data.targets[idx]
    z = model.compress(batch)
    x = model.regressor(z)
    l_av = av_loss(x, target)
    l_avce = avce_objective(x, model.view_head(sparsemax(z)), model.view_head(F.softmax(z, 1)),
                            alpha=cfg.alpha, beta=cfg.beta, gamma=cfg.gamma, mu=cfg.mu)
    loss = l_av - cfg.avce_weight * l_avce
    _apply(loss, steppers)
    z = model.compress(batch)  # C has moved: the second step sees its new output
    head = model.disentangle_head
    l_dis = disentangle_loss(head(z), head(sparsemax(z)), head(F.softmax(z, 1)),
                             delta1=cfg.delta1, delta2=cfg.delta2)
    _apply(l_dis, seconds)
    return {"loss": float(loss.detach()), "av": float(l_av.detach()),
            "avce": float(l_avce.detach()), "dis": float(l_dis.detach())}


def _apply(loss: Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> None:
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


@torch.no_grad()
def _predict(model: AvceModel, data: LabelledSplit, batch_size: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Predictions [n, T] and the compressed z [n, latent] (for the map), in eval mode."""
    model.eval()
    preds, zs = [], []
    for start in range(0, len(data), batch_size):
        batch = {m: data.inputs[m][start:start + batch_size] for m in model.modalities}
        z = model.compress(batch)
        zs.append(z)
        preds.append(model.regressor(z))
    return torch.cat(preds).cpu().numpy(), torch.cat(zs).cpu().numpy()


def _validate(model: AvceModel, val: LabelledSplit, batch_size: int) -> dict[str, float]:
    pred, _ = _predict(model, val, batch_size)
    truth = val.targets.cpu().numpy()
    loss = float(av_loss(torch.from_numpy(pred).double(), torch.from_numpy(truth).double()))
    return {"val_loss": loss,
            "val_ccc": float(np.mean([ccc(pred[:, k], truth[:, k])
                                      for k in range(truth.shape[1])]))}


PROTOCOL = AvceProtocol()

__all__ = ["DEGENERATE", "PROTOCOL", "SELECTION", "SELECT_METRIC", "AvceModel", "AvceProtocol",
           "AvceSpec"]
