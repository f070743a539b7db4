import math

import numpy as np
import pytest
import torch

from meshgdl.train.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    confusion_matrix_torch,
    feature_drift,
    json_safe,
    mean_iou,
    per_class_iou,
    segmentation_metrics,
)


def test_confusion_matrix_counts_and_orientation():
    t = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 2, 2])
    cm = confusion_matrix(p, t, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]  # rows true, cols pred
    assert cm.dtype == np.int64
    assert accuracy(cm) == pytest.approx(4 / 6)


def test_ignore_index_is_left_out():
    t = np.array([0, -1, 1, -1])
    p = np.array([0, 1, 0, 5])  # predictions at ignored targets may be anything
    cm = confusion_matrix(p, t, 2)
    assert cm.sum() == 2 and cm.tolist() == [[1, 0], [1, 0]]


def test_out_of_range_values_raise():
    with pytest.raises(ValueError, match="target value 3"):
        confusion_matrix([0], [3], 3)
    with pytest.raises(ValueError, match="pred value -2"):
        confusion_matrix([-2], [0], 3)
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix([0, 1], [0], 3)


def test_iou_by_hand():
    # class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 1 (from 0), FN 1 -> 2/4; class 2: TP 1, FP 1, FN 0 -> 1/2
    cm = np.array([[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    assert per_class_iou(cm) == pytest.approx([0.5, 0.5, 0.5])
    assert mean_iou(cm) == pytest.approx(0.5)


def test_absent_class_iou_is_nan_and_excluded_from_mean():
    cm = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])  # class 2 never occurs nor is predicted
    iou = per_class_iou(cm)
    assert math.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx((3 / 4 + 4 / 5) / 2)
    m = segmentation_metrics(cm)
    assert m["per_class_iou"][2] is None and m["support"] == [4, 4, 0] and m["count"] == 8


def test_perfect_and_empty():
    cm = np.diag([3, 5])
    assert accuracy(cm) == 1 and mean_iou(cm) == 1
    assert math.isnan(accuracy(np.zeros((2, 2))))
    assert math.isnan(mean_iou(np.zeros((2, 2))))


def test_summing_batches_equals_whole():
    rng = np.random.default_rng(0)
    t = rng.integers(-1, 5, 1000)
    p = rng.integers(0, 5, 1000)
    whole = confusion_matrix(p, t, 5)
    parts = sum(confusion_matrix(p[i:i + 137], t[i:i + 137], 5) for i in range(0, 1000, 137))
    assert np.array_equal(whole, parts)
    tt = confusion_matrix_torch(torch.as_tensor(p), torch.as_tensor(t), 5)
    assert np.array_equal(tt.numpy(), whole)


def test_classification_metrics():
    cm = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 4)
    m = classification_metrics(cm, ["a", "b", "c", "d"])
    assert m["accuracy"] == 0.75
    assert m["per_class_accuracy"] == [1.0, 1.0, 0.5, None]
    assert m["mean_class_accuracy"] == pytest.approx(2.5 / 3)
    assert m["confusion_matrix"][2] == [0, 1, 1, 0]
    assert m["class_names"] == ["a", "b", "c", "d"]


def test_json_safe_replaces_nan():
    assert json_safe({"a": [1.0, float("nan")], "b": np.float32(2), "c": float("inf")}) == {
        "a": [1.0, None], "b": 2.0, "c": None}


def test_feature_drift_analytic_case():
    # one channel, two vertices, two frames: qbar = (0.5, 1.5), temporal variance 0.25;
    # spread over the surface 1 (frame 0) and 0 (frame 1), mean 0.5; one step of (1, -1)
    d = feature_drift(np.array([[[0.0], [2.0]], [[1.0], [1.0]]]))
    assert d["drift"] == pytest.approx(math.sqrt(0.5)) and d["drift_median"] == d["drift"]
    assert d["step"] == pytest.approx(1.0)
    assert d["relative_to_norm"] == pytest.approx(math.sqrt(4 * 0.25 / 6))
    assert (d["frames"], d["vertices"], d["channels"]) == (2, 2, 1)


def test_feature_drift_zero_for_features_on_the_surface_one_for_random_ones():
    rng = np.random.default_rng(0)
    riding = np.broadcast_to(rng.normal(size=(1, 500, 4)), (10, 500, 4))
    d = feature_drift(riding)
    assert d["drift"] == pytest.approx(0.0, abs=1e-12) and d["step"] == pytest.approx(0.0, abs=1e-12)
    T = 40
    random = rng.normal(size=(T, 5000, 3))
    d = feature_drift(random)
    assert d["drift"] == pytest.approx(math.sqrt(1 - 1 / T), abs=0.02)
    assert d["step"] == pytest.approx(1.0, abs=0.02)


def test_feature_drift_ignores_channel_offset_scale_and_constant_channels():
    rng = np.random.default_rng(1)
    Q = rng.normal(size=(6, 50, 2)) + np.linspace(0, 1, 50)[None, :, None]
    ref = feature_drift(Q)
    moved = Q * np.array([1e3, 1e-3]) + np.array([5.0, -7.0])
    d = feature_drift(np.concatenate([moved, np.full((6, 50, 1), 3.0)], axis=2))
    assert d["drift"] == pytest.approx(ref["drift"]) and d["step"] == pytest.approx(ref["step"])
    assert d["drift_per_channel"] == pytest.approx(ref["drift_per_channel"])
    assert (d["channels"], d["constant_channels"]) == (2, 1)
    assert feature_drift(Q[:1])["step"] == 0.0  # one frame: nothing moves
    with pytest.raises(ValueError):
        feature_drift(np.zeros((3, 1, 2)))
    with pytest.raises(ValueError):
        feature_drift(np.full((3, 4, 1), np.nan))
