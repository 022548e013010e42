"""CLEF on fixed features (Zhang et al., "Weakly Supervised Text-driven Contrastive Learning for
Facial Behavior Understanding", ICCV 2023): classification by text prototypes.

The store's features of the chosen modalities (concatenated, standardised with train
statistics) are projected by a trainable ``Linear`` into a joint space, the label texts (the
store's own text-backbone vectors of "a photo of a person with {label}", and of a short
description per label: :mod:`pipeline.label_texts`) by another; both sides are L2-normalised
and a sample's logit for class c is ``s_ic = z_i . z_c / tau`` with a learnable temperature.
Fine-tuning minimises ``L_fine = (lambda L_IN + L_DN) / 2`` (lambda 2,
:func:`heads.losses.clef_fine_loss`): ``L_IN`` the class-weighted cross-entropy of the logits
with Eq. 4's 1/B (Eq. 5's sum over the labels, with the dataset's ``pos_weight``, for
multi-label CMU-MOSEI; :func:`heads.losses.instance_loss`), and ``L_DN`` each description
against all label names (:func:`heads.losses.description_name_loss`).

Before it, a weakly supervised stage 1 trains the projections with the paper's fixed
temperature 0.25: a supervised contrastive loss between two views of each clip (two
feature-dropout draws) and Eq. 1, each clip against the texts of the batch's clips, those of
its coarse class the positives (:func:`heads.losses.image_text_supcon`). Its coarse labels come
from another store's activity-like labels (``clef.stage1_store``, the paper's setting) or, as
a fallback labelled so, from the downstream store's sentiment sign
(:mod:`heads.evaluation.clef_stage1`). Both stages follow the paper's schedule: AdamW, batch 64,
one warm-up epoch, then cosine to 1e-6 (5 epochs for stage 1).

Honestly: with a trainable projection on both sides, the prototype head is a reparametrised
linear (cosine) classifier on the features; the label texts add information only through the
prototypes' initialisation and ``L_DN``. So ``metrics.json`` also reports, with a pretraining
run, a zero-shot row: the run's MMS-pretrained text head maps the label prompts and its other
modalities' heads the clips into the contrastive space, and the prototypes classify untrained.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads.eval_config import ClefConfig, EvalConfig
from heads.evaluation.clef_stage1 import MELD_SENTIMENT, WeakLabels, weak_labels
from heads.evaluation.fit import decide, make_loss
from heads.evaluation.loop import Schedule, cosine_schedule, steps_per_epoch, train_epochs
from heads.evaluation.probe import LabelledSplit, Standardize
from heads.evaluation.protocol import EvalSetup, SavedModel, SeedResult, Task, state_of
from heads.losses import (clef_fine_loss, description_name_loss, image_text_supcon,
                          instance_loss, supcon_loss)
from heads.metrics import classification_metrics, multilabel_metrics
from pipeline.label_texts import LabelTexts, read_label_texts

#: CLIP's bound on the learnable logit scale (1 / tau <= 100).
MAX_SCALE = 100.0
NOTE = ("with trainable projections on both sides the prototype head is a reparametrised "
        "linear (cosine) classifier on the features; the label texts add information only "
        "through the prototypes' initialisation and L_DN. The zero-shot row (a pretraining "
        "run's MMS text head, no training) is what the texts alone give.")


@dataclass(frozen=True)
class ClefSpec:
    """The sizes of a :class:`ClefModel`, from which it is rebuilt (a classifier file's
    ``spec``).

    Attributes:
        modalities: the modalities concatenated, in order.
        input_dims: per modality its feature width E_m.
        classes: C, the label prompts.
        text_dim: E_t, the text vectors' width.
        projection_dim: P, the joint space.
        multilabel: sigmoid per label (not softmax): ``cli predict`` decides as the evaluation
            did.
    """

    modalities: tuple[str, ...]
    input_dims: dict[str, int]
    classes: int
    text_dim: int
    projection_dim: int
    multilabel: bool = False


class ClefModel(nn.Module):
    """Projections of the samples and of the label texts into one space, and the temperature.

    Args:
        input_dims: per modality its feature width E_m.
        modalities: the modalities concatenated, in order.
        names: float32 [C, E_t] the label prompts' text vectors (label order).
        descriptions: float32 [C, E_t] the descriptions' text vectors.
        cfg: ``projection_dim`` and the temperature's start.
        multilabel: the labels are multi-label (sigmoid per label, not softmax): recorded in
            its :class:`ClefSpec`, so that ``cli predict`` decides as the evaluation did.
    """

    names: Tensor
    descriptions: Tensor

    def __init__(self, input_dims: Mapping[str, int], modalities: Sequence[str], names: Tensor,
                 descriptions: Tensor, cfg: ClefConfig, *, multilabel: bool = False) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        width = sum(input_dims[m] for m in self.modalities)
        self.spec = ClefSpec(self.modalities, {m: int(input_dims[m]) for m in self.modalities},
                             int(names.shape[0]), int(names.shape[1]), cfg.projection_dim,
                             multilabel)
        self.input_norm = Standardize(width)
        self.sample_projection = nn.Linear(width, cfg.projection_dim)
        self.text_projection = nn.Linear(int(names.shape[1]), cfg.projection_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))
        self.register_buffer("names", names.float())
        self.register_buffer("descriptions", descriptions.float())

    @property
    def scale(self) -> Tensor:
        """1 / tau, bounded by :data:`MAX_SCALE`."""
        return self.log_scale.clamp(max=math.log(MAX_SCALE)).exp()

    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self.input_norm(torch.cat([batch[m].float() for m in self.modalities], dim=1))

    def embed(self, features: Tensor) -> Tensor:
        """Standardised features [N, E] -> unit-norm sample embeddings [N, P]."""
        return F.normalize(self.sample_projection(features), dim=1)

    def embed_texts(self, vectors: Tensor) -> Tensor:
        """Text vectors [K, E_t] -> unit-norm text embeddings [K, P]."""
        return F.normalize(self.text_projection(vectors), dim=1)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """The prototype logits ``z_i . z_c / tau``: [N, C]."""
        return self.embed(self.features(batch)) @ self.embed_texts(self.names).T * self.scale

    def description_loss(self) -> Tensor:
        """L_DN at the current temperature."""
        return description_name_loss(self.embed_texts(self.descriptions),
                                     self.embed_texts(self.names), temperature=1 / self.scale)

    @classmethod
    def from_spec(cls, spec: ClefSpec) -> ClefModel:
        """An untrained model of ``spec``'s sizes, for a saved state to be loaded into (the
        label texts' vectors and the temperature are part of that state)."""
        texts = torch.zeros(spec.classes, spec.text_dim)
        return cls(spec.input_dims, spec.modalities, texts, texts.clone(),
                   ClefConfig(projection_dim=spec.projection_dim), multilabel=spec.multilabel)


@dataclass(frozen=True)
class ClefProtocol:
    """CLEF's text prototypes on the store's features; a run, when given, adds the
    zero-shot row."""

    name: str = "clef"
    needs_run: bool = False
    accepts_run: bool = True
    task: Task = "classification"
    summary: str = ("CLEF (Zhang et al., ICCV 2023): text prototypes of the label names, "
                    "embedded by the store's text backbone")

    def run_seed(self, setup: EvalSetup, data: Mapping[str, LabelledSplit], seed: int, *,
                 progress: bool) -> SeedResult:
        assert setup.store is not None
        cfg, clef = setup.cfg, setup.cfg.clef
        texts = read_label_texts(setup.store)
        weak = weak_labels(setup, data["train"], texts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ClefModel(setup.input_dims, setup.spec.modalities,
                              torch.from_numpy(texts.names), torch.from_numpy(texts.descriptions),
                              clef, multilabel=setup.spec.multilabel).to(setup.device)
        train = data["train"]
        if clef.standardize:
            with torch.no_grad():
                model.input_norm.fit(torch.cat([train.inputs[m].float()
                                                for m in model.modalities], 1))
        torch.manual_seed(seed)
        details: dict[str, Any] = {"note": NOTE, "prompts": list(texts.prompts),
                                   "weak": _weak_stage(model, weak, cfg, seed, progress)}
        _, weights = make_loss(train.targets, setup.spec.outputs,
                               multilabel=setup.spec.multilabel,
                               class_weights=cfg.class_weights, values=cfg.class_weight_values)
        weight = torch.tensor(weights, dtype=torch.float32, device=setup.device)
        optimizer = _adamw(model, clef)
        result = train_epochs(
            model, [optimizer], rows=len(train), cfg=cfg, base_lr=clef.lr,
            step=lambda idx: _step(model, optimizer, weight, train, idx, clef),
            validate=lambda: _validate(model, data["val"], weight, setup, cfg),
            select="val_loss" if cfg.selection == "val_loss" else "val_f1", seed=seed,
            epochs=clef.epochs, batch_size=clef.batch_size,
            schedule=_schedule(clef, len(train), clef.epochs), progress=progress)
        scored = {n: _score(model, s, setup, cfg.batch_size) for n, s in data.items()}
        details["zero_shot"] = zero_shot(setup, data, texts)
        saved = SavedModel("clef", dataclasses.asdict(model.spec), state_of(model))
        return SeedResult(seed, model, saved, scored, result.best_epoch + 1, result.seconds,
                          result.history, weights, {}, details)


def _adamw(model: ClefModel, cfg: ClefConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if n != "log_scale"]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": [model.log_scale], "weight_decay": 0.0}], lr=cfg.lr)


def _schedule(cfg: ClefConfig, rows: int, epochs: int) -> Schedule:
    """The paper's: ``warmup_epochs`` of linear warm-up, then cosine to ``min_lr``."""
    return cosine_schedule(epochs=epochs, per_epoch=steps_per_epoch(rows, cfg.batch_size),
                           warmup_epochs=cfg.warmup_epochs, base_lr=cfg.lr, min_lr=cfg.min_lr)


def _step(model: ClefModel, optimizer: torch.optim.Optimizer, weight: Tensor,
          data: LabelledSplit, idx: Tensor, cfg: ClefConfig) -> dict[str, float]:
    idx = idx.to(data.targets.device)
    logits = model({m: data.inputs[m][idx] for m in model.modalities})
    l_in = instance_loss(logits, data.targets[idx], weight=weight,
                         multilabel=model.spec.multilabel)
    l_dn = model.description_loss()
    loss = clef_fine_loss(l_in, l_dn, weight=cfg.instance_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach()), "in": float(l_in.detach()),
            "dn": float(l_dn.detach()), "tau": float(1 / model.scale.detach())}


@torch.no_grad()
def _logits(model: ClefModel, data: LabelledSplit, batch_size: int) -> tuple[Tensor, Tensor]:
    """Logits [n, C] and the sample embeddings [n, P], in eval mode."""
    model.eval()
    prototypes = model.embed_texts(model.names)
    logits, embedded = [], []
    for start in range(0, len(data), batch_size):
        z = model.embed(model.features({m: data.inputs[m][start:start + batch_size]
                                        for m in model.modalities}))
        embedded.append(z)
        logits.append(z @ prototypes.T * model.scale)
    return torch.cat(logits), torch.cat(embedded)


def _validate(model: ClefModel, val: LabelledSplit, weight: Tensor, setup: EvalSetup,
              cfg: EvalConfig) -> dict[str, float]:
    from sklearn.metrics import f1_score

    logits, _ = _logits(model, val, cfg.batch_size)
    l_in = instance_loss(logits, val.targets, weight=weight, multilabel=model.spec.multilabel)
    loss = clef_fine_loss(l_in, model.description_loss(), weight=cfg.clef.instance_weight)
    _, decisions = decide(logits.cpu(), setup.spec.multilabel)
    f1 = f1_score(val.targets.cpu().numpy().astype(np.int64), decisions, average="weighted",
                  zero_division=0)
    return {"val_loss": float(loss), "val_f1": float(f1)}


def _score(model: ClefModel, split: LabelledSplit, setup: EvalSetup,
           batch_size: int) -> tuple[dict[str, Any], np.ndarray]:
    logits, embedded = _logits(model, split, batch_size)
    return _metrics(logits, split, setup), embedded.cpu().numpy()


def _metrics(logits: Tensor, split: LabelledSplit, setup: EvalSetup) -> dict[str, Any]:
    _, decisions = decide(logits.float().cpu(), setup.spec.multilabel)
    scorer = multilabel_metrics if setup.spec.multilabel else classification_metrics
    return scorer(split.targets.cpu().numpy(), decisions, setup.label_names)


# --------------------------------------------------------------------- weak supervision

def _weak_stage(model: ClefModel, weak: WeakLabels | None, cfg: EvalConfig, seed: int,
                progress: bool) -> dict[str, Any]:
    """Stage 1 on the coarse labels: both projections, the paper's fixed temperature and
    schedule; the image-image SupCon over two feature-dropout views plus Eq. 1."""
    clef = cfg.clef
    if weak is None:
        return {"ran": False, "reason": ("clef.weak=none" if clef.weak == "none" else
                                         "no stage-1 store (clef.stage1_store) and the store "
                                         "has no coarse labels (CMU-MOSEI's sentiment sign)")}
    optimizer = _adamw(model, clef)

    def step(idx: Tensor) -> dict[str, float]:
        idx = idx.to(weak.labels.device)
        features = model.features({m: weak.inputs[m][idx] for m in model.modalities})
        views = [model.embed(F.dropout(features, clef.weak_view_dropout, training=True))
                 for _ in range(2)]
        labels = weak.labels[idx]
        image = supcon_loss(torch.cat(views), torch.cat([labels, labels]),
                            temperature=clef.weak_temperature)
        text = image_text_supcon(views[0], model.embed_texts(weak.texts)[labels], labels,
                                 temperature=clef.weak_temperature)
        loss = image + text
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), "image": float(image.detach()),
                "text": float(text.detach())}

    rows = len(weak.labels)
    result = train_epochs(model, [optimizer], rows=rows, cfg=cfg, base_lr=clef.lr, step=step,
                          validate=None, select="", epochs=clef.weak_epochs, min_batch=2,
                          seed=seed, batch_size=clef.batch_size,
                          schedule=_schedule(clef, rows, clef.weak_epochs), progress=progress)
    return {"ran": True, **weak.describe(), "rows": rows, "epochs": len(result.history),
            "history": result.history}


# --------------------------------------------------------------------------- zero-shot

def zero_shot(setup: EvalSetup, data: Mapping[str, LabelledSplit],
              texts: LabelTexts) -> dict[str, Any]:
    """The prototypes of the run's MMS-pretrained text head, untrained: each clip's projection
    (the mean of its non-text modalities' unit projections) against the projected label
    prompts; the class of the highest cosine (multi-label: cosine > 0).

    Returns:
        ``{"ran": True, "splits": {split: metrics}}`` or ``{"ran": False, "reason": ...}``.
    """
    heads, payload = setup.pretrained, setup.payload
    if not setup.cfg.clef.zero_shot:
        return {"ran": False, "reason": "clef.zero_shot=false"}
    if heads is None or payload is None:
        return {"ran": False, "reason": "no pretraining run given (--run): the zero-shot "
                                        "prototypes come from a run's MMS text head"}
    layout = payload.layout
    visual = [m for m in setup.spec.modalities if m != "text" and m in layout
              and tuple(layout[m]) == tuple(setup.layout[m])]
    if "text" not in layout or not visual or not heads.projectors:
        return {"ran": False, "reason": "the run has no text head, no other modality of the "
                                        "evaluation, or no projection heads"}
    heads = heads.to(setup.device).eval()
    with torch.no_grad():
        names = torch.from_numpy(texts.names).to(setup.device)
        prototypes = heads.project(heads.represent({"text": names}))["text"]
        splits, size = {}, setup.cfg.batch_size
        for split_name, split in data.items():
            parts = []
            for start in range(0, len(split), size):
                projected = heads.project(heads.represent(
                    {m: split.inputs[m][start:start + size].float() for m in visual}))
                parts.append(F.normalize(torch.stack([projected[m] for m in visual]).mean(0),
                                         dim=1))
            splits[split_name] = _metrics(torch.cat(parts) @ prototypes.T, split, setup)
    heads.cpu()
    return {"ran": True, "objective": payload.objective, "modalities": visual,
            "splits": splits}


PROTOCOL = ClefProtocol()

__all__ = ["MELD_SENTIMENT", "NOTE", "PROTOCOL", "ClefModel", "ClefProtocol", "ClefSpec",
           "zero_shot"]
