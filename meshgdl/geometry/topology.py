"""Mesh connectivity: components, adjacency, manifoldness and boundaries.

Flat numpy/scipy functions of the face array ``F: (m, 3) int64`` (and the vertex
count ``n`` where vertices used by no face matter); nothing here looks at vertex
positions. Every part of meshgdl that needs one of these asks this module.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def vertex_components(F: np.ndarray, n: int) -> tuple[int, np.ndarray]:
    """``(count, comp (n,) int64)``: connected components through shared faces.
    Vertices used by no face are components of their own."""
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]]])
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    k, comp = connected_components(g, directed=False)
    return int(k), comp.astype(np.int64)


def vertex_adjacency(F: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) symmetric 0/1 CSR: vertices sharing an edge (no diagonal)."""
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    e = e[e[:, 0] != e[:, 1]]
    A = sp.coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)).tocsr()
    A.data[:] = 1.0
    return A


def ring_distance(F: np.ndarray, n: int, seeds, max_rings: int) -> np.ndarray:
    """``(n,) int64``: each vertex's edge-hop distance to the nearest of the ``seeds``
    (vertex indices or an ``(n,)`` bool mask): 0 on the seeds, ``k`` on their ``k``-th
    ring, ``max_rings + 1`` beyond ``max_rings`` rings or where no seed is reachable."""
    seeds = np.asarray(seeds)
    mask = seeds.astype(bool) if seeds.dtype == bool else np.isin(np.arange(n), seeds)
    if mask.shape != (n,):
        raise ValueError(f"seeds: a ({n},) bool mask or vertex indices, got shape {seeds.shape}")
    dist = np.full(n, max_rings + 1, dtype=np.int64)
    dist[mask] = 0
    if max_rings < 1 or not mask.any():
        return dist
    A = vertex_adjacency(F, n)
    for k in range(1, max_rings + 1):
        grown = (A @ mask.astype(np.float64)) > 0
        new = grown & ~mask
        if not new.any():
            break
        dist[new] = k
        mask |= new
    return dist


def face_sides(F: np.ndarray) -> np.ndarray:
    """(3m, 2) sorted undirected edges, one per face side: rows ``k*m .. (k+1)*m - 1`` are
    the sides opposite corner ``k`` of faces ``0 .. m-1`` (an edge shared by two faces
    appears twice; ``np.unique(..., axis=0)`` gives the mesh's edges)."""
    E = np.concatenate([F[:, [1, 2]], F[:, [2, 0]], F[:, [0, 1]]])
    return np.sort(E, axis=1)


def is_edge_manifold(F) -> bool:
    """True when every undirected edge is shared by at most two faces.

    ``F: (m, 3)`` integer faces. Faces that repeat a vertex are ignored here
    (see :func:`degenerate_faces`).
    """
    F = np.asarray(F, dtype=np.int64)
    ok = (F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 2] != F[:, 0])
    if not np.any(ok):
        return True
    E = face_sides(F[ok])
    key = E[:, 0] * (int(E[:, 1].max()) + 1) + E[:, 1]  # 1-D keys: much faster than unique(axis=0)
    key.sort()
    # an edge used three or more times shows up as key[i] == key[i + 2]
    return bool(not np.any(key[2:] == key[:-2]))


def is_vertex_manifold(F) -> bool:
    """True when the faces around every referenced vertex form one fan (disk or half-disk).

    Counts the connected components of each vertex's star, where two corners at the
    same vertex are linked when their faces share the spoke edge leaving that vertex.
    A "bow-tie" vertex (two cones touching at a point) has two components and fails.
    Requires an edge-manifold mesh (returns False otherwise).
    """
    F = np.asarray(F, dtype=np.int64)
    ok = (F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 2] != F[:, 0])
    F = F[ok]
    if len(F) == 0:
        return True
    if not is_edge_manifold(F):
        return False
    return bool(np.all(vertex_fan_counts(F, int(F.max()) + 1) <= 1))


def vertex_fan_counts(F: np.ndarray, n: int) -> np.ndarray:
    """(n,) int64: number of fans at each vertex -- groups of incident faces connected
    through edges that contain the vertex. 0 for unreferenced vertices, 1 for a
    manifold (disk or half-disk) vertex, > 1 where several fans touch (bow-tie).

    F: (m, 3) int64 without faces that repeat a vertex.
    """
    F = np.asarray(F, dtype=np.int64)
    m = len(F)
    if m == 0:
        return np.zeros(n, dtype=np.int64)
    corner = np.arange(3 * m).reshape(m, 3)  # corner id of (face f, local k)
    # each corner (f, k) at vertex v = F[f, k] has two spokes: to F[f, k+1] and F[f, k+2]
    v = np.repeat(F.ravel(), 2)
    other = np.stack([np.roll(F, -1, axis=1), np.roll(F, -2, axis=1)], axis=2).ravel()
    cid = np.repeat(corner.ravel(), 2)
    # link corners that share the same directed spoke key (v, other)
    key = v * np.int64(max(n, int(F.max()) + 1)) + other
    order = np.argsort(key, kind="stable")
    ks, cs = key[order], cid[order]
    same = ks[1:] == ks[:-1]
    a, b = cs[:-1][same], cs[1:][same]
    G = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(3 * m, 3 * m))
    _, labels = connected_components(G, directed=False)
    fans = np.unique(F.ravel() * np.int64(3 * m) + labels[corner.ravel()])
    return np.bincount(fans // (3 * m), minlength=n).astype(np.int64)


def boundary_halfedges(F: np.ndarray, n: int) -> np.ndarray:
    """(b, 2) int64 directed half-edges ``a -> b`` (in face order) whose reverse
    ``b -> a`` belongs to no face: the boundary of a consistently oriented mesh, each
    loop traversed in the direction its faces run."""
    F = np.asarray(F, dtype=np.int64)
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    key = e[:, 0] * n + e[:, 1]
    rev = e[:, 1] * n + e[:, 0]
    return e[~np.isin(rev, key)]


__all__ = [
    "vertex_components",
    "vertex_adjacency",
    "face_sides",
    "ring_distance",
    "is_edge_manifold",
    "is_vertex_manifold",
    "vertex_fan_counts",
    "boundary_halfedges",
]
