"""Gauges (per-vertex tangent frames), discrete log maps and parallel transport.

A *gauge* at vertex p is a choice of reference direction in p's tangent plane.
Everything here is intrinsic: the reference direction of p is the direction of one
outgoing edge p -> ref(p) (optionally rotated by an extra angle), and the angle of
every other outgoing edge is the sum of the corner angles swept counter-clockwise
(about the outward normal) from the reference edge, *rescaled* so that the corner
angles around an interior vertex sum to exactly 2*pi (the intrinsic tangent space of
a cone vertex; Knöppel et al. 2013, Sharp et al. 2019). Boundary vertices are not
rescaled, so a flat mesh keeps its planar angles everywhere.

For every directed edge q -> p (PyG convention: ``edge_index[0] = q`` is the
neighbour/source, ``edge_index[1] = p`` the receiver) we provide

* ``theta[e]`` = theta_pq: angle of q in p's gauge (the discrete log map's angle);
* ``r[e]`` = |p - q|: the log map's radius (edge length);
* ``transport[e]`` = g_{q->p}: parallel transport (discrete Levi-Civita connection)
  along the edge. A tangent vector at angle phi in q's gauge has angle
  ``phi + g_{q->p}`` in p's gauge. Because the transported edge direction keeps its
  angle with the edge, ``g_{q->p} = theta_pq - theta_qp + pi``.

Gauge transformation law: rotating every vertex's reference direction by alpha_p
(counter-clockwise) gives ``theta'_pq = theta_pq - alpha_p`` and
``g'_{q->p} = g_{q->p} + alpha_q - alpha_p``; :func:`compute_gauges` with
``offsets=alpha`` produces exactly this.

Holonomy: transporting around the boundary of a single face rotates by
``sum over its corners of (s_v - 1) * angle`` where ``s_v`` is the rescaling at v, so
around a loop that encloses a set of faces, the holonomy is the sum of the angle
defects of the enclosed vertices (the enclosed Gaussian curvature), modulo 2*pi.

Vertices whose faces do not form one consistently oriented fan (non-manifold
vertices/edges, flipped faces) fall back to an extrinsic log map: neighbours are
projected onto the tangent plane of the vertex normal and measured from the projected
reference edge. The gauge-transformation law and the transport formula hold there
too; the connection is then the edge-aligned discrete connection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshgdl.geometry.normals import corner_angles, vertex_normals

TWO_PI = 2.0 * np.pi


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % TWO_PI - np.pi


@dataclass
class Gauges:
    """Per-vertex gauges and per-directed-edge log map / transport.

    Attributes
    ----------
    frames : (n, 3, 3) float64
        ``frames[p] = [e1, e2, normal]`` (rows): the extrinsic picture of p's gauge,
        ``e1`` the reference edge projected to the tangent plane (rotated by the
        offset), ``e2 = normal x e1``. Used to draw tangent features in 3D. It is an
        approximation: the intrinsic (rescaled) angle of a neighbour differs from its
        projected angle by up to ~0.3 rad at strongly curved vertices, so code that
        must keep the gauge law exact should not mix ``frames`` with ``theta`` or
        ``transport`` (``tangent_jacobian`` below gives gauge axes that
        rotate exactly with the gauge).
    edge_index : (2, E) int64
        Directed edges, row 0 source q, row 1 receiver p; sorted by p, then by theta.
    theta : (E,) float64
        Angle of q in p's gauge, radians in [0, 2*pi) for the default gauge.
    r : (E,) float64
        Edge length |p - q|.
    transport : (E,) float64
        g_{q->p} in [-pi, pi).
    reverse : (E,) int64
        Index of the opposite directed edge (p -> q).
    reference : (n,) int64
        The neighbour whose edge defines angle 0 (before ``offsets``), -1 for isolated vertices.
    angle_sum : (n,) float64
        Sum of corner angles at each vertex (radians).
    scale : (n,) float64
        Factor applied to the corner angles at each vertex (2*pi / angle_sum at regular
        interior vertices, 1 elsewhere).
    regular : (n,) bool
        Vertex's faces form one consistently oriented fan (intrinsic log map used).
    boundary : (n,) bool
        Vertex lies on the boundary of its fan.
    """

    frames: np.ndarray
    edge_index: np.ndarray
    theta: np.ndarray
    r: np.ndarray
    transport: np.ndarray
    reverse: np.ndarray
    reference: np.ndarray
    angle_sum: np.ndarray
    scale: np.ndarray
    regular: np.ndarray
    boundary: np.ndarray

    @property
    def num_vertices(self) -> int:
        return len(self.frames)

    def log_coords(self) -> np.ndarray:
        """(E, 2) log-map coordinates of each source q in its receiver p's gauge."""
        return self.r[:, None] * np.stack([np.cos(self.theta), np.sin(self.theta)], axis=1)

    def tangent_to_3d(self, vec2: np.ndarray) -> np.ndarray:
        """Map per-vertex tangent vectors (n, 2) in gauge coordinates to 3D (n, 3)."""
        return vec2[:, :1] * self.frames[:, 0] + vec2[:, 1:2] * self.frames[:, 1]

    def edge_id(self, q: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Indices of the directed edges q -> p (-1 where there is none)."""
        n = self.num_vertices
        keys = self.edge_index[0] * n + self.edge_index[1]
        order = np.argsort(keys)
        want = np.asarray(q, dtype=np.int64) * n + np.asarray(p, dtype=np.int64)
        pos = np.clip(np.searchsorted(keys[order], want), 0, len(keys) - 1)
        found = keys[order][pos] == want
        return np.where(found, order[pos], -1)

    def holonomy(self, loop: np.ndarray) -> float:
        """Rotation angle (radians, in [-pi, pi)) of a tangent vector transported
        around the closed vertex loop ``loop[0] -> loop[1] -> ... -> loop[0]``.

        For a counter-clockwise loop this equals the enclosed integrated Gaussian
        curvature modulo 2*pi.
        """
        loop = np.asarray(loop, dtype=np.int64)
        src, dst = loop, np.roll(loop, -1)
        e = self.edge_id(src, dst)
        if np.any(e < 0):
            raise ValueError("loop contains consecutive vertices that are not joined by an edge")
        return float(wrap_angle(np.sum(self.transport[e])))


def _fallback_angles(V, normals, p, q, ref_of_p):
    """Extrinsic angles of q around p: project onto p's tangent plane, measure from
    the projected reference edge. All arrays are per directed edge."""
    n = normals[p]
    d = V[q] - V[p]
    d = d - np.einsum("ij,ij->i", d, n)[:, None] * n
    e1 = V[ref_of_p] - V[p]
    e1 = e1 - np.einsum("ij,ij->i", e1, n)[:, None] * n
    e1 = _normalize_or_perp(e1, n)
    e2 = np.cross(n, e1)
    return np.arctan2(np.einsum("ij,ij->i", d, e2), np.einsum("ij,ij->i", d, e1)) % TWO_PI


def _normalize_or_perp(e1: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Normalise tangent vectors; zero ones are replaced by any unit vector perpendicular to n."""
    norm = np.linalg.norm(e1, axis=1)
    bad = norm < 1e-14
    if np.any(bad):
        nb = n[bad]
        # Cross with the coordinate axis least aligned with n: never parallel.
        axis = np.eye(3)[np.argmin(np.abs(nb), axis=1)]
        e1 = e1.copy()
        e1[bad] = np.cross(nb, axis)
        norm = np.linalg.norm(e1, axis=1)
    return e1 / norm[:, None]


def compute_gauges(
    V: np.ndarray,
    F: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    normals: np.ndarray | None = None,
) -> Gauges:
    """Gauges, log-map angles/radii and transport angles for a triangle mesh.

    Parameters
    ----------
    V : (n, 3) float64 vertex positions.
    F : (m, 3) int64 faces, counter-clockwise seen from outside.
    reference : (n,) int64, optional
        For each vertex, the neighbour whose edge defines the gauge's angle 0. Must be
        a neighbour (entries of isolated vertices are ignored). Default: the first
        neighbour of the vertex's fan (for a boundary vertex, the boundary edge
        where the counter-clockwise fan starts).
    offsets : (n,) float64, optional
        Extra counter-clockwise rotation of each reference direction (radians);
        the result obeys the gauge-transformation law exactly.
    normals : (n, 3) float64, optional
        Vertex normals for the frames and the extrinsic fallback (default area-weighted).

    Returns
    -------
    Gauges
    """
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    n = len(V)
    if normals is None:
        normals = vertex_normals(V, F)

    # Corners: at vertex p = F[f, k], sweeping counter-clockwise from edge p->a to p->b.
    p_c = F.ravel()
    a_c = F[:, [1, 2, 0]].ravel()
    b_c = F[:, [2, 0, 1]].ravel()
    ang_c = corner_angles(V, F).ravel()
    nc = len(p_c)
    angle_sum = np.bincount(p_c, weights=ang_c, minlength=n)

    # Successor of a corner (p; a->b) in p's fan is the corner (p; b->c).
    key_a = p_c * n + a_c
    order = np.argsort(key_a, kind="stable")
    sorted_keys = key_a[order]
    dup = np.zeros(nc, dtype=bool)
    dup_sorted = sorted_keys[1:] == sorted_keys[:-1]
    dup[order[1:][dup_sorted]] = True
    dup[order[:-1][dup_sorted]] = True
    irregular = np.zeros(n, dtype=bool)
    irregular[p_c[dup]] = True  # non-manifold edge or inconsistent orientation at p

    key_b = p_c * n + b_c
    pos = np.clip(np.searchsorted(sorted_keys, key_b), 0, nc - 1)
    has_next = sorted_keys[pos] == key_b
    nxt = np.where(has_next, order[pos], -1)
    has_prev = np.zeros(nc, dtype=bool)
    has_prev[nxt[nxt >= 0]] = True

    n_starts = np.bincount(p_c[~has_prev], minlength=n)
    irregular |= n_starts > 1  # several fans meet at p (bow-tie / non-manifold vertex)
    boundary = n_starts >= 1
    valence_c = np.bincount(p_c, minlength=n)
    has_faces = valence_c > 0

    # Start corner per vertex: the fan start for boundary vertices, otherwise the
    # first corner in face order (deterministic).
    start = np.full(n, -1, dtype=np.int64)
    idx = np.arange(nc)
    first_any = np.full(n, nc, dtype=np.int64)
    np.minimum.at(first_any, p_c, idx)
    start[has_faces] = first_any[has_faces]
    bstart = idx[~has_prev]
    start[p_c[bstart]] = bstart  # any one of them for irregular vertices; fixed below

    # Walk every fan simultaneously; phi = unscaled angle of each outgoing edge.
    # Directed-edge angles are stored per corner: phi_a[c] for edge p->a_c; the last
    # corner of an open fan also defines its edge p->b_c.
    phi_a = np.full(nc, np.nan)
    visited = np.zeros(nc, dtype=bool)
    cur = start[has_faces].copy()
    acc = np.zeros(len(cur))
    last_open = np.full(n, -1, dtype=np.int64)
    last_acc = np.zeros(n)
    for _ in range(int(valence_c.max(initial=0)) + 1):
        live = cur >= 0
        if not live.any():
            break
        c = cur[live]
        fresh = ~visited[c]
        c_f = c[fresh]
        phi_a[c_f] = acc[live][fresh]
        visited[c_f] = True
        acc_next = acc[live] + ang_c[c]
        nxt_c = nxt[c]
        # Reaching the end of an open fan: remember the angle of its closing edge p->b.
        ends = fresh & (nxt_c < 0)
        last_open[p_c[c[ends]]] = c[ends]
        last_acc[p_c[c[ends]]] = acc_next[ends]
        stop = ~fresh | (nxt_c < 0)
        nxt_c = np.where(stop, -1, nxt_c)
        acc_live = acc.copy()
        acc_live[live] = acc_next
        acc = acc_live
        cur_new = cur.copy()
        cur_new[live] = nxt_c
        cur = cur_new
    # Corners the walk did not reach belong to a second fan: the vertex is irregular.
    irregular[p_c[~visited]] = True

    regular = has_faces & ~irregular
    scale = np.ones(n)
    interior_reg = regular & ~boundary & (angle_sum > 1e-12)
    scale[interior_reg] = TWO_PI / angle_sum[interior_reg]

    # Directed edges p -> q (q a neighbour of p) with their unscaled fan angle.
    src_p = np.concatenate([p_c, p_c[last_open[last_open >= 0]]])
    dst_q = np.concatenate([a_c, b_c[last_open[last_open >= 0]]])
    phi = np.concatenate([phi_a, last_acc[last_open >= 0]])
    # For regular vertices the edge p->a appears once as an 'a' (and p->b of the
    # closing corner once); collapse duplicates keeping the first defined angle.
    key = src_p * n + dst_q
    ord_k = np.lexsort((np.isnan(phi), key))
    key_s = key[ord_k]
    keep = np.ones(len(key_s), dtype=bool)
    keep[1:] = key_s[1:] != key_s[:-1]
    sel = ord_k[keep]
    P, Q, PHI = src_p[sel], dst_q[sel], phi[sel] * scale[src_p[sel]]

    # Edges also reached only as 'b' of a corner of a closed fan don't exist for
    # regular vertices; for irregular ones every neighbour must be present.
    extra_key = p_c * n + b_c
    # key_s is sorted: a binary search instead of np.isin's sort of both arrays
    at = np.minimum(np.searchsorted(key_s, extra_key), len(key_s) - 1)
    missing = key_s[at] != extra_key if len(key_s) else np.ones(len(extra_key), dtype=bool)
    if np.any(missing):
        mk = np.unique(extra_key[missing])
        P = np.concatenate([P, mk // n])
        Q = np.concatenate([Q, mk % n])
        PHI = np.concatenate([PHI, np.full(len(mk), np.nan)])

    # Reference neighbour and the fan angle it sits at.
    if reference is None:
        ref = np.full(n, -1, dtype=np.int64)
        ref[has_faces] = a_c[start[has_faces]]
    else:
        ref = np.asarray(reference, dtype=np.int64).copy()
        if ref.shape != (n,):
            raise ValueError(f"reference must have shape ({n},), got {ref.shape}")
        ref[~has_faces] = -1
    ref_for_edge = np.where(ref[P] >= 0, ref[P], Q)
    ref_eid_key = P * n + ref_for_edge
    all_keys = P * n + Q
    o = np.argsort(all_keys)
    rpos = np.clip(np.searchsorted(all_keys[o], ref_eid_key), 0, len(o) - 1)
    if reference is not None:
        ok = all_keys[o][rpos] == ref_eid_key
        if not np.all(ok):
            bad = np.unique(P[~ok])[:5]
            raise ValueError(f"reference[v] must be a neighbour of v; not so for vertices {bad.tolist()}")
    ref_phi = PHI[o][rpos]

    theta = PHI - ref_phi
    # Extrinsic fallback for irregular vertices (and any edge without a fan angle).
    fb = irregular[P] | np.isnan(theta)
    if np.any(fb):
        theta[fb] = _fallback_angles(V, normals, P[fb], Q[fb], ref_for_edge[fb])
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=np.float64)
        if offsets.shape != (n,):
            raise ValueError(f"offsets must have shape ({n},), got {offsets.shape}")
        theta = theta - offsets[P]
    theta = np.mod(theta, TWO_PI)

    # Receiver-major layout: edge e is q -> p with p = P (the vertex whose gauge
    # measures theta). Sort by receiver, then angle.
    srt = np.lexsort((theta, P))
    P, Q, theta = P[srt], Q[srt], theta[srt]
    edge_index = np.stack([Q, P]).astype(np.int64)
    r = np.linalg.norm(V[P] - V[Q], axis=1)

    keys = P * n + Q
    ko = np.argsort(keys)
    rev_key = Q * n + P
    rpos = np.clip(np.searchsorted(keys[ko], rev_key), 0, len(ko) - 1)
    if not np.all(keys[ko][rpos] == rev_key):  # pragma: no cover - faces give both directions
        raise AssertionError("directed edge without its reverse")
    reverse = ko[rpos]
    transport = wrap_angle(theta - theta[reverse] + np.pi)

    # Extrinsic frames: e1 = reference edge projected to the tangent plane, rotated by offset.
    e1 = np.zeros((n, 3))
    hv = ref >= 0
    e1[hv] = V[ref[hv]] - V[hv]
    e1 -= np.einsum("ij,ij->i", e1, normals)[:, None] * normals
    e1 = _normalize_or_perp(e1, normals)
    e2 = np.cross(normals, e1)
    if offsets is not None:
        c, s = np.cos(offsets)[:, None], np.sin(offsets)[:, None]
        e1, e2 = c * e1 + s * e2, -s * e1 + c * e2
    frames = np.stack([e1, e2, normals], axis=1)

    return Gauges(
        frames=frames,
        edge_index=edge_index,
        theta=theta,
        r=r,
        transport=transport,
        reverse=reverse,
        reference=ref,
        angle_sum=angle_sum,
        scale=scale,
        regular=regular,
        boundary=boundary,
    )


def log_map(
    V: np.ndarray,
    F: np.ndarray,
    source: int,
    *,
    gauges: Gauges | None = None,
    solver=None,
) -> np.ndarray:
    """Logarithmic map of the whole mesh at ``source``, in ``source``'s gauge.

    Uses potpourri3d's vector heat method (Sharp, Soliman, Crane 2019), which is
    accurate far beyond the 1-ring. Its tangent basis differs from ours by a rotation;
    we remove it by matching the angles of the 1-ring neighbours (their circular mean
    difference), so ``atan2`` of the result at a neighbour q equals ``theta_{source q}``.

    Returns (n, 2) float64: log-map coordinates (radius = geodesic distance).
    ``solver`` may be a reused ``potpourri3d.MeshVectorHeatSolver``.
    """
    import potpourri3d as pp3d

    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    if not 0 <= int(source) < len(V):
        raise ValueError(f"source vertex {source} out of range [0, {len(V)})")
    if gauges is None:
        gauges = compute_gauges(V, F)
    if solver is None:
        solver = pp3d.MeshVectorHeatSolver(V, F)
    L = np.asarray(solver.compute_log_map(int(source)), dtype=np.float64)
    m = gauges.edge_index[1] == source
    nb = gauges.edge_index[0][m]
    if len(nb) == 0:
        return L
    delta = gauges.theta[m] - np.arctan2(L[nb, 1], L[nb, 0])
    rot = np.angle(np.mean(np.exp(1j * delta)))
    c, s = np.cos(rot), np.sin(rot)
    return np.stack([c * L[:, 0] - s * L[:, 1], s * L[:, 0] + c * L[:, 1]], axis=1)


# --------------------------------------------------------------------------- transport between meshes


def tangent_jacobian(V: np.ndarray, grad_x, grad_y) -> np.ndarray:
    """(n, 2, 3) float64 rows ``G_x V``, ``G_y V``: the 3D images of every vertex's
    intrinsic gauge axes (``grad_x``, ``grad_y``: (n, n) sparse tangent gradient,
    e.g. ``Operators.grad_x``; V: (n, 3))."""
    V = np.asarray(V, dtype=np.float64)
    return np.stack([np.asarray(grad_x @ V), np.asarray(grad_y @ V)], axis=1)


def _minimal_rotation(nf: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """(k, 3, 3) rotations taking unit vectors ``nf`` to ``nc`` about ``nf x nc``."""
    axis = np.cross(nf, nc)
    s = np.linalg.norm(axis, axis=1)
    c = np.einsum("ij,ij->i", nf, nc)
    k = np.zeros_like(axis)
    ok = s > 1e-12
    k[ok] = axis[ok] / s[ok, None]
    phi = np.arctan2(s, c)
    flip = ~ok & (c < 0)
    if np.any(flip):
        # Opposite normals: any half-turn works; the axis comes from n_f alone so it
        # does not depend on the gauge (keeps the gauge law exact).
        nb = nf[flip]
        ax = np.cross(nb, np.eye(3)[np.argmin(np.abs(nb), axis=1)])
        k[flip] = ax / np.linalg.norm(ax, axis=1, keepdims=True)
        phi[flip] = np.pi
    K = np.zeros((len(k), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K -= np.transpose(K, (0, 2, 1))
    sp_, cp = np.sin(phi)[:, None, None], np.cos(phi)[:, None, None]
    return np.eye(3)[None] + sp_ * K + (1.0 - cp) * (K @ K)


def transport_angles(
    jac_fine: np.ndarray,
    normals_fine: np.ndarray,
    jac_coarse: np.ndarray,
    normals_coarse: np.ndarray,
    parent: np.ndarray,
) -> np.ndarray:
    """Transport angle from each fine vertex's gauge to its parent's gauge.

    jac_*: (n, 2, 3) tangent Jacobians (:func:`tangent_jacobian`; any frame's
    ``(e1, e2)`` rows work as well); normals_*: (n, 3) unit normals; parent: (n_f,)
    int64. Returns (n_f,) float64 radians in [-pi, pi): a tangent vector at angle
    ``phi`` in f's gauge has angle ``phi + angle`` in its parent c's gauge.

    Gauges are intrinsic (angles measured in each vertex's log map, rescaled to 2 pi
    at cone vertices), so the 3D ``frames`` only approximate them; mixing the two
    would break exact equivariance whenever a gauge changes its reference neighbour.
    Each gauge's axes are therefore read off the tangent gradient operator itself:
    the rows of the tangent Jacobian ``J_p = [G_x X; G_y X]_p`` (2 x 3, the
    least-squares images in 3D of p's intrinsic unit axes; exact for flat
    neighbourhoods), which rotates exactly under a gauge change ``alpha_p``:
    ``J_p -> rho_1(-alpha_p) J_p``. With ``R`` the minimal rotation taking ``n_f`` to
    ``n_c`` (about ``n_f x n_c``; for opposite normals a half turn about a fixed
    perpendicular of ``n_f``), ``A = J_c R J_f^T`` (2 x 2) maps f's intrinsic
    coordinates to c's and the angle is that of its closest rotation,
    ``atan2(A_21 - A_12, A_11 + A_22)``. Since ``A -> rho_1(-alpha_c) A rho_1(alpha_f)``
    and ``R`` depends on no gauge, ``angle' = angle + alpha_f - alpha_c`` holds exactly
    -- the law of an edge's transport ``g_{q->p}`` -- so pooling ``rho(angle) x_f`` is
    exactly gauge-equivariant; rigid motions and vertex order do not change it.
    """
    parent = np.asarray(parent, dtype=np.int64)
    Jf = np.asarray(jac_fine, dtype=np.float64)
    Jc = np.asarray(jac_coarse, dtype=np.float64)[parent]
    R = _minimal_rotation(np.asarray(normals_fine, dtype=np.float64), np.asarray(normals_coarse, dtype=np.float64)[parent])
    A = Jc @ R @ np.transpose(Jf, (0, 2, 1))
    ang = np.arctan2(A[:, 1, 0] - A[:, 0, 1], A[:, 0, 0] + A[:, 1, 1])
    return (ang + np.pi) % (2.0 * np.pi) - np.pi
