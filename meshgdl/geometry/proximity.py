"""Closest points on a triangle surface and barycentric interpolation.

``P: (N, 3) float64`` query points; the surface ``V: (k, 3) float64``, ``F: (l, 3)
int64``; a surface point is ``(face, bary)`` -- a face index and barycentric weights
``(3,)`` (non-negative, summing to 1). Distances are in the mesh's units.
"""

from __future__ import annotations

import numpy as np

from meshgdl.geometry.normals import face_normals


def closest_point_barycentric(P: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray):
    """Closest points of triangles ``(A, B, C)`` to points ``P`` (all (N, 3), row-wise).

    Returns ``(bary (N, 3), dist2 (N,))``: barycentric weights of the closest point
    (non-negative, summing to 1) and its squared distance. The region tests follow
    Ericson, *Real-Time Collision Detection*, 5.1.5; degenerate triangles give the
    closest of their vertices/edges, never NaN.
    """
    ab, ac = B - A, C - A
    ap, bp, cp = P - A, P - B, P - C
    d1 = np.einsum("ij,ij->i", ab, ap)
    d2 = np.einsum("ij,ij->i", ac, ap)
    d3 = np.einsum("ij,ij->i", ab, bp)
    d4 = np.einsum("ij,ij->i", ac, bp)
    d5 = np.einsum("ij,ij->i", ab, cp)
    d6 = np.einsum("ij,ij->i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    N = len(P)
    u = np.empty(N)
    v = np.empty(N)
    w = np.empty(N)
    done = np.zeros(N, dtype=bool)

    def put(mask, uu, vv, ww):
        m = mask & ~done
        u[m] = uu[m] if np.ndim(uu) else uu
        v[m] = vv[m] if np.ndim(vv) else vv
        w[m] = ww[m] if np.ndim(ww) else ww
        done[m] = True

    with np.errstate(divide="ignore", invalid="ignore"):
        put((d1 <= 0) & (d2 <= 0), 1.0, 0.0, 0.0)  # vertex A
        put((d3 >= 0) & (d4 <= d3), 0.0, 1.0, 0.0)  # vertex B
        t = d1 / (d1 - d3)
        put((vc <= 0) & (d1 >= 0) & (d3 <= 0) & np.isfinite(t), 1.0 - t, t, 0.0)  # edge AB
        put((d6 >= 0) & (d5 <= d6), 0.0, 0.0, 1.0)  # vertex C
        t = d2 / (d2 - d6)
        put((vb <= 0) & (d2 >= 0) & (d6 <= 0) & np.isfinite(t), 1.0 - t, 0.0, t)  # edge AC
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0) & np.isfinite(t), 0.0, 1.0 - t, t)  # edge BC
        den = va + vb + vc
        vv, ww = vb / den, vc / den
        inside = (den > 0) & np.isfinite(vv) & np.isfinite(ww)
        put(inside, 1.0 - vv - ww, vv, ww)
    if not done.all():
        # Degenerate (zero-area) triangles that fell through every test: nearest vertex.
        r = ~done
        d = np.stack([np.einsum("ij,ij->i", X[r], X[r]) for X in (ap, bp, cp)], 1)
        k = np.argmin(d, 1)
        bar = np.zeros((int(r.sum()), 3))
        bar[np.arange(len(k)), k] = 1.0
        u[r], v[r], w[r] = bar[:, 0], bar[:, 1], bar[:, 2]
    bary = np.clip(np.stack([u, v, w], 1), 0.0, 1.0)
    bary /= bary.sum(1, keepdims=True)
    Q = bary[:, :1] * A + bary[:, 1:2] * B + bary[:, 2:] * C
    dist2 = np.einsum("ij,ij->i", P - Q, P - Q)
    return bary, dist2


def vertex_face_table(F: np.ndarray, n: int) -> np.ndarray:
    """(n, max valence) int64: faces around each vertex, padded with -1."""
    vf = F.ravel()
    fid = np.repeat(np.arange(len(F)), 3)
    order = np.argsort(vf, kind="stable")
    vf, fid = vf[order], fid[order]
    counts = np.bincount(vf, minlength=n)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(vf)) - start[vf]
    table = np.full((n, max(int(counts.max(initial=1)), 1)), -1, dtype=np.int64)
    table[vf, pos] = fid
    return table


def project_to_surface(
    P: np.ndarray,
    V: np.ndarray,
    F: np.ndarray,
    *,
    normals: np.ndarray | None = None,
    k_vertices: int = 2,
    k_centroids: int = 6,
    facing_penalty: float | None = None,
    chunk: int = 8192,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest point of the surface ``(V, F)`` to each point of ``P``.

    P: (N, 3) float64 query points; V: (k, 3) float64, F: (l, 3) int64 the surface.
    Candidate triangles per point: the faces around its ``k_vertices`` nearest
    vertices and the ``k_centroids`` faces with the nearest centroids; the exact
    point-triangle distance picks among them. With ``normals`` ((N, 3) unit normals
    of the query points), triangles whose normal points against the query's
    (dot < -0.25) have ``facing_penalty`` (default 3 mean edge lengths) added to
    their distance, so points on one side of a thin gap do not land on the other.

    Returns ``(face (N,) int64, bary (N, 3) float64, dist (N,) float64)``; ``dist``
    is the true Euclidean distance to the chosen point.
    """
    from scipy.spatial import cKDTree

    P = np.ascontiguousarray(P, dtype=np.float64)
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    N = len(P)
    face = np.zeros(N, dtype=np.int64)
    bary = np.zeros((N, 3))
    dist = np.zeros(N)
    if N == 0:
        return face, bary, dist
    kv = int(max(1, min(k_vertices, len(V))))
    kc = int(max(1, min(k_centroids, len(F))))
    table = vertex_face_table(F, len(V))
    cent = V[F].mean(axis=1)
    vtree, ctree = cKDTree(V), cKDTree(cent)
    fn = face_normals(V, F) if normals is not None else None
    if normals is not None and facing_penalty is None:
        e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
        facing_penalty = 3.0 * float(np.linalg.norm(V[e[:, 0]] - V[e[:, 1]], axis=1).mean())
    for s in range(0, N, chunk):
        p = P[s:s + chunk]
        m = len(p)
        _, iv = vtree.query(p, k=kv)
        _, ic = ctree.query(p, k=kc)
        iv = iv.reshape(m, kv)
        ic = ic.reshape(m, kc)
        cand = np.concatenate([table[iv].reshape(m, -1), ic], axis=1)
        c = cand.shape[1]
        # Only real candidates are computed: the vertex-face table is padded to the
        # largest valence, about twice the average.
        flat = np.flatnonzero(cand.ravel() >= 0)
        cf = cand.ravel()[flat]
        rows = flat // c
        b, d2 = closest_point_barycentric(p[rows], V[F[cf, 0]], V[F[cf, 1]], V[F[cf, 2]])
        d = np.sqrt(d2)
        score = np.full(m * c, np.inf)
        score[flat] = d
        if normals is not None:
            facing = np.einsum("ij,ij->i", fn[cf], normals[s:s + chunk][rows])
            score[flat] += np.where(facing < -0.25, facing_penalty, 0.0)
        pick = np.arange(m) * c + np.argmin(score.reshape(m, c), axis=1)
        where = np.searchsorted(flat, pick)  # position of each pick among the computed pairs
        face[s:s + m] = cf[where]
        bary[s:s + m] = b[where]
        dist[s:s + m] = d[where]
    return face, bary, dist


def interpolate(values: np.ndarray, F: np.ndarray, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Per-vertex ``values`` (k, C) of a surface at surface points ``(face, bary)`` -> (N, C)."""
    corners = F[face]
    out = bary[:, :1] * values[corners[:, 0]]
    out += bary[:, 1:2] * values[corners[:, 1]]
    out += bary[:, 2:3] * values[corners[:, 2]]
    return out


def barycentric_matrix(F: np.ndarray, face: np.ndarray, bary: np.ndarray, n: int):
    """The sparse ``(N, n)`` csr matrix ``B`` with ``B @ values == interpolate(values, F,
    face, bary)`` for per-vertex values of an ``n``-vertex surface: the linear map from
    a surface's vertex positions to points attached to it (face, barycentric), so the
    points can follow the surface through any motion of its vertices."""
    import scipy.sparse as sp

    face = np.asarray(face, dtype=np.int64)
    bary = np.asarray(bary, dtype=np.float64)
    N = len(face)
    return sp.csr_matrix((bary.ravel(), (np.repeat(np.arange(N), 3), np.asarray(F)[face].ravel())),
                         shape=(N, int(n)))


__all__ = ["closest_point_barycentric", "vertex_face_table", "project_to_surface", "interpolate",
           "barycentric_matrix"]
