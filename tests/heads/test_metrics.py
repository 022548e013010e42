"""Metrics against numbers computed by hand from small confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heads.metrics import (classification_metrics, multilabel_metrics, summarize, threshold,
                           weighted_accuracy)

NAMES = ["neutral", "joy", "anger"]
# truth:      0  0  0  1  1  2
# prediction: 0  0  1  1  2  2
# confusion (rows truth): [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])


def test_single_label_metrics_match_the_hand_computed_confusion_matrix() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, NAMES)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # neutral: P 2/2, R 2/3, F1 2*1*(2/3)/(5/3) = 0.8; joy: 1/2, 1/2, 0.5; anger: 1/2, 1, 2/3
    per = m["per_class"]
    assert per["neutral"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8,
                                            "support": 3})
    assert per["joy"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                        "support": 2})
    assert per["anger"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                                          "support": 1})
    assert m["accuracy"] == pytest.approx(4 / 6)
    # weighted by support 3, 2, 1 (of 6)
    assert m["precision_weighted"] == pytest.approx((3 * 1.0 + 2 * 0.5 + 1 * 0.5) / 6)  # 0.75
    assert m["recall_weighted"] == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 1 * 1.0) / 6)
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)  # 0.67778
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # 0.65556
    assert m["support"] == 6


def test_single_label_names_follow_the_index_and_absent_classes_have_zero_support() -> None:
    m = classification_metrics(np.array([1, 1]), np.array([1, 0]), ["a", "b", "c"])
    assert list(m["per_class"]) == ["a", "b", "c"]
    assert m["per_class"]["c"]["support"] == 0
    assert m["confusion"] == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert m["f1_weighted"] == pytest.approx(2 / 3)  # only b counts: P 1, R 1/2


def test_single_label_metrics_accept_tensors_and_refuse_bad_input() -> None:
    m = classification_metrics(torch.tensor(Y_TRUE), torch.tensor(Y_PRED), NAMES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="y_true\\[1\\] = 3"):
        classification_metrics(np.array([0, 3]), np.array([0, 1]), NAMES)
    with pytest.raises(ValueError, match="same"):
        classification_metrics(Y_TRUE, Y_PRED[:3], NAMES)


# label 0: truth 1 1 0 0 0, prediction 1 0 1 0 0 -> TP 1, FN 1, FP 1, TN 2 (P 2, N 3)
# label 1: truth 0 1 0 1 0, prediction 0 1 0 0 0 -> TP 1, FN 1, FP 0, TN 3 (P 2, N 3)
ML_TRUE = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [0, 0]])
ML_PRED = np.array([[1, 0], [0, 1], [1, 0], [0, 0], [0, 0]])


def test_multilabel_metrics_match_the_hand_computed_per_label_counts() -> None:
    m = multilabel_metrics(ML_TRUE, ML_PRED, ["happy", "sad"])
    assert m["confusion"] == [[[2, 1], [1, 1]], [[3, 0], [1, 1]]]
    happy, sad = m["per_label"]["happy"], m["per_label"]["sad"]
    assert (happy["tp"], happy["fp"], happy["fn"], happy["tn"]) == (1, 1, 1, 2)
    assert happy["precision"] == pytest.approx(0.5) and happy["recall"] == pytest.approx(0.5)
    assert happy["f1"] == pytest.approx(0.5) and happy["accuracy"] == pytest.approx(3 / 5)
    # WA = (TP * N / P + TN) / 2N = (1 * 3/2 + 2) / 6
    assert happy["weighted_accuracy"] == pytest.approx(3.5 / 6)
    assert sad["precision"] == pytest.approx(1.0) and sad["f1"] == pytest.approx(2 / 3)
    assert sad["weighted_accuracy"] == pytest.approx((1 * 3 / 2 + 3) / 6)  # 0.75
    # both labels have support 2: weighted = plain means
    assert m["f1_weighted"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["precision_weighted"] == pytest.approx(0.75)
    assert m["recall_weighted"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx((3 / 5 + 4 / 5) / 2)
    assert m["subset_accuracy"] == pytest.approx(2 / 5)  # rows 0 and 4 fully right
    assert m["weighted_accuracy"] == pytest.approx((3.5 / 6 + 0.75) / 2)


def test_multilabel_weights_follow_label_support() -> None:
    truth = np.array([[1, 1], [1, 0], [1, 0], [0, 0]])
    pred = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    m = multilabel_metrics(truth, pred, ["a", "b"])
    # a: P 1, R 2/3, F1 0.8, support 3; b: all 0, support 1
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 1 * 0.0) / 4)
    assert m["accuracy"] == pytest.approx((3 * 3 / 4 + 1 * 3 / 4) / 4)


def test_weighted_accuracy_is_the_mean_of_both_recalls_and_undefined_without_a_class() -> None:
    assert weighted_accuracy(tp=3, tn=10, positives=4, negatives=20) == pytest.approx(
        (3 / 4 + 10 / 20) / 2)
    assert weighted_accuracy(tp=5, tn=5, positives=5, negatives=5) == 1.0
    assert math.isnan(weighted_accuracy(tp=0, tn=4, positives=0, negatives=4))


def test_multilabel_refuses_probabilities_and_counts_the_names() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        multilabel_metrics(ML_TRUE, ML_PRED * 0.7, ["happy", "sad"])
    with pytest.raises(ValueError, match="3 names"):
        multilabel_metrics(ML_TRUE, ML_PRED, ["a", "b", "c"])
    assert threshold(np.array([[0.49, 0.5, 0.9]])).tolist() == [[0, 1, 1]]


def test_summary_over_seeds_gives_mean_and_sample_std() -> None:
    s = summarize([{"accuracy": 0.5, "f1_weighted": 0.2}, {"accuracy": 0.7, "f1_weighted": 0.4},
                   {"accuracy": 0.6, "f1_weighted": 0.3}])
    assert s["accuracy"]["mean"] == pytest.approx(0.6)
    assert s["accuracy"]["std"] == pytest.approx(0.1)  # ddof 1
    assert s["f1_weighted"]["n"] == 3
    assert summarize([{"accuracy": 0.5}])["accuracy"]["std"] is None
