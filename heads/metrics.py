"""Classification metrics of the downstream evaluation, computed with scikit-learn.

The paper's numbers (Tables 2-5) are accuracy, precision, recall and F1 **weighted by class
support**; this module also reports macro-F1, per-class values under the store's class names and
the confusion matrix. Multi-label datasets (CMU-MOSEI) are scored per label after a sigmoid and a
0.5 threshold (:func:`threshold`), plus the "weighted accuracy" customary on CMU-MOSEI
(:func:`weighted_accuracy`).

Continuous targets (valence, arousal: :mod:`heads.evaluation.avce`) are scored per target with
:func:`rmse`, :func:`pcc`, :func:`ccc` and :func:`sagr` (:func:`regression_metrics`).

Every function takes numpy arrays (or anything ``np.asarray`` accepts, CPU tensors included) and
returns plain JSON-able Python values, so the results go straight into ``metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The scalar metrics every result carries (single- and multi-label), in table order.
HEADLINE = ("accuracy", "f1_weighted", "precision_weighted", "recall_weighted", "f1_macro")

#: The scalar metrics of a regression result (means over the targets), in table order.
REGRESSION_HEADLINE = ("ccc", "pcc", "rmse", "sagr")

THRESHOLD = 0.5


def threshold(probabilities: np.ndarray, value: float = THRESHOLD) -> np.ndarray:
    """Multi-label decisions: ``probabilities >= value`` as int64 [n, L]."""
    return (np.asarray(probabilities) >= value).astype(np.int64)


def weighted_accuracy(tp: int, tn: int, positives: int, negatives: int) -> float:
    """The "weighted accuracy" of one binary label, customary on CMU-MOSEI.

    ``WA = (TP * N / P + TN) / (2 N)`` (Tong et al., "Combating Human Trafficking with
    Multimodal Deep Models", ACL 2017, Sec. 5; used for CMU-MOSEI emotions by Zadeh et al.,
    "Multimodal Language Analysis in the Wild: CMU-MOSEI and Interpretable Dynamic Fusion
    Graph", ACL 2018). It rescales the true positives as if the positives were as many as the
    negatives; algebraically it is ``(TP/P + TN/N) / 2``, the mean of the recalls of the two
    classes (balanced accuracy).

    Args:
        tp: true positives.
        tn: true negatives.
        positives: P, samples whose truth is positive (TP + FN).
        negatives: N, samples whose truth is negative (TN + FP).

    Returns:
        WA in [0, 1]; NaN when P or N is 0 (the formula is undefined).
    """
    if positives <= 0 or negatives <= 0:
        return math.nan
    return (tp * negatives / positives + tn) / (2 * negatives)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           label_names: Sequence[str]) -> dict[str, Any]:
    """Single-label metrics.

    Args:
        y_true: int [n] class indices (no -1: unlabeled rows are excluded before).
        y_pred: int [n] predicted class indices.
        label_names: the class names, index = class (the store's ``label_names``).

    Returns:
        ``accuracy``; ``precision_weighted``, ``recall_weighted``, ``f1_weighted`` (each class
        weighted by its support in ``y_true``, the paper's metrics); ``f1_macro`` (unweighted
        mean over the classes present in the truth or the predictions); ``support`` (n);
        ``per_class`` (name -> precision, recall, f1, support); ``confusion`` [C, C] counts, rows
        = truth, columns = prediction, in ``label_names`` order.
    """
    from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score,
                                 precision_recall_fscore_support)  # 3 s to import: when used

    y_true, y_pred = _check_pair(y_true, y_pred, 1)
    classes = np.arange(len(label_names))
    _check_range(y_true, len(label_names), "y_true")
    _check_range(y_pred, len(label_names), "y_pred")
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes,
                                                 zero_division=0)
    pw, rw, fw, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes,
                                                    average="weighted", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_weighted": float(pw),
        "recall_weighted": float(rw),
        "f1_weighted": float(fw),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "support": len(y_true),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]),
                             "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(label_names)},
        "confusion": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                       label_names: Sequence[str]) -> dict[str, Any]:
    """Multi-label metrics, each label a binary decision.

    Args:
        y_true: {0, 1} [n, L] truth (CMU-MOSEI: 1 where the emotion's intensity is > 0).
        y_pred: {0, 1} [n, L] decisions (see :func:`threshold`).
        label_names: the L label names.

    Returns:
        ``accuracy`` (per-label accuracy ``(TP + TN) / n``, averaged with the labels' supports
        as weights, like the weighted metrics); ``precision_weighted``, ``recall_weighted``,
        ``f1_weighted`` (per-label values weighted by each label's positives); ``f1_macro``;
        ``subset_accuracy`` (rows whose every label is right); ``weighted_accuracy`` (mean of
        the per-label WA of :func:`weighted_accuracy` over labels where it is defined);
        ``support`` (n); ``per_label`` (name -> precision, recall, f1, support, accuracy,
        weighted_accuracy, tp, fp, fn, tn); ``confusion`` [L, 2, 2] (per label
        ``[[TN, FP], [FN, TP]]``).
    """
    from sklearn.metrics import (accuracy_score, f1_score, multilabel_confusion_matrix,
                                 precision_recall_fscore_support)  # 3 s to import: when used

    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.isin(np.asarray(arr), (0, 1)).all():
            raise ValueError(f"{name} must hold only 0 and 1 (threshold probabilities first)")
    y_true, y_pred = _check_pair(y_true, y_pred, 2)
    if y_true.shape[1] != len(label_names):
        raise ValueError(f"{y_true.shape[1]} label columns, but {len(label_names)} names "
                         f"({list(label_names)})")
    n = len(y_true)
    mcm = multilabel_confusion_matrix(y_true, y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    pw, rw, fw, _ = precision_recall_fscore_support(y_true, y_pred, average="weighted",
                                                    zero_division=0)
    per_label, accuracies, was = {}, [], []
    for i, name in enumerate(label_names):
        (tn, fp), (fn, tp) = mcm[i].tolist()
        acc = (tp + tn) / n if n else math.nan
        wa = weighted_accuracy(tp, tn, tp + fn, tn + fp)
        accuracies.append(acc)
        if not math.isnan(wa):
            was.append(wa)
        per_label[name] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                           "support": int(s[i]), "accuracy": acc, "weighted_accuracy": wa,
                           "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    return {
        "accuracy": (float(np.average(accuracies, weights=s)) if s.sum() else math.nan),
        "precision_weighted": float(pw),
        "recall_weighted": float(rw),
        "f1_weighted": float(fw),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_accuracy": float(np.mean(was)) if was else math.nan,
        "support": n,
        "per_label": per_label,
        "confusion": mcm.tolist(),
    }


def _regression_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must be 1-d arrays of "
                         "the same length")
    if len(pred) == 0:
        raise ValueError("no samples to score")
    return pred, target


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error of two 1-d arrays."""
    pred, target = _regression_pair(pred, target)
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def pcc(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson's correlation coefficient of two 1-d arrays (NaN when either is constant)."""
    pred, target = _regression_pair(pred, target)
    dp, dt = pred - pred.mean(), target - target.mean()
    denominator = math.sqrt(float(np.sum(dp ** 2)) * float(np.sum(dt ** 2)))
    return float(np.sum(dp * dt) / denominator) if denominator > 0 else math.nan


def ccc(pred: np.ndarray, target: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two 1-d arrays.

    ``CCC = 2 cov(p, t) / (var_p + var_t + (mean_p - mean_t)^2)`` with population statistics
    (Lin 1989): 1 only when the predictions equal the targets, 0 for a constant prediction;
    NaN when both are the same constant (0 / 0).
    """
    pred, target = _regression_pair(pred, target)
    mp, mt = pred.mean(), target.mean()
    cov = float(np.mean((pred - mp) * (target - mt)))
    denominator = float(pred.var() + target.var() + (mp - mt) ** 2)
    return 2 * cov / denominator if denominator > 0 else math.nan


def sagr(pred: np.ndarray, target: np.ndarray) -> float:
    """Sign agreement: the share of samples whose prediction has the target's sign
    (``np.sign``: a target of exactly 0 agrees only with a prediction of exactly 0)."""
    pred, target = _regression_pair(pred, target)
    return float(np.mean(np.sign(pred) == np.sign(target)))


def regression_metrics(pred: np.ndarray, target: np.ndarray,
                       target_names: Sequence[str]) -> dict[str, Any]:
    """Continuous-target metrics, per target and averaged over the targets.

    Args:
        pred: float [n, T] predictions.
        target: float [n, T] truth (no NaN: rows without a target are left out before).
        target_names: the T names (``valence``, ``arousal``).

    Returns:
        ``rmse``, ``pcc``, ``ccc``, ``sagr`` (means over the targets); ``<metric>_<name>`` per
        target; ``support`` (n); ``per_target`` (name -> the four); ``confusion`` [T, 2, 2] the
        signs as a binary decision per target (``[[TN, FP], [FN, TP]]``, positive = value >
        0), drawn like a multi-label dataset's matrices.
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != len(target_names):
        raise ValueError(f"pred {pred.shape} and target {target.shape} must be [n, T] with T = "
                         f"{len(target_names)} ({list(target_names)})")
    scorers = {"rmse": rmse, "pcc": pcc, "ccc": ccc, "sagr": sagr}
    per_target = {name: {key: f(pred[:, i], target[:, i]) for key, f in scorers.items()}
                  for i, name in enumerate(target_names)}
    out: dict[str, Any] = {key: float(np.mean([per_target[n][key] for n in target_names]))
                           for key in scorers}
    for name in target_names:
        out.update({f"{key}_{name}": per_target[name][key] for key in scorers})
    out["support"] = len(pred)
    out["per_target"] = per_target
    out["confusion"] = [_sign_confusion(pred[:, i], target[:, i])
                        for i in range(len(target_names))]
    return out


def _sign_confusion(pred: np.ndarray, target: np.ndarray) -> list[list[int]]:
    """``[[TN, FP], [FN, TP]]`` of the decision "value > 0"."""
    t, p = target > 0, pred > 0
    return [[int(np.sum(~t & ~p)), int(np.sum(~t & p))], [int(np.sum(t & ~p)),
                                                          int(np.sum(t & p))]]


def summarize(results: Sequence[Mapping[str, Any]],
              keys: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
    """Mean and standard deviation over seeds of the scalar metrics.

    Args:
        results: one metrics mapping per seed (from :func:`classification_metrics` or
            :func:`multilabel_metrics`).
        keys: the metrics to summarise (default: every float-valued top-level key of the first).

    Returns:
        metric -> ``{"mean": ..., "std": ..., "n": seeds}``; ``std`` is the sample standard
        deviation (ddof 1), None for a single seed.
    """
    if not results:
        raise ValueError("no results to summarise")
    keys = keys or [k for k, v in results[0].items() if isinstance(v, float)]
    out: dict[str, dict[str, float | None]] = {}
    for key in keys:
        values = np.array([float(r[key]) for r in results], dtype=np.float64)
        out[key] = {"mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else None,
                    "n": len(values)}
    return out


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray,
                ndim: int) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != ndim:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must have the same "
                         f"{ndim}-d shape")
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def _check_range(y: np.ndarray, classes: int, name: str) -> None:
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if bad.size:
        raise ValueError(f"{name}[{int(bad[0])}] = {int(y[bad[0]])} is not a class index in "
                         f"[0, {classes})")
