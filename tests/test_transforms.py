"""Augmentation: exact laws of rotating / scaling an operator bundle without recomputing it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from meshgdl.data.transforms import (
    Compose,
    RandomJitter,
    RandomRemesh,
    RandomRotation,
    RandomScale,
    apply_to_sample,
    build_augmentation,
    mean_edge_length,
    random_rotation_matrix,
    remesh_item,
    rotate,
    scale,
)
from meshgdl.geometry.gauges import compute_gauges
from meshgdl.geometry.gradient import tangent_gradient
from meshgdl.geometry.normals import vertex_normals
from meshgdl.operators import Operators, collate
from meshes import icosphere, torus


def _have_spectral():
    try:
        from meshgdl.geometry import laplacian, spectral  # noqa: F401
    except ImportError:
        return False
    return True


needs_spectral = pytest.mark.skipif(not _have_spectral(), reason="meshgdl.geometry.laplacian/spectral not available yet")


def _bumpy(seed=0):
    V, F = icosphere(2)
    rng = np.random.default_rng(seed)
    d = 1 + 0.15 * np.sin(3 * V[:, 0] + 2 * V[:, 1]) + 0.05 * rng.standard_normal(len(V))
    return V * d[:, None] * np.array([1.0, 0.8, 1.3]), F


def _gauge_bundle(V, F, rng=None):
    """An Operators bundle whose gauge fields are real and whose spectral fields are
    placeholders (rotation must leave them untouched)."""
    rng = rng or np.random.default_rng(0)
    n = vertex_normals(V, F)
    g = compute_gauges(V, F, normals=n)
    gx, gy = tangent_gradient(g)
    k = 6
    return Operators(
        V=V, F=F, mass=rng.uniform(0.5, 1, len(V)), L=sp.identity(len(V), format="csr"),
        evals=np.sort(rng.uniform(0, 5, k)), evecs=rng.standard_normal((len(V), k)),
        hks=rng.uniform(size=(len(V), 4)), normals=n, frames=g.frames, edge_index=g.edge_index,
        theta=g.theta, r=g.r, transport=g.transport, grad_x=gx, grad_y=gy,
    )


def test_rotation_matrices():
    rng = np.random.default_rng(0)
    Rs = np.stack([random_rotation_matrix(rng) for _ in range(4000)])
    assert np.allclose(Rs @ Rs.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(Rs), 1)
    # Haar measure: E[R] = 0 and E[trace R] = 0 (the mean of 1 + 2 cos(angle) is 0)
    assert np.abs(Rs.mean(0)).max() < 0.05
    Rz = random_rotation_matrix(rng, axis=2)
    assert np.allclose(Rz @ [0, 0, 1], [0, 0, 1]) and np.allclose(np.linalg.det(Rz), 1)


def test_rotation_equals_recomputing_the_gauges():
    V, F = _bumpy()
    ops = _gauge_bundle(V, F)
    R = random_rotation_matrix(np.random.default_rng(1))
    rot = rotate(ops, R)
    fresh = _gauge_bundle(V @ R.T, F)
    assert np.allclose(rot.V, V @ R.T)
    assert np.allclose(rot.normals, fresh.normals, atol=1e-12)
    assert np.allclose(rot.frames, fresh.frames, atol=1e-10)
    assert np.array_equal(rot.edge_index, fresh.edge_index)
    for f in ("theta", "r", "transport"):
        assert np.allclose(getattr(rot, f), getattr(fresh, f), atol=1e-10), f
    for f in ("grad_x", "grad_y"):
        assert abs(getattr(rot, f) - getattr(fresh, f)).max() < 1e-8
    # everything intrinsic is untouched, and the input is not modified
    for f in ("mass", "evals", "evecs", "hks", "theta", "r", "transport", "edge_index"):
        assert getattr(rot, f) is getattr(ops, f)
    assert np.array_equal(ops.V, V)


def test_rotation_of_a_torch_batch_per_mesh():
    V1, F1 = _bumpy(0)
    V2, F2 = torus(12, 8)
    o1, o2 = _gauge_bundle(V1, F1), _gauge_bundle(V2, F2)
    rng = np.random.default_rng(3)
    R = np.stack([random_rotation_matrix(rng), random_rotation_matrix(rng)])
    b = rotate(collate([o1, o2], dtype=torch.float64), R)
    ref = collate([rotate(o1, R[0]), rotate(o2, R[1])], dtype=torch.float64)
    for f in ("pos", "normals", "frames", "theta", "transport"):
        assert torch.allclose(getattr(b, f), getattr(ref, f), atol=1e-12), f


def test_random_rotation_is_reproducible():
    ops = _gauge_bundle(*_bumpy())
    a = RandomRotation()(ops, np.random.default_rng(7))
    b = RandomRotation()(ops, np.random.default_rng(7))
    c = RandomRotation()(ops, np.random.default_rng(8))
    assert np.array_equal(a.V, b.V) and not np.allclose(a.V, c.V)
    with pytest.raises(ValueError):
        RandomRotation(axis=3)


def test_scale_law_on_gauge_fields():
    V, F = _bumpy()
    ops = _gauge_bundle(V, F)
    s = 2.5
    fresh = _gauge_bundle(V * s, F)
    if not _have_spectral():
        pytest.skip("HKS recomputation needs meshgdl.geometry.spectral")
    sc = scale(ops, s)
    assert np.allclose(sc.V, s * V) and np.allclose(sc.r, fresh.r)
    assert np.allclose(sc.theta, fresh.theta) and np.allclose(sc.frames, fresh.frames)
    assert abs(sc.grad_x - fresh.grad_x).max() < 1e-8 and abs(sc.grad_y - fresh.grad_y).max() < 1e-8
    assert np.allclose(sc.mass, s**2 * ops.mass) and np.allclose(sc.evals, ops.evals / s**2)


@needs_spectral
def test_scale_equals_recomputing_the_operators():
    from meshgdl.operators import compute_operators

    V, F = _bumpy(2)
    s = 0.37
    ops = compute_operators(V, F, k_eig=24, n_hks=8)
    fresh = compute_operators(V * s, F, k_eig=24, n_hks=8)
    sc = scale(ops, s)
    assert np.allclose(sc.mass, fresh.mass, rtol=1e-10)
    assert np.allclose(sc.evals, fresh.evals, rtol=1e-6, atol=1e-9)
    assert abs(sc.L - fresh.L).max() < 1e-8
    # eigenvectors: M-orthonormal and solving L phi = lambda M phi for the scaled mesh
    M = sp.diags(sc.mass)
    assert np.allclose(sc.evecs.T @ (M @ sc.evecs), np.eye(24), atol=1e-8)
    res = sc.L @ sc.evecs - (M @ sc.evecs) * sc.evals
    assert np.abs(res).max() < 1e-6 * max(1.0, np.abs(sc.L @ sc.evecs).max())
    assert np.allclose(sc.hks, fresh.hks, rtol=1e-5, atol=1e-8)
    assert np.allclose(sc.r, fresh.r) and abs(sc.grad_x - fresh.grad_x).max() < 1e-8


@needs_spectral
def test_scale_torch_batch_matches_numpy():
    from meshgdl.operators import compute_operators

    a = compute_operators(*_bumpy(0), k_eig=12, n_hks=4)
    b = compute_operators(*torus(12, 8), k_eig=12, n_hks=4)
    s = np.array([2.0, 0.5])
    got = scale(collate([a, b], dtype=torch.float64), s)
    ref = collate([scale(a, s[0]), scale(b, s[1])], dtype=torch.float64)
    for f in ("pos", "mass", "evals", "evecs", "r", "hks"):
        assert torch.allclose(getattr(got, f), getattr(ref, f), rtol=1e-10, atol=1e-12), f
    assert torch.allclose(got.grad_x.to_dense(), ref.grad_x.to_dense(), atol=1e-12)


def test_scale_rejects_bad_factors():
    ops = _gauge_bundle(*_bumpy())
    for s in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="positive"):
            scale(ops, s)
    with pytest.raises(ValueError):
        RandomScale(2.0, 1.0)


def test_jitter_moves_positions_only():
    V, F = _bumpy()
    ops = _gauge_bundle(V, F)
    h = mean_edge_length(ops)
    assert h.shape == (1,) and np.isclose(h[0], ops.r.mean())
    j = RandomJitter(0.1, clip=2.0)(ops, np.random.default_rng(0))
    d = j.V - V
    assert 0.08 * h[0] < d.std() < 0.12 * h[0]
    assert np.abs(d).max() <= 2.0 * 0.1 * h[0] + 1e-15
    assert j.theta is ops.theta and j.normals is ops.normals
    assert RandomJitter(0.0)(ops, np.random.default_rng(0)) is ops


def test_apply_to_sample_variants():
    ops = _gauge_bundle(*_bumpy())

    @dataclasses.dataclass
    class S:
        ops: Operators
        coarse: list

    R = RandomRotation()
    s = apply_to_sample(S(ops, []), R, np.random.default_rng(0))
    assert isinstance(s, S) and not np.allclose(s.ops.V, ops.V)
    # hierarchy levels are rotated by the same rotation as the input mesh
    coarse = _gauge_bundle(*torus(10, 6))
    h = apply_to_sample(S(ops, [coarse]), R, np.random.default_rng(0))
    Rm = np.linalg.lstsq(ops.V, h.ops.V, rcond=None)[0].T
    assert np.allclose(h.ops.V, s.ops.V) and np.allclose(h.coarse[0].V, coarse.V @ Rm.T)
    d = apply_to_sample({"ops": ops, "x": 1}, R, np.random.default_rng(0))
    assert np.allclose(d["ops"].V, s.ops.V) and d["x"] == 1
    assert np.allclose(apply_to_sample(ops, R, np.random.default_rng(0)).V, s.ops.V)
    with pytest.raises(TypeError, match="no operator bundle"):
        apply_to_sample(np.zeros(3), R, np.random.default_rng(0))


def test_build_augmentation():
    a = build_augmentation("z", (0.5, 2.0), 0.01)
    assert [type(t).__name__ for t in a.transforms] == ["RandomRotation", "RandomScale", "RandomJitter"]
    assert len(build_augmentation(None)) == 0
    with pytest.raises(ValueError, match="rotate"):
        build_augmentation("w")
    assert isinstance(a, Compose)


def test_remesh_item_transfers_labels():
    from meshgdl.data.datasets import MeshItem

    V, F = icosphere(3)
    y = (V[:, 0] > 0).astype(np.int64)
    item = MeshItem("s", V, F, y, np.arange(len(V)), np.arange(len(F)), V, y)
    out = remesh_item(item, 0.5)
    assert 0.4 * len(F) < len(out.F) < 0.6 * len(F)
    assert out.y.shape == (len(out.V),) and out.F.max() < len(out.V)
    # labels follow the geometry (away from the x = 0 border)
    far = np.abs(out.V[:, 0]) > 0.15
    assert np.array_equal(out.y[far], (out.V[far, 0] > 0).astype(int))
    assert out.orig_to_new.min() >= 0 and out.orig_to_new.max() < len(out.V)
    kept = RandomRemesh(0.5, 0.6, p=0.0)(item, np.random.default_rng(0))
    assert kept is item


# --------------------------------------------------------------------------- surface deformations


def _long_box(n: int = 400, seed: int = 0):
    """Points filling a 4 x 1 x 1 box (extent along x), for the deformation fields."""
    return np.random.default_rng(seed).uniform([-2, -0.5, -0.5], [2, 0.5, 0.5], size=(n, 3))


@pytest.mark.parametrize("make", ["smooth", "aniso", "bend"])
def test_deformation_fields_are_seeded_and_move_points(make):
    from meshgdl.data.transforms import anisotropic_scaling, bend_twist, smooth_deformation

    X = _long_box()
    build = {"smooth": lambda rng: smooth_deformation(X, rng, 0.2),
             "aniso": lambda rng: anisotropic_scaling(X, rng, 1.6),
             "bend": lambda rng: bend_twist(X, rng, np.pi / 3, np.pi / 3)}[make]
    a = build(np.random.default_rng(5))(X)
    b = build(np.random.default_rng(5))(X)
    c = build(np.random.default_rng(6))(X)
    assert a.shape == X.shape and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)  # same seed, same field
    assert not np.allclose(a, c)  # another seed, another field
    assert np.abs(a - X).max() > 1e-3  # it moves the points


def test_anisotropic_scaling_is_linear_within_the_ratio():
    from meshgdl.data.transforms import anisotropic_scaling

    X = _long_box()
    for seed in range(10):
        f = anisotropic_scaling(X, np.random.default_rng(seed), 1.5)
        c = X.mean(axis=0)
        A = np.linalg.lstsq(X - c, f(X) - c, rcond=None)[0]
        np.testing.assert_allclose((X - c) @ A + c, f(X), atol=1e-10)  # a linear map about the centroid
        s = np.linalg.svd(A, compute_uv=False)
        assert s.max() / s.min() <= 1.5 + 1e-9
        assert s.max() / s.min() > 1.0 + 1e-6  # not a rigid or isotropic change
        np.testing.assert_allclose(A, A.T, atol=1e-12)  # pure stretch, no rotation
    with pytest.raises(ValueError):
        anisotropic_scaling(X, np.random.default_rng(0), 0.5)


def test_bend_twist_without_angles_is_identity_and_keeps_axis_lengths():
    from meshgdl.data.transforms import bend_twist

    X = _long_box()
    np.testing.assert_allclose(bend_twist(X, np.random.default_rng(1), 0.0, 0.0)(X), X, atol=1e-12)
    # a pure twist is a rotation of each slice about the axis: distances to the centroid axis kept
    rng = np.random.default_rng(2)
    f = bend_twist(X, rng, np.pi / 2, 0.0)
    Y = f(X)
    assert np.abs(Y - X).max() > 1e-2
    np.testing.assert_allclose(np.linalg.norm(Y - X.mean(0), axis=1), np.linalg.norm(X - X.mean(0), axis=1),
                               atol=1e-9)


def test_smooth_deformation_strain_bounds_its_displacement():
    from meshgdl.data.transforms import smooth_deformation

    X = _long_box()
    L = float(np.linalg.norm(X.max(0) - X.min(0)))
    f = smooth_deformation(X, np.random.default_rng(3), 0.1)
    d = np.linalg.norm(f(X) - X, axis=1)
    # amplitude strain / sum|k| with |k| >= 2 pi / L each: at most 3 waves of it
    assert d.max() <= 3 * 0.1 * L / (3 * 2 * np.pi) + 1e-12
    assert d.max() > 0


def test_cut_holes_removes_faces_only():
    from meshgdl.data.transforms import cut_holes

    V, F = icosphere(3)
    V2, F2 = cut_holes(V, F, np.random.default_rng(0), 3, 2.0)
    V3, F3 = cut_holes(V, F, np.random.default_rng(0), 3, 2.0)
    np.testing.assert_array_equal(V2, V)  # vertices kept
    np.testing.assert_array_equal(F2, F3)  # seeded
    assert 0 < len(F2) < len(F)
    rows = {tuple(f) for f in F.tolist()}
    assert all(tuple(f) in rows for f in F2.tolist())  # a subset of the faces, unchanged
    assert len(cut_holes(V, F, np.random.default_rng(0), 3, 0.0)[1]) == len(F)  # radius 0: nothing cut


def _kabsch(P, Q):
    """Rotation R with Q - mean(Q) ~ (P - mean(P)) R^T."""
    H = (P - P.mean(0)).T @ (Q - Q.mean(0))
    U, _, Wt = np.linalg.svd(H)
    D = np.diag([1, 1, np.sign(np.linalg.det(Wt.T @ U.T))])
    return Wt.T @ D @ U.T


def test_articulate_turns_parts_rigidly_and_strains_only_the_joints():
    from meshgdl.data.transforms import articulate
    from meshgdl.geometry.topology import ring_distance
    from meshes import tube

    V, F = tube(n_around=32, n_along=61, height=6.0, jitter=0.2)
    # root below z = -1, its child up to z = 1, the grandchild above; a second, separate
    # tube with the same labels (a left and a right limb) next to it
    y = np.where(V[:, 2] < -1, 0, np.where(V[:, 2] < 1, 1, 2))
    V2, F2 = np.concatenate([V, V + [5.0, 0, 0]]), np.concatenate([F, F + len(V)])
    y2 = np.concatenate([y, y])
    parents = {1: 0, 2: 1}
    W = articulate(V2, F2, y2, parents, np.random.default_rng(0), max_angle=np.pi / 4, blend_rings=3)
    assert W.shape == V2.shape
    np.testing.assert_array_equal(articulate(V2, F2, y2, parents, np.random.default_rng(0), np.pi / 4, 3), W)
    np.testing.assert_allclose(articulate(V2, F2, y2, parents, np.random.default_rng(0), 0.0), V2, atol=1e-12)
    joint = np.zeros(len(V2), bool)
    E = np.concatenate([F2[:, [0, 1]], F2[:, [1, 2]], F2[:, [2, 0]]])
    cross = y2[E[:, 0]] != y2[E[:, 1]]
    joint[E[cross].ravel()] = True
    far = ring_distance(F2, len(V2), joint, 4) > 3  # beyond every blend band
    assert far.sum() > 0.5 * len(V2)
    # the root stays, every other piece moves rigidly (distances kept), each one its own way
    np.testing.assert_allclose(W[far & (y2 == 0)], V2[far & (y2 == 0)], atol=1e-12)
    rotations = []
    for side in (slice(0, len(V)), slice(len(V), None)):
        for lab in (1, 2):
            m = np.zeros(len(V2), bool)
            m[side] = True
            m &= far & (y2 == lab)
            P, Q = V2[m], W[m]
            d0 = np.linalg.norm(P[:, None] - P[None], axis=-1)
            np.testing.assert_allclose(np.linalg.norm(Q[:, None] - Q[None], axis=-1), d0, atol=1e-9)
            assert np.abs(Q - P).max() > 1e-2
            rotations.append(_kabsch(P, Q))
    assert np.abs(rotations[0] - rotations[2]).max() > 1e-3  # left and right limbs turned differently
    # edges away from the joints keep their length; the strain sits at the joints
    e0 = np.linalg.norm(V2[E[:, 0]] - V2[E[:, 1]], axis=1)
    e1 = np.linalg.norm(W[E[:, 0]] - W[E[:, 1]], axis=1)
    rigid = far[E[:, 0]] & far[E[:, 1]]
    np.testing.assert_allclose(e1[rigid], e0[rigid], rtol=1e-9)
    assert np.abs(e1 / e0 - 1)[~rigid].max() > 1e-3


def test_articulate_rejects_bad_input():
    from meshgdl.data.transforms import articulate

    V, F = icosphere(1)
    y = np.zeros(len(V), dtype=np.int64)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="labels"):
        articulate(V, F, y[:-1], {1: 0}, rng)
    with pytest.raises(ValueError, match="blend_rings"):
        articulate(V, F, y, {1: 0}, rng, blend_rings=0)
    with pytest.raises(ValueError, match="tree"):
        articulate(V, F, y, {1: 2, 2: 1}, rng)
    # a label that is not on the mesh moves nothing
    np.testing.assert_array_equal(articulate(V, F, y, {1: 0}, rng), V)
