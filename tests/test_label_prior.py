"""A segmenter's ``label_prior`` (logit adjustment, issue 19): labels are the argmax of
the calibrated probabilities divided by ``prior ** tau``; the probabilities themselves
and the out-of-distribution score stay as they were; a malformed entry is a one-line
error; the shipped ``human_parts`` carries the ``tau`` best on its validation meshes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from meshgdl.pretrained import PRETRAINED_DIR, names
from meshgdl.segmentation import load_segmenter
from test_ood_cli import SAMPLES, model_copy, run

C_FIGURE = len(json.loads((PRETRAINED_DIR / "figure_parts.json").read_text())["class_names"])


def test_decide_divides_by_the_prior_to_the_power_tau(tmp_path):
    seg = load_segmenter(model_copy(tmp_path, "figure_parts", label_prior=None))
    C = seg.n_classes
    prior = np.full(C, 0.5 / (C - 2))
    prior[:2] = [0.4, 0.1]  # class 0 four times as common as class 1
    seg.info = dict(seg.info, label_prior={"prior": prior.tolist(), "tau": 1.0})
    probs = np.zeros((3, C))
    probs[0, :2] = [0.55, 0.45]  # ambiguous: 0.55 / 0.4 < 0.45 / 0.1
    probs[1, :2] = [0.95, 0.05]  # clear: 0.95 / 0.4 > 0.05 / 0.1
    probs[2, 2] = 1.0
    assert seg.decide(probs).tolist() == [1, 0, 2]
    np.testing.assert_allclose(seg.decision_scores(probs), probs / prior)
    seg.info = dict(seg.info, label_prior={"prior": prior.tolist(), "tau": 0.0})
    assert seg.decide(probs).tolist() == [0, 0, 2]  # tau 0: the plain argmax


def test_label_prior_changes_labels_not_probabilities_or_the_ood_score(tmp_path):
    from meshgdl.api import segment

    prior = np.full(C_FIGURE, 1e-3)
    prior[0] = 1.0  # class 0 held back by a factor 1000 ** tau
    a = segment(SAMPLES / "figure.ply", model_copy(tmp_path, "figure_parts", label_prior=None))
    b = segment(SAMPLES / "figure.ply", model_copy(tmp_path, "figure_parts",
                                                   label_prior={"prior": prior.tolist(), "tau": 2.0}))
    np.testing.assert_allclose(a.detail.probabilities, b.detail.probabilities)
    assert a.ood_score == pytest.approx(b.ood_score)
    was0 = a.detail.labels == 0
    assert was0.any() and not (b.detail.labels == 0).any()  # every class-0 vertex now takes another label
    np.testing.assert_array_equal(a.detail.labels[~was0], b.detail.labels[~was0])


@pytest.mark.parametrize("lp", [{"prior": [0.5, 0.5], "tau": 1},  # wrong length
                                {"prior": "x", "tau": 1},
                                {"tau": 1},
                                {"prior": [1.0 / C_FIGURE] * C_FIGURE, "tau": -1}])  # right length, negative tau
def test_a_malformed_label_prior_is_a_one_line_error(tmp_path, capsys, lp):
    rc, _, err = run(["segment", SAMPLES / "figure.ply", "-o", tmp_path / "out.ply", "--model",
                      model_copy(tmp_path, "figure_parts", label_prior=lp)], capsys)
    assert rc == 2 and err.startswith("meshgdl: error: ") and "label_prior needs" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.ply").exists()


@pytest.mark.skipif("human_parts" not in names(), reason="human_parts not shipped")
def test_shipped_human_parts_tau_is_the_best_on_validation():
    lp = json.loads((PRETRAINED_DIR / "human_parts.json").read_text())["label_prior"]
    by_tau = {float(t): v for t, v in lp["val_accuracy_by_tau"].items()}
    assert lp["tau"] in by_tau and by_tau[lp["tau"]] == max(by_tau.values()) and 0.0 in by_tau
    assert len(lp["prior"]) == 8 and abs(sum(lp["prior"]) - 1) < 1e-9


@pytest.mark.skipif("human_parts" not in names(), reason="human_parts not shipped")
def test_models_lists_the_label_prior(capsys):
    tau = json.loads((PRETRAINED_DIR / "human_parts.json").read_text())["label_prior"]["tau"]
    rc, out, _ = run(["models"], capsys)
    block = out.split("human_parts")[1]
    assert rc == 0 and f"part prior ** {tau:g}" in block.split("data licence")[0]
    rc, out, _ = run(["models", "--format", "json"], capsys)
    hp = [m for m in json.loads(out) if m["name"] == "human_parts"][0]
    assert hp["label_prior"]["tau"] == tau
