"""Model inputs: per-mesh samples (:func:`prepare`) and their batches (:func:`collate_samples`).

The split follows PyTorch Geometric's ``data/`` vs ``nn/``: everything a network
needs about a mesh is computed here once -- the operator bundle
(:func:`meshgdl.operators.compute_operators`) and, for a U-Net, the decimation
hierarchy (:func:`meshgdl.data.hierarchy.build_hierarchy`) -- cached on disk, and
collated PyG-style into a :class:`Batch` (concatenated vertices, offset indices, a
``batch`` vector per level). Networks (:mod:`meshgdl.nn.models`) only consume a
:class:`Batch`; they never compute geometry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from meshgdl.data.hierarchy import Hierarchy, HierarchyReplay, attach_hierarchy, build_hierarchy
from meshgdl.errors import MeshError
from meshgdl.geometry.normals import face_areas
from meshgdl.geometry.validation import check_arrays
from meshgdl.operators import Operators, TorchOperators, collate, compute_operators


# --------------------------------------------------------------------------- hierarchies in torch


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


# --------------------------------------------------------------------------- samples and batches


@dataclass
class GeometryOptions:
    """The geometry settings a model config carries (flat, in its JSON).

    ``k_eig`` eigenpairs, ``n_hks`` HKS times and ``n_wks`` WKS energies (0: none) on
    the input mesh; ``laplacian`` (``"auto" | "cotan" | "robust"``); ``n_levels``
    resolution levels (a U-Net's hierarchy; 1 = none), each with ``level_ratio`` times
    the vertices of the previous one and ``coarse_k_eig`` eigenpairs; ``unit_area``:
    scale the mesh to total area 1 first.
    """

    k_eig: int = 128
    n_hks: int = 16
    n_wks: int = 0
    laplacian: str = "auto"
    n_levels: int = 1
    level_ratio: float = 0.25
    coarse_k_eig: int = 16
    unit_area: bool = False


@dataclass
class GeometryConfig(GeometryOptions):
    """What :func:`prepare` computes for a mesh: :class:`GeometryOptions` plus
    ``hierarchy``: build the coarse levels (False for model kinds that only use
    level 0 whatever ``n_levels`` says)."""

    hierarchy: bool = True

    @classmethod
    def of(cls, config: Any) -> "GeometryConfig":
        """From a GeometryConfig, an object whose ``geometry`` property gives one (a
        model config, :class:`meshgdl.nn.models.ModelConfig`), or a dict of these fields."""
        if isinstance(config, cls):
            return config
        g = getattr(config, "geometry", None)
        if isinstance(g, cls):
            return g
        if isinstance(config, dict):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(config) - names)
            if unknown:
                raise ValueError(f"unknown geometry option(s): {', '.join(unknown)}")
            return cls(**config)
        raise TypeError(f"cannot read geometry settings from a {type(config).__name__}")

    @property
    def ratios(self) -> list[float]:
        return [float(self.level_ratio) ** l for l in range(self.n_levels)]

    @property
    def uses_hierarchy(self) -> bool:
        return self.hierarchy and self.n_levels > 1


@dataclass
class Sample:
    """Everything a model needs about one mesh (numpy).

    ``ops``: the input mesh's :class:`Operators`; ``coarse``: operator bundles of the
    coarser hierarchy levels (empty unless the model is a GEM U-Net); ``pools[l]``
    maps level l to level l + 1 (level 0 = ``ops``). A rigid motion of ``ops`` (data
    augmentation) leaves the coarse levels valid: the model uses only their intrinsic
    quantities.
    """

    ops: Operators
    coarse: list = field(default_factory=list)
    pools: list = field(default_factory=list)

    @property
    def num_vertices(self) -> int:
        return self.ops.num_vertices

    @property
    def levels(self) -> list:
        return [self.ops, *self.coarse]


@dataclass
class Batch:
    """Collated samples (torch). ``levels[0]`` is the input meshes' :class:`TorchOperators`.

    ``r_rel[l]``: (E_l,) edge lengths of level l divided by the mean edge length of
    their mesh at that level.
    """

    levels: list
    pools: list
    r_rel: list

    @property
    def ops(self) -> TorchOperators:
        return self.levels[0]

    @property
    def batch(self) -> torch.Tensor:
        return self.levels[0].batch

    @property
    def ptr(self) -> torch.Tensor:
        return self.levels[0].ptr

    @property
    def mass(self) -> torch.Tensor:
        return self.levels[0].mass

    @property
    def num_graphs(self) -> int:
        return int(self.levels[0].num_graphs)

    @property
    def num_vertices(self) -> int:
        return self.levels[0].num_vertices

    def to(self, device=None, dtype=None) -> "Batch":
        return Batch(
            levels=[lv.to(device=device, dtype=dtype) for lv in self.levels],
            pools=[pm.to(device=device, dtype=dtype) for pm in self.pools],
            r_rel=[(r.to(dtype) if dtype is not None else r).to(device) for r in self.r_rel],
        )


def _unit_area(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    area = float(face_areas(V, F).sum())
    if not (np.isfinite(area) and area > 0):
        raise MeshError("the mesh has no surface area (all faces are degenerate)")
    return V / np.sqrt(area)


def prepare(V: np.ndarray, F: np.ndarray, config: Any, cache_dir=None,
            replay: HierarchyReplay | None = None) -> Sample:
    """Compute (or load from ``cache_dir``) the geometry a model with ``config`` needs.

    V: (n, 3) float64, F: (m, 3) int64 (bad arrays raise MeshError). ``config``: a
    :class:`GeometryConfig`, a model config (its ``geometry``) or a dict of
    :class:`GeometryConfig` fields.
    With ``unit_area`` the mesh is first scaled to total area 1: the decimator behind
    the hierarchy has absolute thresholds, so only then is the whole sample (hence
    the model) independent of the mesh's units. ``replay``: the coarse levels of
    another pose of the same connectivity (:func:`attach_sample`), moved with ``V``,
    instead of a new decimation.
    """
    config = GeometryConfig.of(config)
    V, F = check_arrays(V, F)
    if config.unit_area:
        V = _unit_area(V, F)
    if config.uses_hierarchy:
        h = build_hierarchy(
            V,
            F,
            ratios=config.ratios,
            k_eig=config.k_eig,
            coarse_k_eig=config.coarse_k_eig,
            n_hks=config.n_hks,
            n_wks=config.n_wks,
            laplacian=config.laplacian,
            cache_dir=None if replay is not None else cache_dir,
            replay=replay,
        )
        return Sample(ops=h.levels[0], coarse=list(h.levels[1:]), pools=list(h.pools))
    ops = compute_operators(V, F, k_eig=config.k_eig, n_hks=config.n_hks, n_wks=config.n_wks,
                            laplacian=config.laplacian, cache_dir=cache_dir)
    return Sample(ops=ops)


def attach_sample(V: np.ndarray, F: np.ndarray, config: Any) -> HierarchyReplay | None:
    """What :func:`prepare` decimates for the rest pose ``(V, F)``, tied to the surface
    (:func:`meshgdl.data.hierarchy.attach_hierarchy`), so ``prepare(V_t, F, config,
    replay=...)`` gives every pose the same coarse levels; None for models without a
    hierarchy."""
    config = GeometryConfig.of(config)
    if not config.uses_hierarchy:
        return None
    V, F = check_arrays(V, F)
    if config.unit_area:
        V = _unit_area(V, F)
    return attach_hierarchy(V, F, ratios=config.ratios)


def _relative_lengths(lv: TorchOperators) -> torch.Tensor:
    """Edge lengths over their mesh's mean edge length (per mesh of the batch)."""
    eb = lv.batch[lv.edge_index[1]]
    B = int(lv.num_graphs)
    tot = lv.r.new_zeros(B).index_add(0, eb, lv.r)
    cnt = lv.r.new_zeros(B).index_add(0, eb, torch.ones_like(lv.r))
    mean = tot / cnt.clamp_min(1)
    return lv.r / mean.clamp_min(torch.finfo(lv.r.dtype).tiny)[eb]


def collate_samples(samples: Sequence[Any], device=None, dtype=None) -> Batch:
    """Batch samples from :func:`prepare` (or bare :class:`Operators` / :class:`Hierarchy`).

    Float tensors get ``dtype`` (default: torch's default dtype); all samples must
    have the same number of levels and eigenbasis size.
    """
    hs = []
    for s in samples:
        if isinstance(s, Sample):
            hs.append(Hierarchy(levels=s.levels, pools=list(s.pools)))
        elif isinstance(s, Operators):
            hs.append(Hierarchy(levels=[s], pools=[]))
        elif isinstance(s, Hierarchy):
            hs.append(Hierarchy(levels=list(s.levels), pools=list(s.pools)))
        else:
            raise TypeError(f"cannot collate a {type(s).__name__}; expected samples from prepare()")
    if not hs:
        raise ValueError("collate_samples needs at least one sample")
    n_levels = {h.num_levels for h in hs}
    if len(n_levels) == 1 and n_levels.pop() > 1:
        # Coarse levels of small meshes may have a clipped eigenbasis; the networks do
        # not use coarse spectra, so cut them to a common size instead of failing.
        for l in range(1, hs[0].num_levels):
            k = min(h.levels[l].evecs.shape[1] for h in hs)
            for h in hs:
                lv = h.levels[l]
                if lv.evecs.shape[1] != k:
                    h.levels[l] = dataclasses.replace(lv, evecs=lv.evecs[:, :k], evals=lv.evals[:k])
    th = collate_hierarchies(hs, dtype=dtype, device=device)
    return Batch(levels=th.levels, pools=th.pools, r_rel=[_relative_lengths(lv) for lv in th.levels])


__all__ = [
    "GeometryOptions",
    "GeometryConfig",
    "Sample",
    "Batch",
    "prepare",
    "attach_sample",
    "collate_samples",
    "TorchPoolMap",
    "TorchHierarchy",
    "collate_hierarchies",
]
