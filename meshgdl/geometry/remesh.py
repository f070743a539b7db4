"""Remeshing: decimation, subdivision and repairs that change a mesh's triangles.

* :func:`decimate` -- quadric-error decimation (``fast_simplification``) in a
  canonical, vertex-order independent order (:func:`canonical_vertex_order`), with
  every fine vertex's coarse *parent*. ``parent="collapse"`` (default) replays the
  decimation's edge collapses: each fine vertex belongs to the coarse vertex it was
  collapsed into, so clusters are connected on the surface (never across a thin gap
  that is close in 3D but far geodesically) and every coarse vertex has at least one
  child. ``parent="nearest"`` uses the nearest coarse vertex in 3D (a KD-tree); it is
  also the fallback for fine vertices the collapse record does not cover.
* :func:`midpoint_subdivide`, :func:`subdivide_to` (Loop, falling back to midpoint),
  :func:`split_nonmanifold_edges`, :func:`fill_holes`, :func:`relax_slivers`.

Vertex order: the decimation algorithm visits faces in array order, so its result
depends on how the file happens to number the mesh. :func:`decimate` therefore works
on a canonical order (vertices sorted by intrinsic, rotation-invariant keys: vertex
area, angle sum, valence, incident edge lengths -- quantised so floating-point noise
does not reorder them). For meshes without exact symmetries this makes the result
equivariant to vertex permutations and rigid motions of the input; exact ties
(symmetric meshes) fall back to the input order.

Shapes: ``V: (n, 3) float64``, ``F: (m, 3) int64``; lengths in the mesh's units.
"""

from __future__ import annotations

import logging

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.geometry.normals import corner_angles, face_areas, vertex_areas, vertex_normals
from meshgdl.geometry.topology import boundary_halfedges, is_edge_manifold, vertex_adjacency

log = logging.getLogger(__name__)

#: Smallest coarse mesh :func:`decimate` builds: fewer vertices than this cannot carry
#: a useful Laplacian / gauge field.
MIN_COARSE_VERTICES = 8

PARENT_METHODS = ("collapse", "nearest")


def canonical_vertex_order(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(n,) int64 permutation ``order`` (new index -> old index) sorting vertices by
    intrinsic keys (vertex area, angle sum, valence, sum of incident edge lengths),
    each quantised to ~1e-8 of its range so round-off does not reorder; ties keep
    the input order."""
    n = len(V)
    area = vertex_areas(V, F)
    ang = np.bincount(F.ravel(), weights=corner_angles(V, F).ravel(), minlength=n)
    val = np.bincount(F.ravel(), minlength=n).astype(np.float64)
    Ed = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    elen = np.linalg.norm(V[Ed[:, 0]] - V[Ed[:, 1]], axis=1)
    lsum = np.bincount(Ed[:, 0], weights=elen, minlength=n) + np.bincount(Ed[:, 1], weights=elen, minlength=n)

    def quant(x):
        scale = max(float(np.max(np.abs(x), initial=0.0)), 1e-300)
        return np.round(x / scale * 1e8).astype(np.int64)

    # np.lexsort sorts by the last key first.
    return np.lexsort((quant(lsum), val, quant(ang), quant(area))).astype(np.int64)


def _canonicalize(V: np.ndarray, F: np.ndarray):
    order = canonical_vertex_order(V, F)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    Fr = rank[F]
    # Rotate each face so its smallest label comes first (orientation kept), then sort faces.
    r = np.argmin(Fr, axis=1)
    idx = (r[:, None] + np.arange(3)[None, :]) % 3
    Fr = np.take_along_axis(Fr, idx, axis=1)
    Fr = Fr[np.lexsort((Fr[:, 2], Fr[:, 1], Fr[:, 0]))]
    return V[order], np.ascontiguousarray(Fr), rank


def decimate(V: np.ndarray, F: np.ndarray, n_target: int, *, parent: str = "collapse", agg: float = 7.0):
    """Quadric-error decimation to about ``n_target`` vertices, with the fine -> coarse map.

    V: (n, 3) float64, F: (m, 3) int64. Returns ``(Vc (k, 3) float64, Fc (l, 3) int64,
    parent (n,) int64)``; every coarse vertex is used by a face, and ``parent`` indexes
    ``Vc``. Vertex order of the input does not matter (see module docstring).
    """
    import fast_simplification as fs
    from scipy.spatial import cKDTree

    if parent not in PARENT_METHODS:
        raise ValueError(f"parent must be one of {PARENT_METHODS}, got {parent!r}")
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    n = len(V)
    if n_target < MIN_COARSE_VERTICES:
        raise MeshError(f"cannot decimate to {n_target} vertices (minimum {MIN_COARSE_VERTICES}); use fewer levels")
    Vs, Fs, rank = _canonicalize(V, F)
    # Closed meshes have about twice as many faces as vertices; the library targets faces.
    target_faces = int(max(4, min(len(F) - 1, round(len(F) * n_target / max(n, 1)))))
    Vc, Fc, collapses = fs.simplify(Vs, Fs, target_count=target_faces, agg=agg, return_collapses=True)
    Vc = np.asarray(Vc, dtype=np.float64)
    Fc = np.asarray(Fc, dtype=np.int64).reshape(-1, 3)
    if len(Fc) == 0:
        raise MeshError("decimation removed every face; use fewer levels or a larger ratio")
    par_s = None
    if parent == "collapse":
        try:
            _, Fr, mapping = fs.replay_simplification(Vs, Fs.astype(np.int32), np.asarray(collapses))
            mapping = np.asarray(mapping, dtype=np.int64)
            if mapping.shape == (n,) and len(Fr) == len(Fc) and np.array_equal(np.asarray(Fr), Fc):
                par_s = mapping
        except (ValueError, IndexError) as exc:  # pragma: no cover - library edge cases
            log.warning("collapse replay failed (%s); using nearest coarse vertices", exc)
    # Drop coarse vertices no face uses (they have no tangent plane/gauge).
    used = np.zeros(len(Vc), dtype=bool)
    used[Fc.ravel()] = True
    new_id = np.full(len(Vc), -1, dtype=np.int64)
    new_id[used] = np.arange(int(used.sum()))
    Vc, Fc = Vc[used], new_id[Fc]
    if len(Vc) < 4:
        raise MeshError(f"decimation left only {len(Vc)} vertices; use fewer levels or a larger ratio")
    if par_s is None:
        par_s = np.full(n, -1, dtype=np.int64)
    else:
        bad = (par_s < 0) | (par_s >= len(new_id))
        par_s = np.where(bad, -1, new_id[np.clip(par_s, 0, len(new_id) - 1)])
    miss = par_s < 0
    if np.any(miss):
        _, nearest = cKDTree(Vc).query(Vs[miss])
        par_s[miss] = nearest
    return Vc, np.ascontiguousarray(Fc), par_s[rank]


def midpoint_subdivide(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One round of 1-to-4 midpoint subdivision (the surface does not move).

    V: (n, 3) float64, F: (m, 3) int64 -> (n + #edges, 3), (4m, 3); orientation kept;
    the first n vertices are the input's.
    """
    n = len(V)
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    uniq, inv = np.unique(key, return_inverse=True)
    a, b = uniq // n, uniq % n
    Vn = np.concatenate([V, 0.5 * (V[a] + V[b])])
    m = len(F)
    mid = n + inv.reshape(3, m).T  # mid[:, 0] on edge (0,1), [:, 1] on (1,2), [:, 2] on (2,0)
    f0, f1, f2 = F[:, 0], F[:, 1], F[:, 2]
    m01, m12, m20 = mid[:, 0], mid[:, 1], mid[:, 2]
    Fn = np.concatenate([
        np.stack([f0, m01, m20], 1),
        np.stack([m01, f1, m12], 1),
        np.stack([m20, m12, f2], 1),
        np.stack([m01, m12, m20], 1),
    ])
    return Vn, Fn.astype(np.int64)


def split_nonmanifold_edges(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make a mesh edge-manifold by giving every face beyond the first two on an edge
    its own copies of that edge's endpoints (the face stays where it is, attached
    through its third vertex). V: (n, 3), F: (m, 3) -> (n + copies, 3), (m, 3)."""
    m = len(F)
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    fid = np.tile(np.arange(m), 3)
    key = np.minimum(e[:, 0], e[:, 1]) * (int(F.max()) + 1) + np.maximum(e[:, 0], e[:, 1])
    order = np.lexsort((fid, key))
    ks = key[order]
    start = np.r_[0, np.flatnonzero(ks[1:] != ks[:-1]) + 1]
    rank = np.arange(len(ks)) - np.repeat(start, np.diff(np.r_[start, len(ks)]))
    extra = order[rank >= 2]  # corner-edges of faces beyond the first two on their edge
    if len(extra) == 0:
        return V, F
    F = F.copy()
    V_new = [V]
    n = len(V)
    for c in extra:
        f, k = fid[c], c // m  # edge k of face f: corners (k, k+1)
        for j in (k, (k + 1) % 3):
            V_new.append(V[F[f, j]][None])
            F[f, j] = n
            n += 1
    return np.concatenate(V_new), F


def subdivide_to(V: np.ndarray, F: np.ndarray, n_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Subdivide until at least ``n_min`` vertices (about x4 a round).

    Loop subdivision: a coarse mesh stands for the smooth surface it samples, and
    decimating flat midpoint facets afterwards leaves sliver triangles along the old
    edges. Non-manifold edges are split first (Loop's stencils need at most two
    faces per edge); midpoint subdivision only if Loop still fails.
    """
    import trimesh

    if not is_edge_manifold(F):
        V, F = split_nonmanifold_edges(V, F)
    loop = True
    rounds = 0
    while len(V) < n_min and rounds < 8:
        if loop:
            try:
                V2, F2 = trimesh.remesh.subdivide_loop(V, F, iterations=1)
                V2, F2 = np.asarray(V2, np.float64), np.asarray(F2, np.int64)
                if len(V2) > len(V) and np.all(np.isfinite(V2)):
                    V, F = V2, F2
                    rounds += 1
                    continue
            except (ValueError, IndexError):  # stencils that do not fit: fall back below
                pass
            loop = False
        V, F = midpoint_subdivide(V, F)
        rounds += 1
    return V, F


def fill_holes(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Close every simple boundary loop with a fan around a new vertex at its centroid.

    V: (n, 3) float64, F: (m, 3) int64 -> (n + loops, 3), (m + boundary edges, 3); the
    first n vertices and m faces are the input's, orientation is kept. Loops through a
    vertex with several outgoing boundary edges (non-manifold boundaries) stay open.
    """
    n = len(V)
    b = boundary_halfedges(F, n)
    if len(b) == 0:
        return V, F
    out_deg = np.bincount(b[:, 0], minlength=n)
    nxt = np.full(n, -1, dtype=np.int64)
    nxt[b[:, 0]] = b[:, 1]
    seen = np.zeros(n, dtype=bool)
    newV, newF = [V], [F]
    k = n
    for start in b[:, 0]:
        if seen[start]:
            continue
        loop, v, ok = [], int(start), True
        while not seen[v]:
            seen[v] = True
            loop.append(v)
            ok &= out_deg[v] == 1 and nxt[v] >= 0
            v = int(nxt[v]) if nxt[v] >= 0 else v
        if not ok or v != start or len(loop) < 3:
            continue
        loop = np.asarray(loop)
        newV.append(V[loop].mean(axis=0, keepdims=True))
        # the boundary edge a -> b belongs to a face; its fill triangle runs b -> a
        newF.append(np.stack([np.roll(loop, -1), loop, np.full(len(loop), k)], axis=1))
        k += 1
    return np.concatenate(newV), np.concatenate(newF).astype(np.int64)


def relax_slivers(V: np.ndarray, F: np.ndarray, rel_area: float = 1e-3, iterations: int = 10) -> np.ndarray:
    """Move the vertices of sliver triangles (area below ``rel_area`` times the mean)
    half-way to their neighbours' centroid within their tangent plane, until none
    is left or ``iterations`` rounds are done. Returns new V (n, 3); F unchanged.

    Decimation of meshes with flat regions or creases can leave zero-area
    triangles whose cotangent weights and eigenvectors are meaningless.
    """
    V = np.array(V, dtype=np.float64)
    n = len(V)
    A = vertex_adjacency(F, n)
    deg = np.maximum(np.asarray(A.sum(1)).ravel(), 1.0)
    for _ in range(int(iterations)):
        fa = face_areas(V, F)
        bad = fa < rel_area * max(float(fa.mean()), 1e-300)
        if not bad.any():
            break
        move = np.zeros(n, dtype=bool)
        move[F[bad].ravel()] = True
        d = (A @ V) / deg[:, None] - V
        nrm = vertex_normals(V, F)
        d -= np.einsum("ij,ij->i", d, nrm)[:, None] * nrm
        V[move] += 0.5 * d[move]
    return V


__all__ = [
    "MIN_COARSE_VERTICES",
    "PARENT_METHODS",
    "canonical_vertex_order",
    "decimate",
    "midpoint_subdivide",
    "subdivide_to",
    "split_nonmanifold_edges",
    "fill_holes",
    "relax_slivers",
]
