"""Mesh hierarchy: decimation, parents, transport angles (exact gauge law), cache, batching."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from meshes import grid, icosphere
from scipy.spatial.transform import Rotation

import meshgdl.data.batching as B
import meshgdl.data.hierarchy as H
import meshgdl.geometry.gauges as G
import meshgdl.geometry.remesh as RM
from meshgdl.errors import MeshError
from meshgdl.geometry.gauges import compute_gauges
from meshgdl.geometry.gradient import tangent_gradient
from meshgdl.geometry.normals import vertex_normals


def bumpy_sphere(subdiv=3, seed=0, amp=0.05):
    """Icosphere with random radial noise: no exact symmetries, so no decimation ties."""
    V, F = icosphere(subdiv)
    rng = np.random.default_rng(seed)
    return V * (1 + amp * rng.standard_normal((len(V), 1))), F


def wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


# --------------------------------------------------------------------------- decimation


def test_decimate_sizes_and_parents():
    V, F = bumpy_sphere(3)
    Vc, Fc, par = RM.decimate(V, F, len(V) // 4)
    assert abs(len(Vc) - len(V) / 4) <= 0.1 * len(V) / 4
    assert Fc.min() >= 0 and Fc.max() < len(Vc)
    assert np.array_equal(np.unique(Fc), np.arange(len(Vc)))  # every coarse vertex is on a face
    assert par.shape == (len(V),) and par.min() >= 0 and par.max() < len(Vc)
    # collapse clusters cover every coarse vertex and stay local
    assert np.bincount(par, minlength=len(Vc)).min() >= 1
    coarse_edge = np.mean(np.linalg.norm(Vc[Fc[:, 0]] - Vc[Fc[:, 1]], axis=1))
    assert np.linalg.norm(V - Vc[par], axis=1).max() < 2.5 * coarse_edge
    # closed genus-0 input stays a closed genus-0 mesh
    assert len(Vc) - 3 * len(Fc) // 2 + len(Fc) == 2


def test_decimate_nearest_parent_is_nearest():
    V, F = bumpy_sphere(3)
    Vc, Fc, par = RM.decimate(V, F, len(V) // 4, parent="nearest")
    d = np.linalg.norm(V[:, None, :] - Vc[None, :, :], axis=2)
    assert np.array_equal(par, np.argmin(d, axis=1))


def test_decimate_flat_grid_stays_flat():
    V, F = grid(12, 12, jitter=0.2)
    Vc, Fc, par = RM.decimate(V, F, 36)
    assert np.abs(Vc[:, 2]).max() < 1e-12
    assert len(Vc) < 60 and par.max() < len(Vc)


def test_decimate_independent_of_vertex_order_and_rigid_motion():
    V, F = bumpy_sphere(3, seed=1)
    Vc, Fc, par = RM.decimate(V, F, len(V) // 4)
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(V))  # new vertex i is old vertex perm[i]
    inv = np.argsort(perm)
    Fp = inv[F][rng.permutation(len(F))]
    Vc2, Fc2, par2 = RM.decimate(V[perm], Fp, len(V) // 4)
    assert np.array_equal(Vc, Vc2) and np.array_equal(Fc, Fc2)
    assert np.array_equal(par[perm], par2)
    R = Rotation.random(random_state=7).as_matrix()
    Vc3, Fc3, par3 = RM.decimate(V @ R.T + np.array([0.3, -1.0, 2.0]), F, len(V) // 4)
    assert np.array_equal(Fc, Fc3) and np.array_equal(par, par3)
    np.testing.assert_allclose(Vc3, Vc @ R.T + np.array([0.3, -1.0, 2.0]), atol=1e-10)


def test_decimate_rejects_too_small_target():
    V, F = icosphere(1)
    with pytest.raises(MeshError, match="minimum"):
        RM.decimate(V, F, 3)
    with pytest.raises(ValueError, match="parent"):
        RM.decimate(V, F, 12, parent="closest")


# --------------------------------------------------------------------------- transport angles


def _frames(angles, normals):
    """Frames rows (e1, e2, n) with e1 at ``angles`` from a fixed tangent direction."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    a = np.cross(n, np.eye(3)[np.argmin(np.abs(n), axis=1)])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(n, a)
    e1 = np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * b
    return np.stack([e1, np.cross(n, e1), n], axis=1)


def _angles(Ff, Fc, par):
    """Transport angles for orthonormal frames (rows e1, e2 = Jacobian, row 3 = normal)."""
    return G.transport_angles(Ff[:, :2], Ff[:, 2], Fc[:, :2], Fc[:, 2], par)


def test_transport_angle_planar_is_difference_of_gauge_angles():
    rng = np.random.default_rng(0)
    af, ac = rng.uniform(-np.pi, np.pi, 50), rng.uniform(-np.pi, np.pi, 7)
    z = np.tile([0.0, 0.0, 1.0], (50, 1))
    par = rng.integers(0, 7, 50)
    ang = _angles(_frames(af, z), _frames(ac, z[:7]), par)
    np.testing.assert_allclose(wrap(ang - (af - ac[par])), 0, atol=1e-12)


def test_transport_angle_tilted_normal_uses_minimal_rotation():
    # Fine normal tilted about the x axis; e1 = x is on the rotation axis, so it is
    # carried to itself: angle 0 to a coarse gauge with e1 = x; 90 deg if coarse e1 = -y.
    beta = 0.7
    nf = np.array([[0.0, -np.sin(beta), np.cos(beta)]])
    e1 = np.array([[1.0, 0.0, 0.0]])
    Ff = np.stack([e1, np.cross(nf, e1), nf], axis=1)
    nc = np.array([[0.0, 0.0, 1.0]])
    Fc = np.stack([e1, np.cross(nc, e1), nc], axis=1)
    assert abs(_angles(Ff, Fc, np.array([0]))[0]) < 1e-14
    e1c = np.array([[0.0, -1.0, 0.0]])
    Fc2 = np.stack([e1c, np.cross(nc, e1c), nc], axis=1)
    assert abs(wrap(_angles(Ff, Fc2, np.array([0]))[0] - np.pi / 2)) < 1e-14


def _random_gauges(V, F, rng):
    """Gauges with a random reference neighbour and a random extra rotation per vertex,
    their tangent Jacobian, and the intrinsic rotation alpha from the default gauges
    (theta_new = theta_old - alpha_p on every edge)."""
    g0 = compute_gauges(V, F)
    q, p = g0.edge_index
    ref = np.array([rng.choice(q[p == v]) for v in range(len(V))])
    g1 = compute_gauges(V, F, reference=ref, offsets=rng.uniform(-np.pi, np.pi, len(V)))
    n = len(V)
    o0 = np.argsort(g0.edge_index[0] * n + g0.edge_index[1])
    o1 = np.argsort(g1.edge_index[0] * n + g1.edge_index[1])
    d = wrap(g0.theta[o0] - g1.theta[o1])
    alpha = np.zeros(n)
    alpha[g0.edge_index[1][o0]] = d
    # the law really is per vertex: every edge into p gives the same alpha_p
    np.testing.assert_allclose(wrap(d - alpha[g0.edge_index[1][o0]]), 0, atol=1e-12)
    jac = lambda g: G.tangent_jacobian(V, *tangent_gradient(g))  # noqa: E731
    return (jac(g0), g0), (jac(g1), g1), alpha


def test_transport_angle_gauge_law_exact_for_new_reference_neighbours():
    """angle' = angle + alpha_fine - alpha_coarse with independent random gauges (other
    reference neighbours + rotations) on real decimated meshes."""
    rng = np.random.default_rng(11)
    V, F = bumpy_sphere(3, seed=2)
    Vc, Fc, par = RM.decimate(V, F, len(V) // 4)
    nf, nc = vertex_normals(V, F), vertex_normals(Vc, Fc)
    (Jf0, _), (Jf1, _), af = _random_gauges(V, F, rng)
    (Jc0, _), (Jc1, _), ac = _random_gauges(Vc, Fc, rng)
    assert np.abs(wrap(af)).max() > 1.0 and np.abs(wrap(ac)).max() > 1.0
    a0 = G.transport_angles(Jf0, nf, Jc0, nc, par)
    a1 = G.transport_angles(Jf1, nf, Jc1, nc, par)
    assert np.all(np.isfinite(a1)) and np.all(a1 >= -np.pi) and np.all(a1 < np.pi)
    np.testing.assert_allclose(wrap(a1 - (a0 + af - ac[par])), 0, atol=1e-11)
    # and the angles are close to what the extrinsic frames suggest (sanity, not exact)
    g0f, g0c = compute_gauges(V, F), compute_gauges(Vc, Fc)
    # (this noisy sphere has cone angles from 230 to 475 degrees, hence only typically)
    assert np.median(np.abs(wrap(a0 - _angles(g0f.frames, g0c.frames, par)))) < 0.05


def test_transport_angle_gauge_law_exact_for_opposite_normals():
    rng = np.random.default_rng(12)
    nf = rng.standard_normal((40, 3))
    nf /= np.linalg.norm(nf, axis=1, keepdims=True)
    par = np.arange(40)
    af, ac = rng.uniform(-np.pi, np.pi, 40), rng.uniform(-np.pi, np.pi, 40)
    a0 = _angles(_frames(np.zeros(40), nf), _frames(np.zeros(40), -nf), par)
    a1 = _angles(_frames(af, nf), _frames(ac, -nf), par)
    assert np.all(np.isfinite(a1))
    np.testing.assert_allclose(wrap(a1 - (a0 + af - ac)), 0, atol=1e-11)


def test_transport_angles_invariant_to_rigid_motion():
    V, F = bumpy_sphere(2, seed=4)
    Vc, Fc, par = RM.decimate(V, F, len(V) // 4)
    R = Rotation.random(random_state=5).as_matrix()

    def angles(V, Vc):
        J = lambda V, F: G.tangent_jacobian(V, *tangent_gradient(compute_gauges(V, F)))  # noqa: E731
        return G.transport_angles(J(V, F), vertex_normals(V, F), J(Vc, Fc), vertex_normals(Vc, Fc), par)

    np.testing.assert_allclose(wrap(angles(V @ R.T, Vc @ R.T) - angles(V, Vc)), 0, atol=1e-10)


# --------------------------------------------------------------------------- build / cache / batch


def test_build_hierarchy_levels_and_pools(tmp_path):
    V, F = bumpy_sphere(3, seed=5)
    h = H.build_hierarchy(V, F, ratios=(1, 0.25, 0.0625), k_eig=24, coarse_k_eig=8, n_hks=4, cache_dir=tmp_path)
    assert h.num_levels == 3 and len(h.pools) == 2
    assert h.levels[0].num_vertices == len(V)
    assert h.levels[0].evecs.shape[1] == 24 and h.levels[1].evecs.shape[1] == 8
    sizes = [lv.num_vertices for lv in h.levels]
    assert sizes[0] > sizes[1] > sizes[2] >= RM.MIN_COARSE_VERTICES
    for l, pm in enumerate(h.pools):
        assert pm.parent.shape == (sizes[l],) and pm.parent.max() < sizes[l + 1]
        # consistent with the extrinsic frames up to the intrinsic/extrinsic angle mismatch
        approx = _angles(h.levels[l].frames, h.levels[l + 1].frames, pm.parent)
        assert np.median(np.abs(wrap(pm.angle - approx))) < 0.1
    # cache: the second build reads the stored decimation instead of recomputing it
    files = sorted(p.name for p in tmp_path.glob("hier-*.npz"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("decimated again despite a cache hit")

    orig = RM.decimate
    RM.decimate = boom
    try:
        h2 = H.build_hierarchy(V, F, ratios=(1, 0.25, 0.0625), k_eig=24, coarse_k_eig=8, n_hks=4, cache_dir=tmp_path)
    finally:
        RM.decimate = orig
    for a, b in zip(h.levels, h2.levels):
        np.testing.assert_array_equal(a.V, b.V)
        np.testing.assert_array_equal(a.F, b.F)
    for a, b in zip(h.pools, h2.pools):
        np.testing.assert_array_equal(a.parent, b.parent)
        np.testing.assert_array_equal(a.angle, b.angle)


def test_corrupt_cache_is_recomputed(tmp_path, caplog):
    V, F = bumpy_sphere(2, seed=6)
    kw = dict(ratios=(1, 0.3), k_eig=8, coarse_k_eig=4, n_hks=2, cache_dir=tmp_path)
    h = H.build_hierarchy(V, F, **kw)
    (path,) = tmp_path.glob("hier-*.npz")
    path.write_bytes(path.read_bytes()[:50])
    with caplog.at_level(logging.WARNING, logger="meshgdl.cache"):
        h2 = H.build_hierarchy(V, F, **kw)
    assert "unusable hierarchy cache" in caplog.text
    np.testing.assert_array_equal(h.pools[0].parent, h2.pools[0].parent)
    # the bad file was replaced by a good one
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meshgdl.cache"):
        H.build_hierarchy(V, F, **kw)
    assert "unusable" not in caplog.text


def test_build_hierarchy_bad_arguments():
    V, F = icosphere(1)
    with pytest.raises(ValueError, match="ratios"):
        H.build_hierarchy(V, F, ratios=(1, 0.5, 0.5))
    with pytest.raises(ValueError, match="ratios"):
        H.build_hierarchy(V, F, ratios=(0.5, 0.25))
    with pytest.raises(MeshError):
        H.build_hierarchy(V, F, ratios=(1, 0.1), k_eig=4, coarse_k_eig=4, n_hks=2)


def test_single_level_and_collate():
    import torch

    h1 = H.build_hierarchy(*bumpy_sphere(2, seed=7), ratios=(1, 0.3), k_eig=8, coarse_k_eig=4, n_hks=2)
    h2 = H.build_hierarchy(*bumpy_sphere(2, seed=8, amp=0.1), ratios=(1, 0.3), k_eig=8, coarse_k_eig=4, n_hks=2)
    b = B.collate_hierarchies([h1, h2], dtype=torch.float64)
    n0 = [h.levels[0].num_vertices for h in (h1, h2)]
    n1 = [h.levels[1].num_vertices for h in (h1, h2)]
    assert b.levels[0].num_vertices == sum(n0) and b.pools[0].num_coarse == sum(n1)
    par = b.pools[0].parent.numpy()
    np.testing.assert_array_equal(par[: n0[0]], h1.pools[0].parent)
    np.testing.assert_array_equal(par[n0[0] :], h2.pools[0].parent + n1[0])
    assert b.pools[0].angle.dtype == torch.float64
    single = H.build_hierarchy(*bumpy_sphere(2, seed=7), ratios=(1,), k_eig=8, n_hks=2)
    assert single.num_levels == 1 and single.pools == []
    with pytest.raises(ValueError, match="number of levels"):
        B.collate_hierarchies([h1, single])
