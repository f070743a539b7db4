"""Boundary refinement on the input mesh (issue 19): ``refine_labels`` is a graph cut
whose data term is the area integral of -log score and whose smoothness term is the
length of the part boundaries, so class scores interpolated from a coarse mesh (with
noise) come out as labels whose boundary runs where the surface says, at the fine mesh's
resolution, whatever the vertex order; the pipeline option and its checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from meshgdl.data.labels import cut_weights, refine_labels
from meshgdl.geometry.proximity import interpolate, project_to_surface
from meshgdl.pretrained import PRETRAINED_DIR, names
from meshgdl.segmentation import load_segmenter
from meshes import grid, tube
from test_ood_cli import SAMPLES, model_copy, run

COARSE_ROWS = 9  # rows of the coarse tube over a height of 4: spacing 0.5


def transferred_scores(seed: int = 0):
    """A fine tube (96 x 81), and two-class probabilities predicted on a coarse tube
    (12 x 9, ~0.5 spacing; class 1 above z = 0, with noise) interpolated onto it as
    ``meshgdl segment`` transfers them, plus a little noise of the fine vertices' own."""
    rng = np.random.default_rng(seed)
    V, F = tube(96, 81, seed=seed)
    Vc, Fc = tube(12, COARSE_ROWS, jitter=0.2, seed=seed + 1)
    pc = 1.0 / (1.0 + np.exp(-(4.0 * Vc[:, 2] + 0.5 * rng.normal(size=len(Vc)))))
    face, bary, _ = project_to_surface(V, Vc, Fc)
    p = np.clip(interpolate(pc[:, None], Fc, face, bary)[:, 0] + 0.05 * rng.normal(size=len(V)), 1e-3, 1 - 1e-3)
    return V, F, np.stack([1 - p, p], 1)


def boundary_length(V, F, labels):
    E, w = cut_weights(V, F)
    return float(w[labels[E[:, 0]] != labels[E[:, 1]]].sum())


def test_noisy_transferred_scores_are_cleaned_to_the_true_boundary():
    V, F, P = transferred_scores()
    z = V[:, 2]
    truth = (z > 0).astype(np.int64)
    raw = np.argmax(P, axis=1)
    ref = refine_labels(P, V, F, smoothness=0.05)
    dz = 4.0 / 80
    # the argmax follows the coarse triangles: wrong up to a coarse row away, a long jagged boundary
    assert np.abs(z[raw != truth]).max() > 0.15
    assert boundary_length(V, F, raw) > 1.3 * 2 * np.pi
    # refined: one loop around the tube within about an edge of z = 0, as short as a loop
    # of barycentric dual edges gets (a little longer than the circle; z > 0 itself: 1.5x)
    assert np.abs(z[ref != truth]).max() < 1.5 * dz
    assert (ref == truth).mean() > 0.99 > (raw == truth).mean()
    assert boundary_length(V, F, ref) < 1.2 * 2 * np.pi


def test_refinement_does_not_depend_on_the_vertex_order():
    V, F, P = transferred_scores(seed=3)
    ref = refine_labels(P, V, F, smoothness=0.05)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(V))  # new index -> old
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(V))
    F2 = np.roll(inv[F], 1, axis=1)[rng.permutation(len(F))]  # faces shuffled, corners rotated
    ref2 = refine_labels(P[perm], V[perm], F2, smoothness=0.05)
    np.testing.assert_array_equal(ref2, ref[perm])


def test_zero_smoothness_is_the_argmax_and_specks_disappear():
    V, F = grid(30, 30, jitter=0.2)
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(3), size=len(V))
    np.testing.assert_array_equal(refine_labels(P, V, F, 0.0), np.argmax(P, axis=1))
    P = np.tile([0.1, 0.8, 0.1], (len(V), 1))
    P[100] = [0.05, 0.45, 0.5]  # one vertex barely prefers class 2: a speck
    assert refine_labels(P, V, F, 0.0)[100] == 2
    assert (refine_labels(P, V, F, 0.01) == 1).all()


def test_refinement_is_the_same_curve_at_two_resolutions():
    # the energy is an area integral plus a boundary length: one smoothness fits every
    # resolution (a jagged labelling is cleaned the same on a 4x finer mesh)
    out = []
    for n in (48, 96):
        V, F = tube(n, n - 15, seed=5)
        rng = np.random.default_rng(2)
        Vc, Fc = tube(12, COARSE_ROWS, jitter=0.2, seed=6)
        pc = 1.0 / (1.0 + np.exp(-(4.0 * Vc[:, 2] + 0.5 * rng.normal(size=len(Vc)))))
        face, bary, _ = project_to_surface(V, Vc, Fc)
        p = interpolate(pc[:, None], Fc, face, bary)[:, 0]
        ref = refine_labels(np.stack([1 - p, p], 1), V, F, smoothness=0.05)
        out.append(boundary_length(V, F, ref))
    assert out[0] == pytest.approx(out[1], rel=0.08) and out[1] < 1.2 * 2 * np.pi


@pytest.mark.parametrize("bad", [dict(smoothness=-1.0), dict(smoothness=0.1, crease=-1.0)])
def test_negative_parameters_are_rejected(bad):
    V, F = grid(4, 4)
    with pytest.raises(ValueError, match=">= 0"):
        refine_labels(np.full((len(V), 2), 0.5), V, F, **bad)
    with pytest.raises(ValueError, match="finite"):
        refine_labels(np.full((len(V), 2), np.nan), V, F, 0.1)


def test_concave_folds_are_cheaper_to_cut():
    V, F = grid(11, 11, jitter=0.0)
    V = V.copy()
    V[:, 2] = np.abs(V[:, 0] - 0.5)  # a V-shaped valley along x = 0.5, normals up: concave
    E, w0 = cut_weights(V, F)
    _, w1 = cut_weights(V, F, crease=0.2)
    along = np.isclose(V[E[:, 0], 0], 0.5) & np.isclose(V[E[:, 1], 0], 0.5)
    assert (w1[along] < 0.5 * w0[along]).all()
    np.testing.assert_allclose(w1[~along & (np.abs(V[E, 0] - 0.5).min(axis=1) > 0.05)],
                               w0[~along & (np.abs(V[E, 0] - 0.5).min(axis=1) > 0.05)])
    V[:, 2] = -V[:, 2]  # a ridge: convex, not cheaper
    np.testing.assert_allclose(cut_weights(V, F, crease=0.2)[1], cut_weights(V, F)[1])


def test_segment_refine_option(tmp_path, capsys):
    from meshgdl.api import segment

    plain = segment(SAMPLES / "figure.ply", "figure_parts", smooth=0, refine=0)
    d = plain.detail
    np.testing.assert_array_equal(d.labels, np.argmax(d.probabilities, axis=1))
    strong = segment(SAMPLES / "figure.ply", "figure_parts", smooth=0, refine=0.05)
    np.testing.assert_allclose(strong.detail.probabilities, d.probabilities)
    m = plain.mesh
    assert boundary_length(m.V, m.F, strong.detail.labels) < boundary_length(m.V, m.F, d.labels)
    # the model description's boundary_refinement is the default
    ckpt = model_copy(tmp_path, "figure_parts", boundary_refinement={"smoothness": 0.05}, smooth_iterations=0)
    np.testing.assert_array_equal(segment(SAMPLES / "figure.ply", ckpt).detail.labels, strong.detail.labels)
    rc, _, err = run(["segment", SAMPLES / "figure.ply", "-o", tmp_path / "o.ply", "--refine", "-1"], capsys)
    assert rc == 2 and "--refine must be a number >= 0" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="refine"):
        segment(SAMPLES / "figure.ply", "figure_parts", refine=float("nan"))


@pytest.mark.parametrize("br", [{"smoothness": -0.1}, {"crease": 0.1}, {"smoothness": "x"}, [0.1]])
def test_a_malformed_boundary_refinement_is_a_one_line_error(tmp_path, capsys, br):
    rc, _, err = run(["segment", SAMPLES / "figure.ply", "-o", tmp_path / "out.ply", "--model",
                      model_copy(tmp_path, "figure_parts", boundary_refinement=br)], capsys)
    assert rc == 2 and "boundary_refinement needs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.ply").exists()


@pytest.mark.skipif("human_parts" not in names(), reason="human_parts not shipped")
def test_shipped_human_parts_refinement_is_the_best_on_validation(capsys):
    br = json.loads((PRETRAINED_DIR / "human_parts.json").read_text())["boundary_refinement"]
    by_s = {float(k): v for k, v in br["val_accuracy_by_smoothness"].items()}
    assert 0.0 in by_s and br["smoothness"] in by_s and by_s[br["smoothness"]] == max(by_s.values())
    assert load_segmenter("human_parts").refinement == (br["smoothness"], br.get("crease", 0.0))
    rc, out, _ = run(["models"], capsys)
    assert rc == 0 and f"smoothness {br['smoothness']:g}" in out.split("human_parts")[1]
