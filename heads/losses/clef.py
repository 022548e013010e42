"""The losses of CLEF (Zhang et al., "Weakly Supervised Text-driven Contrastive Learning for
Facial Behavior Understanding", ICCV 2023), trained by :mod:`heads.evaluation.clef`:
:func:`supcon_loss` and :func:`image_text_contrast` (the weakly supervised stage),
:func:`description_name_loss` and :func:`clef_fine_loss` (the text prototypes' stage).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from heads.losses.checks import check_margin, check_pair, check_positive


def _check_labels(labels: Tensor, n: int, what: str) -> None:
    if labels.shape != (n,) or labels.dtype != torch.int64:
        raise ValueError(f"{what}: expected int64 labels [{n}], got {labels.dtype} "
                         f"{tuple(labels.shape)}")


def supcon_loss(embeddings: Tensor, labels: Tensor, *, temperature: float = 0.25) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out), CLEF's weak supervision.

    Every other sample with the same label is a positive of the anchor; the anchor itself
    leaves the softmax::

        L = -1/|A| sum_{i in A} 1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/t) /
                                                              sum_{k != i} exp(z_i.z_k/t) )

    with A the anchors that have at least one positive. Two views of a batch are passed as
    ``cat([view1, view2])`` with ``cat([labels, labels])``, so each sample's other view is
    always among its positives.

    Args:
        embeddings: [N, D] L2-normalised embeddings.
        labels: int64 [N] coarse labels.
        temperature: fixed (0.25 in CLEF's weakly supervised stage).

    Returns:
        [] the mean over anchors with a positive; 0 (with a gradient) when there are none.

    Raises:
        ValueError: not [N, D], labels of another length, N < 2, temperature <= 0.
    """
    check_positive("temperature", temperature)
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"supcon_loss: expected [N >= 2, D] embeddings, got "
                         f"{tuple(embeddings.shape)}")
    n = embeddings.shape[0]
    _check_labels(labels, n, "supcon_loss")
    self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    logits = (embeddings @ embeddings.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    anchors = count > 0
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0
    summed = log_prob.masked_fill(~positives, 0.0).sum(1)
    return -(summed[anchors] / count[anchors]).mean()


def image_text_contrast(embeddings: Tensor, texts: Tensor, labels: Tensor, *,
                        temperature: float = 0.25) -> Tensor:
    """Each sample against the texts of every coarse class, its own class's text the positive.

    CLEF's image-to-activity-text term: ``-1/N sum_i log softmax_c(z_i.t_c / t)[y_i]``.

    Args:
        embeddings: [N, D] L2-normalised sample embeddings.
        texts: [C, D] L2-normalised embeddings of the C coarse classes' texts.
        labels: int64 [N] coarse class of each sample, in [0, C).
        temperature: fixed (0.25, as :func:`supcon_loss`).

    Returns:
        [] the mean cross-entropy.

    Raises:
        ValueError: inconsistent shapes, labels out of range, temperature <= 0.
    """
    check_positive("temperature", temperature)
    if embeddings.ndim != 2 or texts.ndim != 2 or embeddings.shape[1] != texts.shape[1]:
        raise ValueError("image_text_contrast: expected embeddings [N, D] and texts [C, D], got "
                         f"{tuple(embeddings.shape)} and {tuple(texts.shape)}")
    _check_labels(labels, embeddings.shape[0], "image_text_contrast")
    if len(labels) and (labels.min() < 0 or labels.max() >= texts.shape[0]):
        raise ValueError(f"image_text_contrast: labels outside [0, {texts.shape[0]})")
    return F.cross_entropy(embeddings @ texts.T / temperature, labels)


def description_name_loss(descriptions: Tensor, names: Tensor, *,
                          temperature: float | Tensor) -> Tensor:
    """CLEF's L_DN: each label's description against the texts of all label names.

    ``L_DN = -1/C sum_c log softmax_c'(z_c^D . z_c'^N / t)[c' = c]``: the description of class c
    must be closer to the name prompt of c than to those of the other classes.

    Args:
        descriptions: [C, D] L2-normalised projected description embeddings, in label order.
        names: [C, D] L2-normalised projected label-name prompt embeddings, same order.
        temperature: the temperature of the prototype logits, > 0 (a tensor: learnable).

    Returns:
        [] the mean cross-entropy over the C classes.

    Raises:
        ValueError: shapes differ or are not [C, D]; temperature <= 0 (a float).
    """
    if isinstance(temperature, (int, float)):
        check_positive("temperature", temperature)
    check_pair(descriptions, names, "description_name_loss")
    target = torch.arange(names.shape[0], device=names.device)
    return F.cross_entropy(descriptions @ names.T / temperature, target)


def clef_fine_loss(instance: Tensor, description: Tensor, *, weight: float = 2.0) -> Tensor:
    """CLEF's fine-tuning loss ``L_fine = (lambda * L_IN + L_DN) / 2`` (lambda 2 in the paper).

    Args:
        instance: [] L_IN, the (class-weighted) cross-entropy, or BCE for multi-label
            targets, of the prototype logits.
        description: [] L_DN (:func:`description_name_loss`).
        weight: lambda, >= 0.
    """
    check_margin("weight", weight)
    return (weight * instance + description) / 2
