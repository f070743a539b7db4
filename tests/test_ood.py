"""Calibration metrics (meshgdl.train.metrics) and per-mesh OOD scores (meshgdl.ood)."""

import math

import numpy as np
import pytest

from meshgdl.ood import FeatureReference, fit_threshold, flagged, logit_scores, pooled_features
from meshgdl.train.metrics import (
    calibration_bins,
    expected_calibration_error,
    fit_temperature,
    log_softmax,
    roc_auc,
    softmax,
    temperature_nll,
)


def _sample_from_logits(z, rng):
    p = softmax(z)
    u = rng.random((len(p), 1))
    return (u > np.cumsum(p, axis=1)).sum(axis=1).clip(max=p.shape[1] - 1)


# ----------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_at(t_true):
    rng = np.random.default_rng(0)
    z_true = rng.normal(scale=3.0, size=(40000, 6))
    y = _sample_from_logits(z_true, rng)
    # the network's logits are the true ones times t_true: softmax(z / t_true) is the truth
    T = fit_temperature(z_true * t_true, y)
    assert T == pytest.approx(t_true, rel=0.05)
    # the fitted T is the NLL's minimum
    assert temperature_nll(z_true * t_true, y, T) <= temperature_nll(z_true * t_true, y, 1.1 * T)
    assert temperature_nll(z_true * t_true, y, T) <= temperature_nll(z_true * t_true, y, T / 1.1)


def test_fit_temperature_ignores_unlabelled_rows_and_checks_input():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(5000, 4))
    y = _sample_from_logits(z, rng)
    y2 = y.copy()
    y2[::3] = -1
    z2 = z.copy()
    z2[::3] = 1e6 * np.eye(4)[0]  # unlabelled rows would push T to a bound if counted
    assert fit_temperature(z2, y2) == pytest.approx(fit_temperature(z[y2 >= 0], y[y2 >= 0]), rel=1e-4)
    with pytest.raises(ValueError, match="no labelled"):
        fit_temperature(z, -np.ones(len(z), dtype=int))
    with pytest.raises(ValueError, match="outside"):
        fit_temperature(z, np.full(len(z), 4))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.full((3, 2), np.nan), np.zeros(3, dtype=int))


def test_fit_temperature_stays_within_its_bounds():
    # separable data: the NLL keeps falling as T -> 0, so the lower bound is the answer
    z = np.array([[2.0, 0.0], [0.0, 2.0]] * 10)
    y = np.array([0, 1] * 10)
    assert fit_temperature(z, y, bounds=(0.1, 10.0)) == pytest.approx(0.1)
    # labels against the logits: the NLL keeps falling as T grows
    assert fit_temperature(z, 1 - y, bounds=(0.1, 10.0)) == pytest.approx(10.0)


def test_log_softmax_is_stable():
    z = np.array([[1000.0, 0.0], [-1000.0, -1000.0]])
    lp = log_softmax(z)
    assert np.all(np.isfinite(lp))
    assert np.allclose(np.exp(lp).sum(1), 1.0)
    assert np.allclose(softmax(z, 2.0)[1], [0.5, 0.5])


# ----------------------------------------------------------------------------- calibration


def test_ece_of_perfectly_calibrated_data_is_about_zero():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=2.0, size=(200000, 5))
    y = _sample_from_logits(z, rng)
    assert expected_calibration_error(softmax(z), y) < 0.01
    # overconfident copy of the same predictions: a large ECE
    assert expected_calibration_error(softmax(z, 0.3), y) > 0.1


def test_calibration_bins_by_hand():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.45, 0.55], [1.0, 0.0], [0.5, 0.5]])
    y = np.array([0, 1, 0, 1, 0, -1])
    b = calibration_bins(probs, y, n_bins=2)
    assert b["total"] == 5
    assert b["count"].tolist() == [0, 5]  # all confidences lie in (0.5, 1]
    b = calibration_bins(probs, y, n_bins=10)
    assert b["count"].sum() == 5
    assert b["count"][9] == 2 and b["count"][8] == 1 and b["count"][5] == 2  # (0.9,1], (0.8,0.9], (0.5,0.6]
    assert b["accuracy"][9] == 1.0 and b["accuracy"][8] == 0.0 and b["accuracy"][5] == 1.0
    assert b["confidence"][9] == pytest.approx(0.975)
    assert math.isnan(b["accuracy"][0])
    ece = expected_calibration_error(probs, y, n_bins=10)
    assert ece == pytest.approx((2 * 0.025 + 1 * 0.9 + 2 * (1 - 0.575)) / 5)


# ----------------------------------------------------------------------------- AUROC


def test_roc_auc_separable_identical_and_ties():
    assert roc_auc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0
    assert roc_auc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0
    assert roc_auc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert roc_auc(np.zeros(7), np.zeros(3)) == pytest.approx(0.5)
    # by hand: pairs (in, out): out 2 vs in {1, 2, 3} -> 1 + 0.5 + 0; out 4 -> 3
    assert roc_auc([1.0, 2.0, 3.0], [2.0, 4.0]) == pytest.approx(4.5 / 6)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=300), rng.normal(1.0, size=200)
    brute = np.mean([(bj > ai) + 0.5 * (bj == ai) for ai in a for bj in b])
    assert roc_auc(a, b) == pytest.approx(brute)
    with pytest.raises(ValueError):
        roc_auc([], [1.0])
    with pytest.raises(ValueError):
        roc_auc([np.nan], [1.0])


# ----------------------------------------------------------------------------- OOD scores


def test_logit_scores_on_constructed_logits():
    C = 4
    uniform = np.zeros((10, C))
    sure = np.tile([50.0, 0.0, 0.0, 0.0], (10, 1))
    u, s = logit_scores(uniform), logit_scores(sure)
    assert u["max_prob"] == pytest.approx(1 - 1 / C)
    assert u["entropy"] == pytest.approx(math.log(C))
    assert u["energy"] == pytest.approx(-math.log(C))
    assert s["max_prob"] == pytest.approx(0.0, abs=1e-12)
    assert s["entropy"] == pytest.approx(0.0, abs=1e-12)
    assert s["energy"] == pytest.approx(-50.0)
    for k in u:  # higher = more unusual
        assert u[k] > s[k]
    # temperature: energy -T logsumexp(z / T)
    assert logit_scores(sure, temperature=2.0)["energy"] == pytest.approx(-2.0 * np.log(np.exp(25.0) + 3))
    # area weights: half the area uniform, half sure
    mixed = np.vstack([uniform[:1], sure[:1]])
    m = logit_scores(mixed, weights=[3.0, 1.0])
    assert m["entropy"] == pytest.approx(0.75 * math.log(C))
    # a classifier's (C,) logits
    assert logit_scores(np.zeros(C))["max_prob"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        logit_scores(uniform, weights=np.ones(3))
    with pytest.raises(ValueError):
        logit_scores(uniform, temperature=0.0)


def test_pooled_features_weighted_mean_and_std():
    x = np.array([[0.0, 1.0], [2.0, 1.0]])
    assert pooled_features(x).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert pooled_features(x, [3.0, 1.0]) == pytest.approx([0.5, 1.0, math.sqrt(0.75), 0.0])


def test_feature_reference_distances():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -1.0]
    ref = FeatureReference.fit(X, k=5, shrinkage=0.05)
    near = ref.scores(np.array([0.0, 5.0, -1.0]))
    far = ref.scores(np.array([0.0, 5.0, -0.2]))  # 8 standard deviations off in channel 3
    assert far["mahalanobis"] > 5 * near["mahalanobis"] and far["mahalanobis"] > 6
    assert far["knn"] > 5 * near["knn"]
    # isotropic reference without shrinkage: Mahalanobis = distance in standard deviations
    Y = rng.normal(size=(20000, 2))
    r2 = FeatureReference.fit(Y, shrinkage=1e-9)
    assert r2.scores(np.array([3.0, 4.0]))["mahalanobis"] == pytest.approx(5.0, rel=0.03)
    # round trip through JSON-ready dicts
    r3 = FeatureReference.from_dict(ref.to_dict())
    assert r3.scores(np.array([1.0, 2.0, 3.0])) == pytest.approx(ref.scores(np.array([1.0, 2.0, 3.0])))
    # a constant channel does not divide by zero
    Z = np.c_[rng.normal(size=(50, 2)), np.ones(50)]
    assert np.isfinite(FeatureReference.fit(Z).scores(np.array([0.0, 0.0, 2.0]))["mahalanobis"])
    with pytest.raises(ValueError):
        ref.scores(np.zeros(2))


def test_fit_threshold_flags_at_most_the_rate():
    s = np.arange(40, dtype=float)
    t = fit_threshold(s, 0.05)  # floor(2) = 2 of 40 may be flagged
    assert flagged(s, t).sum() == 2
    assert flagged(np.arange(33.0), fit_threshold(np.arange(33.0), 0.05)).sum() == 1
    assert flagged(s, fit_threshold(s, 0.0)).sum() == 0
    ties = np.array([1.0, 1.0, 1.0, 0.0])
    assert flagged(ties, fit_threshold(ties, 0.5)).sum() <= 2


def test_mesh_outputs_runs_each_component_like_the_pipeline():
    from meshgdl.data.synthetic import bumpy_sphere, torus
    from meshgdl.geometry.normals import vertex_areas
    from meshgdl.ood import mesh_outputs, network_outputs
    from meshgdl.segmentation import load_segmenter, predict_by_component

    seg = load_segmenter("human_parts")
    V1, F1 = bumpy_sphere(3, seed=1)
    V2, F2 = torus(24, 12)
    V2 = V2 * 0.5 + [3.0, 0.0, 0.0]
    tiny = np.array([[9.0, 0, 0], [9.1, 0, 0], [9.0, 0.1, 0], [9.0, 0, 0.1]])  # a 4-vertex speck
    Ft = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    V = np.vstack([V1, V2, tiny])
    F = np.vstack([F1, F2 + len(V1), Ft + len(V1) + len(V2)])
    z, feats, w, idx = mesh_outputs(seg, V, F, layer=[-1, 6])
    assert sorted(idx.tolist()) == list(range(len(V1) + len(V2)))  # the speck is left out
    assert z.shape == (len(idx), seg.n_classes) and [f.shape[0] for f in feats] == [len(idx)] * 2
    assert np.allclose(w, vertex_areas(V, F)[idx])
    # the probabilities are those the pipeline gives these vertices, before and after calibration
    assert np.allclose(softmax(z), predict_by_component(seg, V, F, calibrated=False)[idx], atol=1e-6)
    assert np.allclose(softmax(z, seg.temperature), predict_by_component(seg, V, F)[idx], atol=1e-6)
    # one component: network_outputs on the whole mesh
    z1, f1, _ = network_outputs(seg, V1, F1)
    z2, f2, w2, idx2 = mesh_outputs(seg, V1, F1)
    assert np.array_equal(idx2, np.arange(len(V1))) and np.allclose(z1, z2) and np.allclose(f1, f2)


# ----------------------------------------------------------------------------- what the pipelines compute


def test_temper_equals_softmax_at_the_temperature():
    from meshgdl.train.metrics import temper

    rng = np.random.default_rng(3)
    z = rng.normal(scale=4.0, size=(50, 7))
    for T in (0.3, 1.0, 2.7):
        np.testing.assert_allclose(temper(softmax(z), T), softmax(z, T), atol=1e-12)
    # a zero probability stays zero, rows still sum to 1
    p = np.array([[0.0, 0.25, 0.75]])
    q = temper(p, 0.5)
    assert q[0, 0] == 0 and q.sum() == pytest.approx(1.0) and q[0, 2] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        temper(p, 0.0)


def test_probability_score_equals_the_logit_score_at_the_same_temperature():
    from meshgdl.ood import probability_score

    rng = np.random.default_rng(4)
    z = rng.normal(scale=2.0, size=(30, 5))
    w = rng.uniform(0.1, 2.0, 30)
    for T in (0.7, 1.3):
        ls = logit_scores(z, w, T)
        for name in ("max_prob", "max_prob_median", "entropy"):
            assert probability_score(softmax(z, T), w, name) == pytest.approx(ls[name], abs=1e-12)
    # a classifier: one row; 1 - the top probability
    assert probability_score(np.array([0.1, 0.7, 0.2])) == pytest.approx(0.3)
    assert probability_score(np.array([1.0, 0.0])) == 0.0
    with pytest.raises(ValueError):
        probability_score(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        probability_score(np.array([0.5, 0.5]), score="energy")


def test_part_scores_and_assess_with_and_without_a_rule():
    from meshgdl.ood import OODRule, assess, part_scores

    # part 0: two confident vertices (areas 1 and 3), part 2: one unsure vertex (area 96)
    p = np.array([[0.9, 0.1, 0.0], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    w = np.array([1.0, 3.0, 96.0])
    parts = part_scores(p, w)
    assert [c for c, _, _ in parts] == [0, 2]
    assert parts[0][1] == pytest.approx(0.04) and parts[0][2] == pytest.approx(1 - (0.9 + 3 * 0.7) / 4)
    assert parts[1][1] == pytest.approx(0.96) and parts[1][2] == pytest.approx(0.5)
    mesh_score = 1 - (0.9 + 3 * 0.7 + 96 * 0.5) / 100
    a = assess(p, w, None, ["a", "b", "c"], parts=True)
    assert a["ood_score"] == pytest.approx(mesh_score) and a["threshold"] is None and a["in_distribution"] is None
    assert [q["in_distribution"] for q in a["parts"]] == [None, None]
    rule = OODRule("max_prob", threshold=0.45, part_threshold=0.4)
    a = assess(p, w, rule, ["a", "b", "c"], parts=True)
    assert a["in_distribution"] is (mesh_score <= 0.45)
    assert [(q["name"], q["in_distribution"]) for q in a["parts"]] == [("a", True), ("c", False)]
    # parts under 1 % of the area get no verdict
    w2 = np.array([0.005, 0.0, 99.995])
    assert assess(p, w2, rule, parts=True)["parts"][0]["in_distribution"] is None


@pytest.mark.parametrize("entry, fragment", [
    ({"threshold": 0.1}, "needs a 'score'"),
    ({"score": "max_prob", "threshold": "high"}, "numeric 'threshold'"),
    ({"score": "energy", "threshold": 0.1}, "unknown ood score"),
    ({"score": "max_prob", "threshold": float("nan")}, "finite"),
])
def test_malformed_ood_entries_are_one_line_checkpoint_errors(entry, fragment):
    from meshgdl.errors import CheckpointError
    from meshgdl.ood import OODRule

    assert OODRule.from_info({}) is None
    with pytest.raises(CheckpointError, match=fragment):
        OODRule.from_info({"ood": entry}, "m.json")
    r = OODRule.from_info({"ood": {"score": "entropy", "threshold": 0.2, "part_threshold": 0.3}})
    assert r == OODRule("entropy", 0.2, 0.3)


def test_feature_rule_scores_the_pooled_features_against_its_reference():
    from meshgdl.errors import CheckpointError
    from meshgdl.ood import OODRule, assess

    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 6))
    ref = FeatureReference.fit(X, k=3)
    entry = {"score": "knn", "threshold": 2.0, "reference": {**ref.to_dict(), "layer": -1}}
    rule = OODRule.from_info({"ood": entry})
    assert rule.needs_features and rule.layer == -1
    near, far = X[0] + 0.01, X[0] + 50.0
    p = np.array([0.9, 0.1])
    a = assess(p, rule=rule, features=near)
    assert a["score"] == "knn" and a["ood_score"] == pytest.approx(ref.scores(near)["knn"])
    assert a["in_distribution"] is True and assess(p, rule=rule, features=far)["in_distribution"] is False
    with pytest.raises(ValueError, match="pooled features"):
        assess(p, rule=rule)
    with pytest.raises(CheckpointError, match="needs a 'reference'"):
        OODRule.from_info({"ood": {"score": "knn", "threshold": 2.0}})


def test_weighted_median_and_the_median_score():
    from meshgdl.ood import probability_score, weighted_median

    assert weighted_median([3.0, 1.0, 2.0], [1, 1, 1]) == 2.0
    assert weighted_median([3.0, 1.0, 2.0], [1, 1, 10]) == 2.0
    assert weighted_median([3.0, 1.0, 2.0], [10, 1, 1]) == 3.0
    assert weighted_median([5.0, 7.0], [1, 1]) == 5.0  # the lower of two halves
    # a confident mesh with an unsure patch of 30 % of the area: the mean moves, the median not
    p = np.array([[0.95, 0.05]] * 7 + [[0.5, 0.5]] * 3)
    assert probability_score(p, score="max_prob") == pytest.approx(1 - (7 * 0.95 + 3 * 0.5) / 10)
    assert probability_score(p, score="max_prob_median") == pytest.approx(0.05)
