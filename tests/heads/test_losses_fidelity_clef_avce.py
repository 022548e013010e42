"""Fidelity of CLEF's and AVCE's losses: each against an independent implementation written
from the paper's equation (as docs/PAPER-NOTES.md records it) with plain float64 loops over
scalars, not the production code's helpers; values and gradients (autograd through the loops) agree to 1e-10.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from heads.losses import avce_similarity, image_text_supcon, instance_loss

TOL = 1e-10


def _unit_rows(n: int, d: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (x / x.norm(dim=1, keepdim=True)).requires_grad_(True)


def _eq1(v: Tensor, t: Tensor, y: list[int], tau: float) -> Tensor:
    """Eq. 1: -1/N sum_i 1/|P(i)| sum_{p: y_p = y_i} log(exp(v_i.t_p/tau) /
    sum_a exp(v_i.t_a/tau)), one scalar at a time."""
    n, d = v.shape
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        sims = [sum(v[i, k] * t[a, k] for k in range(d)) / tau for a in range(n)]
        denominator = sum(torch.exp(s) for s in sims)
        positives = [p for p in range(n) if y[p] == y[i]]
        inner = sum(torch.log(torch.exp(sims[p]) / denominator) for p in positives)
        total = total - inner / len(positives)
    return total / n


def _eq4(s: Tensor, y: list[int], w: list[float]) -> Tensor:
    """Eq. 4: -1/B sum_i w_{y_i} log(exp(s_{i,y_i}) / sum_c exp(s_ic))."""
    b, c = s.shape
    total = torch.zeros((), dtype=torch.float64)
    for i in range(b):
        denominator = sum(torch.exp(s[i, k]) for k in range(c))
        total = total - w[y[i]] * torch.log(torch.exp(s[i, y[i]]) / denominator)
    return total / b


def _eq5(s: Tensor, y: list[list[float]], w: list[float]) -> Tensor:
    """Eq. 5: -1/B sum_i sum_c [w_c y_ic log sigma(s_ic) + (1 - y_ic) log(1 - sigma(s_ic))]."""
    b, c = s.shape
    total = torch.zeros((), dtype=torch.float64)
    for i in range(b):
        for k in range(c):
            sigma = 1 / (1 + torch.exp(-s[i, k]))
            total = total - (w[k] * y[i][k] * torch.log(sigma)
                             + (1 - y[i][k]) * torch.log(1 - sigma))
    return total / b


def _grads(loss: Tensor, *inputs: Tensor) -> list[Tensor]:
    return list(torch.autograd.grad(loss, inputs))


def test_image_text_supcon_is_eq1_in_value_and_gradient() -> None:
    v, t = _unit_rows(9, 5, 0), _unit_rows(9, 5, 1)
    labels = [0, 1, 0, 2, 1, 0, 2, 2, 1]
    ours = image_text_supcon(v, t, torch.tensor(labels), temperature=0.25)
    paper = _eq1(v, t, labels, 0.25)
    assert ours.item() == pytest.approx(paper.item(), abs=TOL)
    for a, b in zip(_grads(ours, v, t), _grads(paper, v, t), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=TOL)


def test_image_text_supcon_differs_from_a_cross_entropy_over_class_texts() -> None:
    """The form it replaces: each sample against the C class texts once. With texts repeated
    per sample the denominators count a class as often as the batch holds it."""
    v = _unit_rows(6, 4, 2).detach()
    classes = _unit_rows(2, 4, 3).detach()
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    per_class = torch.nn.functional.cross_entropy(v @ classes.T / 0.25, labels).item()
    per_sample = image_text_supcon(v, classes[labels], labels).item()
    assert abs(per_sample - per_class) > 0.1
    # with one sample per class the two coincide: the positives are the sample's own text
    one_each = torch.tensor([0, 1])
    assert image_text_supcon(v[:2], classes, one_each).item() == pytest.approx(
        torch.nn.functional.cross_entropy(v[:2] @ classes.T / 0.25, one_each).item(), abs=TOL)


def test_instance_loss_is_eq4_with_1_over_b_not_the_weight_normalised_mean() -> None:
    g = torch.Generator().manual_seed(4)
    s = torch.randn(8, 7, generator=g, dtype=torch.float64, requires_grad=True)
    labels = [0, 3, 3, 6, 1, 0, 4, 2]
    weights = [0.3, 1.7, 4.1, 2.2, 0.5, 3.3, 0.9]
    w = torch.tensor(weights, dtype=torch.float64)
    ours = instance_loss(s, torch.tensor(labels), weight=w)
    paper = _eq4(s, labels, weights)
    assert ours.item() == pytest.approx(paper.item(), abs=TOL)
    assert torch.allclose(_grads(ours, s)[0], _grads(paper, s)[0], rtol=0, atol=TOL)
    torch_mean = torch.nn.functional.cross_entropy(s, torch.tensor(labels), weight=w)
    used = sum(weights[y] for y in labels)
    assert torch_mean.item() == pytest.approx(paper.item() * len(labels) / used, abs=TOL)


def test_instance_loss_is_eq5_summed_over_the_labels() -> None:
    g = torch.Generator().manual_seed(5)
    s = torch.randn(7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(7, 6, generator=g) < 0.4).double()
    weights = [2.0, 0.5, 3.5, 1.0, 6.0, 1.5]
    ours = instance_loss(s, y, weight=torch.tensor(weights, dtype=torch.float64),
                         multilabel=True)
    paper = _eq5(s, y.tolist(), weights)
    assert ours.item() == pytest.approx(paper.item(), abs=TOL)
    assert torch.allclose(_grads(ours, s)[0], _grads(paper, s)[0], rtol=0, atol=TOL)
    mean = torch.nn.functional.binary_cross_entropy_with_logits(
        s, y, pos_weight=torch.tensor(weights, dtype=torch.float64))
    assert mean.item() == pytest.approx(paper.item() / 6, abs=TOL)  # BCE's mean: x 1/6


def _f(x: list[float], y: list[float], mu: float) -> float:
    """AVCE's f(x, y) = (1 - theta/pi) + mu (1 - | ||x|| - ||y|| |), theta from the cosine."""
    nx, ny = math.sqrt(sum(a * a for a in x)), math.sqrt(sum(b * b for b in y))
    cosine = sum(a * b for a, b in zip(x, y, strict=True)) / (nx * ny)
    return (1 - math.acos(max(-1.0, min(1.0, cosine))) / math.pi) + mu * (1 - abs(nx - ny))


def test_avce_similarity_is_the_papers_f_away_from_the_clamp() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(12, 2, generator=g, dtype=torch.float64)
    y = torch.randn(12, 2, generator=g, dtype=torch.float64)
    expected = [_f(a, b, 0.75) for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    assert avce_similarity(x, y).tolist() == pytest.approx(expected, abs=TOL)


def test_with_one_target_the_angle_term_is_constant_with_zero_gradient() -> None:
    """The degeneracy a valence-only AVCE runs with: two scalars are parallel or opposite, so
    the angle term is 1 or 0 (0.9995 or 0.0005 at the clamp) and carries no gradient."""
    x = torch.tensor([[0.3], [-0.4], [0.7]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0.9], [0.2], [0.7]], dtype=torch.float64)
    angle = avce_similarity(x, y, mu=0.0)
    assert angle.tolist() == pytest.approx([1.0, 0.0, 1.0], abs=5e-4)
    angle.sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0
