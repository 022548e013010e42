"""The losses of AVCE (Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial
Emotion Recognition", ECCV 2022), trained by :mod:`heads.evaluation.avce`: :func:`sparsemax`
(Martins & Astudillo 2016), :func:`avce_similarity` and :func:`avce_objective`,
:func:`av_loss` (with :func:`pearson` and :func:`concordance`), :func:`disentangle_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from heads.losses.checks import check_margin, check_pair


def sparsemax(z: Tensor, dim: int = -1) -> Tensor:
    """SparseMax (Martins & Astudillo 2016): the Euclidean projection onto the simplex.

    Closed form, no solver: sort ``z`` decreasingly, the support size is
    ``k(z) = max{k : 1 + k z_(k) > sum_{j <= k} z_(j)}``, the threshold
    ``tau = (sum_{j <= k(z)} z_(j) - 1) / k(z)`` and ``sparsemax(z) = max(z - tau, 0)``. Exact,
    and differentiable almost everywhere through autograd (on the support, the Jacobian is
    ``I - 1 1^T / k(z)``; off it, 0), as the paper derives.

    Args:
        z: any shape; the simplex is along ``dim``.
        dim: the dimension that sums to 1.

    Returns:
        Same shape as ``z``: non-negative, summing to 1 along ``dim``, with zeros where the
        scores are far below the largest.

    Raises:
        ValueError: an empty ``dim``.
    """
    if z.ndim == 0 or z.shape[dim] == 0:
        raise ValueError(f"sparsemax: empty dimension {dim} in shape {tuple(z.shape)}")
    moved = z.movedim(dim, -1)
    ordered, _ = torch.sort(moved, dim=-1, descending=True)
    k = torch.arange(1, moved.shape[-1] + 1, dtype=moved.dtype, device=moved.device)
    cumulative = ordered.cumsum(-1)
    support = (1 + k * ordered > cumulative).sum(-1, keepdim=True)
    tau = (cumulative.gather(-1, support - 1) - 1) / support.to(moved.dtype)
    return torch.clamp(moved - tau, min=0.0).movedim(-1, dim)


def avce_similarity(x: Tensor, y: Tensor, *, mu: float = 0.75) -> Tensor:
    """AVCE's similarity of two points of the arousal-valence space, per row.

    ``f(x, y) = (1 - theta / pi) + mu * (1 - | ||x|| - ||y|| |)`` with theta the angle between x
    and y: the angle says which emotion, the norm how intense (Kim & Song, ECCV 2022).

    Args:
        x: [N, T] points (T = 2: valence, arousal; 1 for valence alone).
        y: [N, T] points.
        mu: weight of the intensity term (0.75).

    Returns:
        [N] similarities; the angle term is in [0, 1] (1 for the same direction).

    Raises:
        ValueError: shapes differ or are not [N, T]; mu < 0.
    """
    check_margin("mu", mu)
    check_pair(x, y, "avce_similarity")
    nx, ny = x.norm(dim=1), y.norm(dim=1)
    cosine = (x * y).sum(1) / (nx * ny).clamp_min(1e-8)
    # arccos has an infinite slope at +-1: keep the gradient finite at (anti)parallel points.
    theta = torch.acos(cosine.clamp(-1 + 1e-6, 1 - 1e-6))
    return (1 - theta / math.pi) + mu * (1 - (nx - ny).abs())


def avce_objective(x: Tensor, positive: Tensor, negative: Tensor, *, alpha: float = 0.5,
                   beta: float = 0.005, gamma: float = 0.5, mu: float = 0.75) -> Tensor:
    """AVCE, the contrastive estimate to MAXIMISE (Kim & Song, ECCV 2022)::

        L_AVCE = E f(x, y_a) - alpha E f(x, y_n) - beta/2 E f(x, y_a)^2 - gamma/2 E f(x, y_n)^2

    Args:
        x: [N, T] the regressor's arousal-valence prediction.
        positive: [N, T] y_a, the head's output for the SparseMax view.
        negative: [N, T] y_n, the head's output for the SoftMax view.
        alpha, beta, gamma: the weights (0.5, 0.005, 0.5), each >= 0.
        mu: see :func:`avce_similarity`.

    Returns:
        [] the objective (a training loss subtracts it).
    """
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_margin(name, value)
    f_pos = avce_similarity(x, positive, mu=mu)
    f_neg = avce_similarity(x, negative, mu=mu)
    return (f_pos.mean() - alpha * f_neg.mean() - beta / 2 * f_pos.pow(2).mean()
            - gamma / 2 * f_neg.pow(2).mean())


def _check_columns(pred: Tensor, target: Tensor, what: str) -> None:
    if pred.shape != target.shape or pred.ndim not in (1, 2) or pred.shape[0] < 2:
        raise ValueError(f"{what}: expected predictions and targets of one shape [N >= 2] or "
                         f"[N >= 2, T], got {tuple(pred.shape)} and {tuple(target.shape)}")


def pearson(pred: Tensor, target: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Pearson's correlation per column (population statistics): [N] or [N, T] -> [] or [T]."""
    _check_columns(pred, target, "pearson")
    dp, dt = pred - pred.mean(0), target - target.mean(0)
    cov = (dp * dt).mean(0)
    return cov / (dp.pow(2).mean(0).sqrt() * dt.pow(2).mean(0).sqrt() + eps)


def concordance(pred: Tensor, target: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Lin's concordance correlation per column: ``2 cov / (var_p + var_t + (m_p - m_t)^2)``
    with population statistics: [N] or [N, T] -> [] or [T]."""
    _check_columns(pred, target, "concordance")
    mp, mt = pred.mean(0), target.mean(0)
    cov = ((pred - mp) * (target - mt)).mean(0)
    var_p, var_t = (pred - mp).pow(2).mean(0), (target - mt).pow(2).mean(0)
    return 2 * cov / (var_p + var_t + (mp - mt).pow(2) + eps)


def av_loss(pred: Tensor, target: Tensor) -> Tensor:
    """AVCE's regression loss ``L_AV = RMSE + ((1 - PCC) + (1 - CCC)) / 2``, per target,
    averaged over the targets.

    Args:
        pred: [N, T] predictions (valence, arousal) or [N].
        target: same shape.

    Returns:
        [] the loss.
    """
    _check_columns(pred, target, "av_loss")
    rmse = (pred - target).pow(2).mean(0).add(1e-12).sqrt()
    per_target = rmse + ((1 - pearson(pred, target)) + (1 - concordance(pred, target))) / 2
    return per_target.mean()


def disentangle_loss(anchor: Tensor, positive: Tensor, negative: Tensor, *,
                     delta1: float = 1.0, delta2: float = 0.8) -> Tensor:
    """AVCE's triplet term on the head H1's outputs (Kim & Song, ECCV 2022)::

        L_dis = E [delta1 - ||v_a - v_n||^2]_+ + (E ||v_a_bar|| - delta2) + (E ||v_n_bar|| - delta2)

    where ``v_bar = v / ||v|| - v_z / ||v_z||`` is a view's unit direction relative to the
    anchor's (the reference code's ``vector_difference``): the hinge pushes the two views
    apart, the other two terms hold each near the anchor's direction (delta2 only shifts the
    value: the paper's terms have no hinge).

    Args:
        anchor: [N, K] v_z = H1(z).
        positive: [N, K] v_a = H1(SparseMax(z)).
        negative: [N, K] v_n = H1(SoftMax(z)).
        delta1: the hinge's margin (1.0).
        delta2: the holding terms' offset (0.8).

    Returns:
        [] the loss.
    """
    check_margin("delta1", delta1)
    check_margin("delta2", delta2)
    check_pair(anchor, positive, "disentangle_loss")
    check_pair(anchor, negative, "disentangle_loss")
    push = F.relu(delta1 - (positive - negative).pow(2).sum(1)).mean()
    unit = F.normalize(anchor, dim=1, eps=1e-6)
    hold_a = (F.normalize(positive, dim=1, eps=1e-6) - unit).norm(dim=1).mean() - delta2
    hold_n = (F.normalize(negative, dim=1, eps=1e-6) - unit).norm(dim=1).mean() - delta2
    return push + hold_a + hold_n
