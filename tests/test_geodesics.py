import numpy as np
import pytest

from meshes import grid, icosphere
from meshgdl.errors import MeshError
from meshgdl.geometry.geodesics import (
    HeatGeodesics,
    exact_geodesic_distance,
    farthest_point_sampling,
    heat_geodesic_distance,
)


@pytest.fixture(scope="module")
def sphere():
    V, F = icosphere(4)
    return V, F, HeatGeodesics(V, F)


def great_circle(V, s):
    return np.arccos(np.clip(V @ V[s], -1.0, 1.0))


def mean_edge(V, F):
    return float(np.mean(np.linalg.norm(V[F] - V[np.roll(F, 1, axis=1)], axis=2)))


def test_heat_method_matches_great_circle_distance(sphere):
    V, F, solver = sphere
    for s in (0, 17, 1000):
        d = solver.distance(s)
        gc = great_circle(V, s)
        assert d.shape == (len(V),) and d[s] == 0.0
        # away from the source's first rings (~8 edges), where the heat method smooths
        far = gc > 0.5
        rel = np.abs(d[far] - gc[far]) / gc[far]
        assert rel.max() < 0.03 and np.median(rel) < 0.015
        # everywhere: a few percent plus half an edge length
        assert np.all(np.abs(d - gc) <= 0.03 * gc + 0.5 * mean_edge(V, F))
        np.testing.assert_allclose(d.max(), np.pi, rtol=0.03)


def test_exact_geodesics_are_much_closer_than_heat(sphere):
    V, F, solver = sphere
    s = 5
    gc = great_circle(V, s)
    far = gc > 0.15
    exact = exact_geodesic_distance(V, F, s)
    heat = solver.distance(s)
    err_exact = np.abs(exact[far] - gc[far]) / gc[far]
    err_heat = np.abs(heat[far] - gc[far]) / gc[far]
    assert err_exact.max() < 0.01
    assert err_exact.mean() < 0.5 * err_heat.mean()
    # polyhedral paths are chords of the sphere's arcs: never longer than great circles
    assert np.all(exact <= gc + 1e-9)


def test_exact_geodesics_on_a_flat_grid_are_euclidean():
    V, F = grid(9, 9, jitter=0.2, seed=2)
    d = exact_geodesic_distance(V, F, 40)  # an interior vertex; flat & convex -> straight lines
    np.testing.assert_allclose(d, np.linalg.norm(V - V[40], axis=1), atol=1e-9)


def test_multi_source_is_distance_to_nearest_source(sphere):
    V, F, solver = sphere
    srcs = [0, 300, 2000]
    exact = exact_geodesic_distance(V, F, srcs)
    singles = np.min([exact_geodesic_distance(V, F, s) for s in srcs], axis=0)
    np.testing.assert_allclose(exact, singles, atol=1e-9)
    heat = solver.distance(np.array(srcs))
    assert np.all(heat[srcs] == 0.0)
    gc = np.min([great_circle(V, s) for s in srcs], axis=0)
    far = gc > 0.5
    # the heat method rounds off the kinks where two sources' regions meet: looser than
    # single-source, but still a few percent
    assert np.median(np.abs(heat[far] - gc[far]) / gc[far]) < 0.03
    assert np.all(np.abs(heat - gc) <= 0.05 * gc + mean_edge(V, F))
    np.testing.assert_allclose(heat_geodesic_distance(V, F, srcs), heat, rtol=1e-10)


def test_distances_equivariant_under_vertex_permutation(sphere):
    V, F, solver = sphere
    p = np.random.default_rng(0).permutation(len(V))
    inv = np.argsort(p)
    s = 123
    d = solver.distance(s)
    dp = heat_geodesic_distance(V[p], inv[F], int(inv[s]))
    np.testing.assert_allclose(dp[inv], d, rtol=1e-6, atol=1e-9)
    e = exact_geodesic_distance(V, F, s)
    ep = exact_geodesic_distance(V[p], inv[F], int(inv[s]))
    np.testing.assert_allclose(ep[inv], e, atol=1e-9)


def test_unreachable_vertices_are_inf_never_nan():
    V, F = icosphere(2)
    n = len(V)
    V2 = np.vstack([V, V + 5.0, [[9.0, 9.0, 9.0]]])
    F2 = np.vstack([F, F + n])
    for dist in (heat_geodesic_distance(V2, F2, 3), exact_geodesic_distance(V2, F2, 3)):
        assert not np.any(np.isnan(dist))
        assert np.all(np.isfinite(dist[:n])) and np.all(np.isinf(dist[n:]))
    # the isolated vertex as a source: zero at itself, unreachable elsewhere
    d = HeatGeodesics(V2, F2).distance(2 * n)
    assert d[2 * n] == 0.0 and np.all(np.isinf(d[: 2 * n]))


def test_non_manifold_mesh_heat_is_finite_exact_refuses():
    V = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -1, 0], [0.5, 0, 1.0]])
    F = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    d = heat_geodesic_distance(V, F, 0)
    assert np.all(np.isfinite(d)) and d[0] == 0.0
    # the three wing tips are symmetric copies of each other
    np.testing.assert_allclose(d[2:], d[2], rtol=1e-6)
    with pytest.raises(MeshError, match="manifold"):
        exact_geodesic_distance(V, F, 0)


@pytest.mark.parametrize("bad", [-1, 10**6, 2.0, True, [], [0, 99999], "a", None])
def test_bad_sources_rejected(sphere, bad):
    _, _, solver = sphere
    with pytest.raises(MeshError):
        solver.distance(bad)


def test_bad_t_coef_rejected():
    V, F = icosphere(1)
    with pytest.raises(MeshError):
        HeatGeodesics(V, F, t_coef=0.0)


def test_farthest_point_sampling_spreads_over_the_sphere(sphere):
    V, F, solver = sphere
    idx = farthest_point_sampling(V, F, 24, start=7, solver=solver)
    assert idx.dtype == np.int64 and idx.shape == (24,)
    assert idx[0] == 7 and len(np.unique(idx)) == 24
    # the second sample is (nearly) antipodal to the first
    np.testing.assert_allclose(great_circle(V, 7)[idx[1]], np.pi, rtol=0.03)
    # covering radius (farthest vertex from its nearest sample) shrinks as samples are added
    gc = np.stack([great_circle(V, i) for i in idx])
    radii = np.array([gc[:j].min(axis=0).max() for j in range(1, 25)])
    assert np.all(np.diff(radii) <= 1e-12) and radii[-1] < 0.25 * radii[0]
    # 24 well-spread points on the unit sphere cover it with geodesic radius < ~0.6
    assert radii[-1] < 0.65
    # samples are not crowded: nearest-neighbour separation stays large
    sep = gc[:, idx] + np.diag(np.full(24, np.inf))
    assert sep.min() > 0.4


def test_fps_covers_every_component_and_validates_k():
    V, F = icosphere(2)
    n = len(V)
    V2 = np.vstack([V, V + 5.0])
    F2 = np.vstack([F, F + n])
    idx = farthest_point_sampling(V2, F2, 2)
    assert idx[0] == 0 and idx[1] >= n
    all_idx = farthest_point_sampling(V, F, n)
    assert sorted(all_idx) == list(range(n))
    for k in (0, n + 1, 2.5):
        with pytest.raises(MeshError):
            farthest_point_sampling(V, F, k)
    with pytest.raises(MeshError):
        farthest_point_sampling(V2, F2, 3, solver=HeatGeodesics(V, F))
