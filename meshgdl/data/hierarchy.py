"""Multi-scale mesh hierarchies for pooling in gauge-equivariant networks.

A :class:`Hierarchy` holds the operator bundles of a mesh at several resolutions
(level 0 = the input mesh, each further level a quadric-error decimation of the
previous one, via ``fast_simplification``) and, between consecutive levels, a
:class:`PoolMap`: every fine vertex's *parent* coarse vertex and the parallel
transport angle from the fine vertex's gauge to its parent's gauge.

Parents come from :func:`meshgdl.geometry.remesh.decimate` (edge-collapse replay,
canonical vertex order); transport angles from
:func:`meshgdl.geometry.gauges.transport_angles` (exact gauge law, see there).

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
) -> Hierarchy:
    """Decimate ``(V, F)`` into ``len(ratios)`` levels and compute every level's operators.

    V: (n, 3) float64; F: (m, 3) int64. ``ratios`` are target vertex counts relative
    to the input, starting with 1 and strictly decreasing (e.g. ``(1, 1/4, 1/16)``).
    Level 0 uses ``k_eig`` eigenpairs, coarser levels ``coarse_k_eig`` (networks
    only need the fine spectrum; coarse ones get a cheap basis for their HKS).
    ``n_wks`` WKS energies on level 0 only (0: none; networks read input features there).
    ``parent``: ``"collapse" | "nearest"`` (:func:`meshgdl.geometry.remesh.decimate`). Raises MeshError if a
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
