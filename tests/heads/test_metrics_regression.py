"""The continuous-target metrics (RMSE, PCC, CCC, SAGR) against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heads.metrics import ccc, pcc, regression_metrics, rmse, sagr

PRED = np.array([1.0, 2.0, 3.0])
TARGET = np.array([2.0, 4.0, 6.0])  # means 2 and 4, cov 4/3, variances 2/3 and 8/3


def test_hand_computed_values() -> None:
    assert rmse(PRED, TARGET) == pytest.approx(math.sqrt((1 + 4 + 9) / 3))
    assert pcc(PRED, TARGET) == pytest.approx(1.0)
    assert ccc(PRED, TARGET) == pytest.approx(2 * (4 / 3) / (2 / 3 + 8 / 3 + (2 - 4) ** 2))
    assert sagr(PRED, TARGET) == 1.0
    assert ccc(TARGET, TARGET) == pytest.approx(1.0)
    assert rmse(TARGET, TARGET) == 0.0


def test_sign_agreement_counts_matching_signs_only() -> None:
    assert sagr(np.array([-1.0, 2.0, 0.5]), np.array([1.0, 2.0, -3.0])) == pytest.approx(1 / 3)
    assert sagr(np.array([0.0, 1.0]), np.array([0.0, 0.0])) == 0.5


def test_constant_predictions() -> None:
    constant = np.array([1.0, 1.0, 1.0])
    assert ccc(constant, np.array([1.0, 2.0, 3.0])) == 0.0
    assert math.isnan(pcc(constant, np.array([1.0, 2.0, 3.0])))
    assert math.isnan(ccc(constant, constant))


def test_agree_with_numpy_on_random_data_and_ccc_is_symmetric() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50) + 0.5
    assert pcc(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    expected = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert ccc(x, y) == pytest.approx(expected)
    assert ccc(x, y) == pytest.approx(ccc(y, x))
    assert abs(ccc(x, y)) <= abs(pcc(x, y))


def test_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="1-d"):
        rmse(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same length"):
        ccc(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="no samples"):
        sagr(np.zeros(0), np.zeros(0))


def test_regression_metrics_per_target_and_their_mean() -> None:
    pred = np.stack([PRED, -TARGET], 1)
    target = np.stack([TARGET, TARGET], 1)
    m = regression_metrics(pred, target, ["valence", "arousal"])
    assert m["ccc_valence"] == pytest.approx(ccc(PRED, TARGET))
    assert m["sagr_arousal"] == 0.0
    assert m["pcc"] == pytest.approx((1.0 + -1.0) / 2)
    assert m["per_target"]["valence"]["rmse"] == pytest.approx(rmse(PRED, TARGET))
    assert m["support"] == 3
    # the signs as a binary decision per target: [[TN, FP], [FN, TP]]
    assert m["confusion"] == [[[0, 0], [0, 3]], [[0, 0], [3, 0]]]
    with pytest.raises(ValueError, match="T = 1"):
        regression_metrics(pred, target, ["valence"])
