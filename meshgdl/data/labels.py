"""Per-vertex / per-face labels: majority conversions, transfer between meshes, smoothing.

* :func:`face_to_vertex_labels` -- per-face labels to per-vertex (majority of the
  incident faces), :func:`vertex_to_face_labels` -- per-vertex to per-face (majority
  of the three corners; with per-vertex class ``scores``, three different corner
  labels go to the one with the highest summed score). Without scores both break ties
  towards the smallest label; ``ignore_index`` (-1) labels do not vote.
* :func:`nearest_surface_labels` -- labels of one surface carried to the points of
  another (remeshed copies of labelled meshes).
* :func:`smooth_labels` -- area-weighted one-ring majority vote.
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
    pairs, counts = np.unique(np.stack([g, lab], 1), axis=0, return_counts=True)
    # order: group ascending, count descending, label ascending -> first row per group wins
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pairs = pairs[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    out[pairs[first, 0]] = pairs[first, 1]
    return out


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


__all__ = [
    "IGNORE_INDEX",
    "face_to_vertex_labels",
    "vertex_to_face_labels",
    "nearest_surface_labels",
    "smooth_labels",
]
