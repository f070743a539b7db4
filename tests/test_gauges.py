"""Gauges, log-map angles, parallel transport: exact laws and analytic answers."""

import numpy as np
import potpourri3d as pp3d
import pytest

from meshes import grid, icosphere, torus
from meshgdl.geometry.gauges import compute_gauges, log_map, wrap_angle
from meshgdl.geometry.gradient import tangent_gradient
from meshgdl.geometry.normals import angle_defects, corner_angles


def planar_angle(V, src, dst):
    d = V[dst] - V[src]
    return np.arctan2(d[:, 1], d[:, 0])


def bumpy_sphere(subdiv=3):
    V, F = icosphere(subdiv)
    V = V * (1 + 0.1 * np.sin(3 * V[:, [0]]) * np.cos(2 * V[:, [1]]))
    return V, F


def cap_loop(V, F, radius):
    """Faces of the spherical cap around +z, and its boundary as a CCW vertex loop."""
    inside = V[:, 2] > np.cos(radius)
    Fc = F[inside[F].all(1)]
    directed = np.concatenate([Fc[:, [0, 1]], Fc[:, [1, 2]], Fc[:, [2, 0]]])
    have = set(map(tuple, directed.tolist()))
    bd = {a: b for a, b in directed.tolist() if (b, a) not in have}
    loop = [next(iter(bd))]
    while bd[loop[-1]] != loop[0]:
        loop.append(bd[loop[-1]])
    assert len(loop) == len(bd), "cap boundary should be a single loop"
    return Fc, np.array(loop)


def spherical_triangle_area(a, b, c):
    """Exact area of the geodesic triangle on the unit sphere (Van Oosterom-Strackee)."""
    num = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    den = 1 + np.einsum("ij,ij->i", a, b) + np.einsum("ij,ij->i", b, c) + np.einsum("ij,ij->i", c, a)
    return 2 * np.arctan2(num, den)


def test_flat_grid_log_map_is_planar_angle_and_transport_is_flat():
    V, F = grid(7, 6, jitter=0.35, seed=3)
    g = compute_gauges(V, F)
    q, p = g.edge_index
    assert g.regular.all()
    ref = g.reference
    # Angle of q in p's gauge = planar angle of pq measured from p's reference edge.
    expected = planar_angle(V, p, q) - planar_angle(V, p, ref[p])
    np.testing.assert_allclose(wrap_angle(g.theta - expected), 0, atol=1e-12)
    # In the plane, transport only accounts for the two reference directions.
    expected_g = planar_angle(V, q, ref[q]) - planar_angle(V, p, ref[p])
    np.testing.assert_allclose(wrap_angle(g.transport - expected_g), 0, atol=1e-12)
    # Zero holonomy around every face.
    for f in F[:: max(1, len(F) // 40)]:
        assert abs(g.holonomy(f)) < 1e-12
    np.testing.assert_allclose(g.r, np.linalg.norm(V[p] - V[q], axis=1))
    # Both directions of every edge, and reverse is an involution.
    np.testing.assert_array_equal(g.reverse[g.reverse], np.arange(len(q)))
    np.testing.assert_array_equal(g.edge_index[:, g.reverse], g.edge_index[::-1])


def test_boundary_vertices_detected_on_grid():
    V, F = grid(5, 4)
    g = compute_gauges(V, F)
    on_border = (V[:, 0] == 0) | (V[:, 0] == 1) | (V[:, 1] == 0) | (V[:, 1] == 1)
    np.testing.assert_array_equal(g.boundary, on_border)
    np.testing.assert_allclose(g.scale, 1.0)


@pytest.mark.parametrize("mesh", ["sphere", "torus", "grid"])
def test_gauge_transformation_law_is_exact(mesh):
    V, F = {"sphere": bumpy_sphere, "torus": torus, "grid": lambda: grid(6, 6, jitter=0.3)}[mesh]()
    rng = np.random.default_rng(1)
    alpha = rng.uniform(-np.pi, np.pi, len(V))
    g = compute_gauges(V, F)
    h = compute_gauges(V, F, offsets=alpha)
    q, p = g.edge_index
    e = h.edge_id(q, p)
    assert (e >= 0).all()
    np.testing.assert_allclose(wrap_angle(h.theta[e] - (g.theta - alpha[p])), 0, atol=1e-12)
    np.testing.assert_allclose(wrap_angle(h.transport[e] - (g.transport + alpha[q] - alpha[p])), 0, atol=1e-12)
    np.testing.assert_allclose(h.r[e], g.r)
    # Extrinsic frames rotate by alpha about the normal.
    c, s = np.cos(alpha)[:, None], np.sin(alpha)[:, None]
    np.testing.assert_allclose(h.frames[:, 0], c * g.frames[:, 0] + s * g.frames[:, 1], atol=1e-12)


def test_other_reference_neighbours_are_a_gauge_transformation():
    V, F = bumpy_sphere()
    g = compute_gauges(V, F)
    q, p = g.edge_index
    rng = np.random.default_rng(2)
    # Pick a random neighbour of every vertex as the new reference.
    pick = np.zeros(len(V), dtype=np.int64)
    order = rng.permutation(len(q))
    pick[p[order]] = q[order]
    h = compute_gauges(V, F, reference=pick)
    alpha = g.theta[g.edge_id(pick, np.arange(len(V)))]  # new reference's angle in the old gauge
    e = h.edge_id(q, p)
    np.testing.assert_allclose(wrap_angle(h.theta[e] - (g.theta - alpha[p])), 0, atol=1e-12)
    np.testing.assert_allclose(wrap_angle(h.transport[e] - (g.transport + alpha[q] - alpha[p])), 0, atol=1e-12)
    with pytest.raises(ValueError, match="neighbour"):
        compute_gauges(V, F, reference=np.zeros(len(V), dtype=np.int64))


def test_interior_angles_rescaled_to_two_pi():
    V, F = bumpy_sphere()
    g = compute_gauges(V, F)
    p = g.edge_index[1]
    # Sorted by receiver then angle: consecutive gaps around each vertex sum to 2*pi.
    gaps = np.diff(np.append(g.theta, 0))
    last = np.r_[p[1:] != p[:-1], True]
    gaps[last] = 2 * np.pi - g.theta[last]
    np.testing.assert_allclose(np.bincount(p, weights=gaps), 2 * np.pi, atol=1e-12)
    np.testing.assert_allclose(g.scale * g.angle_sum, 2 * np.pi, atol=1e-12)


def test_gauss_bonnet():
    V, F = icosphere(3)
    assert abs(angle_defects(V, F).sum() - 4 * np.pi) < 1e-9
    V, F = torus()
    assert abs(angle_defects(V, F).sum()) < 1e-9
    V, F = grid(6, 6, jitter=0.3)
    assert abs(angle_defects(V, F).sum() - 2 * np.pi) < 1e-9  # disk: chi = 1


@pytest.mark.parametrize("radius", [0.4, 0.7, 1.0])
def test_holonomy_equals_enclosed_curvature(radius):
    V, F = icosphere(4)
    g = compute_gauges(V, F)
    Fc, loop = cap_loop(V, F, radius)
    hol = g.holonomy(loop)
    # Exact discrete identity: sum over enclosed corners of (scale - 1) * angle.
    discrete = np.sum((g.scale[Fc] - 1) * corner_angles(V, Fc))
    assert abs(wrap_angle(hol - discrete)) < 1e-10
    # Smooth answer: Gauss-Bonnet on the unit sphere, K = 1, so the enclosed area.
    area = spherical_triangle_area(V[Fc[:, 0]], V[Fc[:, 1]], V[Fc[:, 2]]).sum()
    assert area < np.pi
    assert abs(hol - area) / area < 0.02, (hol, area)


def test_face_holonomy_matches_geometry_central_connection():
    # potpourri3d's connection Laplacian carries geometry-central's transport between
    # its own frames; holonomy is frame-independent, so face holonomies must agree.
    V, F = bumpy_sphere(3)
    g = compute_gauges(V, F)
    C = pp3d.MeshVectorHeatSolver(V, F, use_intrinsic_delaunay=False).get_connection_laplacian().tocsr()
    for a, b, c in F[::7]:
        theirs = np.angle(-C[b, a]) + np.angle(-C[c, b]) + np.angle(-C[a, c])
        assert abs(wrap_angle(g.holonomy([a, b, c]) - theirs)) < 1e-9


def test_vertex_permutation_changes_only_the_gauge():
    V, F = bumpy_sphere()
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(V))  # new index i holds old vertex perm[i]
    inv = np.argsort(perm)
    g = compute_gauges(V, F)
    h = compute_gauges(V[perm], inv[F])
    q, p = g.edge_index
    e = h.edge_id(inv[q], inv[p])
    np.testing.assert_allclose(h.r[e], g.r, atol=1e-14)
    # theta differs by one angle per receiver (the other reference edge) ...
    d = np.exp(1j * (h.theta[e] - g.theta))
    per_vertex = np.bincount(p, weights=d.real) + 1j * np.bincount(p, weights=d.imag)
    alpha = np.angle(per_vertex)
    np.testing.assert_allclose(wrap_angle(h.theta[e] - g.theta + alpha[p]), 0, atol=1e-10)
    # ... and transport changes by the matching gauge transformation.
    np.testing.assert_allclose(wrap_angle(h.transport[e] - (g.transport + alpha[q] - alpha[p])), 0, atol=1e-10)


def test_non_manifold_input_is_finite_and_flagged():
    # Three triangles sharing edge (0, 1), plus a bow-tie at vertex 5.
    V = np.array(
        [[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -1, 0], [0.5, 0, 1], [2, 0, 0], [3, 1, 0], [3, -1, 0], [1, 1, 0.1]],
        dtype=float,
    )
    F = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [5, 6, 8], [5, 7, 1]])
    g = compute_gauges(V, F)
    assert np.isfinite(g.theta).all() and np.isfinite(g.transport).all() and np.isfinite(g.frames).all()
    assert not g.regular[0] and not g.regular[1] and not g.regular[5]
    alpha = np.linspace(0, 3, len(V))
    h = compute_gauges(V, F, offsets=alpha)
    q, p = g.edge_index
    e = h.edge_id(q, p)
    np.testing.assert_allclose(wrap_angle(h.transport[e] - (g.transport + alpha[q] - alpha[p])), 0, atol=1e-12)


def test_degenerate_face_gives_finite_gauges():
    V, F = grid(4, 4)
    V = np.vstack([V, [[0.5, 0.5, 0.0]]])
    F = np.vstack([F, [[0, 1, 16]], [[16, 1, 0]]])  # zero-area sliver pair
    g = compute_gauges(V, F)
    for a in (g.theta, g.transport, g.r, g.frames):
        assert np.isfinite(a).all()


def test_vector_heat_log_map_in_our_gauge():
    V, F = icosphere(4)
    g = compute_gauges(V, F)
    solver = pp3d.MeshVectorHeatSolver(V, F)
    for src in (0, 777):
        L = log_map(V, F, src, gauges=g, solver=solver)
        m = g.edge_index[1] == src
        nb = g.edge_index[0][m]
        np.testing.assert_allclose(wrap_angle(np.arctan2(L[nb, 1], L[nb, 0]) - g.theta[m]), 0, atol=1e-3)
        d = np.arccos(np.clip(V @ V[src], -1, 1))
        far = (d > 0.3) & (d < 2.5)
        rel = np.abs(np.linalg.norm(L[far], axis=1) - d[far]) / d[far]
        assert rel.max() < 0.05


def test_tangent_gradient_exact_for_linear_functions_in_the_plane():
    V, F = grid(7, 7, jitter=0.3, seed=4)
    alpha = np.random.default_rng(0).uniform(-np.pi, np.pi, len(V))
    g = compute_gauges(V, F, offsets=alpha)
    gx, gy = tangent_gradient(g)
    f = 2.0 * V[:, 0] - 3.0 * V[:, 1] + 1.0
    grad3 = g.tangent_to_3d(np.stack([gx @ f, gy @ f], 1))
    np.testing.assert_allclose(grad3, np.tile([2.0, -3.0, 0.0], (len(V), 1)), atol=1e-9)
    np.testing.assert_allclose(gx @ np.ones(len(V)), 0, atol=1e-12)


def test_tangent_gradient_transforms_as_rho1():
    V, F = bumpy_sphere()
    f = np.sin(2 * V[:, 0]) + V[:, 2] ** 2
    alpha = np.random.default_rng(3).uniform(-np.pi, np.pi, len(V))
    gx, gy = tangent_gradient(compute_gauges(V, F))
    hx, hy = tangent_gradient(compute_gauges(V, F, offsets=alpha))
    a, b = gx @ f, gy @ f
    c, s = np.cos(alpha), np.sin(alpha)
    np.testing.assert_allclose(hx @ f, c * a + s * b, atol=1e-10)
    np.testing.assert_allclose(hy @ f, -s * a + c * b, atol=1e-10)


def test_tangent_gradient_on_sphere_matches_projected_gradient():
    V, F = icosphere(4)
    g = compute_gauges(V, F)
    gx, gy = tangent_gradient(g)
    grad3 = g.tangent_to_3d(np.stack([gx @ V[:, 2], gy @ V[:, 2]], 1))
    # Smooth answer: grad of z on the unit sphere is e_z minus its normal part.
    ez = np.array([0.0, 0.0, 1.0])
    expected = ez - V[:, 2:3] * V
    assert np.abs(grad3 - expected).max() < 0.05
