"""Per-vertex / per-face labels: majority conversions, transfer between meshes, smoothing.

* :func:`face_to_vertex_labels` -- per-face labels to per-vertex (majority of the
  incident faces), :func:`vertex_to_face_labels` -- per-vertex to per-face (majority
  of the three corners; with per-vertex class ``scores``, three different corner
  labels go to the one with the highest summed score). Without scores both break ties
  towards the smallest label; ``ignore_index`` (-1) labels do not vote.
* :func:`nearest_surface_labels` -- labels of one surface carried to the points of
  another (remeshed copies of labelled meshes).
* :func:`smooth_labels` -- area-weighted one-ring majority vote.
* :func:`refine_labels` -- per-vertex labels from class scores by a graph cut on the
  mesh itself (area-weighted data term, boundary-length term): part boundaries that
  run along the surface at its own resolution, not along a coarser mesh's triangles.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from meshgdl.errors import DatasetError
from meshgdl.geometry.proximity import project_to_surface
from meshgdl.geometry.topology import vertex_adjacency

#: Label of unlabelled vertices/faces: left out of every vote, loss and metric.
IGNORE_INDEX = -1


def _majority(groups: np.ndarray, labels: np.ndarray, n_groups: int, ignore_index: int) -> np.ndarray:
    """Most frequent label per group (ties: smallest label); groups without votes -> ignore_index."""
    keep = labels != ignore_index
    g, lab = groups[keep], labels[keep]
    out = np.full(n_groups, ignore_index, dtype=np.int64)
    if g.size == 0:
        return out
    # (group, label) pairs as one int64 key: counted directly when the table is small,
    # else by a 1-D unique (far faster than one over rows)
    lo = int(lab.min())
    k = int(lab.max()) - lo + 1
    key = g.astype(np.int64) * k + (lab - lo)
    if n_groups * k <= 1 << 24:
        table = np.bincount(key, minlength=n_groups * k).reshape(n_groups, k)
        best = table.argmax(axis=1)  # first maximum: the smallest label
        return np.where(table[np.arange(n_groups), best] > 0, best + lo, out)
    keys, counts = np.unique(key, return_counts=True)
    pairs = np.stack([keys // k, keys % k + lo], 1)
    # order: group ascending, count descending, label ascending -> first row per group wins
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    out[pairs[first, 0]] = pairs[first, 1]
    return out


def frame_majority(frame_labels, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Each vertex's most frequent label over the frames of ``frame_labels (T, n)``: (n,)
    int64 (ties: the smallest label; frames labelled ``ignore_index`` do not vote; a
    vertex without votes gets ``ignore_index``)."""
    L = np.asarray(frame_labels, dtype=np.int64)
    if L.ndim != 2:
        raise ValueError(f"frame_labels must have shape (T, n), got {L.shape}")
    return _majority(np.broadcast_to(np.arange(L.shape[1]), L.shape).ravel(), L.ravel(), L.shape[1], ignore_index)


def face_to_vertex_labels(F: np.ndarray, face_labels: np.ndarray, n_vertices: int,
                          ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per-face labels -> per-vertex labels by majority vote over the incident faces.

    F: (m, 3) int64, face_labels: (m,) int. Each face votes once for each of its
    vertices (unweighted); ties go to the smallest label; faces labelled
    ``ignore_index`` do not vote; a vertex with no voting face gets ``ignore_index``.
    Returns (n_vertices,) int64.
    """
    F = np.asarray(F, dtype=np.int64)
    face_labels = np.asarray(face_labels, dtype=np.int64)
    if face_labels.shape != (len(F),):
        raise DatasetError(f"expected {len(F)} face labels, got shape {face_labels.shape}")
    return _majority(F.ravel(), np.repeat(face_labels, 3), n_vertices, ignore_index)


def vertex_to_face_labels(F: np.ndarray, vertex_labels: np.ndarray, ignore_index: int = IGNORE_INDEX,
                          scores: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex labels -> per-face labels: the majority of a face's three corners.

    F: (m, 3) int64, vertex_labels: (n,) int. Three different labels -> the one
    with the highest summed ``scores`` ((n, C) per-vertex class scores, e.g.
    probabilities) over the three corners when given, else the smallest;
    unlabelled corners (``ignore_index``) do not vote; a face with no labelled
    corner gets ``ignore_index``. Returns (m,) int64.
    """
    F = np.asarray(F, dtype=np.int64)
    vertex_labels = np.asarray(vertex_labels, dtype=np.int64)
    a, b, c = vertex_labels[F[:, 0]], vertex_labels[F[:, 1]], vertex_labels[F[:, 2]]
    va, vb, vc = a != ignore_index, b != ignore_index, c != ignore_index
    # Three corners: a label two of them share wins; else each voter has one vote and
    # the smallest wins (the rule of _majority, without its sort of every (face, label) pair).
    big = np.iinfo(np.int64).max
    out = np.minimum(np.minimum(np.where(va, a, big), np.where(vb, b, big)), np.where(vc, c, big))
    out[out == big] = ignore_index
    for x, y, vx, vy in ((b, c, vb, vc), (a, c, va, vc), (a, b, va, vb)):
        pair = vx & vy & (x == y)
        out[pair] = x[pair]
    if scores is not None:
        differ = (a != b) & (b != c) & (a != c) & va & vb & vc
        if differ.any():
            fi = np.flatnonzero(differ)
            tot = scores[F[fi, 0]] + scores[F[fi, 1]] + scores[F[fi, 2]]
            cand = np.stack([a[fi], b[fi], c[fi]], 1)
            pick = np.argmax(np.take_along_axis(tot, cand, axis=1), axis=1)
            out[fi] = cand[np.arange(len(fi)), pick]
    return out


def nearest_surface_labels(P: np.ndarray, V: np.ndarray, F: np.ndarray, labels: np.ndarray,
                           normals: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex ``labels`` (k,) of a surface ``(V, F)`` carried to points ``P`` (N, 3):
    the label of the corner nearest (largest barycentric weight) to each point's
    closest surface point. Used to label remeshed copies of labelled meshes."""
    face, bary, _ = project_to_surface(P, V, F, normals=normals)
    corner = np.argmax(bary, axis=1)
    return np.asarray(labels)[F[face, corner]].astype(np.int64)



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


#: Labels scoring below ``exp(-MAX_LOG_RATIO)`` times a vertex's best are never given to it
#: by :func:`refine_labels` (a 20:1 ratio; what keeps its graph cuts to the uncertain bands).
MAX_LOG_RATIO = 3.0


def cut_weights(V: np.ndarray, F: np.ndarray, crease: float = 0.0,
                near: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The undirected edges of ``(V, F)`` and what cutting each one costs, in length units.

    Returns ``(E (e, 2) int64, w (e,) float64)``: ``w`` is the length of the edge's
    *barycentric dual edge* (edge midpoint to each adjacent face's centroid), so the
    summed ``w`` of the edges a vertex labelling cuts is the length of the polyline
    that separates its regions on the surface (the boundaries of the barycentric
    vertex cells) -- the same boundary length at any resolution. ``crease >= 0``
    (in units of the mesh's ``sqrt(area)``) makes concave folds cheaper to cut:
    ``w *= exp(-crease * kappa)`` with ``kappa`` the concave normal curvature
    across the edge (dihedral angle over the distance between the two face centroids,
    in ``1 / sqrt(area)``, 0 on convex and boundary edges). ``near``: an ``(n,)`` bool
    vertex mask; only the edges with an end in it are returned (and computed).
    """
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    E, sides, face, inv = _edge_topology(F, len(V))
    want = np.ones(len(E), dtype=bool) if near is None else np.asarray(near, dtype=bool)[E].any(axis=1)
    sel = want[inv]
    sides, face, inv = sides[sel], face[sel], inv[sel]
    cen = V[F].mean(axis=1)
    mid = 0.5 * (V[sides[:, 0]] + V[sides[:, 1]])
    w = np.bincount(inv, weights=np.linalg.norm(mid - cen[face], axis=1), minlength=len(E))
    if crease > 0 and len(E):
        from meshgdl.geometry.normals import face_areas, face_normals

        scale = np.sqrt(max(float(face_areas(V, F).sum()), 1e-300))
        count = np.bincount(inv, minlength=len(E))
        order = np.argsort(inv, kind="stable")
        first = np.searchsorted(inv[order], np.arange(len(E)))
        pair = np.flatnonzero(count == 2)
        f1, f2 = face[order[first[pair]]], face[order[first[pair] + 1]]
        fn = face_normals(V, F)
        d = cen[f2] - cen[f1]
        dist = np.maximum(np.linalg.norm(d, axis=1), 1e-300)
        angle = np.arccos(np.clip(np.einsum("ij,ij->i", fn[f1], fn[f2]), -1.0, 1.0))
        # the neighbouring face rises above this face's plane (and vice versa): a fold inwards
        concave = np.einsum("ij,ij->i", d, fn[f1] + fn[f2]) > 0
        kappa = np.where(concave, angle / dist * scale, 0.0)
        w[pair] *= np.exp(-crease * kappa)
    return E[want], w[want]


_TOPOLOGY: list = []  # (F, n, result) of the last call: the frames of an animation share one F


def _edge_topology(F: np.ndarray, n: int):
    """``(E (e, 2), sides (s, 2), face (s,), inv (s,))``: the undirected edges of ``F``, each
    face side (sorted vertex pair) with its face and its edge. Cached for the last ``F``."""
    if _TOPOLOGY and _TOPOLOGY[0][1] == n and np.array_equal(_TOPOLOGY[0][0], F):
        return _TOPOLOGY[0][2]
    from meshgdl.geometry.topology import face_sides

    sides = face_sides(F)
    face = np.tile(np.arange(len(F)), 3)
    ok = sides[:, 0] != sides[:, 1]
    sides, face = sides[ok], face[ok]
    key, inv = np.unique(sides[:, 0] * n + sides[:, 1], return_inverse=True)
    out = (np.stack([key // n, key % n], 1), sides, face, inv.ravel())
    _TOPOLOGY[:] = [(F.copy(), n, out)]
    return out


def refine_labels(
    scores: np.ndarray,
    V: np.ndarray,
    F: np.ndarray,
    smoothness: float,
    crease: float = 0.0,
    max_sweeps: int = 4,
) -> np.ndarray:
    """Per-vertex labels from class ``scores`` by minimising, over labellings ``L``,

        E(L) = sum_i a_i * -log s_i(L_i)  +  smoothness * sum_(i,j) w_ij [L_i != L_j]

    with ``a_i`` vertex areas over the total area, ``s_i`` the row-normalised scores
    and ``w_ij`` :func:`cut_weights` (barycentric dual edge lengths over
    ``sqrt(total area)``, cheaper across concave folds with ``crease``): the data term
    is an area integral and the second the length of the part boundaries, so the
    optimum is the same curve at any resolution -- a boundary drawn by coarse
    triangles (scores interpolated from a coarse mesh) comes out as the shortest curve
    through the uncertain band, isolated specks disappear. ``smoothness`` is a length
    in units of ``sqrt(area)``: a region whose boundary is longer than ``1 /
    smoothness`` times its area-weighted log-score deficit is absorbed.

    Minimised by alpha-expansion (Boykov, Veksler & Zabih 2001; max-flow by PyMaxflow)
    from the argmax, in label order, until no label's move improves (at most
    ``max_sweeps`` sweeps; a move is skipped while nothing changed since that label's
    last one): every move is optimal, so the result is within a factor 2 of the optimum
    and depends on the surface, not on the vertex order. The optimum is over labellings
    that give no vertex a label with less than ``exp(-MAX_LOG_RATIO)`` of its best score.

    scores: (n, C) non-negative (probabilities or prior-weighted probabilities);
    V: (n, 3); F: (m, 3) int64. ``smoothness = 0`` gives the row argmax.
    Returns (n,) int64.
    """
    import maxflow

    S = np.asarray(scores, dtype=np.float64)
    n, C = S.shape
    if smoothness < 0 or crease < 0:
        raise ValueError(f"smoothness and crease must be >= 0, got {smoothness}, {crease}")
    if not np.all(np.isfinite(S)) or (S < 0).any():
        raise ValueError("scores must be finite and non-negative")
    logS = np.log(np.maximum(S / np.maximum(S.sum(axis=1, keepdims=True), 1e-300), 1e-12))
    L = np.argmax(logS, axis=1).astype(np.int64)
    if smoothness == 0 or n == 0 or len(F) == 0:
        return L
    from meshgdl.geometry.normals import vertex_areas

    a = vertex_areas(V, F)
    total = float(a.sum())
    if total <= 0:
        return L
    U = -logS * (a / total)[:, None]
    cand = (logS.max(axis=1, keepdims=True) - logS) <= MAX_LOG_RATIO
    # a vertex with one candidate keeps its argmax: the cuts involve only the others and
    # the edges that touch them
    active = cand.sum(axis=1) > 1
    if not active.any():
        return L
    E, w = cut_weights(V, F, crease, near=active)
    w = w * (float(smoothness) / np.sqrt(total))
    i, j = E[:, 0], E[:, 1]
    # a move changes nothing unless the labelling changed since that label's last move
    moves, last_change, done = 0, 0, np.full(C, -1)
    for _ in range(int(max_sweeps)):
        for alpha in range(C):
            if done[alpha] >= last_change:
                continue
            moves += 1
            done[alpha] = moves
            free = cand[:, alpha] & (L != alpha)
            if free.any():
                new, gain, keep_cost = _expand(L, alpha, free, U, i, j, w, maxflow)
                if gain > 1e-9 * max(keep_cost, 1e-300):
                    L, last_change = new, moves
        if all(done[a] >= last_change for a in range(C)):
            break
    return L


def _expand(L, alpha, free, U, i, j, w, maxflow):
    """One alpha-expansion move of :func:`refine_labels`: ``(labels, gain, keep_cost)`` --
    the labelling that minimises its energy among those where only the ``free`` vertices
    may switch to ``alpha``, how much lower its energy is than ``L``'s, and the move's
    cut cost of keeping ``L`` (the scale of ``gain``)."""
    idx = np.flatnonzero(free)
    local = np.full(len(L), -1, dtype=np.int64)
    local[idx] = np.arange(len(idx))
    # x = 0: keep the label, x = 1: take alpha
    u0 = U[idx, L[idx]].copy()
    u1 = U[idx, alpha].copy()
    fi, fj = free[i], free[j]
    # one end free, the other fixed at its label: a data term of the free end
    m = len(idx)
    for a_, b_, sel in ((i, j, fi & ~fj), (j, i, fj & ~fi)):
        k = local[a_[sel]]
        lb, ww = L[b_[sel]], w[sel]
        u0 += np.bincount(k, weights=ww * (L[a_[sel]] != lb), minlength=m)
        u1 += np.bincount(k, weights=ww * (lb != alpha), minlength=m)
    # both ends free (neither is alpha): E(x_i, x_j) = A + (C - A) x_i + (D - C) x_j
    # + (B + C - A - D)(1 - x_i) x_j with A = w [L_i != L_j], B = C = w, D = 0
    both = fi & fj
    ki, kj, ww = local[i[both]], local[j[both]], w[both]
    A = ww * (L[i[both]] != L[j[both]])
    u1 += np.bincount(ki, weights=ww - A, minlength=m) - np.bincount(kj, weights=ww, minlength=m)
    g = maxflow.Graph[float](m, len(ki))
    nodes = g.add_nodes(m)
    g.add_edges(nodes[ki], nodes[kj], 2 * ww - A, np.zeros(len(ww)))
    low = np.minimum(u0, u1)
    # source side = keep (pays the sink capacity u0), sink side = alpha (pays u1)
    g.add_grid_tedges(nodes, u1 - low, u0 - low)
    flow = g.maxflow()
    switch = g.get_grid_segments(nodes)
    out = L.copy()
    out[idx[switch]] = alpha
    # keeping every label cuts the sink capacities; the minimum cut is the flow
    keep_cost = float((u0 - low).sum())
    return out, keep_cost - float(flow), keep_cost


__all__ = [
    "IGNORE_INDEX",
    "face_to_vertex_labels",
    "vertex_to_face_labels",
    "nearest_surface_labels",
    "smooth_labels",
    "cut_weights",
    "refine_labels",
    "MAX_LOG_RATIO",
]
