"""Multi-scale mesh hierarchies for pooling in gauge-equivariant networks.

A :class:`Hierarchy` holds the operator bundles of a mesh at several resolutions
(level 0 = the input mesh, each further level a quadric-error decimation of the
previous one, via ``fast_simplification``) and, between consecutive levels, a
:class:`PoolMap`: every fine vertex's *parent* coarse vertex and the parallel
transport angle from the fine vertex's gauge to its parent's gauge.

Parents
-------
``parent="collapse"`` (default) replays the decimation's edge collapses: each fine
vertex belongs to the coarse vertex it was collapsed into. The clusters are
therefore connected on the surface (edge-collapse trees; never across a thin gap
that is close in 3D but far geodesically) and every coarse vertex has at least one
child. ``parent="nearest"`` uses the nearest coarse vertex in 3D (a KD-tree), which
is a good approximation of the nearest vertex on the coarse surface when the
decimation is moderate; it is also the fallback for fine vertices the collapse
record does not cover.

Transport angle
---------------
Gauges are intrinsic (angles measured in each vertex's log map, rescaled to 2 pi at
cone vertices), so the 3D ``frames`` only approximate them; mixing the two would
break exact equivariance whenever a gauge changes its reference neighbour. We
therefore read each gauge's axes off the tangent gradient operator itself: the rows
of the *tangent Jacobian* ``J_p = [G_x X; G_y X]_p`` (2 x 3, the least-squares
images in 3D of p's intrinsic unit axes; exact for flat neighbourhoods). Under a
gauge change ``alpha_p`` the gradient rotates exactly, ``J_p -> rho_1(-alpha_p) J_p``.

For a fine vertex f with parent c, let ``R`` be the minimal rotation taking the
normal ``n_f`` to ``n_c`` (about ``n_f x n_c``; for exactly opposite normals a half
turn about a fixed perpendicular of ``n_f``). ``A = J_c R J_f^T`` (2 x 2) maps f's
intrinsic coordinates to c's (through 3D), and the transport angle is the angle of
its closest rotation,

    angle = atan2(A_21 - A_12, A_11 + A_22),

so a tangent vector at angle ``phi`` in f's gauge has angle ``phi + angle`` in c's.
Since ``A -> rho_1(-alpha_c) A rho_1(alpha_f)`` under gauge changes and ``R`` depends
on no gauge, ``angle' = angle + alpha_f - alpha_c`` holds exactly (the same law as
an edge's transport ``g_{q->p}``), for rotated reference directions and for other
reference neighbours alike: pooling a feature as ``rho(angle) x_f`` is exactly
gauge-equivariant. Rigid motions and vertex order do not change the angles.

Vertex order
------------
The decimation algorithm visits faces in array order, so its result depends on how
the file happens to number the mesh. Each level is therefore decimated in a
canonical order (vertices sorted by intrinsic, rotation-invariant keys: vertex
area, angle sum, valence, incident edge lengths -- quantised so floating-point
noise does not reorder them). For meshes without exact symmetries this makes the
hierarchy, and any network using it, equivariant to vertex permutations and rigid
motions of the input; exact ties (symmetric meshes) fall back to the input order.

Caching
-------
With ``cache_dir`` the coarse meshes and parents are stored in one ``.npz`` keyed
by a SHA-256 of (V, F, parameters) (see :func:`meshgdl.operators.operator_key`);
each level's operators use :func:`meshgdl.operators.compute_operators`' own cache.
Writes are atomic; unusable files are ignored and recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from meshgdl.atomic import atomic_path
from meshgdl.errors import MeshError
from meshgdl.geometry.normals import corner_angles, vertex_areas
from meshgdl.operators import Operators, TorchOperators, collate, compute_operators, operator_key

log = logging.getLogger(__name__)

#: Bump when the decimation or the stored arrays change meaning.
HIERARCHY_VERSION = 1

#: Smallest coarse level we build: fewer vertices than this cannot carry a useful
#: Laplacian / gauge field.
MIN_COARSE_VERTICES = 8

PARENT_METHODS = ("collapse", "nearest")


# --------------------------------------------------------------------------- data


@dataclass
class PoolMap:
    """Fine level -> coarse level correspondence.

    parent : (n_fine,) int64
        The coarse vertex each fine vertex pools into / unpools from.
    angle : (n_fine,) float64
        Transport from the fine vertex's gauge to its parent's (radians, [-pi, pi)):
        a tangent vector at angle phi in the fine gauge has angle ``phi + angle`` in
        the parent's gauge.
    """

    parent: np.ndarray
    angle: np.ndarray

    @property
    def num_fine(self) -> int:
        return len(self.parent)


@dataclass
class Hierarchy:
    """Operator bundles at ``len(levels)`` resolutions plus the maps between them.

    ``levels[0]`` is the input mesh; ``pools[l]`` maps ``levels[l]`` to ``levels[l + 1]``.
    """

    levels: list[Operators]
    pools: list[PoolMap]
    params: dict = field(default_factory=dict)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def to_torch(self, dtype=None, device=None) -> "TorchHierarchy":
        import torch

        dtype = dtype or torch.get_default_dtype()
        levels = [lv.to_torch(dtype, device) for lv in self.levels]
        pools = [
            TorchPoolMap(
                parent=torch.as_tensor(pm.parent, dtype=torch.long, device=device),
                angle=torch.as_tensor(pm.angle, dtype=dtype, device=device),
                num_coarse=self.levels[i + 1].num_vertices,
            )
            for i, pm in enumerate(self.pools)
        ]
        return TorchHierarchy(levels=levels, pools=pools)


@dataclass
class TorchPoolMap:
    """Torch view of a :class:`PoolMap` (``parent`` long, ``angle`` float), possibly batched."""

    parent: Any
    angle: Any
    num_coarse: int

    def to(self, device=None, dtype=None) -> "TorchPoolMap":
        angle = self.angle.to(dtype) if dtype is not None else self.angle
        return TorchPoolMap(self.parent.to(device), angle.to(device), self.num_coarse)


@dataclass
class TorchHierarchy:
    """Torch view of a :class:`Hierarchy`, or of a batch of them (:func:`collate_hierarchies`)."""

    levels: list[TorchOperators]
    pools: list[TorchPoolMap]

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def to(self, device=None, dtype=None) -> "TorchHierarchy":
        return TorchHierarchy(
            levels=[lv.to(device=device, dtype=dtype) for lv in self.levels],
            pools=[pm.to(device=device, dtype=dtype) for pm in self.pools],
        )


def collate_hierarchies(items: Sequence[Hierarchy | TorchHierarchy], dtype=None, device=None) -> TorchHierarchy:
    """Batch hierarchies level by level (PyG-style; parents offset by the coarse level's ``ptr``)."""
    import torch

    ts = [it.to_torch(dtype, device) if isinstance(it, Hierarchy) else it for it in items]
    if not ts:
        raise ValueError("collate_hierarchies needs at least one hierarchy")
    nl = {t.num_levels for t in ts}
    if len(nl) != 1:
        raise ValueError(f"hierarchies in a batch must have the same number of levels, got {sorted(nl)}")
    L = nl.pop()
    levels = [collate([t.levels[l] for t in ts], dtype=dtype, device=device) for l in range(L)]
    pools = []
    for l in range(L - 1):
        off = levels[l + 1].ptr[:-1]
        pools.append(
            TorchPoolMap(
                parent=torch.cat([t.pools[l].parent + off[i] for i, t in enumerate(ts)]),
                angle=torch.cat([t.pools[l].angle for t in ts]).to(levels[l].pos.dtype),
                num_coarse=levels[l + 1].num_vertices,
            )
        )
    return TorchHierarchy(levels=levels, pools=pools)


# --------------------------------------------------------------------------- geometry


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
    int64. Returns (n_f,) float64 radians in [-pi, pi) (construction and exact gauge
    law in the module docstring).
    """
    parent = np.asarray(parent, dtype=np.int64)
    Jf = np.asarray(jac_fine, dtype=np.float64)
    Jc = np.asarray(jac_coarse, dtype=np.float64)[parent]
    R = _minimal_rotation(np.asarray(normals_fine, dtype=np.float64), np.asarray(normals_coarse, dtype=np.float64)[parent])
    A = Jc @ R @ np.transpose(Jf, (0, 2, 1))
    ang = np.arctan2(A[:, 1, 0] - A[:, 0, 1], A[:, 0, 0] + A[:, 1, 1])
    return (ang + np.pi) % (2.0 * np.pi) - np.pi


def pool_map(fine: Operators, coarse: Operators, parent: np.ndarray) -> PoolMap:
    """The :class:`PoolMap` between two levels' operator bundles for given parents."""
    parent = np.asarray(parent, dtype=np.int64)
    ang = transport_angles(
        tangent_jacobian(fine.V, fine.grad_x, fine.grad_y),
        fine.normals,
        tangent_jacobian(coarse.V, coarse.grad_x, coarse.grad_y),
        coarse.normals,
        parent,
    )
    return PoolMap(parent=parent, angle=ang)


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


# --------------------------------------------------------------------------- build


def build_hierarchy(
    V: np.ndarray,
    F: np.ndarray,
    *,
    ratios: Sequence[float] = (1.0, 0.25, 0.0625),
    k_eig: int = 128,
    coarse_k_eig: int = 16,
    n_hks: int = 16,
    laplacian: str = "auto",
    parent: str = "collapse",
    cache_dir: str | os.PathLike | None = None,
) -> Hierarchy:
    """Decimate ``(V, F)`` into ``len(ratios)`` levels and compute every level's operators.

    V: (n, 3) float64; F: (m, 3) int64. ``ratios`` are target vertex counts relative
    to the input, starting with 1 and strictly decreasing (e.g. ``(1, 1/4, 1/16)``).
    Level 0 uses ``k_eig`` eigenpairs, coarser levels ``coarse_k_eig`` (networks
    only need the fine spectrum; coarse ones get a cheap basis for their HKS).
    ``parent``: ``"collapse" | "nearest"`` (module docstring). Raises MeshError if a
    level would be too small.
    """
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    ratios = [float(r) for r in ratios]
    if not ratios or ratios[0] != 1.0 or any(b >= a or b <= 0 for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"ratios must start at 1 and strictly decrease to > 0, got {ratios}")
    if parent not in PARENT_METHODS:
        raise ValueError(f"parent must be one of {PARENT_METHODS}, got {parent!r}")
    params = {
        "hierarchy": HIERARCHY_VERSION,
        "ratios": ratios,
        "parent": parent,
        "k_eig": int(k_eig),
        "coarse_k_eig": int(coarse_k_eig),
        "n_hks": int(n_hks),
        "laplacian": str(laplacian),
    }
    meshes = None
    path = None
    if cache_dir is not None and len(ratios) > 1:
        path = Path(cache_dir) / f"hier-{operator_key(V, F, params)}.npz"
        meshes = _load_meshes(path, V, F, params, path.stem[len("hier-"):])
    if meshes is None:
        meshes = [(V, F, None)]
        for r in ratios[1:]:
            Vf, Ff, _ = meshes[-1]
            Vc, Fc, par = decimate(Vf, Ff, int(np.ceil(r * len(V))), parent=parent)
            meshes.append((Vc, Fc, par))
        if path is not None:
            _save_meshes(path, meshes, params, path.stem[len("hier-"):])
    levels = []
    for l, (Vl, Fl, _) in enumerate(meshes):
        levels.append(
            compute_operators(
                Vl, Fl, k_eig=k_eig if l == 0 else coarse_k_eig, n_hks=n_hks, laplacian=laplacian, cache_dir=cache_dir
            )
        )
    pools = [pool_map(levels[l], levels[l + 1], meshes[l + 1][2]) for l in range(len(meshes) - 1)]
    return Hierarchy(levels=levels, pools=pools, params=params)


def _save_meshes(path: Path, meshes, params: dict, key: str) -> None:
    arrays: dict[str, np.ndarray] = {}
    for l, (Vl, Fl, par) in enumerate(meshes[1:], start=1):
        arrays[f"V{l}"], arrays[f"F{l}"], arrays[f"parent{l}"] = Vl, Fl, par
    meta = {"version": HIERARCHY_VERSION, "params": params, "levels": len(meshes), "key": key}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _load_meshes(path: Path, V: np.ndarray, F: np.ndarray, params: dict, key: str):
    """Stored coarse meshes and parents, or None if missing / unusable / for other inputs."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            if meta.get("version") != HIERARCHY_VERSION or meta.get("params") != params:
                raise ValueError("stale hierarchy cache")
            if meta.get("key") != key:
                raise ValueError("cache file belongs to another mesh")
            n_levels = int(meta["levels"])
            if n_levels != len(params["ratios"]):
                raise ValueError("level count differs")
            meshes = [(V, F, None)]
            for l in range(1, n_levels):
                Vl = np.array(z[f"V{l}"], dtype=np.float64)
                Fl = np.array(z[f"F{l}"], dtype=np.int64)
                par = np.array(z[f"parent{l}"], dtype=np.int64)
                n_prev = len(meshes[-1][0])
                if (
                    Vl.ndim != 2
                    or Vl.shape[1] != 3
                    or not np.all(np.isfinite(Vl))
                    or Fl.ndim != 2
                    or Fl.shape[1] != 3
                    or Fl.min(initial=0) < 0
                    or Fl.max(initial=0) >= len(Vl)
                    or par.shape != (n_prev,)
                    or par.min(initial=0) < 0
                    or par.max(initial=0) >= len(Vl)
                ):
                    raise ValueError(f"level {l} arrays are inconsistent")
                meshes.append((Vl, Fl, par))
        return meshes
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unusable hierarchy cache %s (%s); recomputing", path, exc)
        return None
