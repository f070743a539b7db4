"""Intrinsic gradient of per-vertex scalar functions, in each vertex's gauge.

For a function f sampled at vertices, the gradient at p is the least-squares fit of
``f_q - f_p ~ <grad_p, u_pq>`` over p's neighbours q, where ``u_pq`` are q's
log-map coordinates in p's gauge (:meth:`Gauges.log_coords`). The result is a
rho_1 (tangent vector) feature: under a gauge rotation by alpha_p it transforms as
``rho_1(-alpha_p) grad_p``. DiffusionNet's spatial-gradient features use the same
construction with point-cloud neighbourhoods.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from meshgdl.geometry.gauges import Gauges


def tangent_gradient(gauges: Gauges, *, weights: str = "inverse_square", reg: float = 1e-8):
    """Sparse gradient operators ``(Gx, Gy)``, each ``(n, n)`` CSR.

    ``(Gx @ f)[p], (Gy @ f)[p]`` are the components of the gradient of ``f`` at p
    along ``e1`` and ``e2`` of p's gauge (units: f per unit length).

    weights: ``"uniform"`` or ``"inverse_square"`` (1/r^2, the usual choice: short
    edges constrain the gradient most). ``reg`` is a relative Tikhonov term that keeps
    vertices with collinear neighbours finite.
    """
    q, p = gauges.edge_index
    n = gauges.num_vertices
    u = gauges.log_coords()  # (E, 2)
    if weights == "uniform":
        w = np.ones(len(q))
    elif weights == "inverse_square":
        w = 1.0 / np.maximum(gauges.r, 1e-300) ** 2
    else:
        raise ValueError(f"weights must be 'uniform' or 'inverse_square', got {weights!r}")
    # Normal matrix A_p = sum_q w u u^T (2x2 per vertex) and its inverse.
    A = np.empty((n, 2, 2))
    # np.bincount sums each vertex's terms in edge order, like np.add.at, several
    # times faster
    wu = w[:, None] * u
    A[:, 0, 0] = np.bincount(p, weights=wu[:, 0] * u[:, 0], minlength=n)
    A[:, 1, 1] = np.bincount(p, weights=wu[:, 1] * u[:, 1], minlength=n)
    A[:, 0, 1] = np.bincount(p, weights=wu[:, 0] * u[:, 1], minlength=n)
    A[:, 1, 0] = np.bincount(p, weights=wu[:, 1] * u[:, 0], minlength=n)
    tr = np.trace(A, axis1=1, axis2=2)
    A += (reg * np.maximum(tr, 1e-300))[:, None, None] * np.eye(2)
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    det = np.where(np.abs(det) > 0, det, 1.0)
    Ainv = np.stack([np.stack([A[:, 1, 1], -A[:, 0, 1]], -1), np.stack([-A[:, 1, 0], A[:, 0, 0]], -1)], 1)
    Ainv /= det[:, None, None]
    # grad_p = Ainv_p sum_q w u_q (f_q - f_p): coefficient c_e on f_q, -c_e on f_p.
    c = np.einsum("eij,ej->ei", Ainv[p], w[:, None] * u)  # (E, 2)
    ops = []
    for k in range(2):
        rows = np.concatenate([p, p])
        cols = np.concatenate([q, p])
        vals = np.concatenate([c[:, k], -c[:, k]])
        ops.append(sp.csr_matrix((vals, (rows, cols)), shape=(n, n)))
    return ops[0], ops[1]
