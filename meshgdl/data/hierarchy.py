"""Multi-scale mesh hierarchies for pooling in gauge-equivariant networks.

A :class:`Hierarchy` holds the operator bundles of a mesh at several resolutions
(level 0 = the input mesh, each further level a quadric-error decimation of the
previous one, via ``fast_simplification``) and, between consecutive levels, a
:class:`PoolMap`: every fine vertex's *parent* coarse vertex and the parallel
transport angle from the fine vertex's gauge to its parent's gauge.

Parents come from :func:`meshgdl.geometry.remesh.decimate` (edge-collapse replay,
canonical vertex order); transport angles from
:func:`meshgdl.geometry.gauges.transport_angles` (exact gauge law, see there).

Fixed connectivity
------------------
A mesh that moves with fixed connectivity (an animation) can keep one hierarchy for
all its poses: :func:`attach_hierarchy` decimates the rest pose once and ties every
coarse vertex to its closest point of the next finer level (face + barycentric
coordinates), and ``build_hierarchy(..., replay=...)`` rebuilds the same coarse
triangulations and parents from any pose's positions.

Caching
-------
With ``cache_dir`` the coarse meshes and parents are stored in one ``.npz`` keyed
by a SHA-256 of (V, F, parameters) (see :func:`meshgdl.operators.operator_key`);
each level's operators use :func:`meshgdl.operators.compute_operators`' own cache.
Writes are atomic; unusable files are ignored and recomputed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from meshgdl.cache import load_entry, save_entry
from meshgdl.geometry.gauges import tangent_jacobian, transport_angles
from meshgdl.geometry.remesh import PARENT_METHODS, decimate
from meshgdl.operators import Operators, compute_operators, operator_key

if TYPE_CHECKING:
    from meshgdl.data.batching import TorchHierarchy

#: Bump when the decimation or the stored arrays change meaning.
HIERARCHY_VERSION = 1


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

        from meshgdl.data.batching import TorchHierarchy, TorchPoolMap

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
class HierarchyReplay:
    """The coarse levels of one mesh's hierarchy, replayable on any pose.

    ``W[l]``: sparse ``(n_{l+1}, n_l)`` map from level ``l``'s vertex positions to level
    ``l + 1``'s; ``F[l]``: level ``l + 1``'s triangles; ``parent[l]``: level ``l``'s
    vertices -> level ``l + 1``'s, as :class:`PoolMap` holds them.
    """

    W: list
    F: list
    parent: list

    def meshes(self, V: np.ndarray, F: np.ndarray) -> list[tuple]:
        """``[(V_l, F_l, parent_l or None)]`` for level 0 = ``(V, F)`` and every coarse level."""
        out = [(V, F, None)]
        for W, Fc, par in zip(self.W, self.F, self.parent):
            if W.shape[1] != len(out[-1][0]):
                raise ValueError(f"the hierarchy replay expects {W.shape[1]} vertices, got {len(out[-1][0])}")
            out.append((W @ out[-1][0], Fc, par))
        return out


def _decimate_levels(V, F, ratios, parent) -> list[tuple]:
    meshes = [(V, F, None)]
    for r in ratios[1:]:
        Vf, Ff, _ = meshes[-1]
        Vc, Fc, par = decimate(Vf, Ff, int(np.ceil(r * len(V))), parent=parent)
        meshes.append((Vc, Fc, par))
    return meshes


def attach_hierarchy(
    V: np.ndarray,
    F: np.ndarray,
    *,
    ratios: Sequence[float] = (1.0, 0.25, 0.0625),
    parent: str = "collapse",
) -> HierarchyReplay:
    """Decimate the rest pose ``(V (n, 3), F (m, 3))`` as :func:`build_hierarchy` does and tie
    each coarse vertex to its closest point of the finer level, so
    ``build_hierarchy(V_t, F, replay=...)`` gives every pose ``V_t`` the same coarse
    triangles and parents. Coarse vertices that the decimator put off the finer surface
    are moved onto it."""
    from meshgdl.geometry.proximity import barycentric_matrix, project_to_surface

    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    meshes = _decimate_levels(V, F, [float(r) for r in ratios], parent)
    Ws, Fs, pars = [], [], []
    for (Vf, Ff, _), (Vc, Fc, par) in zip(meshes[:-1], meshes[1:]):
        face, bary, _ = project_to_surface(Vc, Vf, Ff)
        Ws.append(barycentric_matrix(Ff, face, bary, len(Vf)))
        Fs.append(Fc)
        pars.append(par)
    return HierarchyReplay(W=Ws, F=Fs, parent=pars)


# --------------------------------------------------------------------------- build


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


def build_hierarchy(
    V: np.ndarray,
    F: np.ndarray,
    *,
    ratios: Sequence[float] = (1.0, 0.25, 0.0625),
    k_eig: int = 128,
    coarse_k_eig: int = 16,
    n_hks: int = 16,
    n_wks: int = 0,
    laplacian: str = "auto",
    parent: str = "collapse",
    cache_dir: str | os.PathLike | None = None,
    replay: HierarchyReplay | None = None,
) -> Hierarchy:
    """Decimate ``(V, F)`` into ``len(ratios)`` levels and compute every level's operators.

    V: (n, 3) float64; F: (m, 3) int64. ``ratios`` are target vertex counts relative
    to the input, starting with 1 and strictly decreasing (e.g. ``(1, 1/4, 1/16)``).
    Level 0 uses ``k_eig`` eigenpairs, coarser levels ``coarse_k_eig`` (networks
    only need the fine spectrum; coarse ones get a cheap basis for their HKS).
    ``n_wks`` WKS energies on level 0 only (0: none; networks read input features there).
    ``parent``: ``"collapse" | "nearest"`` (:func:`meshgdl.geometry.remesh.decimate`). Raises MeshError if a
    level would be too small. ``replay`` (from :func:`attach_hierarchy` on another pose of
    the same connectivity, with ``len(ratios) - 1`` levels): the coarse levels are that
    replay's, moved with ``V``, instead of a new decimation (the mesh cache is not used).
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
    if replay is not None:
        if len(replay.W) != len(ratios) - 1:
            raise ValueError(f"the hierarchy replay has {len(replay.W) + 1} levels, ratios ask for {len(ratios)}")
        meshes = replay.meshes(V, F)
    elif cache_dir is not None and len(ratios) > 1:
        path = Path(cache_dir) / f"hier-{operator_key(V, F, params)}.npz"
        meshes = _load_meshes(path, V, F, params, path.stem[len("hier-"):])
    if meshes is None:
        meshes = _decimate_levels(V, F, ratios, parent)
        if path is not None:
            _save_meshes(path, meshes, params, path.stem[len("hier-"):])
    levels = []
    for l, (Vl, Fl, _) in enumerate(meshes):
        levels.append(
            compute_operators(
                Vl, Fl, k_eig=k_eig if l == 0 else coarse_k_eig, n_hks=n_hks, n_wks=n_wks if l == 0 else 0,
                laplacian=laplacian, cache_dir=cache_dir,
            )
        )
    pools = [pool_map(levels[l], levels[l + 1], meshes[l + 1][2]) for l in range(len(meshes) - 1)]
    return Hierarchy(levels=levels, pools=pools, params=params)


def _save_meshes(path: Path, meshes, params: dict, key: str) -> None:
    arrays: dict[str, np.ndarray] = {}
    for l, (Vl, Fl, par) in enumerate(meshes[1:], start=1):
        arrays[f"V{l}"], arrays[f"F{l}"], arrays[f"parent{l}"] = Vl, Fl, par
    save_entry(path, arrays, {"version": HIERARCHY_VERSION, "params": params, "levels": len(meshes), "key": key})


def _load_meshes(path: Path, V: np.ndarray, F: np.ndarray, params: dict, key: str):
    """Stored coarse meshes and parents, or None if missing / unusable / for other inputs."""

    def read(z: dict, meta: dict):
        if meta.get("version") != HIERARCHY_VERSION or meta.get("params") != params:
            raise ValueError("stale hierarchy cache")
        if meta.get("key") != key:
            raise ValueError("cache file belongs to another mesh")
        n_levels = int(meta["levels"])
        if n_levels != len(params["ratios"]):
            raise ValueError("level count differs")
        meshes = [(V, F, None)]
        for l in range(1, n_levels):
            Vl = np.asarray(z[f"V{l}"], dtype=np.float64)
            Fl = np.asarray(z[f"F{l}"], dtype=np.int64)
            par = np.asarray(z[f"parent{l}"], dtype=np.int64)
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

    return load_entry(path, read, "hierarchy cache")
