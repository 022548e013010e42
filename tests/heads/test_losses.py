"""Losses against values worked out by hand, plain-Python references, symmetry and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heads.losses import (clustering_loss, info_nce, mms_loss, mms_pairs, multimodal_mms,
                          reconstruction_loss, reconstruction_losses)


def _ce(logits_row: list[float], target: int) -> float:
    """-log softmax(row)[target] in plain Python."""
    return -(logits_row[target] - math.log(sum(math.exp(v) for v in logits_row)))


def _mms_reference(a: np.ndarray, b: np.ndarray, margin: float, temperature: float) -> float:
    s = (a @ b.T) / temperature - margin * np.eye(len(a))
    rows = np.mean([_ce(list(s[i]), i) for i in range(len(a))])
    cols = np.mean([_ce(list(s[:, i]), i) for i in range(len(a))])
    return float(rows + cols)


def test_mms_loss_matches_hand_computed_value() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # S = a @ b.T = [[1, .6], [0, .8]]; margin .1 off the diagonal -> [[.9, .6], [0, .7]]
    rows = (-math.log(math.exp(0.9) / (math.exp(0.9) + math.exp(0.6)))
            - math.log(math.exp(0.7) / (math.exp(0.0) + math.exp(0.7)))) / 2
    cols = (-math.log(math.exp(0.9) / (math.exp(0.9) + math.exp(0.0)))
            - math.log(math.exp(0.7) / (math.exp(0.6) + math.exp(0.7)))) / 2
    got = mms_loss(a, b, margin=0.1)
    assert got.item() == pytest.approx(rows + cols, abs=1e-6)


def test_mms_loss_temperature_scales_before_the_margin() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # S / 0.5 = [[2, 1.2], [0, 1.6]]; minus margin 0.1 on the diagonal
    s = [[1.9, 1.2], [0.0, 1.5]]
    expected = (_ce(s[0], 0) + _ce(s[1], 1)) / 2 + (_ce([1.9, 0.0], 0) + _ce([1.2, 1.5], 1)) / 2
    assert mms_loss(a, b, margin=0.1, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_mms_loss_matches_plain_reference_on_random_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    expected = _mms_reference(a.numpy(), b.numpy(), 0.001, 1.0)
    assert mms_loss(a, b).item() == pytest.approx(expected, rel=1e-10)


def test_mms_loss_is_symmetric_and_does_not_normalise() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert mms_loss(a, b).item() == pytest.approx(mms_loss(b, a).item(), rel=1e-6)
    assert mms_loss(2 * a, b).item() != pytest.approx(mms_loss(a, b).item(), rel=1e-3)


def test_mms_loss_gradient_is_finite() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 3, generator=g, requires_grad=True)
    b = torch.randn(5, 3, generator=g, requires_grad=True)
    mms_loss(a, b).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert a.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{"margin": -0.1}, {"temperature": 0.0},
                                    {"temperature": -1.0}, {"margin": float("nan")}])
def test_mms_loss_rejects_bad_hyper_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="margin|temperature"):
        mms_loss(torch.zeros(2, 3), torch.zeros(2, 3), **kwargs)


@pytest.mark.parametrize("shapes", [((2, 3), (3, 3)), ((2, 3), (2, 4)), ((3,), (3,))])
def test_mms_loss_rejects_mismatched_shapes_and_prints_them(shapes: tuple) -> None:
    with pytest.raises(ValueError, match=r"\(.*\) and \(.*\)"):
        mms_loss(torch.zeros(shapes[0]), torch.zeros(shapes[1]))


def test_mms_pairs_cover_the_paper_pairs_in_order() -> None:
    g = torch.Generator().manual_seed(3)
    emb = {m: torch.randn(4, 3, generator=g) for m in ("video", "audio", "text")}
    pairs = mms_pairs(emb)
    assert list(pairs) == ["video-audio", "video-text", "audio-text"]
    assert pairs["video-text"].item() == pytest.approx(mms_loss(emb["video"], emb["text"]).item())
    total = multimodal_mms(emb)
    assert total.item() == pytest.approx(sum(v.item() for v in pairs.values()), rel=1e-6)


def test_multimodal_mms_works_on_any_subset_of_two_or_more() -> None:
    g = torch.Generator().manual_seed(4)
    emb = {m: torch.randn(4, 3, generator=g) for m in ("video", "text")}
    assert list(mms_pairs(emb)) == ["video-text"]
    assert multimodal_mms(emb).item() == pytest.approx(mms_loss(emb["video"],
                                                                emb["text"]).item())
    with pytest.raises(ValueError, match="at least two modalities"):
        multimodal_mms({"video": emb["video"]})


def test_clustering_loss_matches_hand_computed_value() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    m = 0.001
    # S = emb @ centroids.T = [[1, 0], [0, 2], [.5, .5]]; margin off each assigned entry
    expected = (_ce([1 - m, 0.0], 0) + _ce([0.0, 2 - m], 1) + _ce([0.5, 0.5 - m], 1)) / 3
    got = clustering_loss(emb, centroids, labels, margin=m)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_clustering_loss_treats_centroids_as_constants() -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    centroids = torch.randn(2, 3, requires_grad=True)
    clustering_loss(emb, centroids, torch.tensor([0, 1, 1, 0])).backward()
    assert centroids.grad is None
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_clustering_loss_errors() -> None:
    emb, cen = torch.zeros(3, 2), torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(4, 3\)"):
        clustering_loss(emb, torch.zeros(4, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="outside"):
        clustering_loss(emb, cen, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="int64"):
        clustering_loss(emb, cen, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="margin"):
        clustering_loss(emb, cen, torch.tensor([0, 1, 2]), margin=-1.0)


def test_reconstruction_loss_is_the_sum_of_per_modality_mse() -> None:
    rec = {"video": torch.tensor([[1.0, 2.0]]), "audio": torch.tensor([[0.0, 0.0, 3.0]])}
    tgt = {"video": torch.tensor([[0.0, 0.0]]), "audio": torch.tensor([[0.0, 1.0, 3.0]])}
    parts = reconstruction_losses(rec, tgt)
    assert parts["video"].item() == pytest.approx((1 + 4) / 2)
    assert parts["audio"].item() == pytest.approx(1 / 3)
    assert reconstruction_loss(rec, tgt).item() == pytest.approx(2.5 + 1 / 3)


def test_reconstruction_loss_errors() -> None:
    with pytest.raises(ValueError, match="do not match"):
        reconstruction_loss({"video": torch.zeros(1, 2)}, {"audio": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match=r"\(1, 2\) and \(1, 3\)"):
        reconstruction_loss({"video": torch.zeros(1, 2)}, {"video": torch.zeros(1, 3)})


def test_info_nce_matches_hand_computed_value() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    t = 0.5
    z = np.concatenate([a.numpy(), b.numpy()])
    s = z @ z.T / t
    positives = [2, 3, 0, 1]
    losses = []
    for i in range(4):
        others = [s[i, k] for k in range(4) if k != i]
        losses.append(-(s[i, positives[i]] - math.log(sum(math.exp(v) for v in others))))
    got = info_nce(a, b, temperature=t)
    assert got.item() == pytest.approx(float(np.mean(losses)), abs=1e-5)


def test_info_nce_is_symmetric_with_finite_gradient() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(6, 4, generator=g, requires_grad=True)
    b = torch.randn(6, 4, generator=g)
    assert info_nce(a, b).item() == pytest.approx(info_nce(b, a).item(), rel=1e-6)
    info_nce(a, b).backward()
    assert torch.isfinite(a.grad).all()


def test_info_nce_errors() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        info_nce(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        info_nce(torch.zeros(2, 3), torch.zeros(2, 4))


def test_info_nce_defaults_to_the_reference_temperature() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    assert info_nce(a, b).item() == pytest.approx(info_nce(a, b, temperature=0.07).item())


def test_clustering_loss_sees_the_centroids_norms() -> None:
    # Mean centroids (Eq. 9) keep their members' scale: a centroid twice as long doubles the
    # logits of its cluster, which unit-norm centroids would hide.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    unit = clustering_loss(x, torch.eye(2), labels, margin=0.0)
    scaled = clustering_loss(x, 3 * torch.eye(2), labels, margin=0.0)
    assert scaled.item() < unit.item()
    expected = -torch.log_softmax(torch.tensor([3.0, 0.0]), dim=0)[0]
    assert scaled.item() == pytest.approx(expected.item(), rel=1e-6)
