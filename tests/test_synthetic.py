"""meshgdl.data.synthetic: iso-surfaces, the capsule figure, articulation."""

from __future__ import annotations

import numpy as np
import pytest

from meshgdl.data import synthetic as syn
from meshgdl.io import validate

RES = 0.04  # coarse figure (~3k vertices) keeps the file fast


def _signed_volume(V, F):
    return float(np.einsum("ij,ij->i", V[F[:, 0]], np.cross(V[F[:, 1]], V[F[:, 2]])).sum() / 6.0)


def _is_clean_closed(V, F):
    r = validate(V, F)
    return (r.n_components == 1 and r.is_watertight and r.is_manifold and r.n_inconsistent_edges == 0
            and r.n_degenerate_faces == 0 and r.n_duplicate_faces == 0), r


def test_marching_tetrahedra_sphere():
    h = 0.1
    ax = np.arange(-1.3, 1.3 + 1e-9, h)
    X = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)
    S = np.linalg.norm(X, axis=-1) - 1.0
    V, F = syn.marching_tetrahedra(S, (ax[0],) * 3, h)
    r = validate(V, F)
    # raw marching tetrahedra: closed, manifold, consistently oriented (slivers allowed;
    # grid points exactly on the sphere give zero-area triangles until collapsed)
    assert r.n_components == 1 and r.is_watertight and r.is_manifold
    assert r.n_inconsistent_edges == 0 and r.genus == 0
    # vertices interpolate along grid edges: within O(h^2) of the sphere
    assert np.abs(np.linalg.norm(V, axis=1) - 1).max() < 0.01
    assert _signed_volume(V, F) == pytest.approx(4 / 3 * np.pi, rel=0.03)  # outward, right size


def test_implicit_surface_torus_genus_and_projection():
    R, r = 1.0, 0.4

    def sdf(X):
        q = np.linalg.norm(X[:, :2], axis=1) - R
        return np.hypot(q, X[:, 2]) - r

    V, F = syn.implicit_surface(sdf, [-1.5, -1.5, -0.5], [1.5, 1.5, 0.5], 0.1)
    ok, rep = _is_clean_closed(V, F)
    assert ok and rep.genus == 1 and rep.euler_characteristic == 0
    assert np.abs(sdf(V)).max() < 1e-8  # relaxed vertices are projected back onto the surface
    assert rep.surface_area == pytest.approx(4 * np.pi**2 * R * r, rel=0.02)


def test_capsule_figure_is_one_clean_surface_with_labelled_parts():
    V, F, L = syn.capsule_figure(resolution=RES)
    ok, r = _is_clean_closed(V, F)
    assert ok and r.genus == 0
    assert _signed_volume(V, F) > 0  # outward orientation
    assert V.dtype == np.float64 and F.dtype == np.int64 and L.dtype == np.int64
    assert L.shape == (len(V),) and set(L.tolist()) == set(range(len(syn.PART_NAMES)))
    names = np.array(syn.PART_NAMES)
    assert names[L[V[:, 1].argmax()]] == "head"  # y is up
    assert names[L[V[:, 0].argmax()]] == "left_lower_arm"  # the figure's left is +x
    assert names[L[V[:, 0].argmin()]] == "right_lower_arm"
    assert names[L[V[:, 1].argmin()]] in ("left_lower_leg", "right_lower_leg")
    # vertices lie on the zero set of the figure's field
    assert np.abs(syn.figure_sdf(V, syn.make_skeleton())).max() < 1e-8
    # rough human size: about 1.8 high
    assert 1.6 < np.ptp(V[:, 1]) < 2.0


def test_poses_share_connectivity_and_rest_pose_is_identity():
    V0, F0, L0 = syn.capsule_figure(resolution=RES)
    V1, F1, L1 = syn.capsule_figure(syn.random_pose(3), resolution=RES)
    assert np.array_equal(F0, F1) and np.array_equal(L0, L1)
    assert not np.allclose(V0, V1)
    Vz, _, _ = syn.capsule_figure(syn.random_pose(3, amount=0.0), resolution=RES)
    assert np.allclose(Vz, V0, atol=1e-12)
    assert syn.random_pose(5)["left_elbow"] == syn.random_pose(5)["left_elbow"]  # seeded


def test_rigid_parts_move_rigidly_about_their_joint():
    model = syn.FigureModel(resolution=RES)
    skel = model.skeleton
    theta = np.pi / 2
    Vp = model.pose({"left_elbow": theta})
    fore = syn.PART_NAMES.index("left_lower_arm")
    rigid_fore = (model.labels == fore) & (model.weights[:, fore] == 1.0)
    assert rigid_fore.sum() > 50
    c = skel.joints["left_elbow"]
    k = skel.hinge_axes["left_elbow"]
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K  # Rodrigues
    expect = (model.V_rest[rigid_fore] - c) @ R.T + c
    assert np.allclose(Vp[rigid_fore], expect, atol=1e-12)
    # flexion moves the hand forward (+z)
    assert Vp[rigid_fore, 2].mean() > model.V_rest[rigid_fore, 2].mean() + 0.1
    # vertices with no weight on the moving parts stay put
    moving = [syn.PART_NAMES.index(p) for p in ("left_lower_arm",)]
    still = model.weights[:, moving].sum(1) == 0
    assert np.allclose(Vp[still], model.V_rest[still], rtol=0, atol=1e-14)


def test_articulation_is_isometric_away_from_joints():
    model = syn.FigureModel(resolution=RES)
    V0, F = model.V_rest, model.F
    Vp = model.pose(syn.random_pose(11))
    E = np.unique(np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), 1), axis=0)
    rigid = (model.weights.max(1) == 1.0)
    same_part = model.labels[E[:, 0]] == model.labels[E[:, 1]]
    inner = rigid[E].all(1) & same_part
    assert inner.mean() > 0.5  # most of the surface is rigid
    l0 = np.linalg.norm(V0[E[:, 0]] - V0[E[:, 1]], axis=1)
    l1 = np.linalg.norm(Vp[E[:, 0]] - Vp[E[:, 1]], axis=1)
    assert np.allclose(l0[inner], l1[inner], rtol=0, atol=1e-12)
    # a child follows its parent: rotating the shoulder moves the (unbent) forearm too
    fore = model.labels == syn.PART_NAMES.index("left_lower_arm")
    Vs = model.pose({"left_shoulder": [0.0, 0.0, 0.8]})
    assert Vs[fore, 1].mean() > V0[fore, 1].mean() + 0.1  # arm raised


def test_articulate_function_matches_model_and_validates_input():
    model = syn.FigureModel(resolution=RES)
    pose = syn.random_pose(2)
    assert np.allclose(syn.articulate(model.V_rest, model.labels, pose), model.pose(pose), atol=1e-12)
    with pytest.raises(ValueError, match="unknown joint"):
        syn.articulate(model.V_rest, model.labels, {"tail": [0, 0, 1]})
    with pytest.raises(ValueError, match="needs a rotation vector"):
        syn.articulate(model.V_rest, model.labels, {"neck": 0.3})
    with pytest.raises(ValueError, match="finite rotation vector"):
        syn.articulate(model.V_rest, model.labels, {"neck": [0, np.nan, 0]})


def test_seed_varies_proportions_not_topology():
    V0, F0, _ = syn.capsule_figure(resolution=RES, seed=None)
    V1, F1, L1 = syn.capsule_figure(resolution=RES, seed=4)
    ok, r = _is_clean_closed(V1, F1)
    assert ok and r.genus == 0
    assert not (V0.shape == V1.shape and np.allclose(V0, V1))
    V1b, F1b, _ = syn.capsule_figure(resolution=RES, seed=4)
    assert np.array_equal(V1, V1b) and np.array_equal(F1, F1b)  # deterministic


def test_skinning_weights_partition_of_unity_and_locality():
    model = syn.FigureModel(resolution=RES)
    W = model.weights
    assert np.allclose(W.sum(1), 1.0) and (W >= 0).all()
    # the two thighs are close but unrelated: neither pulls on the other
    lu, ru = syn.PART_NAMES.index("left_upper_leg"), syn.PART_NAMES.index("right_upper_leg")
    assert (W[model.labels == lu, ru] == 0).all() and (W[model.labels == ru, lu] == 0).all()


def test_simple_shapes():
    V, F = syn.torus(24, 12)
    assert validate(V, F).genus == 1
    V, F = syn.icosphere(3)
    assert len(V) == 642 and np.allclose(np.linalg.norm(V, axis=1), 1)
    V1, F1 = syn.bumpy_sphere(3, seed=2)
    V2, _ = syn.bumpy_sphere(3, seed=2)
    assert np.array_equal(V1, V2) and validate(V1, F1).genus == 0
    assert np.ptp(np.linalg.norm(V1, axis=1)) > 0.05
