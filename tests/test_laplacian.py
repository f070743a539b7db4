import numpy as np
import pytest
import scipy.sparse as sp

from meshes import grid, icosphere, torus
from meshgdl.errors import MeshError
from meshgdl.geometry.laplacian import (
    choose_laplacian_method,
    cotan_laplacian,
    degenerate_faces,
    laplacian,
    laplacian_diagnostics,
    mass_matrix,
)
from meshgdl.geometry.topology import is_edge_manifold, is_vertex_manifold
from meshgdl.geometry.validation import check_arrays
from meshgdl.geometry.normals import face_areas


def noisy_sphere(sub=3, noise=0.02, seed=0):
    V, F = icosphere(sub)
    rng = np.random.default_rng(seed)
    return V * (1 + noise * rng.standard_normal((len(V), 1))), F


def book_mesh():
    """Three triangles sharing the edge (0, 1): edge-non-manifold."""
    V = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -1, 0], [0.5, 0, 1.0]])
    F = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    return V, F


def bowtie_mesh():
    """Two fans of triangles touching only at vertex 0."""
    V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [-1, 0, 0], [-1, -1, 0.0]])
    F = np.array([[0, 1, 2], [0, 3, 4]])
    return V, F


def assert_laplacian_laws(L, atol=1e-10):
    assert sp.isspmatrix_csr(L) or isinstance(L, sp.csr_array)
    Ld = L.toarray()
    assert np.all(np.isfinite(Ld))
    scale = np.abs(Ld).max()
    np.testing.assert_allclose(Ld, Ld.T, atol=1e-12 * scale)
    np.testing.assert_allclose(Ld @ np.ones(len(Ld)), 0.0, atol=1e-12 * scale)
    assert np.linalg.eigvalsh(Ld).min() >= -atol * scale


@pytest.mark.parametrize("mesh", [icosphere(2), torus(16, 8), grid(6, 5, jitter=0.3)], ids=["sphere", "torus", "grid"])
def test_cotan_laplacian_is_symmetric_psd_with_constant_kernel(mesh):
    V, F = mesh
    L = cotan_laplacian(V, F)
    assert L.shape == (len(V), len(V))
    assert np.all(L.diagonal() > 0)
    assert_laplacian_laws(L)


def test_cotan_weights_of_a_split_square():
    # unit square split along (0, 3): right angles face the diagonal (cot 90° = 0),
    # 45° angles face the sides (cot 45° = 1, one triangle each -> weight 1/2)
    V, F = grid(2, 2)
    L = cotan_laplacian(V, F).toarray()
    expected = np.array(
        [[1.0, -0.5, -0.5, 0.0], [-0.5, 1.0, 0.0, -0.5], [-0.5, 0.0, 1.0, -0.5], [0.0, -0.5, -0.5, 1.0]]
    )
    np.testing.assert_allclose(L, expected, atol=1e-14)


def test_linear_functions_are_harmonic_at_interior_vertices():
    V, F = grid(9, 7, jitter=0.35, seed=3)
    L = cotan_laplacian(V, F)
    interior = (V[:, 0] > 1e-9) & (V[:, 0] < 1 - 1e-9) & (V[:, 1] > 1e-9) & (V[:, 1] < 1 - 1e-9)
    for u in (V[:, 0], V[:, 1], 2.0 * V[:, 0] - 3.0 * V[:, 1] + 0.7):
        r = L @ u
        assert np.abs(r[interior]).max() < 1e-12
        # not a vacuous check: the boundary rows carry the flux
        assert np.abs(r[~interior]).max() > 1e-3


def test_dirichlet_energy_of_linear_function_equals_area_times_gradient_squared():
    V, F = grid(7, 6, size=2.0, jitter=0.3)
    L = cotan_laplacian(V, F)
    g = np.array([0.3, -1.2])
    u = V[:, :2] @ g
    np.testing.assert_allclose(u @ (L @ u), 4.0 * g @ g, rtol=1e-12)


def test_mass_matrix_sums_to_area_and_scales_quadratically():
    V, F = torus(20, 10)
    M = mass_matrix(V, F)
    assert M.shape == (len(V), len(V))
    np.testing.assert_allclose(M.diagonal().sum(), face_areas(V, F).sum(), rtol=1e-12)
    np.testing.assert_allclose(mass_matrix(3 * V, F).diagonal(), 9 * M.diagonal(), rtol=1e-12)
    np.testing.assert_allclose(cotan_laplacian(3 * V, F).toarray(), cotan_laplacian(V, F).toarray(), atol=1e-12)


def test_mass_floor_for_unreferenced_vertex():
    V, F = icosphere(1)
    V = np.vstack([V, [[5.0, 5.0, 5.0]]])
    L, M = laplacian(V, F, method="cotan")
    m = M.diagonal()
    assert m[-1] > 0 and m[-1] < 1e-6 * m[:-1].mean()
    assert L[len(V) - 1].nnz == 0 or np.abs(L[len(V) - 1].toarray()).max() == 0
    L2, M2 = laplacian(V, F, method="robust")
    assert np.all(M2.diagonal() > 0)
    assert np.all(np.isfinite(L2.data))


def test_vertex_permutation_equivariance():
    V, F = noisy_sphere(2)
    rng = np.random.default_rng(1)
    p = rng.permutation(len(V))
    inv = np.argsort(p)
    for method in ("cotan", "robust"):
        L, M = laplacian(V, F, method=method)
        Lp, Mp = laplacian(V[p], inv[F], method=method)
        np.testing.assert_allclose(Lp.toarray()[np.ix_(inv, inv)], L.toarray(), atol=1e-12)
        np.testing.assert_allclose(Mp.diagonal()[inv], M.diagonal(), rtol=1e-12)


def test_clean_mesh_cotan_and_robust_agree():
    V, F = icosphere(3)
    assert choose_laplacian_method(V, F) == "cotan"
    L1, M1 = laplacian(V, F, method="cotan")
    L2, M2 = laplacian(V, F, method="robust")
    # icosphere is Delaunay: intrinsic flips change nothing; only mollification differs
    np.testing.assert_allclose(L2.toarray(), L1.toarray(), atol=1e-3 * np.abs(L1.diagonal()).max())
    np.testing.assert_allclose(M2.diagonal(), M1.diagonal(), rtol=1e-3)


def test_degenerate_faces_give_finite_laplacian_and_auto_picks_robust():
    V, F = grid(4, 4)
    n = len(V)
    # a cap (collinear points), a needle (two coincident points) and a repeated index
    V = np.vstack([V, [[2.0, 0, 0], [3.0, 0, 0], [4.0, 0, 0], [2.0, 1, 0], [2.0, 1, 0]]])
    F = np.vstack([F, [[n, n + 1, n + 2], [n, n + 3, n + 4], [0, 0, 1]]])
    deg = degenerate_faces(V, F)
    assert deg[-3:].all() and not deg[:-3].any()
    L = cotan_laplacian(V, F)
    assert np.all(np.isfinite(L.data))
    assert_laplacian_laws(L, atol=1e-9)
    diag = laplacian_diagnostics(V, F)
    assert diag["degenerate_faces"]
    assert choose_laplacian_method(V, F) == "robust"
    L2, M2 = laplacian(V, F)  # auto
    assert np.all(np.isfinite(L2.data)) and np.all(M2.diagonal() > 0)


def test_non_manifold_edge_detected_and_handled():
    V, F = book_mesh()
    assert not is_edge_manifold(F)
    assert laplacian_diagnostics(V, F)["non_edge_manifold"]
    assert choose_laplacian_method(V, F) == "robust"
    L, M = laplacian(V, F)
    assert_laplacian_laws(L)
    assert np.all(M.diagonal() > 0)
    assert_laplacian_laws(cotan_laplacian(V, F))


def test_bowtie_vertex_is_not_vertex_manifold():
    V, F = bowtie_mesh()
    assert is_edge_manifold(F)
    assert not is_vertex_manifold(F)
    assert choose_laplacian_method(V, F) == "robust"
    for mesh in (icosphere(2), torus(12, 6), grid(4, 4)):
        assert is_edge_manifold(mesh[1]) and is_vertex_manifold(mesh[1])


def test_negative_cotan_weights_select_robust():
    # a flat rhombus split along its long diagonal: both angles facing the diagonal are
    # ~157 degrees, so its cotan weight is negative; intrinsic Delaunay flips it
    V = np.array([[0.0, 0, 0], [2.0, 0, 0], [1.0, 0.2, 0], [1.0, -0.2, 0]])
    F = np.array([[0, 1, 2], [1, 0, 3]])
    assert cotan_laplacian(V, F)[0, 1] > 0  # i.e. weight -L01 < 0
    diag = laplacian_diagnostics(V, F)
    assert diag["negative_weights"] and not diag["non_edge_manifold"]
    assert choose_laplacian_method(V, F) == "robust"
    L, _ = laplacian(V, F)
    off = L.toarray() - np.diag(L.diagonal())
    assert off.max() <= 1e-12  # intrinsic Delaunay: all edge weights non-negative


@pytest.mark.parametrize(
    "V,F",
    [
        (np.zeros((3, 2)), np.array([[0, 1, 2]])),
        (np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]), np.array([[0, 1, 2]])),
        (np.eye(3), np.array([[0, 1, 3]])),
        (np.eye(3), np.array([[0, -1, 2]])),
        (np.eye(3), np.zeros((0, 3), dtype=int)),
        (np.eye(3), np.array([[0.5, 1, 2]])),
    ],
)
def test_bad_meshes_raise_mesh_error(V, F):
    with pytest.raises(MeshError):
        check_arrays(V, F)
    with pytest.raises(MeshError):
        laplacian(V, F)


def test_unknown_method_rejected():
    V, F = icosphere(0)
    with pytest.raises(ValueError, match="method"):
        laplacian(V, F, method="fem")
