"""The pipeline behind ``meshgdl segment``: part segmentation of any triangle mesh.

A user's mesh has whatever resolution, position, scale, orientation, vertex order
and small defects its author left in it; a model was trained at one working
resolution on clean meshes. :func:`segment` bridges the two:

1. **working mesh** (:func:`working_mesh`): components holding less than
   ``min_component_share`` of the surface area (specks, loose bits) are set aside;
   the rest is centred on its area-weighted centroid and scaled to total area
   ``area`` (default 1), then brought to about ``n_target`` vertices -- quadric
   decimation (:func:`meshgdl.hierarchy.decimate`, which decimates in a canonical,
   vertex-order independent order) when too fine, Loop subdivision (midpoint
   subdivision for non-manifold meshes) and then decimation when too coarse,
   untouched when already within ``[0.6, 1.25] * n_target``;
2. **predict**: the model's per-vertex class probabilities on the working mesh
   (:class:`Segmenter`; the model sees only intrinsic features -- HKS etc. -- through
   a gauge-equivariant network, so neither orientation nor vertex order matter);
3. **transfer** (:func:`project_to_surface`): every vertex of the input is
   projected to the closest point of the working surface (candidate triangles
   from KD-trees over working vertices and face centroids, exact point-triangle
   distances, triangles facing the other way penalised so a hand resting on a
   thigh does not borrow the thigh's label); its probabilities are the
   barycentric interpolation there;
4. **smoothing** (:func:`smooth_labels`): a few rounds of area-weighted majority
   vote over each vertex and its one-ring on the *input* mesh, which removes
   isolated specks without moving boundaries by more than an edge or two;
5. **back to the file** (:meth:`Segmentation.file_vertex_labels` etc.): labels in
   the input file's own vertex and face order; merged duplicate vertices share
   their vertex's label, unreferenced vertices take the label of the closest
   working-surface point, faces dropped while cleaning take the majority of their
   corners.

All geometry is numpy/scipy; only :class:`Segmenter` touches torch.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from meshgdl.colors import label_colors
from meshgdl.errors import MeshError
from meshgdl.geometry.normals import face_areas, face_normals, vertex_areas, vertex_normals
from meshgdl.io import Mesh
from meshgdl.pretrained import LoadedModel

#: Working-mesh components with fewer vertices are labelled from the others (too small
#: for a U-Net's coarse levels).
MIN_MODEL_VERTICES = 64
#: Rounds of majority smoothing when the model description does not say.
DEFAULT_SMOOTH_ITERATIONS = 2
#: Working resolution used when a checkpoint does not say (no sidecar JSON).
DEFAULT_WORKING_VERTICES = 2500
#: Stages reported to a progress callback, in order.
STAGES = ("load", "preprocess", "predict", "transfer", "write")
# ----------------------------------------------------------------------------- mesh helpers


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


def _is_edge_manifold(F: np.ndarray) -> bool:
    e = np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e[:, 0] * (int(F.max()) + 1) + e[:, 1], return_counts=True)
    return bool(counts.max(initial=0) <= 2)


def _subdivide_to(V: np.ndarray, F: np.ndarray, n_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Subdivide until at least ``n_min`` vertices (about x4 a round).

    Loop subdivision: a coarse mesh stands for the smooth surface it samples, and
    decimating flat midpoint facets afterwards leaves sliver triangles along the old
    edges. Non-manifold edges are split first (Loop's stencils need at most two
    faces per edge); midpoint subdivision only if Loop still fails.
    """
    import trimesh

    if not _is_edge_manifold(F):
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
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    n = len(V)
    key = e[:, 0] * n + e[:, 1]
    rev = e[:, 1] * n + e[:, 0]
    b = e[~np.isin(rev, key)]  # directed boundary edges a -> b
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


# ----------------------------------------------------------------------------- working mesh


@dataclass
class WorkingMesh:
    """The mesh a model runs on, in normalised coordinates.

    ``V (k, 3) float64``, ``F (l, 3) int64``: working mesh, ``X_work = (X - center) * scale``
    for input coordinates ``X``; ``kept (n,) bool``: input vertices whose component
    was kept (the others are labelled by transfer only); ``method``: ``"as-is"``,
    ``"decimated"``, ``"subdivided"`` or ``"subdivided+decimated"``.
    """

    V: np.ndarray
    F: np.ndarray
    center: np.ndarray
    scale: float
    kept: np.ndarray
    method: str
    n_components: int = 1
    n_dropped_components: int = 0

    def normalize(self, X: np.ndarray) -> np.ndarray:
        """Input coordinates (k, 3) -> working-mesh coordinates."""
        return (np.asarray(X, dtype=np.float64) - self.center) * self.scale


def _check_area(V: np.ndarray, F: np.ndarray, name: str = "the mesh") -> np.ndarray:
    fa = face_areas(V, F)
    total = float(fa.sum())
    diag = float(np.linalg.norm(V.max(0) - V.min(0))) if len(V) else 0.0
    if not (math.isfinite(total) and total > 1e-14 * max(diag, 1e-300) ** 2):
        raise MeshError(f"{name} has no surface area (all faces are degenerate)")
    return fa


def check_segmentable(mesh: Mesh) -> None:
    """Raise MeshError (one line, naming the file) if ``mesh`` cannot be segmented:
    every face degenerate. Cheap; run before any work is shown."""
    _check_area(mesh.V, mesh.F, mesh.path or "the mesh")


def _large_components(F: np.ndarray, n: int, fa: np.ndarray, share: float) -> tuple[np.ndarray, int, int]:
    """``(kept (n,) bool, n_components, n_dropped)``: vertices of the face-connected
    components holding at least ``share`` of the area ``fa`` (m,) (the largest is
    always kept); vertices used by no face are not kept and not counted."""
    n_comp, comp = vertex_components(F, n)
    comp_area = np.bincount(comp[F[:, 0]], weights=fa, minlength=n_comp)
    used = np.zeros(n_comp, dtype=bool)
    used[comp[F[:, 0]]] = True
    keep_comp = used & (comp_area >= share * float(fa.sum()))
    keep_comp[int(np.argmax(np.where(used, comp_area, -1.0)))] = True
    return keep_comp[comp], int(used.sum()), int((used & ~keep_comp).sum())


def working_mesh(
    V: np.ndarray,
    F: np.ndarray,
    n_target: int = DEFAULT_WORKING_VERTICES,
    *,
    area: float = 1.0,
    min_component_share: float = 0.01,
    keep_range: tuple[float, float] = (0.6, 1.25),
    fill: bool = False,
) -> WorkingMesh:
    """Bring a cleaned mesh to the model's working resolution and normalised pose/scale.

    V: (n, 3) float64, F: (m, 3) int64 (a cleaned mesh, e.g. ``Mesh.V, Mesh.F``).
    n_target: working vertex count. area: total area after scaling (squared units of
    the working mesh). Components with less than ``min_component_share`` of the
    area are left out (the largest is always kept). ``fill``: close the working mesh's
    holes (:func:`fill_holes`). Raises MeshError if the surface
    has (almost) no area.
    """
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    n = len(V)
    if n_target < 16:
        raise ValueError(f"n_target must be at least 16, got {n_target}")
    fa = _check_area(V, F)
    kept, n_real, n_dropped = _large_components(F, n, fa, min_component_share)
    idx = np.flatnonzero(kept)
    remap = np.full(n, -1, dtype=np.int64)
    remap[idx] = np.arange(len(idx))
    fkeep = kept[F[:, 0]]
    Vk, Fk = V[idx], remap[F[fkeep]]
    fk = fa[fkeep]
    a_k = float(fk.sum())
    centroids = (Vk[Fk[:, 0]] + Vk[Fk[:, 1]] + Vk[Fk[:, 2]]) / 3.0
    center = (fk[:, None] * centroids).sum(0) / a_k
    scale = math.sqrt(area / a_k)
    Vk = (Vk - center) * scale

    lo, hi = keep_range
    nk = len(Vk)
    method = "as-is"
    if nk < lo * n_target:
        Vk, Fk = _subdivide_to(Vk, Fk, lo * n_target)
        method = "subdivided"
    if len(Vk) > hi * n_target:
        from meshgdl.hierarchy import decimate

        Vk, Fk, _ = decimate(Vk, Fk, int(n_target), parent="nearest")
        Vk = relax_slivers(Vk, Fk)
        method = "decimated" if method == "as-is" else "subdivided+decimated"
    # Decimation can leave repeated or degenerate-by-index triangles: clean like a file.
    clean = Mesh.from_arrays(Vk, Fk, name="working mesh")
    # ... and split off tiny pieces (a fin, a collapsed tube): a small component adds
    # its own high eigenvalues to the spectrum and shifts every spectrum-relative HKS time.
    keep_w, _, _ = _large_components(clean.F, clean.n_vertices, face_areas(clean.V, clean.F),
                                     min_component_share)
    if not keep_w.all():
        clean = Mesh.from_arrays(clean.V, clean.F[keep_w[clean.F[:, 0]]], name="working mesh")
    if fill:
        # Models are trained on closed surfaces; a scan's holes open Neumann boundaries
        # that change the spectrum (HKS) near them and split the coarse levels.
        Vf, Ff = fill_holes(clean.V, clean.F)
        if len(Ff) > clean.n_faces:
            clean = Mesh.from_arrays(Vf, Ff, name="working mesh")
    if clean.n_vertices < 4:
        raise MeshError(f"the working mesh has only {clean.n_vertices} vertices")
    return WorkingMesh(V=clean.V, F=clean.F, center=center, scale=scale, kept=kept, method=method,
                       n_components=n_real, n_dropped_components=n_dropped)


# ----------------------------------------------------------------------------- closest points


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


def _vertex_face_table(F: np.ndarray, n: int) -> np.ndarray:
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
    table = _vertex_face_table(F, len(V))
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


def nearest_surface_labels(P: np.ndarray, V: np.ndarray, F: np.ndarray, labels: np.ndarray,
                           normals: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex ``labels`` (k,) of a surface ``(V, F)`` carried to points ``P`` (N, 3):
    the label of the corner nearest (largest barycentric weight) to each point's
    closest surface point. Used to label remeshed copies of labelled meshes."""
    face, bary, _ = project_to_surface(P, V, F, normals=normals)
    corner = np.argmax(bary, axis=1)
    return np.asarray(labels)[F[face, corner]].astype(np.int64)


# ----------------------------------------------------------------------------- smoothing


def smooth_labels(
    labels: np.ndarray,
    F: np.ndarray,
    weights: np.ndarray,
    n_classes: int,
    iterations: int = 2,
) -> np.ndarray:
    """Area-weighted majority vote over each vertex and its one-ring, ``iterations`` times.

    labels: (n,) int64 in [0, n_classes); F: (m, 3) int64; weights: (n,) vertex
    areas. A vertex keeps its label on ties. Vertices without neighbours keep
    theirs. Returns (n,) int64.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    n = len(labels)
    if iterations <= 0 or n == 0:
        return labels
    w = np.asarray(weights, dtype=np.float64)
    A = vertex_adjacency(F, n)
    W = (A @ sp.diags(w)).tocsr() + sp.diags(w)
    # Ties go to the current label: its own vote gets a bonus below any real weight difference.
    bonus = 1e-9 * max(float(w.max(initial=0.0)), 1e-300)
    rows = np.arange(n)
    for _ in range(int(iterations)):
        onehot = sp.csr_matrix((np.ones(n), (rows, labels)), shape=(n, n_classes))
        votes = np.asarray((W @ onehot).todense())
        votes[rows, labels] += bonus
        new = np.argmax(votes, axis=1).astype(np.int64)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def face_majority(F: np.ndarray, labels: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """(m,) label of each face: the majority of its three corners; when all three
    differ, the corner label with the highest summed ``scores`` ((n, C) per-vertex
    class scores), else the first corner's."""
    a, b, c = labels[F[:, 0]], labels[F[:, 1]], labels[F[:, 2]]
    out = np.where((b == c), b, a).astype(np.int64)  # a==b or a==c -> a; b==c -> b
    out = np.where((a == b) | (a == c), a, out)
    differ = (a != b) & (b != c) & (a != c)
    if scores is not None and differ.any():
        fi = np.flatnonzero(differ)
        tot = scores[F[fi, 0]] + scores[F[fi, 1]] + scores[F[fi, 2]]
        cand = np.stack([a[fi], b[fi], c[fi]], 1)
        pick = np.argmax(np.take_along_axis(tot, cand, axis=1), axis=1)
        out[fi] = cand[np.arange(len(fi)), pick]
    return out


# ----------------------------------------------------------------------------- model


@dataclass
class Segmenter(LoadedModel):
    """A segmentation model ready to run (:class:`meshgdl.pretrained.LoadedModel`:
    ``predict(V, F)`` gives ``(k, C)`` probabilities on a working mesh), with what
    ``meshgdl segment`` needs to know: the ``working_vertices`` and total ``area`` of
    the working mesh. ``info`` is the checkpoint's sidecar JSON (``trained_on``,
    ``class_names``, ``working_vertices``, ``area``...), else ``{}``.
    """

    working_vertices: int = DEFAULT_WORKING_VERTICES
    area: float = 1.0

    @property
    def fill_holes(self) -> bool:
        """Close the working mesh's holes before predicting: the model description's
        ``fill_holes`` (measured per model), else False."""
        return bool(self.info.get("fill_holes", False))

    @property
    def smooth_iterations(self) -> int:
        """Rounds of majority smoothing on the input mesh: the model description's
        ``smooth_iterations`` (measured per model), else 2."""
        return int(self.info.get("smooth_iterations", DEFAULT_SMOOTH_ITERATIONS))


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> cuda if available else cpu; checks that cuda exists."""
    import torch

    d = (device or "auto").lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MeshError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        return d
    if d != "cpu":
        raise MeshError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    return d


def load_segmenter(path: str | os.PathLike | None = None, device: str | None = "cpu",
                   working_vertices: int | None = None) -> Segmenter:
    """Load a segmentation model for :func:`segment`.

    ``path``: a shipped model name (:func:`meshgdl.pretrained.names`), a checkpoint
    written by ``meshgdl train`` (file or run directory) or ``None`` for the default
    shipped segmentation model. Loaded through :func:`meshgdl.pretrained.load_model`
    (safetensors, no pickle). Raises CheckpointError for anything that is not an
    intact meshgdl segmentation checkpoint.
    """
    from meshgdl.pretrained import load_model

    dev = resolve_device(device)
    lm = load_model(path, task="segmentation", device=dev)
    info = lm.info
    nw = int(working_vertices or info.get("working_vertices") or DEFAULT_WORKING_VERTICES)
    if nw < 16:
        raise MeshError(f"working resolution must be at least 16 vertices, got {nw}")
    return Segmenter(model=lm.model, config=lm.config, class_names=lm.class_names, working_vertices=nw,
                     area=float(info.get("area", 1.0)), path=lm.path, device=dev, info=info,
                     checkpoint=lm.checkpoint)


# ----------------------------------------------------------------------------- pipeline


def predict_by_component(segmenter: Segmenter, V: np.ndarray, F: np.ndarray,
                         min_vertices: int = MIN_MODEL_VERTICES) -> np.ndarray:
    """Class probabilities ``(k, C) float64`` on a working mesh ``V (k, 3), F (l, 3)``,
    every connected component run through the model as a mesh of its own.

    A network normalises per mesh (instance norm, unit area, spectrum-relative HKS
    times), so surfaces that do not touch must not share those statistics: a loose
    sphere with 2 % of the area changed about 60 % of a human body's labels when both
    went through the model as one mesh. Components with fewer than ``min_vertices``
    vertices (too small for the model's hierarchy) take the probabilities of their
    closest point on the others. One component: exactly ``segmenter.predict(V, F)``.
    """
    n_comp, comp = vertex_components(F, len(V))
    if n_comp == 1:
        return segmenter.predict(V, F)
    sizes = np.bincount(comp, minlength=n_comp)
    big = sizes >= min_vertices
    big[int(np.argmax(sizes))] = True
    probs = np.zeros((len(V), segmenter.n_classes), dtype=np.float64)
    fcomp = comp[F[:, 0]]
    for c in np.flatnonzero(big):
        idx = np.flatnonzero(comp == c)
        remap = np.full(len(V), -1, dtype=np.int64)
        remap[idx] = np.arange(len(idx))
        probs[idx] = segmenter.predict(V[idx], remap[F[fcomp == c]])
    small = ~big[comp]
    if small.any():
        Fb = F[big[fcomp]]
        face, bary, _ = project_to_surface(V[small], V, Fb)
        probs[small] = interpolate(probs, Fb, face, bary)
    return probs



@dataclass
class Segmentation:
    """Result of :func:`segment` on a :class:`Mesh`.

    ``labels (n,)`` / ``face_labels (m,)``: on the cleaned mesh; ``probabilities (n, C)``:
    interpolated class probabilities before smoothing; ``file_vertex_labels
    (n_orig_vertices,)`` / ``file_face_labels (n_orig_faces,)``: in the input file's
    order (-1 only for polygons with fewer than 3 vertices); ``working``: the
    working mesh; ``timings``: seconds per stage.
    """

    labels: np.ndarray
    face_labels: np.ndarray
    probabilities: np.ndarray
    file_vertex_labels: np.ndarray
    file_face_labels: np.ndarray
    class_names: list
    working: WorkingMesh
    working_labels: np.ndarray
    timings: dict = field(default_factory=dict)

    def summary(self, mesh: Mesh) -> list[dict]:
        """Per class: name, file vertices with that label, share of the surface area."""
        n_cls = len(self.class_names)
        fa = face_areas(mesh.V, mesh.F)
        total = float(fa.sum()) or 1.0
        area = np.bincount(self.face_labels, weights=fa, minlength=n_cls)
        fl = self.file_vertex_labels
        counts = np.bincount(fl[fl >= 0], minlength=n_cls)
        rows = [{"label": i, "name": self.class_names[i], "vertices": int(counts[i]),
                 "area_share": float(area[i] / total)} for i in range(n_cls)]
        if (fl < 0).any():
            rows.append({"label": -1, "name": "(unlabelled)", "vertices": int((fl < 0).sum()), "area_share": 0.0})
        return rows


def segment(
    mesh: Mesh,
    segmenter: Segmenter,
    *,
    smooth_iterations: int | None = None,
    stage: Callable[[str], None] | None = None,
    raw_faces: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Segmentation:
    """Segment a loaded mesh (any resolution, pose, scale, vertex order).

    ``stage(name)`` is called as each of ``"preprocess"``, ``"predict"``,
    ``"transfer"`` begins. ``raw_faces()`` -> ``(T (t, 3) int64 file-vertex indices,
    origin (t,) int64 file face of each triangle)``: the file's triangles before
    cleaning (e.g. from ``load_mesh(path, process=False)``). It is called only when
    cleaning dropped whole faces (degenerate, repeated), which then get the
    majority label of their corners; without it they are labelled -1.
    """
    with _single_threaded_blas():
        if smooth_iterations is None:
            smooth_iterations = segmenter.smooth_iterations
        return _segment(mesh, segmenter, int(smooth_iterations), stage, raw_faces)


@contextlib.contextmanager
def _single_threaded_blas():
    """One BLAS thread for the geometry: every matrix here is small (eigen-solves on a
    few thousand vertices), and OpenBLAS's thread hand-offs made the eigen-solves ~10x
    slower with 2 threads on a busy 2-core machine. Torch's own threads are untouched.
    Uses threadpoolctl when it is installed (else a no-op)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _segment(mesh, segmenter, smooth_iterations, stage, raw_faces) -> Segmentation:
    say = stage or (lambda name: None)
    times: dict[str, float] = {}
    n_cls = segmenter.n_classes

    say("preprocess")
    t0 = time.perf_counter()
    wm = working_mesh(mesh.V, mesh.F, segmenter.working_vertices, area=segmenter.area,
                      fill=segmenter.fill_holes)
    times["preprocess"] = time.perf_counter() - t0

    say("predict")
    t0 = time.perf_counter()
    probs_w = predict_by_component(segmenter, wm.V, wm.F)
    times["predict"] = time.perf_counter() - t0

    say("transfer")
    t0 = time.perf_counter()
    Vn = wm.normalize(mesh.V)
    nrm = vertex_normals(mesh.V, mesh.F)
    face, bary, _ = project_to_surface(Vn, wm.V, wm.F, normals=nrm)
    probs = interpolate(probs_w, wm.F, face, bary)
    raw = np.argmax(probs, axis=1).astype(np.int64)
    labels = smooth_labels(raw, mesh.F, vertex_areas(mesh.V, mesh.F), n_cls, smooth_iterations)
    flab = face_majority(mesh.F, labels, probs)

    file_v = mesh.to_original_vertices(labels, fill=-1)
    lost = file_v < 0
    if lost.any() and mesh.file_V is not None:
        f2, b2, _ = project_to_surface(wm.normalize(mesh.file_V[lost]), wm.V, wm.F)
        file_v[lost] = np.argmax(interpolate(probs_w, wm.F, f2, b2), axis=1)
    file_f = mesh.to_original_faces(flab, fill=-1)
    missing = file_f < 0
    if missing.any() and raw_faces is not None:
        T, origin = raw_faces()
        sel = missing[origin]
        if sel.any():
            tl = face_majority(T[sel], file_v)
            order = np.flatnonzero(sel)[::-1]  # first triangle of a polygon wins
            file_f[origin[order]] = tl[::-1]
    times["transfer"] = time.perf_counter() - t0
    return Segmentation(labels=labels, face_labels=flab, probabilities=probs, file_vertex_labels=file_v,
                        file_face_labels=file_f, class_names=list(segmenter.class_names), working=wm,
                        working_labels=np.argmax(probs_w, axis=1).astype(np.int64), timings=times)


def output_paths(out_ply: str | os.PathLike) -> dict[str, Path]:
    """``OUT.ply`` -> its companions ``OUT.vertex_labels.txt`` and ``OUT.face_labels.txt``."""
    p = Path(out_ply)
    stem = p.with_suffix("")
    return {"ply": p, "vertex_labels": Path(f"{stem}.vertex_labels.txt"),
            "face_labels": Path(f"{stem}.face_labels.txt")}


def default_output(mesh_path: str | os.PathLike) -> Path:
    """``dir/name.ext`` -> ``dir/name.segmented.ply``."""
    p = Path(mesh_path)
    return p.with_name(p.stem + ".segmented.ply")


def write_segmentation(seg: Segmentation, mesh: Mesh, out_ply: str | os.PathLike) -> dict[str, Path]:
    """Write the coloured PLY and the two label files, all or nothing.

    The PLY holds the file's vertices in file order (unreferenced ones included),
    per-vertex colours and a ``label`` property, and the cleaned triangles in file
    vertex numbering. Every file is first written to a temporary file next to its
    target; the targets are replaced only after all three are complete, so a
    failure leaves existing outputs untouched.
    """
    from meshgdl.atomic import atomic_path
    from meshgdl.io import save_mesh

    paths = output_paths(out_ply)
    fileV = mesh.file_V if mesh.file_V is not None else mesh.V
    tris = mesh.file_triangles() if mesh.file_V is not None else mesh.F
    lab = seg.file_vertex_labels
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(p)) for k, p in paths.items()}
        save_mesh(tmp["ply"], fileV, tris, vertex_colors=label_colors(lab),
                  vertex_scalars={"label": lab.astype(np.int32)})
        tmp["vertex_labels"].write_text(_lines(lab))
        tmp["face_labels"].write_text(_lines(seg.file_face_labels))
    return paths


def _lines(a: np.ndarray) -> str:
    return "".join(f"{v}\n" for v in np.asarray(a, dtype=np.int64).tolist())


__all__ = [
    "STAGES",
    "Segmenter",
    "Segmentation",
    "WorkingMesh",
    "load_segmenter",
    "check_segmentable",
    "segment",
    "working_mesh",
    "project_to_surface",
    "closest_point_barycentric",
    "interpolate",
    "nearest_surface_labels",
    "smooth_labels",
    "face_majority",
    "label_colors",
    "midpoint_subdivide",
    "split_nonmanifold_edges",
    "relax_slivers",
    "write_segmentation",
    "output_paths",
    "default_output",
]
