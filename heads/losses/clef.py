"""The losses of CLEF (Zhang et al., "Weakly Supervised Text-driven Contrastive Learning for
Facial Behavior Understanding", ICCV 2023), trained by :mod:`heads.evaluation.clef`:
:func:`supcon_loss` and :func:`image_text_supcon` (Eq. 1; the weakly supervised stage),
:func:`instance_loss` (Eq. 4 and 5), :func:`description_name_loss` and :func:`clef_fine_loss`
(the text prototypes' stage).
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


def image_text_supcon(images: Tensor, texts: Tensor, labels: Tensor, *,
                      temperature: float = 0.25) -> Tensor:
    """CLEF's Eq. 1: a supervised contrastive loss from images to their texts, one text per
    sample; every text of a sample with the anchor's label is a positive::

        L = -1/N sum_i 1/|P(i)| sum_{p in P(i)} log( exp(v_i.t_p/t) / sum_{a=1}^{N} exp(v_i.t_a/t) )

    with P(i) = {p : y_p = y_i}, the anchor's own text among them (it is another modality, so
    nothing leaves the softmax). Texts of one class repeat in the batch as often as the class
    does; that is what distinguishes Eq. 1 from a cross-entropy over the C class texts. The
    equation's content is the paper's as docs/PAPER-NOTES.md records it (the paper is not in this
    repository); the normalisation by |P(i)| and N follows Khosla et al.'s L_out, as in
    :func:`supcon_loss`.

    Args:
        images: [N, D] L2-normalised sample embeddings v_i.
        texts: [N, D] L2-normalised embeddings t_i of each sample's text (here the text of its
            coarse label).
        labels: int64 [N] coarse labels.
        temperature: fixed (0.25, as :func:`supcon_loss`).

    Returns:
        [] the mean over the N anchors (each has at least its own text as a positive).

    Raises:
        ValueError: images and texts not both [N, D], labels of another length,
            temperature <= 0.
    """
    check_positive("temperature", temperature)
    check_pair(images, texts, "image_text_supcon")
    _check_labels(labels, images.shape[0], "image_text_supcon")
    logits = images @ texts.T / temperature
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = labels[:, None] == labels[None, :]
    summed = log_prob.masked_fill(~positives, 0.0).sum(1)
    return -(summed / positives.sum(1)).mean()


def instance_loss(logits: Tensor, targets: Tensor, *, weight: Tensor | None = None,
                  multilabel: bool = False) -> Tensor:
    """CLEF's L_IN with the paper's normalisation: 1/B over the batch, the class weights inside.

    Single-label (Eq. 4), ``targets`` int64 [B]::

        L_IN = -1/B sum_i w_{y_i} log softmax(s_i)[y_i]

    a plain mean of the weighted per-sample losses: not torch's ``cross_entropy(weight=w)``,
    which divides by ``sum_i w_{y_i}`` instead of B (a factor of about 5 with MELD's weights).
    Multi-label (Eq. 5, CMU-MOSEI's 6 labels), ``targets`` float [B, C] in {0, 1}::

        L_IN = -1/B sum_i sum_c [ w_c y_ic log sigmoid(s_ic) + (1 - y_ic) log(1 - sigmoid(s_ic)) ]

    summed over the C labels, not averaged as ``binary_cross_entropy_with_logits`` does (a
    factor of 1/C); ``w_c`` is the label's ``pos_weight`` (the weighting the other protocols
    use). Both normalisations matter because lambda = 2 balances L_IN against L_DN
    (:func:`clef_fine_loss`). The equations' content is the paper's as docs/PAPER-NOTES.md
    records it.

    Args:
        logits: [B, C] the prototype logits s_ic.
        targets: int64 [B] classes, or float [B, C] labels (``multilabel``).
        weight: float [C] class weights (pos_weights when ``multilabel``); None: all 1.
        multilabel: Eq. 5 instead of Eq. 4.

    Returns:
        [] L_IN.

    Raises:
        ValueError: shapes that do not match ``[B, C]`` logits, or a weight not of length C.
    """
    if logits.ndim != 2:
        raise ValueError(f"instance_loss: expected [B, C] logits, got {tuple(logits.shape)}")
    if weight is not None and weight.shape != (logits.shape[1],):
        raise ValueError(f"instance_loss: expected [{logits.shape[1]}] weights, got "
                         f"{tuple(weight.shape)}")
    if multilabel:
        if targets.shape != logits.shape:
            raise ValueError(f"instance_loss: expected [B, C] labels like the logits "
                             f"{tuple(logits.shape)}, got {tuple(targets.shape)}")
        per_label = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype),
                                                       pos_weight=weight, reduction="none")
        return per_label.sum(1).mean()
    _check_labels(targets, logits.shape[0], "instance_loss")
    return F.cross_entropy(logits, targets, weight=weight, reduction="none").mean()


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
        instance: [] L_IN (:func:`instance_loss`, Eq. 4 or 5).
        description: [] L_DN (:func:`description_name_loss`).
        weight: lambda, >= 0.
    """
    check_margin("weight", weight)
    return (weight * instance + description) / 2
