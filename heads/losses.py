"""The self-supervised losses of ConCluGen (Halawa et al., CVPR 2024 workshops, arXiv 2404.10904).

Pure tensor functions: hyper-parameters are keyword-only and checked (``ValueError``), shapes are
checked at call time with messages that print them. No function normalises its inputs: the
projection head L2-normalises, so a dot product here is a cosine similarity.

- :func:`info_nce` - Eq. 1 of the paper (InfoNCE / NT-Xent of Chen et al. 2020), the
  ``instance_cont`` baseline between two augmented views of one modality.
- :func:`mms_loss` / :func:`mms_pairs` / :func:`multimodal_mms` - the multi-modal contrastive
  loss: the Masked Margin Softmax of Ilharco et al. 2019 for each modality pair, summed over the
  pairs (video, audio), (video, text), (audio, text).
- :func:`clustering_loss` - the multi-modal clustering loss (after Chen et al. 2021, MCN): a
  margin softmax over sample-centroid dot products, the k-means assignment as target.
- :func:`reconstruction_losses` / :func:`reconstruction_loss` - the generative loss: the mean
  squared error between each decoder output and the backbone features it reconstructs, summed.

The losses of the other two systems evaluated on the same stores (:mod:`heads.evaluation.clef`,
:mod:`heads.evaluation.avce`):

- CLEF (Zhang et al., ICCV 2023): :func:`supcon_loss` and :func:`image_text_contrast` (the
  weakly supervised stage), :func:`description_name_loss` and :func:`clef_fine_loss` (the text
  prototypes' stage);
- AVCE (Kim & Song, ECCV 2022): :func:`sparsemax` (Martins & Astudillo 2016),
  :func:`avce_similarity` and :func:`avce_objective`, :func:`av_loss` (with :func:`pearson`
  and :func:`concordance`), :func:`disentangle_loss`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_margin(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_pair(a: Tensor, b: Tensor, what: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{what}: expected two [N, D] tensors of the same shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1:
        raise ValueError(f"{what}: empty batch {tuple(a.shape)}")


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
    _check_margin("margin", margin)
    _check_positive("temperature", temperature)
    _check_pair(a, b, "mms_loss")
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
    _check_margin("margin", margin)
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
    _check_positive("temperature", temperature)
    _check_pair(a, b, "info_nce")
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


# ------------------------------------------------------------------------------------- CLEF

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
    _check_positive("temperature", temperature)
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
    _check_positive("temperature", temperature)
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
        _check_positive("temperature", temperature)
    _check_pair(descriptions, names, "description_name_loss")
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
    _check_margin("weight", weight)
    return (weight * instance + description) / 2


# ------------------------------------------------------------------------------------- AVCE

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
    _check_margin("mu", mu)
    _check_pair(x, y, "avce_similarity")
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
        _check_margin(name, value)
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
    _check_margin("delta1", delta1)
    _check_margin("delta2", delta2)
    _check_pair(anchor, positive, "disentangle_loss")
    _check_pair(anchor, negative, "disentangle_loss")
    push = F.relu(delta1 - (positive - negative).pow(2).sum(1)).mean()
    unit = F.normalize(anchor, dim=1, eps=1e-6)
    hold_a = (F.normalize(positive, dim=1, eps=1e-6) - unit).norm(dim=1).mean() - delta2
    hold_n = (F.normalize(negative, dim=1, eps=1e-6) - unit).norm(dim=1).mean() - delta2
    return push + hold_a + hold_n
