"""The losses of the CLEF and AVCE heads against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from heads.losses import (av_loss, avce_objective, avce_similarity, clef_fine_loss, concordance,
                          description_name_loss, disentangle_loss, image_text_supcon, pearson,
                          sparsemax, supcon_loss)


def _ce(row: list[float], target: int) -> float:
    return -(row[target] - math.log(sum(math.exp(v) for v in row)))


# ------------------------------------------------------------------------------- sparsemax

@pytest.mark.parametrize(("z", "expected"), [
    # sorted 1, .5, -1: support 2 (1 + 2 * .5 > 1.5, 1 + 3 * -1 < .5), tau (1.5 - 1) / 2
    ([1.0, 0.5, -1.0], [0.75, 0.25, 0.0]),
    # one score far above the rest: all the mass on it (tau = 3 - 1)
    ([3.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    # equal scores: uniform
    ([0.2, 0.2, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25]),
    # support 3: tau = (0.9 + 0.8 + 0.7 - 1) / 3
    ([0.9, 0.8, 0.7, -2.0], [0.9 - 1.4 / 3, 0.8 - 1.4 / 3, 0.7 - 1.4 / 3, 0.0]),
])
def test_sparsemax_of_known_vectors(z: list[float], expected: list[float]) -> None:
    got = sparsemax(torch.tensor(z, dtype=torch.float64))
    assert got.tolist() == pytest.approx(expected, abs=1e-12)


def test_sparsemax_is_on_the_simplex_along_dim_and_shift_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 6, 5, generator=g, dtype=torch.float64) * 3
    for dim in (0, 1, -1):
        p = sparsemax(z, dim=dim)
        assert (p >= 0).all()
        assert torch.allclose(p.sum(dim), torch.ones_like(p.sum(dim)))
        assert torch.allclose(sparsemax(z + 7.5, dim=dim), p)
    assert (sparsemax(z) == 0).any()  # sparse, unlike softmax


def test_sparsemax_gradient_is_exact() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, dim=1), (z,))
    # On the support {0, 1} of [1, .5, -1] the Jacobian is I - 1 1^T / 2, zero elsewhere.
    x = torch.tensor([1.0, 0.5, -1.0], dtype=torch.float64, requires_grad=True)
    sparsemax(x)[0].backward()
    assert x.grad.tolist() == pytest.approx([0.5, -0.5, 0.0])


def test_sparsemax_refuses_an_empty_dimension() -> None:
    with pytest.raises(ValueError, match="empty"):
        sparsemax(torch.zeros(3, 0))


# ------------------------------------------------------------------------------------ CLEF

def test_supcon_loss_matches_hand_computed_value() -> None:
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # anchors 0 and 1: one positive (similarity 1) against one negative (0); anchor 2 has no
    # positive and is left out
    assert supcon_loss(z, labels, temperature=1.0).item() == pytest.approx(
        math.log(math.e + 1) - 1, abs=1e-6)
    assert supcon_loss(z, labels, temperature=0.5).item() == pytest.approx(
        math.log(math.exp(2) + 1) - 2, abs=1e-6)


def test_supcon_loss_averages_over_positives_and_defaults_to_clefs_temperature() -> None:
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8],
                                                    [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 0, 1])
    s = (z @ z.T / 0.25).tolist()
    expected = 0.0
    for i in range(3):
        others = [s[i][k] for k in range(4) if k != i]
        lse = math.log(sum(math.exp(v) for v in others))
        expected += sum(s[i][p] - lse for p in range(3) if p != i) / 2
    assert supcon_loss(z, labels).item() == pytest.approx(-expected / 3, rel=1e-5)


def test_supcon_loss_without_positives_is_zero_with_a_gradient() -> None:
    z = torch.eye(3, requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and z.grad is not None


def test_image_text_supcon_matches_hand_computed_value() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # one label: both texts are positives of both images; rows of S / 0.5: [2, 0] and [0, 2]
    row = [2.0, 0.0]
    expected = (_ce(row, 0) + _ce(row, 1)) / 2  # the same for both anchors
    got = image_text_supcon(z, texts, torch.tensor([0, 0]), temperature=0.5)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # two labels: each image's own text is its only positive
    got = image_text_supcon(z, texts, torch.tensor([0, 1]), temperature=0.5)
    assert got.item() == pytest.approx(_ce(row, 0), abs=1e-6)


def test_description_name_loss_matches_hand_computed_value() -> None:
    descriptions = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    names = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # S = D N^T = [[1, 0], [.6, .8]]; the description of class c should pick the name c
    expected = (_ce([1.0, 0.0], 0) + _ce([0.6, 0.8], 1)) / 2
    got = description_name_loss(descriptions, names, temperature=1.0)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    halved = (_ce([2.0, 0.0], 0) + _ce([1.2, 1.6], 1)) / 2
    assert description_name_loss(descriptions, names, temperature=0.5).item() == \
        pytest.approx(halved, abs=1e-6)


def test_description_name_loss_takes_a_learnable_temperature() -> None:
    t = torch.tensor(0.5, requires_grad=True)
    description_name_loss(torch.eye(2), torch.eye(2), temperature=t).backward()
    assert t.grad is not None and t.grad.item() != 0.0


def test_clef_fine_loss_weights_the_instance_term_by_lambda() -> None:
    assert clef_fine_loss(torch.tensor(2.0), torch.tensor(1.0)).item() == 2.5  # (2*2 + 1) / 2
    assert clef_fine_loss(torch.tensor(2.0), torch.tensor(1.0), weight=1.0).item() == 1.5
    with pytest.raises(ValueError, match="weight"):
        clef_fine_loss(torch.tensor(1.0), torch.tensor(1.0), weight=-1.0)


def test_clef_losses_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(torch.eye(2), torch.tensor([0, 0]), temperature=0.0)
    with pytest.raises(ValueError, match="int64 labels"):
        supcon_loss(torch.eye(2), torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(2, 2\) and \(3, 2\)"):
        image_text_supcon(torch.eye(2), torch.ones(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(2, 2\) and \(3, 2\)"):
        description_name_loss(torch.eye(2), torch.ones(3, 2), temperature=1.0)


# ------------------------------------------------------------------------------------ AVCE

def test_avce_similarity_matches_hand_computed_values() -> None:
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    # row 0: theta = pi/2 -> 0.5; norms 1 and 2 -> 1 - |1 - 2| = 0
    # row 1: theta = pi/4 -> 0.75; norms 3 and sqrt 2 -> 0.75 * (1 - (3 - sqrt 2))
    expected = [0.5, 0.75 + 0.75 * (1 - (3 - math.sqrt(2)))]
    assert avce_similarity(x, y).tolist() == pytest.approx(expected, abs=1e-6)
    assert avce_similarity(x, y, mu=0.0).tolist() == pytest.approx([0.5, 0.75], abs=1e-6)


def test_avce_similarity_has_a_finite_gradient_at_parallel_points() -> None:
    x = torch.tensor([[1.0, 0.0]], requires_grad=True)
    avce_similarity(x, torch.tensor([[2.0, 0.0]])).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_avce_objective_matches_hand_computed_value() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    positive = torch.tensor([[0.0, 2.0], [0.0, 2.0]])   # f = 0.5 each
    negative = torch.tensor([[-1.0, 0.0], [-1.0, 0.0]])  # theta = pi -> 0, same norm -> mu
    f_pos, f_neg = 0.5, 0.75
    expected = f_pos - 0.5 * f_neg - 0.005 / 2 * f_pos ** 2 - 0.5 / 2 * f_neg ** 2
    assert avce_objective(x, positive, negative).item() == pytest.approx(expected, abs=1e-3)
    plain = f_pos - 1.0 * f_neg
    assert avce_objective(x, positive, negative, alpha=1.0, beta=0.0, gamma=0.0).item() == \
        pytest.approx(plain, abs=1e-3)


def test_pearson_concordance_and_av_loss_match_hand_computed_values() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    target = torch.tensor([2.0, 4.0, 6.0], dtype=torch.float64)
    # means 2 and 4, cov 4/3, variances 2/3 and 8/3 (population)
    assert pearson(pred, target).item() == pytest.approx(1.0, abs=1e-6)
    assert concordance(pred, target).item() == pytest.approx(2 * (4 / 3) / (2 / 3 + 8 / 3 + 4))
    rmse = math.sqrt(14 / 3)
    one = rmse + ((1 - 1.0) + (1 - 8 / 22)) / 2
    assert av_loss(pred, target).item() == pytest.approx(one, abs=1e-6)
    # two targets: the mean of the per-target losses (the second one perfect: loss 0)
    both = av_loss(torch.stack([pred, target], 1), torch.stack([target, target], 1))
    assert both.item() == pytest.approx(one / 2, abs=1e-5)


def test_av_loss_is_differentiable_and_refuses_a_single_sample() -> None:
    pred = torch.tensor([[0.1, 0.2], [0.3, -0.1], [0.5, 0.4]], requires_grad=True)
    av_loss(pred, torch.tensor([[0.0, 0.2], [0.2, 0.0], [0.6, 0.5]])).backward()
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="N >= 2"):
        av_loss(torch.zeros(1, 2), torch.zeros(1, 2))


def test_disentangle_loss_matches_hand_computed_values() -> None:
    anchor = torch.tensor([[1.0, 0.0]])
    # views far apart: no hinge; v_a along the anchor (0), v_n at right angles (sqrt 2)
    got = disentangle_loss(anchor, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.5]]))
    assert got.item() == pytest.approx(0.0 + (0 - 0.8) + (math.sqrt(2) - 0.8), abs=1e-5)
    # views close: hinge 1 - 0.25; both along the anchor
    got = disentangle_loss(anchor, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]))
    assert got.item() == pytest.approx(0.75 - 1.6, abs=1e-5)
    got = disentangle_loss(anchor, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]),
                           delta1=2.0, delta2=0.0)
    assert got.item() == pytest.approx(1.75, abs=1e-5)
