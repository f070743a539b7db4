"""Data augmentation for mesh learning, applied without recomputing geometry where it can be.

Two kinds of transform:

* **Operator transforms** act on a prepared operator bundle -- a numpy
  :class:`meshgdl.operators.Operators` (fields ``V``, ``normals``, ``frames``,
  ...) or a torch :class:`meshgdl.operators.TorchOperators` (``pos`` instead of
  ``V``), for one mesh or a collated batch (``batch`` vector) -- and return a new
  bundle (the input is never modified):

  - :class:`RandomRotation`: a rigid rotation ``R`` (uniform on SO(3), or about one
    axis). Every intrinsic quantity -- Laplacian, mass, eigenpairs, HKS, log-map
    angles ``theta``, radii ``r``, transport, tangent gradient -- is unchanged by a
    rigid motion as long as the gauge frames rotate with the surface, so only
    ``V``/``pos``, ``normals`` and ``frames`` are rotated: ``x -> x R^T``.
  - :class:`RandomScale`: isotropic scaling by ``s`` (no anisotropic scaling: it
    would change the intrinsic geometry). Exact laws: ``V -> sV``, ``mass -> s^2 mass``,
    ``r -> s r``, ``evals -> evals / s^2``, ``evecs -> evecs / s`` (they stay
    M-orthonormal), ``grad -> grad / s``, ``hks -> hks / s^2`` (spectrum-relative
    times); ``L`` (the weak cotan Laplacian), angles, transport, normals and frames
    are scale invariant (:func:`meshgdl.operators.scale_operators`).
  - :class:`RandomJitter`: small Gaussian noise on the *positions* only (as input
    features see them); the intrinsic operators are kept, which is the documented
    approximation (the noise is a fraction of the mean edge length).

* **Mesh transforms** act on a :class:`meshgdl.data.datasets.MeshItem` before the
  operators are computed (so the result cannot come from the cache):
  :class:`RandomRemesh` decimates the mesh to a random fraction of its vertices
  (:func:`remesh_item`: the same decimator and label transfer as everywhere else).

* **Surface deformations** of vertex positions, for making training copies of a mesh
  before anything is computed (tools/train_shrec11.py, tools/train_human_parts.py):
  each returns a field ``X -> X'`` (an ``(n, 3)`` array map, to be applied to the mesh
  and, where labels are carried over, to the labelled original):
  :func:`smooth_deformation` (sine-wave displacement of a given strain),
  :func:`anisotropic_scaling` (different scale factors along three random orthogonal
  axes: changes the intrinsic geometry, which no intrinsic feature is blind to) and
  :func:`bend_twist` (a twist about, and a bend of, a random axis through the shape);
  :func:`articulate` (a labelled body's parts turned about their joints, the strain in
  a band around each joint; returns positions, not a field);
  :func:`cut_holes` removes the faces around random centres (a scan's missing patches).

Every transform is called as ``t(obj, rng)`` with a ``numpy.random.Generator`` so
that augmentation is reproducible (the training loop derives ``rng`` from
``(seed, epoch, mesh index)``; the result does not depend on the data order or the
number of processes).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

import numpy as np

# --------------------------------------------------------------------------- helpers


def random_rotation_matrix(rng: np.random.Generator, axis: int | None = None) -> np.ndarray:
    """(3, 3) float64 rotation: uniform on SO(3) (``axis=None``; from a uniformly
    random unit quaternion), or a uniform angle about coordinate ``axis`` (0, 1, 2)."""
    if axis is not None:
        a = rng.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        R = np.eye(3)
        R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
        return R
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _is_torch(a) -> bool:
    return hasattr(a, "detach") and hasattr(a, "device")


def _pos_name(ops) -> str:
    return "pos" if hasattr(ops, "pos") else "V"


def _n_graphs(ops) -> int:
    return int(getattr(ops, "num_graphs", 1) or 1)


def _graph_index(ops):
    """(N,) mesh index of each vertex (zeros for a single-mesh numpy bundle)."""
    b = getattr(ops, "batch", None)
    if b is not None:
        return b
    return np.zeros(len(getattr(ops, _pos_name(ops))), dtype=np.int64)


def _per_vertex(values: np.ndarray, ops, like):
    """Gather per-mesh values (B, ...) to per-vertex (N, ...) in ``like``'s array type."""
    idx = _graph_index(ops)
    if _is_torch(like):
        import torch

        v = torch.as_tensor(values, dtype=like.dtype, device=like.device)
        return v[idx]
    return np.asarray(values, dtype=like.dtype)[np.asarray(idx)]


def rotate(ops, R):
    """Rotate a bundle rigidly. R: (3, 3) (same for every mesh) or (B, 3, 3) per mesh.

    The quantities declared with a rotation in :data:`meshgdl.operators.QUANTITIES`
    (positions, normals: ``x -> R x``; frame rows) turn; nothing intrinsic changes.
    """
    from meshgdl.operators import QUANTITIES

    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2:
        R = np.broadcast_to(R, (_n_graphs(ops), 3, 3))
    torch_in = _pos_name(ops) == "pos"  # a torch view (or any bundle naming positions pos)
    Rv = _per_vertex(R, ops, getattr(ops, _pos_name(ops)))  # (N, 3, 3)
    if torch_in:
        import torch

        ein = torch.einsum
    else:
        ein = np.einsum
    upd = {}
    for q in QUANTITIES:
        name = q.tname if torch_in else q.name
        v = getattr(ops, name, None)
        if q.rotation is None or v is None:
            continue
        upd[name] = ein("nij,nj->ni", Rv, v) if q.rotation == "vector" else ein("nij,nkj->nki", Rv, v)
    return dataclasses.replace(ops, **upd)


def scale(ops, s):
    """Scale a bundle isotropically by ``s`` (scalar, or (B,) per mesh), s > 0:
    :func:`meshgdl.operators.scale_operators` (the exact law of every field) after
    checking ``s``."""
    from meshgdl.operators import scale_operators

    s = np.asarray(s, dtype=np.float64).reshape(-1)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"scale factors must be finite and positive, got {s}")
    return scale_operators(ops, s)


def mean_edge_length(ops) -> np.ndarray:
    """(B,) mean edge length (from the stored radii ``r``) of each mesh of the bundle."""
    r = ops.r
    recv = ops.edge_index[1]
    gi = _graph_index(ops)
    if _is_torch(r):
        import torch

        B = _n_graphs(ops)
        g = gi[recv]
        s = torch.zeros(B, dtype=r.dtype, device=r.device).index_add(0, g, r)
        c = torch.zeros(B, dtype=r.dtype, device=r.device).index_add(0, g, torch.ones_like(r))
        return (s / c.clamp_min(1)).detach().cpu().numpy()
    g = np.asarray(gi)[np.asarray(recv)]
    B = _n_graphs(ops)
    return np.bincount(g, weights=r, minlength=B) / np.maximum(np.bincount(g, minlength=B), 1)


def jitter(ops, sigma, rng: np.random.Generator, clip: float = 3.0):
    """Add N(0, (sigma * mean edge length)^2) noise, clipped at ``clip`` sigma, to positions only."""
    pn = _pos_name(ops)
    pos = getattr(ops, pn)
    h = mean_edge_length(ops) * float(sigma)  # (B,)
    noise = np.clip(rng.standard_normal((len(pos), 3)), -clip, clip)
    if _is_torch(pos):
        import torch

        hv = _per_vertex(h, ops, pos)
        return dataclasses.replace(ops, **{pn: pos + torch.as_tensor(noise, dtype=pos.dtype, device=pos.device) * hv[:, None]})
    hv = np.asarray(h)[np.asarray(_graph_index(ops))]
    return dataclasses.replace(ops, **{pn: pos + noise * hv[:, None]})


# --------------------------------------------------------------------------- transform objects


class RandomRotation:
    """Rotate each mesh by an independent random rotation (uniform SO(3), or about ``axis``)."""

    def __init__(self, axis: int | None = None):
        if axis not in (None, 0, 1, 2):
            raise ValueError(f"axis must be None, 0, 1 or 2, got {axis!r}")
        self.axis = axis

    def __call__(self, ops, rng: np.random.Generator):
        B = _n_graphs(ops)
        return rotate(ops, np.stack([random_rotation_matrix(rng, self.axis) for _ in range(B)]))

    def __repr__(self) -> str:
        return f"RandomRotation(axis={self.axis})"


class RandomScale:
    """Scale each mesh by ``s`` drawn log-uniformly from ``[lo, hi]``."""

    def __init__(self, lo: float = 0.8, hi: float = 1.25):
        if not 0 < lo <= hi:
            raise ValueError(f"need 0 < lo <= hi, got {lo}, {hi}")
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, ops, rng: np.random.Generator):
        s = np.exp(rng.uniform(np.log(self.lo), np.log(self.hi), _n_graphs(ops)))
        return scale(ops, s)

    def __repr__(self) -> str:
        return f"RandomScale({self.lo}, {self.hi})"


class RandomJitter:
    """Gaussian position noise of ``sigma`` mean edge lengths (positions only)."""

    def __init__(self, sigma: float = 0.05, clip: float = 3.0):
        if sigma < 0:
            raise ValueError("sigma must be >= 0")
        self.sigma, self.clip = float(sigma), float(clip)

    def __call__(self, ops, rng: np.random.Generator):
        return jitter(ops, self.sigma, rng, self.clip) if self.sigma > 0 else ops

    def __repr__(self) -> str:
        return f"RandomJitter(sigma={self.sigma})"


class RandomRemesh:
    """Mesh transform: with probability ``p``, decimate to a uniformly random fraction in
    ``[min_ratio, max_ratio]`` of the vertices (:func:`remesh_item`). The item's
    ``orig_to_new`` is composed so it still maps file vertices (to their decimation
    parent)."""

    def __init__(self, min_ratio: float = 0.5, max_ratio: float = 0.9, p: float = 1.0):
        if not 0 < min_ratio <= max_ratio <= 1:
            raise ValueError(f"need 0 < min_ratio <= max_ratio <= 1, got {min_ratio}, {max_ratio}")
        self.min_ratio, self.max_ratio, self.p = float(min_ratio), float(max_ratio), float(p)

    def __call__(self, item, rng: np.random.Generator):
        if rng.uniform() >= self.p:
            return item
        ratio = rng.uniform(self.min_ratio, self.max_ratio)
        return remesh_item(item, ratio)

    def __repr__(self) -> str:
        return f"RandomRemesh({self.min_ratio}, {self.max_ratio}, p={self.p})"


def remesh_item(item, keep_fraction: float):
    """Decimate a :class:`MeshItem` to about ``keep_fraction`` of its vertices (and faces).

    The decimation is :func:`meshgdl.geometry.remesh.decimate` (canonical vertex order,
    so the result does not depend on the file's numbering); per-vertex targets are
    carried over by :func:`meshgdl.data.labels.nearest_surface_labels` (the label of the
    nearest corner of each new vertex's closest point on the old surface); file vertices
    map to their decimation parent.
    """
    from meshgdl.data.labels import nearest_surface_labels
    from meshgdl.geometry.remesh import decimate

    V, F = item.V, item.F
    n_target = max(int(round(float(keep_fraction) * len(V))), 8)
    V2, F2, parent = decimate(V, F, n_target, parent="nearest")
    y = nearest_surface_labels(V2, V, F, item.y) if np.ndim(item.y) == 1 else item.y
    o2n = np.where(item.orig_to_new >= 0, parent[np.maximum(item.orig_to_new, 0)], -1)
    return dataclasses.replace(item, V=V2, F=F2, y=y, orig_to_new=o2n,
                               face_origin=np.full(len(F2), -1, dtype=np.int64))


def apply_to_sample(sample, transform, rng: np.random.Generator):
    """Apply an operator transform to a model sample: the sample itself if it is an
    operator bundle (has positions, ``normals`` and ``frames``), else its ``ops`` /
    ``operators`` field (dataclass attribute or dict key). A dataclass sample's
    ``coarse`` levels (a mesh hierarchy) get the same rotation / scale."""
    if hasattr(sample, "normals") and hasattr(sample, "frames") and (hasattr(sample, "pos") or hasattr(sample, "V")):
        return transform(sample, rng)
    for name in ("ops", "operators"):
        if isinstance(sample, dict) and name in sample:
            return {**sample, name: transform(sample[name], rng)}
        if dataclasses.is_dataclass(sample) and hasattr(sample, name):
            coarse = getattr(sample, "coarse", None)
            start = copy.deepcopy(rng)
            upd = {name: transform(getattr(sample, name), rng)}
            if isinstance(coarse, list) and coarse:
                # coarser levels of a hierarchy: the same draws, so the same rotation / scale
                upd["coarse"] = [transform(c, copy.deepcopy(start)) for c in coarse]
            return dataclasses.replace(sample, **upd)
    raise TypeError(f"cannot augment a sample of type {type(sample).__name__}: it holds no operator bundle")


class Compose:
    """Apply transforms in order, each with the same generator."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, obj, rng: np.random.Generator):
        for t in self.transforms:
            obj = t(obj, rng)
        return obj

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def build_augmentation(rotate: str | None = "so3", scale_range: tuple[float, float] | None = None,
                       jitter_sigma: float = 0.0) -> Compose:
    """The operator augmentation the CLI options describe.

    rotate: ``"so3"`` (uniform), ``"x"``/``"y"``/``"z"`` (about one axis) or None.
    """
    ts: list = []
    if rotate:
        axes = {"so3": None, "x": 0, "y": 1, "z": 2}
        if rotate not in axes:
            raise ValueError(f"rotate must be one of so3, x, y, z or none, got {rotate!r}")
        ts.append(RandomRotation(axes[rotate]))
    if scale_range:
        ts.append(RandomScale(*scale_range))
    if jitter_sigma:
        ts.append(RandomJitter(jitter_sigma))
    return Compose(ts)


# --------------------------------------------------------------------------- surface deformations


def _extent(V) -> float:
    V = np.asarray(V, dtype=np.float64)
    return float(np.linalg.norm(V.max(0) - V.min(0)))


def smooth_deformation(V, rng: np.random.Generator, strain: float):
    """A random smooth non-rigid displacement field ``X -> X + D(X)`` (three sine waves of
    1-3 periods over the extent of ``V``, random directions), scaled so its largest
    gradient is about ``strain``: the local stretching and compression a body's skin
    shows between poses."""
    L = _extent(V)
    waves = []
    for _ in range(3):
        k = rng.normal(size=3)
        k *= rng.uniform(1.0, 3.0) * 2 * np.pi / (L * np.linalg.norm(k))
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        waves.append((k, d, rng.uniform(0, 2 * np.pi)))
    amp = strain / sum(np.linalg.norm(k) for k, _, _ in waves)

    def field(X):
        X = np.asarray(X, dtype=np.float64)
        return X + amp * sum(np.sin(X @ k + ph)[:, None] * d[None, :] for k, d, ph in waves)
    return field


def anisotropic_scaling(V, rng: np.random.Generator, max_ratio: float = 1.5):
    """A random linear map ``X -> c + (X - c) Q diag(s) Q^T`` (``c`` the centroid of
    ``V``, ``Q`` a uniform random rotation): scale factors ``s`` log-uniform in
    ``[1/sqrt(max_ratio), sqrt(max_ratio)]`` along three random orthogonal axes, so two
    directions differ by at most ``max_ratio`` (a longer neck, a flatter body)."""
    if not max_ratio >= 1:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    c = np.asarray(V, dtype=np.float64).mean(axis=0)
    Q = random_rotation_matrix(rng)
    h = 0.5 * np.log(max_ratio)
    s = np.exp(rng.uniform(-h, h, size=3))
    A = Q @ np.diag(s) @ Q.T

    def field(X):
        return c + (np.asarray(X, dtype=np.float64) - c) @ A
    return field


def bend_twist(V, rng: np.random.Generator, max_twist: float = np.pi / 3, max_bend: float = np.pi / 3):
    """A random twist and bend about a random axis ``a`` through the centroid of ``V``:
    a point at height ``h`` along ``a`` (``h`` in [-1/2, 1/2] over the shape's extent
    along ``a``) is turned about ``a`` by ``twist * h`` (|twist| uniform up to
    ``max_twist`` radians end to end), then the axis is bent into a circular arc of total
    angle ``bend`` (|bend| uniform up to ``max_bend``) towards a random direction ``b``
    perpendicular to ``a``. Both keep lengths along the axis; a bend stretches the
    outer side and compresses the inner one (a nearly isometric pose change for thin
    parts)."""
    V = np.asarray(V, dtype=np.float64)
    c = V.mean(axis=0)
    R = random_rotation_matrix(rng)
    a, b, e = R[:, 0], R[:, 1], R[:, 2]  # axis, bend direction, third axis
    ha = (V - c) @ a
    lo, hi = float(ha.min()), float(ha.max())
    length = max(hi - lo, 1e-12)
    twist = rng.uniform(-max_twist, max_twist)
    bend = rng.uniform(-max_bend, max_bend)

    def field(X):
        X = np.asarray(X, dtype=np.float64) - c
        h, u, w = X @ a, X @ b, X @ e
        t = (h - 0.5 * (lo + hi)) / length  # in [-1/2, 1/2] over the shape
        phi = twist * t
        u, w = u * np.cos(phi) - w * np.sin(phi), u * np.sin(phi) + w * np.cos(phi)
        hm = h - 0.5 * (lo + hi)
        if abs(bend) > 1e-9:
            rad = length / bend  # arc radius (signed): the axis keeps its length
            ang = hm / rad
            h2 = (rad - u) * np.sin(ang) + 0.5 * (lo + hi)
            u2 = rad - (rad - u) * np.cos(ang)
        else:
            h2, u2 = h, u
        return c + h2[:, None] * a + u2[:, None] * b + w[:, None] * e
    return field


def articulate(V, F, labels, parents: dict, rng: np.random.Generator, max_angle: float = np.pi / 6,
               blend_rings: int = 3, min_vertices: int = 8) -> np.ndarray:
    """A random pose change of a labelled body: every part turned about its joint.

    ``V (n, 3)``, ``F (m, 3)``, ``labels (n,)`` per vertex; ``parents``: each part
    label's parent label (e.g. lower arm -> upper arm), the root (a label that is no
    key) stays put. A *limb* is a connected piece of a label together with everything
    below it in the tree (one per side for a body whose left and right share labels);
    its *joint* is its vertices next to the parent label, its pivot their centroid.
    From the root outwards, each limb is rotated about its pivot by a uniform random
    angle up to ``max_angle`` radians about a uniform random axis (a bend and a twist),
    with linear-blend weights: 1 inside the limb ``blend_rings`` edge rings past the
    joint, 0 as far outside, 1/2 on the joint. So parts stay rigid and the strain of the
    pose change sits in a band around each joint -- as in skinned and captured
    animations. Pieces smaller than ``min_vertices`` and joints of fewer than 3
    vertices are left alone. Returns ``(n, 3)`` float64 positions (connectivity and
    labels unchanged). Not a field of arbitrary points: it needs the vertices' labels.
    """
    from meshgdl.geometry.topology import ring_distance, vertex_adjacency, vertex_components

    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(V)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    if blend_rings < 1:
        raise ValueError(f"blend_rings must be >= 1, got {blend_rings}")
    children: dict[int, list[int]] = {}
    for c, par in parents.items():
        children.setdefault(int(par), []).append(int(c))

    def depth(lab: int) -> int:
        d = 0
        while lab in parents:
            lab, d = int(parents[lab]), d + 1
            if d > len(parents):
                raise ValueError("parents must form a tree (a cycle was found)")
        return d

    def below(lab: int) -> list[int]:
        out, todo = [], [lab]
        while todo:
            x = todo.pop()
            out.append(x)
            todo.extend(children.get(x, []))
        return out

    A = vertex_adjacency(F, n)
    joints = []
    for lab in sorted((int(k) for k in parents), key=depth):
        region = np.isin(labels, below(lab))
        _, comp = vertex_components(F[np.all(region[F], axis=1)], n)
        next_to_parent = (A @ (labels == int(parents[lab])).astype(np.float64)) > 0
        for c in np.unique(comp[region & (labels == lab)]):
            limb = region & (comp == c)
            ring = limb & (labels == lab) & next_to_parent
            if limb.sum() >= min_vertices and ring.sum() >= 3:
                joints.append((limb, ring))
    out = V.copy()
    for limb, ring in joints:
        d = np.minimum(ring_distance(F, n, ring, blend_rings), blend_rings).astype(np.float64)
        w = np.where(limb, 0.5 + 0.5 * d / blend_rings, 0.5 - 0.5 * d / blend_rings)
        w[~limb & (d == 0)] = 0.5
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        ang = rng.uniform(-max_angle, max_angle)
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = np.eye(3) + np.sin(ang) * K + (1 - np.cos(ang)) * (K @ K)
        p = out[ring].mean(axis=0)
        out = out + w[:, None] * ((out - p) @ R.T + p - out)
    return out


def cut_holes(V, F, rng: np.random.Generator, n_holes: int, radius: float):
    """``(V, F')``: the faces of ``F`` whose centroid lies within ``radius`` mean edge
    lengths of one of ``n_holes`` vertices drawn at random removed (vertices kept, some
    then unused); like a scan's missing patches. A hole may cut a part off."""
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    e = float(np.linalg.norm(V[F[:, 0]] - V[F[:, 1]], axis=1).mean())
    centres = V[rng.choice(len(V), int(n_holes), replace=False)]
    mid = V[F].mean(axis=1)
    keep = np.ones(len(F), dtype=bool)
    for c in centres:
        keep &= np.linalg.norm(mid - c, axis=1) > radius * e
    return V, F[keep]
