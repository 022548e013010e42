"""The self-supervised losses of ConCluGen (Halawa et al., CVPR 2024 workshops, arXiv 2404.10904).

- :func:`info_nce` - Eq. 1 of the paper (InfoNCE / NT-Xent of Chen et al. 2020), the
  ``instance_cont`` baseline between two augmented views of one modality.
- :func:`mms_loss` / :func:`mms_pairs` / :func:`multimodal_mms` - the multi-modal contrastive
  loss: the Masked Margin Softmax of Ilharco et al. 2019 for each modality pair, summed over the
  pairs (video, audio), (video, text), (audio, text).
- :func:`clustering_loss` - the multi-modal clustering loss (after Chen et al. 2021, MCN): a
  margin softmax over sample-centroid dot products, the k-means assignment as target.
- :func:`reconstruction_losses` / :func:`reconstruction_loss` - the generative loss: the mean
  squared error between each decoder output and the backbone features it reconstructs, summed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from heads.losses.checks import check_margin, check_pair, check_positive


def mms_loss(a: Tensor, b: Tensor, *, margin: float = 0.001, temperature: float = 1.0) -> Tensor:
    """Masked Margin Softmax loss between two modalities paired by row (Ilharco et al. 2019).

    The multi-modal contrastive term of ConCluGen (Halawa et al. 2024, Sec. 3, multi-modal
    contrastive learning). With ``S = a @ b.T / temperature`` and the margin ``delta``
    subtracted from the positive (diagonal) logit ``S_ii``::

        L = -1/N sum_i log softmax_j(S - delta*I)[i, i]     (rows:    a_i against all b_j)
            -1/N sum_i log softmax_j(S - delta*I)[j, i]     (columns: b_i against all a_j)

    Args:
        a: [N, D] embeddings of one modality (L2-normalised by the projection head).
        b: [N, D] embeddings of another modality; row i of ``b`` pairs with row i of ``a``.
        margin: subtracted from each positive logit (0.001 in the paper).
        temperature: divides the similarities (1.0, i.e. none, in the paper).

    Returns:
        [] the row cross-entropy plus the column cross-entropy, each a mean over the batch.

    Raises:
        ValueError: shapes differ or are not [N, D]; margin < 0 or temperature <= 0.
    """
    check_margin("margin", margin)
    check_positive("temperature", temperature)
    check_pair(a, b, "mms_loss")
    logits = a @ b.T / temperature
    logits = logits - margin * torch.eye(logits.shape[0], device=logits.device,
                                         dtype=logits.dtype)
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def mms_pairs(embeddings: Mapping[str, Tensor], *, margin: float = 0.001,
              temperature: float = 1.0) -> dict[str, Tensor]:
    """:func:`mms_loss` for every pair of modalities, in the mapping's order.

    For ``{"video", "audio", "text"}`` (in that order) the pairs are (video, audio),
    (video, text), (audio, text); any subset of two or more modalities works.

    Args:
        embeddings: per modality [N, D] projections, paired by row.
        margin: see :func:`mms_loss`.
        temperature: see :func:`mms_loss`.

    Returns:
        ``{"video-audio": [], ...}`` one scalar per pair.

    Raises:
        ValueError: fewer than two modalities, or see :func:`mms_loss`.
    """
    if len(embeddings) < 2:
        raise ValueError("the multi-modal contrastive loss needs at least two modalities, "
                         f"got {list(embeddings)}")
    return {f"{m}-{n}": mms_loss(embeddings[m], embeddings[n], margin=margin,
                                 temperature=temperature)
            for m, n in itertools.combinations(embeddings, 2)}


def multimodal_mms(embeddings: Mapping[str, Tensor], *, margin: float = 0.001,
                   temperature: float = 1.0) -> Tensor:
    """The multi-modal contrastive loss: :func:`mms_loss` summed over all modality pairs.

    Args:
        embeddings: per modality [N, D] projections, paired by row.
        margin: see :func:`mms_loss`.
        temperature: see :func:`mms_loss`.

    Returns:
        [] the sum over the pairs of :func:`mms_pairs`.
    """
    return torch.stack(list(mms_pairs(embeddings, margin=margin,
                                      temperature=temperature).values())).sum()


def clustering_loss(embeddings: Tensor, centroids: Tensor, assignments: Tensor, *,
                    margin: float = 0.001) -> Tensor:
    """The multi-modal clustering loss (Halawa et al. 2024, Sec. 3; after Chen et al. 2021).

    A margin softmax over the dot products of each sample with the k-means centroids, the
    centroid the sample is assigned to being the positive::

        S = embeddings @ centroids.T;  S[i, c_i] -= margin
        L = -1/N sum_i log softmax_k(S)[i, c_i]

    Args:
        embeddings: [N, K] clustering-head outputs (or their modality mean).
        centroids: [C, K] k-means centroids, each the plain mean of its members (Eq. 9 of the
            paper; :class:`heads.pretrain.kmeans.CosineKMeans`); treated as constants.
        assignments: [N] int64 index of each sample's centroid.
        margin: subtracted from the positive logit (0.001 in the paper).

    Returns:
        [] the mean cross-entropy over the batch.

    Raises:
        ValueError: inconsistent shapes, assignments out of range, margin < 0.
    """
    check_margin("margin", margin)
    if embeddings.ndim != 2 or centroids.ndim != 2 or embeddings.shape[1] != centroids.shape[1]:
        raise ValueError("clustering_loss: expected embeddings [N, K] and centroids [C, K], got "
                         f"{tuple(embeddings.shape)} and {tuple(centroids.shape)}")
    if assignments.shape != (embeddings.shape[0],) or assignments.dtype != torch.int64:
        raise ValueError(f"clustering_loss: expected int64 assignments [{embeddings.shape[0]}], "
                         f"got {assignments.dtype} {tuple(assignments.shape)}")
    if len(assignments) and (assignments.min() < 0 or assignments.max() >= centroids.shape[0]):
        raise ValueError(f"clustering_loss: assignments outside [0, {centroids.shape[0]})")
    logits = embeddings @ centroids.detach().T
    logits = logits - margin * F.one_hot(assignments, centroids.shape[0]).to(logits.dtype)
    return F.cross_entropy(logits, assignments)


def reconstruction_losses(reconstructions: Mapping[str, Tensor],
                          targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Mean squared error of each modality's decoder output against its input features.

    Args:
        reconstructions: per modality [N, E_m] decoder outputs.
        targets: per modality [N, E_m] backbone features (the head inputs).

    Returns:
        ``{modality: []}`` the MSE averaged over batch and feature dimension.

    Raises:
        ValueError: the modalities differ or a pair of shapes does not match.
    """
    if set(reconstructions) != set(targets) or not reconstructions:
        raise ValueError(f"reconstruction: modalities {sorted(reconstructions)} do not match "
                         f"targets {sorted(targets)}")
    out = {}
    for m, rec in reconstructions.items():
        if rec.ndim != 2 or rec.shape != targets[m].shape:
            raise ValueError(f"reconstruction of {m}: shapes {tuple(rec.shape)} and "
                             f"{tuple(targets[m].shape)} differ")
        out[m] = F.mse_loss(rec, targets[m])
    return out


def reconstruction_loss(reconstructions: Mapping[str, Tensor],
                        targets: Mapping[str, Tensor]) -> Tensor:
    """The generative loss (Halawa et al. 2024, Sec. 3): per-modality MSE, summed.

    Args:
        reconstructions: per modality [N, E_m] decoder outputs.
        targets: per modality [N, E_m] backbone features.

    Returns:
        [] the sum over modalities of :func:`reconstruction_losses`.
    """
    return torch.stack(list(reconstruction_losses(reconstructions, targets).values())).sum()


def info_nce(a: Tensor, b: Tensor, *, temperature: float = 0.07) -> Tensor:
    """InfoNCE between two views of the same samples (Eq. 1 of the paper; NT-Xent, SimCLR).

    The 2N embeddings ``z = [a; b]`` are compared with each other; for each one the other view
    of the same sample is the positive and the remaining 2N - 2 embeddings are negatives::

        L = -1/(2N) sum_i log( exp(z_i.z_p(i)/t) / sum_{k != i} exp(z_i.z_k/t) )

    Args:
        a: [N, D] embeddings of the first view (L2-normalised by the projection head).
        b: [N, D] embeddings of the second view, paired with ``a`` by row.
        temperature: divides the similarities (0.07, the reference code's SimCLR temperature).

    Returns:
        [] the mean cross-entropy over the 2N embeddings.

    Raises:
        ValueError: shapes differ or are not [N, D]; N < 2; temperature <= 0.
    """
    check_positive("temperature", temperature)
    check_pair(a, b, "info_nce")
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"info_nce: needs at least 2 samples for negatives, got {n}")
    z = torch.cat([a, b])
    logits = z @ z.T / temperature
    # A sample is never its own negative: its self-similarity leaves the softmax.
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device),
                                float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)
