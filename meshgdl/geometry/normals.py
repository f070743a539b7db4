"""Per-face and per-vertex first-order geometry: normals, areas, corner angles.

All functions take ``V: (n, 3) float64`` and ``F: (m, 3) int64`` and return
numpy arrays; degenerate (zero-area) faces give zeros, never NaN.
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-300


def face_cross(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(m, 3) cross products (v1 - v0) x (v2 - v0); norm = twice the face area."""
    return np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])


def face_areas(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(m,) face areas in squared length units."""
    return 0.5 * np.linalg.norm(face_cross(V, F), axis=1)


def face_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(m, 3) unit face normals (right-hand rule on the face order); zero for degenerate faces."""
    c = face_cross(V, F)
    n = np.linalg.norm(c, axis=1, keepdims=True)
    return np.divide(c, n, out=np.zeros_like(c), where=n > _TINY)


def vertex_areas(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(n,) barycentric vertex areas (a third of each incident face's area).

    These sum to the total surface area and form the diagonal lumped mass matrix.
    """
    return np.bincount(F.ravel(), weights=np.repeat(face_areas(V, F) / 3.0, 3), minlength=len(V))


def vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(n, 3) unit area-weighted vertex normals.

    Vertices whose incident normals cancel (or that have no faces) fall back to the
    direction from the mesh centroid, and to +z if that is zero too, so the result
    is always a finite unit vector.
    """
    c = face_cross(V, F)  # area-weighted already (|c| = 2 * area)
    # = np.add.at(N, F[:, k], c) for k = 0, 1, 2: np.bincount over the corners in that
    # order sums each vertex's terms in the same sequence, several times faster
    idx = F.T.ravel()
    N = np.stack([np.bincount(idx, weights=np.tile(c[:, j], 3), minlength=len(V)) for j in range(3)], axis=1)
    norm = np.linalg.norm(N, axis=1)
    bad = norm <= 1e-12 * max(float(np.max(norm, initial=0.0)), _TINY)
    if np.any(bad):
        d = V[bad] - V.mean(axis=0)
        dn = np.linalg.norm(d, axis=1)
        d[dn <= _TINY] = (0.0, 0.0, 1.0)
        N[bad] = d
        norm = np.linalg.norm(N, axis=1)
    return N / norm[:, None]


def corner_angles(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(m, 3) interior angle of each face at each of its corners, radians in [0, pi].

    Uses atan2(|a x b|, a . b), which is accurate for tiny and near-pi angles and
    finite (0) for zero-length edges.
    """
    out = np.empty(F.shape, dtype=np.float64)
    for k in range(3):
        p = V[F[:, k]]
        a = V[F[:, (k + 1) % 3]] - p
        b = V[F[:, (k + 2) % 3]] - p
        out[:, k] = np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), np.einsum("ij,ij->i", a, b))
    return out


def boundary_vertices(F: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool: vertex lies on an edge used by exactly one face."""
    from meshgdl.geometry.topology import face_sides

    uniq, counts = np.unique(face_sides(F), axis=0, return_counts=True)
    mask = np.zeros(n, dtype=bool)
    mask[uniq[counts == 1].ravel()] = True
    return mask


def angle_defects(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(n,) discrete Gaussian curvature (integrated): 2*pi - angle sum at interior
    vertices, pi - angle sum at boundary vertices (geodesic curvature of the boundary).

    By discrete Gauss-Bonnet the sum equals 2*pi*chi for any triangle mesh.
    """
    sums = np.bincount(F.ravel(), weights=corner_angles(V, F).ravel(), minlength=len(V))
    target = np.where(boundary_vertices(F, len(V)), np.pi, 2 * np.pi)
    return target - sums
