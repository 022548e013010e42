"""Training the probe (:class:`~heads.evaluation.probe.ProbeModel`): the loss, the loop, the
scores.

With frozen heads (the linear protocol) the heads are deterministic (no dropout, no
normalisation), so the representations are computed once per split (:func:`represent_split`)
and the loop trains on them (``represented=True``). Single-label targets use class-weighted
cross-entropy, multi-label targets BCE with a ``pos_weight`` per label (:func:`make_loss`; the
weights per dataset are in ``manifests/<dataset>.yaml``). The optimiser is AdamW with a linear
warm-up, then cosine annealing with warm restarts (:func:`heads.runtime.lr_at`); training stops
early once the validation loss has not improved for ``patience`` epochs, and the epoch kept is
the best on the validation split (:func:`fit`), never chosen on test. The standardisation's
statistics come from the train split (:func:`fit_standardization`). Every choice is listed in
``docs/CHOICES.md``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from heads.config import schedule_of
from heads.eval_config import EvalConfig
from heads.evaluation.probe import LabelledSplit, ProbeModel, Standardize
from heads.metrics import threshold
from heads.metrics_log import ProgressBar
from heads.runtime import DivergedError, autocast, lr_at
from pipeline.config import ConfigError

log = logging.getLogger(__name__)


@torch.no_grad()
def fit_standardization(model: ProbeModel, train: LabelledSplit, *, represented: bool,
                        inputs: bool, batch_size: int) -> None:
    """Fix the standardisation statistics on the TRAIN split, before training.

    Args:
        model: the probe, freshly built.
        train: the train split (features, or representations if ``represented``).
        represented: ``train`` holds representations.
        inputs: also standardise the input features (the supervised baseline, whose heads
            start from random weights; pretrained heads were trained on raw features).
        batch_size: rows per forward pass.
    """
    if inputs and not represented:
        for m in model.spec.modalities:
            cast(Standardize, model.input_norm[m]).fit(train.inputs[m])
    _, fused = predict(model, train, represented=represented, batch_size=batch_size)
    model.feature_norm.fit(fused)


def make_loss(targets: Tensor, outputs: int, *, multilabel: bool, class_weights: str,
              values: tuple[float, ...] | list[float] = ()) -> tuple[nn.Module, list[float]]:
    """The training loss, weighted from the TRAIN split's targets (or fixed weights).

    Single-label: cross-entropy with class weights by ``class_weights``: ``inverse``
    ``n / (C * n_c)`` (scikit-learn's "balanced"; a class absent from train gets weight 0,
    logged), ``frequency`` ``n_c / n`` (what the paper's reference code used for CAER: it
    up-weights the majority classes), ``fixed`` the given ``values`` (MELD's published weights),
    ``none`` all 1. Multi-label: BCE-with-logits with a ``pos_weight`` per label: ``inverse``
    ``negatives / positives`` (1 for a label without positives, logged), ``frequency``
    ``positives / n``, ``fixed`` the given ``values`` (the reference code's CMU-MOSEI weights),
    ``none`` all 1.

    Returns:
        the loss module and the weights it uses (recorded in ``metrics.json``).

    Raises:
        ConfigError: an unknown mode, or ``fixed`` values that are not one per class / label.
    """
    y = targets.detach().cpu().numpy()
    if class_weights == "fixed":
        if len(values) != outputs:
            raise ConfigError(f"class_weight_values has {len(values)} values, but the store has "
                              f"{outputs} {'labels' if multilabel else 'classes'}")
        weight = np.asarray(values, dtype=np.float64)
    elif class_weights == "none":
        weight = np.ones(outputs)
    elif class_weights == "frequency":
        counts = y.sum(0) if multilabel else np.bincount(y, minlength=outputs)
        weight = counts / max(len(y), 1)
    elif class_weights == "inverse":
        weight = _inverse_weights(y, outputs, multilabel)
    else:
        raise ConfigError(f"class_weights {class_weights!r}; valid: inverse, frequency, fixed, "
                          "none")
    t = torch.tensor(weight, dtype=torch.float32, device=targets.device)
    loss: nn.Module = (nn.BCEWithLogitsLoss(pos_weight=t) if multilabel
                       else nn.CrossEntropyLoss(weight=t))
    return loss, [float(w) for w in weight]


def _inverse_weights(y: np.ndarray, outputs: int, multilabel: bool) -> np.ndarray:
    """``negatives / positives`` per label, or ``n / (C * n_c)`` per class present."""
    from sklearn.utils.class_weight import compute_class_weight  # 3 s to import: when used

    if multilabel:
        pos = y.sum(0)
        none = [i for i, p in enumerate(pos) if p == 0]
        if none:
            log.warning("labels %s have no positive in the train split: pos_weight 1", none)
        return np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
    present = np.unique(y)
    weight = np.zeros(outputs)
    weight[present] = compute_class_weight("balanced", classes=present, y=y)
    absent = sorted(set(range(outputs)) - set(present.tolist()))
    if absent:
        log.warning("classes %s do not occur in the train split: weight 0", absent)
    return weight


# -------------------------------------------------------------------------------------- loop

@dataclass
class FitResult:
    """What :func:`fit` reports: the epoch kept and every epoch's numbers."""

    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]]
    seconds: float


def fit(model: ProbeModel, train: LabelledSplit, val: LabelledSplit, cfg: EvalConfig, *,
        loss_fn: nn.Module, represented: bool, seed: int, progress: bool = False) -> FitResult:
    """Train ``model`` on ``train``; keep the weights of the best epoch on ``val``.

    The best epoch has the highest validation weighted F1 (ties: lower validation loss) with
    ``selection: val_f1``, or the lowest validation loss with ``selection: val_loss``. Training
    stops early once the validation loss has not improved for ``cfg.patience`` epochs (the
    reference code's early stopping; ``None``: all ``cfg.epochs``). Test data never enters this
    function.

    Args:
        model: the probe; only parameters with ``requires_grad`` are trained.
        train: training split ([n, E_m] features, or [n, D] representations if ``represented``).
        val: validation split, same form.
        cfg: optimiser, schedule, epochs, batch size.
        loss_fn: see :func:`make_loss`.
        represented: the inputs are representations (linear protocol).
        seed: seeds the batch order (dropout draws from torch's global RNG, seeded by the
            caller).
        progress: show a progress bar.

    Raises:
        FloatingPointError: the loss became NaN/Inf (names the epoch and step).
    """
    optimizer, trainable = _optimizer(model, cfg)
    generator = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    o = cfg.optim
    schedule: dict[str, Any] = {"base_lr": o.lr, **schedule_of(o, per_epoch)}
    best: dict[str, float] | None = None
    best_state: dict[str, Tensor] = {}
    history: list[dict[str, float]] = []
    bar = ProgressBar(progress, total=per_epoch * cfg.epochs)
    start = time.perf_counter()
    lowest, stale = math.inf, 0
    try:
        for epoch in range(cfg.epochs):
            model.train()
            record = {"epoch": epoch, "lr": lr_at(epoch * per_epoch, **schedule),
                      "train_loss": _epoch(model, optimizer, loss_fn, train, epoch=epoch,
                                           batch_size=cfg.batch_size, schedule=schedule,
                                           generator=generator, represented=represented,
                                           bar=bar),
                      **score_split(model, val, loss_fn, represented, cfg.batch_size)}
            history.append(record)
            if not math.isfinite(record["val_loss"]):  # never choose an epoch on a NaN
                raise DivergedError("validation loss (split val)", epoch=epoch)
            if best is None or _better(record, best, cfg.selection):
                best = record
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()
                              if k in trainable}
            lowest, stale = patience_step(record["val_loss"], lowest, stale)
            if stop_early(cfg.patience, stale, lowest, epoch):
                break
    finally:
        bar.close()
    assert best is not None
    _restore(model, best_state)
    log.info("best epoch %d of %d: val loss %.4f, val weighted F1 %.4f", best["epoch"] + 1,
             len(history), best["val_loss"], best["val_f1"])
    return FitResult(int(best["epoch"]), best, history, time.perf_counter() - start)


def _optimizer(model: ProbeModel, cfg: EvalConfig) -> tuple[torch.optim.Optimizer, set[str]]:
    """AdamW over the trainable parameters (the heads' lr scaled by ``heads_lr_scale``), and
    their names."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if not n.startswith("heads.")], "scale": 1.0},
              {"params": [p for n, p in params if n.startswith("heads.")],
               "scale": cfg.heads_lr_scale}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.optim.lr,
                                  weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas)
    return optimizer, {n for n, _ in params}


def _epoch(model: ProbeModel, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
           train: LabelledSplit, *, epoch: int, batch_size: int, schedule: dict[str, Any],
           generator: torch.Generator, represented: bool, bar: ProgressBar) -> float:
    """One epoch of random batches; returns the mean training loss."""
    per_epoch = schedule["steps_per_epoch"]
    total, start = 0.0, time.perf_counter()
    for k, idx in enumerate(torch.randperm(len(train), generator=generator).split(batch_size)):
        step = epoch * per_epoch + k
        lr = lr_at(step, **schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        loss = _step(model, optimizer, loss_fn, train, idx, represented, generator)
        if not math.isfinite(loss):
            raise DivergedError("training loss", epoch=epoch, step=step + 1)
        total += loss * len(idx)
        bar.advance(epoch, len(idx) * (k + 1) / max(time.perf_counter() - start, 1e-9), loss)
    return total / len(train)


def patience_step(val_loss: float, lowest: float, stale: int) -> tuple[float, int]:
    """The lowest validation loss so far and the epochs since it last fell."""
    return (val_loss, 0) if val_loss < lowest else (lowest, stale + 1)


def stop_early(patience: int | None, stale: int, lowest: float, epoch: int) -> bool:
    """Early stopping as the reference code: ``patience`` epochs without a lower val loss."""
    if patience is None or stale < patience:
        return False
    log.info("early stop after epoch %d: val loss not below %.4f for %d epochs", epoch + 1,
             lowest, stale)
    return True


@torch.no_grad()
def _restore(model: ProbeModel, state: Mapping[str, Tensor]) -> None:
    """Copy the kept epoch's weights back and leave the model in eval mode."""
    for k, v in model.state_dict().items():
        if k in state:
            v.copy_(state[k])
    model.eval()


def _step(model: ProbeModel, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
          data: LabelledSplit, idx: Tensor, represented: bool,
          generator: torch.Generator) -> float:
    idx = idx.to(data.targets.device)
    batch = data.batch(idx, generator)
    with autocast(data.targets.device):
        logits = model(batch, represented=represented)
    loss = loss_fn(logits.float(), data.targets[idx])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _better(record: Mapping[str, float], best: Mapping[str, float], selection: str) -> bool:
    if selection == "val_loss":
        return record["val_loss"] < best["val_loss"]
    if record["val_f1"] != best["val_f1"]:
        return record["val_f1"] > best["val_f1"]
    return record["val_loss"] < best["val_loss"]


@torch.no_grad()
def predict(model: ProbeModel, data: LabelledSplit, *, represented: bool, batch_size: int,
            ) -> tuple[Tensor, Tensor]:
    """Logits [n, C] and fused representations [n, F] (float32, on the data's device), in eval
    mode."""
    model.eval()
    logits, fused = [], []
    n = len(data)
    for start in range(0, n, batch_size):
        batch = {m: x[start:start + batch_size].float() for m, x in data.inputs.items()}
        with autocast(data.targets.device):
            reps = batch if represented else model.represent(batch)
            z = model.fuse(reps)
            logits.append(model.classify(z).float())
        fused.append(z.float())
    return torch.cat(logits), torch.cat(fused)


def decide(logits: Tensor, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and decisions: softmax + argmax [n], or sigmoid + 0.5 threshold [n, L]."""
    if multilabel:
        probs = torch.sigmoid(logits).numpy()
        return probs, threshold(probs)
    probs = torch.softmax(logits, dim=1).numpy()
    return probs, probs.argmax(1)


def score_split(model: ProbeModel, data: LabelledSplit, loss_fn: nn.Module, represented: bool,
                batch_size: int) -> dict[str, float]:
    """Validation loss (same weighting as training) and weighted F1 of ``data``."""
    from sklearn.metrics import f1_score  # 3 s to import: when used

    logits, _ = predict(model, data, represented=represented, batch_size=batch_size)
    with torch.no_grad():
        loss = float(loss_fn(logits, data.targets))
    _, decisions = decide(logits.cpu(), model.spec.multilabel)
    f1 = f1_score(data.targets.cpu().numpy().astype(np.int64), decisions, average="weighted",
                  zero_division=0)
    return {"val_loss": loss, "val_f1": float(f1)}


def represent_split(model: ProbeModel, data: LabelledSplit, batch_size: int) -> LabelledSplit:
    """The split with its features replaced by the (frozen) heads' [n, D] representations (and
    its augmented views, when it carries them, by [n, V, D] ones)."""
    views = None
    if data.views is not None:  # [n, V, E] -> [n * V, E] -> [n, V, D]
        shape = next(iter(data.views.values())).shape[:2]
        flat = _represent(model, {m: x.flatten(0, 1) for m, x in data.views.items()},
                          batch_size)
        views = {m: r.unflatten(0, shape) for m, r in flat.items()}
    return LabelledSplit(data.name, _represent(model, data.inputs, batch_size), data.targets,
                         data.sample_ids, views)


def _represent(model: ProbeModel, inputs: Mapping[str, Tensor],
               batch_size: int) -> dict[str, Tensor]:
    """Per modality [n, E] features -> [n, D] representations of the frozen heads."""
    model.eval()
    out: dict[str, list[Tensor]] = {m: [] for m in model.spec.modalities}
    n = len(next(iter(inputs.values())))
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = {m: x[start:start + batch_size].float() for m, x in inputs.items()}
            with autocast(batch[model.spec.modalities[0]].device):
                reps = model.represent(batch)
            for m, r in reps.items():
                out[m].append(r.float())
    return {m: torch.cat(v) for m, v in out.items()}
