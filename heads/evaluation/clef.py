"""CLEF on fixed features (Zhang et al., "Weakly Supervised Text-driven Contrastive Learning for
Facial Behavior Understanding", ICCV 2023): classification by text prototypes.

The store's features of the chosen modalities (concatenated, standardised with train
statistics) are projected by a trainable ``Linear`` into a joint space, the label texts (the
store's own text-backbone vectors of "a photo of a person with {label}", and of a short
description per label: :mod:`pipeline.label_texts`) by another; both sides are L2-normalised
and a sample's logit for class c is ``s_ic = z_i . z_c / tau`` with a learnable temperature.
Fine-tuning minimises ``L_fine = (lambda L_IN + L_DN) / 2`` (lambda 2,
:func:`heads.losses.clef_fine_loss`): ``L_IN`` the class-weighted cross-entropy of the logits
(BCE with the dataset's ``pos_weight`` for multi-label CMU-MOSEI, as the other protocols), and
``L_DN`` each description against all label names (:func:`heads.losses.description_name_loss`).

Before it, where the store has coarse labels (CMU-MOSEI's sentiment sign, annotated apart from
its emotions), a weakly supervised stage trains the projections with the paper's fixed
temperature 0.25: a supervised contrastive loss between two views of each clip (two
feature-dropout draws) and the clip against the texts of the coarse classes. MELD's Sentiment
column is refused as coarse labels: it follows from the emotion label on almost every row, so
it would be supervision by the target.

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
from heads.evaluation.loop import train_epochs
from heads.evaluation.fit import decide, make_loss
from heads.evaluation.probe import LabelledSplit, Standardize
from heads.evaluation.protocol import EvalSetup, SavedModel, SeedResult, Task, state_of
from heads.evaluation.targets import read_targets
from heads.losses import (clef_fine_loss, description_name_loss, image_text_contrast,
                          supcon_loss)
from heads.metrics import classification_metrics, multilabel_metrics
from pipeline.config import ConfigError
from pipeline.label_texts import LabelTexts, read_label_texts

#: CLIP's bound on the learnable logit scale (1 / tau <= 100).
MAX_SCALE = 100.0
MELD_SENTIMENT = ("MELD's Sentiment column follows from the emotion label on almost every row "
                  "(joy is positive, sadness, anger, fear and disgust negative, neutral "
                  "neutral): as coarse labels it would be supervision by the target")
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
        weak = _weak_labels(setup, data["train"], texts)
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
                                   "weak": _weak_stage(model, train, weak, texts, cfg, seed,
                                                       progress)}
        loss_fn, weights = make_loss(train.targets, setup.spec.outputs,
                                     multilabel=setup.spec.multilabel,
                                     class_weights=cfg.class_weights,
                                     values=cfg.class_weight_values)
        optimizer = _adamw(model, clef)
        result = train_epochs(
            model, [optimizer], rows=len(train), cfg=cfg, base_lr=clef.lr,
            step=lambda idx: _step(model, optimizer, loss_fn, train, idx, clef),
            validate=lambda: _validate(model, data["val"], loss_fn, setup, cfg),
            select="val_loss" if cfg.selection == "val_loss" else "val_f1", seed=seed,
            progress=progress)
        scored = {n: _score(model, s, setup, cfg.batch_size) for n, s in data.items()}
        details["zero_shot"] = zero_shot(setup, data, texts)
        saved = SavedModel("clef", dataclasses.asdict(model.spec), state_of(model))
        return SeedResult(seed, model, saved, scored, result.best_epoch + 1, result.seconds,
                          result.history, weights, {}, details)


def _adamw(model: ClefModel, cfg: ClefConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if n != "log_scale"]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": [model.log_scale], "weight_decay": 0.0}], lr=cfg.lr)


def _step(model: ClefModel, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
          data: LabelledSplit, idx: Tensor, cfg: ClefConfig) -> dict[str, float]:
    idx = idx.to(data.targets.device)
    logits = model({m: data.inputs[m][idx] for m in model.modalities})
    l_in = loss_fn(logits, data.targets[idx])
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


def _validate(model: ClefModel, val: LabelledSplit, loss_fn: nn.Module, setup: EvalSetup,
              cfg: EvalConfig) -> dict[str, float]:
    from sklearn.metrics import f1_score

    logits, _ = _logits(model, val, cfg.batch_size)
    loss = clef_fine_loss(loss_fn(logits, val.targets), model.description_loss(),
                          weight=cfg.clef.instance_weight)
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

@dataclass(frozen=True)
class WeakLabels:
    """Stage 1's coarse labels of the train split (-1: none) and their group."""

    group: str
    labels: Tensor
    texts: Tensor


def _weak_labels(setup: EvalSetup, train: LabelledSplit,
                 texts: LabelTexts) -> WeakLabels | None:
    """The coarse labels stage 1 trains on, by ``clef.weak`` (None: no stage 1).

    Raises:
        ConfigError: ``weak: sentiment`` on MELD (supervision by the target) or on a store
            without coarse labels.
    """
    mode = setup.cfg.clef.weak
    if mode == "none" or setup.cfg.clef.weak_epochs == 0:
        return None
    if mode == "sentiment" and setup.store is not None and setup.store.dataset == "meld":
        raise ConfigError(f"clef.weak=sentiment is refused on MELD: {MELD_SENTIMENT}")
    if "sentiment" not in texts.coarse:
        if mode == "sentiment":
            raise ConfigError(f"clef.weak=sentiment: the store has no coarse sentiment labels "
                              f"(CMU-MOSEI's sentiment as the target 'valence', with its label "
                              f"texts); it has {sorted(texts.coarse) or 'none'}")
        return None
    assert setup.store is not None
    target, _, vectors = texts.coarse["sentiment"]
    fs = setup.store
    names = list(fs.manifest.dataset.targets)
    where = {sid: i for i, sid in enumerate(fs.index.column("sample_id").to_pylist())}
    values = read_targets(fs, np.array([where[s] for s in train.sample_ids], np.int64))
    column = values[:, names.index(target)]
    # index 0 negative (< 0), index 1 non-negative (>= 0); -1 where the clip has no value
    labels = np.where(np.isnan(column), -1, (column >= 0).astype(np.int64))
    return WeakLabels("sentiment", torch.from_numpy(labels).to(train.targets.device),
                      torch.from_numpy(vectors).to(train.targets.device))


def _weak_stage(model: ClefModel, train: LabelledSplit, weak: WeakLabels | None,
                texts: LabelTexts, cfg: EvalConfig, seed: int,
                progress: bool) -> dict[str, Any]:
    """Stage 1 on the coarse labels: both projections, the paper's fixed temperature."""
    if weak is None:
        return {"ran": False, "reason": ("clef.weak=none" if cfg.clef.weak == "none" else
                                         "the store has no coarse labels (CMU-MOSEI's "
                                         "sentiment sign)")}
    rows = torch.nonzero(weak.labels >= 0).flatten()
    clef = cfg.clef
    optimizer = _adamw(model, clef)

    def step(idx: Tensor) -> dict[str, float]:
        idx = rows[idx.to(rows.device)]
        features = model.features({m: train.inputs[m][idx] for m in model.modalities})
        views = [model.embed(F.dropout(features, clef.weak_view_dropout, training=True))
                 for _ in range(2)]
        labels = weak.labels[idx]
        image = supcon_loss(torch.cat(views), torch.cat([labels, labels]),
                            temperature=clef.weak_temperature)
        text = image_text_contrast(views[0], model.embed_texts(weak.texts), labels,
                                   temperature=clef.weak_temperature)
        loss = image + text
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), "image": float(image.detach()),
                "text": float(text.detach())}

    result = train_epochs(model, [optimizer], rows=len(rows), cfg=cfg, base_lr=clef.lr,
                          step=step, validate=None, select="", epochs=clef.weak_epochs,
                          min_batch=2, seed=seed, progress=progress)
    return {"ran": True, "group": weak.group, "rows": int(len(rows)),
            "epochs": len(result.history), "history": result.history}


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
