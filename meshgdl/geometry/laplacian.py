"""Discrete Laplace–Beltrami operators on triangle meshes.

Conventions (shared with :mod:`meshgdl.geometry.spectral`):

* ``L`` is the *weak*, positive semi-definite Laplacian (the linear-FEM stiffness
  matrix, ``L = -Δ`` integrated against hat functions): positive diagonal,
  off-diagonals ``-w_ij``, every row sums to zero, ``uᵀ L u = ∫ |∇u|²``.
* ``M`` is the diagonal lumped (barycentric) mass matrix, units of area.
* The pointwise Laplacian of a vertex function ``u`` is ``-M⁻¹ L u``; eigenpairs
  solve the generalised problem ``L φ = λ M φ`` (λ in 1/length²).

Inputs are ``V: (n, 3) float64`` vertex positions and ``F: (m, 3) int64`` triangle
indices. Bad input raises :class:`meshgdl.errors.MeshError`; no function here
returns inf or NaN for a finite mesh.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from meshgdl.errors import MeshError
from meshgdl.geometry.normals import vertex_areas
from meshgdl.geometry.topology import is_edge_manifold, is_vertex_manifold
from meshgdl.geometry.validation import check_arrays

#: Faces whose doubled area is below ``DEGENERATE_EPS * (longest edge)²`` count as
#: degenerate (an altitude below ~1e-8 of the longest edge). The cotan denominator
#: is clamped at the same threshold, so ``|cot| <= 1/DEGENERATE_EPS`` for every face.
DEGENERATE_EPS = 1e-8

#: Relative floor for lumped vertex masses: isolated or degenerate-only vertices get
#: ``MASS_FLOOR * mean(nonzero masses)`` so that M stays invertible.
MASS_FLOOR = 1e-8

_METHODS = ("auto", "cotan", "robust")


def degenerate_faces(V, F, eps: float = DEGENERATE_EPS) -> np.ndarray:
    """(m,) bool: faces that repeat a vertex or whose doubled area is below
    ``eps * (longest edge length)²`` (needles, caps and zero-size faces)."""
    V, F = np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64)
    e0 = V[F[:, 2]] - V[F[:, 1]]
    e1 = V[F[:, 0]] - V[F[:, 2]]
    e2 = V[F[:, 1]] - V[F[:, 0]]
    lmax2 = np.maximum.reduce([np.einsum("ij,ij->i", e, e) for e in (e0, e1, e2)])
    dbl_area = np.linalg.norm(np.cross(e2, -e1), axis=1)
    repeated = (F[:, 0] == F[:, 1]) | (F[:, 1] == F[:, 2]) | (F[:, 2] == F[:, 0])
    return repeated | (dbl_area <= eps * lmax2)


def _cotangents(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(m, 3) cotangent of the angle at each corner, with the clamped denominator."""
    cots = np.empty(F.shape, dtype=np.float64)
    lmax2 = np.zeros(len(F))
    sides = []
    for k in range(3):
        e = V[F[:, (k + 2) % 3]] - V[F[:, (k + 1) % 3]]
        sides.append(e)
        lmax2 = np.maximum(lmax2, np.einsum("ij,ij->i", e, e))
    dbl_area = np.linalg.norm(np.cross(sides[0], sides[1]), axis=1)
    # Clamping |u x v| from below keeps needles/caps finite (|cot| <= 1/eps) and keeps
    # each face's stiffness block PSD (it stays a Gram matrix over a positive scalar).
    denom = np.maximum(dbl_area, DEGENERATE_EPS * lmax2)
    denom = np.maximum(denom, np.finfo(np.float64).tiny)
    for k in range(3):
        p = V[F[:, k]]
        a = V[F[:, (k + 1) % 3]] - p
        b = V[F[:, (k + 2) % 3]] - p
        cots[:, k] = np.einsum("ij,ij->i", a, b) / denom
    return cots


def cotan_weights(V, F) -> sp.csr_matrix:
    """(n, n) symmetric sparse matrix of edge weights ``w_ij = ½ (cot α + cot β)``.

    Boundary edges get the single ½ cot. Weights can be negative (when α + β > π).
    """
    V, F = check_arrays(V, F)
    n = len(V)
    cots = _cotangents(V, F)
    # corner k is opposite the edge (k+1, k+2)
    i = np.concatenate([F[:, 1], F[:, 2], F[:, 0]])
    j = np.concatenate([F[:, 2], F[:, 0], F[:, 1]])
    w = 0.5 * cots.T.ravel()
    keep = i != j
    i, j, w = i[keep], j[keep], w[keep]
    W = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n))
    return W.tocsr()


def cotan_laplacian(V, F) -> sp.csr_matrix:
    """Cotangent Laplacian ``L: (n, n) csr float64``, positive semi-definite convention.

    ``L_ij = -½ (cot α_ij + cot β_ij)`` for each edge ij, ``L_ii = -Σ_j L_ij``; symmetric,
    rows sum to zero, units dimensionless (scale invariant). Degenerate faces are
    handled by clamping each face's ``|e1 × e2|`` to at least ``DEGENERATE_EPS`` times
    its longest squared edge, which bounds their cotangents by ``1/DEGENERATE_EPS``
    instead of producing inf/NaN; such meshes should use ``laplacian(method="robust")``.
    """
    W = cotan_weights(V, F)
    d = np.asarray(W.sum(axis=1)).ravel()
    L = sp.diags(d) - W
    L = L.tocsr()
    L.sum_duplicates()
    return L


def _floor_masses(a: np.ndarray) -> np.ndarray:
    pos = a[a > 0]
    floor = MASS_FLOOR * (pos.mean() if len(pos) else 1.0)
    return np.maximum(a, floor)


def mass_matrix(V, F) -> sp.dia_matrix:
    """Lumped barycentric mass matrix ``M: (n, n) dia_matrix`` (area units).

    ``M_ii`` is a third of the area of the faces around vertex i
    (:func:`meshgdl.geometry.normals.vertex_areas`); vertices with no area (unreferenced,
    or only on zero-area faces) get ``MASS_FLOOR`` times the mean positive mass so M is
    invertible.
    """
    V, F = check_arrays(V, F)
    return sp.diags(_floor_masses(vertex_areas(V, F)), format="dia")


def _has_negative_weights(V: np.ndarray, F: np.ndarray) -> bool:
    W = cotan_weights(V, F).tocoo()
    if W.nnz == 0:
        return False
    scale = float(np.abs(W.data).max())
    # tolerance so that exactly-right-angled (flat grid) meshes don't flip on round-off
    return bool(np.any(W.data < -1e-12 * max(scale, 1.0)))


def laplacian_diagnostics(V, F) -> dict:
    """Reasons to prefer the robust Laplacian; all False means the cotan one is safe.

    Returns ``{"non_edge_manifold", "non_vertex_manifold", "degenerate_faces",
    "negative_weights"}`` as booleans.
    """
    V, F = check_arrays(V, F)
    edge_ok = is_edge_manifold(F)
    return {
        "non_edge_manifold": not edge_ok,
        "non_vertex_manifold": edge_ok and not is_vertex_manifold(F),
        "degenerate_faces": bool(np.any(degenerate_faces(V, F))),
        "negative_weights": _has_negative_weights(V, F),
    }


def choose_laplacian_method(V, F) -> str:
    """``"robust"`` when the mesh is non-manifold, has degenerate faces or negative
    cotan weights (obtuse pairs with α + β > π), else ``"cotan"``."""
    V, F = check_arrays(V, F)
    # cheapest tests first; stop at the first reason
    if np.any(degenerate_faces(V, F)) or not is_edge_manifold(F) or _has_negative_weights(V, F):
        return "robust"
    return "cotan" if is_vertex_manifold(F) else "robust"


def laplacian(V, F, method: str = "auto", mollify_factor: float = 1e-5):
    """Laplacian and mass matrix ``(L: (n,n) csr, M: (n,n) dia diagonal)``.

    method:
      * ``"cotan"``: :func:`cotan_laplacian` and :func:`mass_matrix`.
      * ``"robust"``: ``robust_laplacian.mesh_laplacian`` (Sharp & Crane 2020: tufted
        cover + intrinsic Delaunay with mollified edge lengths); handles non-manifold
        and degenerate meshes, all edge weights non-negative.
      * ``"auto"``: robust when :func:`choose_laplacian_method` says so, else cotan.

    ``mollify_factor`` is passed to the robust Laplacian (relative edge-length padding).
    Both methods follow the module conventions (PSD ``L``, rows summing to zero) and
    floor zero masses so ``M`` is invertible.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    V, F = check_arrays(V, F)
    if method == "auto":
        method = choose_laplacian_method(V, F)
    if method == "cotan":
        return cotan_laplacian(V, F), mass_matrix(V, F)
    import robust_laplacian

    L, M = robust_laplacian.mesh_laplacian(V, F, mollify_factor=float(mollify_factor))
    L = sp.csr_matrix(L, dtype=np.float64)
    L = (0.5 * (L + L.T)).tocsr()
    if not np.all(np.isfinite(L.data)):
        raise MeshError("robust Laplacian produced non-finite entries (mesh too degenerate)")
    m = _floor_masses(np.asarray(M.diagonal(), dtype=np.float64))
    return L, sp.diags(m, format="dia")
