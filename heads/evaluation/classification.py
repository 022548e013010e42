"""The paper's three classification protocols, one implementation: a classifier on the heads'
representations (:class:`~heads.evaluation.probe.ProbeModel`), trained on the train split and
selected on the validation split.

What differs between them is whether the heads come from a run and whether they learn; each
protocol module (:mod:`~heads.evaluation.linear`, :mod:`~heads.evaluation.finetune`,
:mod:`~heads.evaluation.supervised`) is one :class:`ClassifierProtocol` value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from heads.evaluation.fit import (decide, fit, fit_standardization, make_loss, predict,
                                  represent_split)
from heads.evaluation.probe import LabelledSplit, ProbeModel, encoder_heads, freeze_heads
from heads.evaluation.protocol import EvalSetup, SavedModel, SeedResult, Task, state_of
from heads.metrics import classification_metrics, multilabel_metrics


@dataclass(frozen=True)
class ClassifierProtocol:
    """A classifier on the representation heads.

    Attributes:
        name: the protocol's name (``cli eval --protocol``).
        needs_run: the heads start from a pretraining run (else: seeded random weights).
        train_heads: the heads learn with the classifier (else they are frozen, and the
            representations are computed once per split: the same result as running the frozen
            heads at every step, at a fraction of the cost).
        summary: one line for the documentation and ``--help``.
        accepts_run: a run is used only when needed.
        task: the store's labels are the targets.
    """

    name: str
    needs_run: bool
    train_heads: bool
    summary: str
    accepts_run: bool = False
    task: Task = "classification"

    def run_seed(self, setup: EvalSetup, data: Mapping[str, LabelledSplit], seed: int, *,
                 progress: bool) -> SeedResult:
        cfg = setup.cfg
        represented = not self.train_heads
        model = self.build(setup, seed)
        inputs = ({n: represent_split(model, s, cfg.batch_size) for n, s in data.items()}
                  if represented else dict(data))
        if cfg.standardize:
            fit_standardization(model, inputs["train"], represented=represented,
                                inputs=not self.needs_run, batch_size=cfg.batch_size)
        loss_fn, weights = make_loss(data["train"].targets, setup.spec.outputs,
                                     multilabel=setup.spec.multilabel,
                                     class_weights=cfg.class_weights,
                                     values=cfg.class_weight_values)
        result = fit(model, inputs["train"], inputs["val"], cfg, loss_fn=loss_fn,
                     represented=represented, seed=seed, progress=progress)
        scored = {n: score(model, s, setup, represented) for n, s in inputs.items()}
        frozen = not self.train_heads  # the linear probe: its heads stay the run's
        saved = SavedModel("probe", {"probe": model.spec.to_dict(),
                                     "heads": model.heads.spec.to_dict(),
                                     "heads_from_checkpoint": frozen},
                           state_of(model, without="heads." if frozen else None))
        return SeedResult(seed, model, saved, scored, result.best_epoch + 1, result.seconds,
                          result.history, weights)

    def build(self, setup: EvalSetup, seed: int) -> ProbeModel:
        """The classifier with its heads: the run's (copied) or seeded random ones."""
        heads = encoder_heads(setup.input_dims, setup.spec.representation_dim, seed=seed,
                              pretrained=setup.pretrained if self.needs_run else None)
        torch.manual_seed(seed)  # the linear layer's init and the dropout masks
        model = ProbeModel(setup.spec, heads)
        model.init_classifier(setup.cfg.classifier_init)
        model = model.to(setup.device)
        if not self.train_heads:
            freeze_heads(model)
        return model


def score(model: ProbeModel, split: LabelledSplit, setup: EvalSetup,
          represented: bool) -> tuple[dict[str, Any], np.ndarray]:
    """The split's metrics and its fused representations [n, F] (for the t-SNE map)."""
    logits, fused = predict(model, split, represented=represented,
                            batch_size=setup.cfg.batch_size)
    _, decisions = decide(logits.cpu(), setup.spec.multilabel)
    truth = split.targets.cpu().numpy()
    scorer = multilabel_metrics if setup.spec.multilabel else classification_metrics
    return scorer(truth, decisions, setup.label_names), fused.cpu().numpy()


__all__ = ["ClassifierProtocol", "score"]
