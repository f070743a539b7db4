"""Complete networks for mesh segmentation and classification, and the model contract.

The contract other parts of meshgdl (training loop, ``meshgdl segment``, the viewer)
use -- nothing else in this module is needed to train or run a model:

* :class:`ModelConfig` -- every architecture and geometry choice, JSON round-trip via
  :meth:`ModelConfig.to_dict` / :meth:`ModelConfig.from_dict`;
* :func:`prepare` ``(V, F, config, cache_dir=None) -> Sample`` -- all geometry the
  model needs for one mesh (operator bundle, plus the decimation hierarchy for a
  GEM U-Net), computed once and cached on disk;
* :func:`collate_samples` ``(samples, device=None, dtype=None) -> Batch``;
* :func:`build_model` ``(config) -> nn.Module`` with ``model(batch) -> logits``
  ((N, n_classes) per vertex for segmentation, in sample order; (B, n_classes) per
  mesh for classification) and ``model.features(batch, layer) -> (N, C)``:
  gauge-invariant per-vertex features of an intermediate layer on the input
  mesh's vertices (``model.num_feature_layers`` of them; negative indices count
  from the end).

Architectures
-------------
``kind="gem"``: a GEM-CNN (de Haan, Weiler, Cohen, Welling, ICLR 2021). Input
features (:mod:`meshgdl.nn.features`, any mix of rho_0/rho_1/rho_2) go through a
:class:`GEMConv` to the hidden type ``hidden_irreps``, then residual blocks
``x + GEMConv(dropout(act(norm(x))))`` (``n_layers`` per stage). With ``n_levels > 1``
it is a U-Net: a stage per level on the way down (:class:`GaugePool` between levels),
a stage per level on the way up (:class:`GaugeUnpool` + skip connection by addition).
Non-linearities: ``"regular"`` (the paper's: sample the band-limited signal at
``n_samples`` angles, ReLU, project back; equivariant up to an aliasing error that
falls with ``n_samples``), ``"norm"`` or ``"gated"`` (exactly equivariant; gates are
computed from the block's scalar channels). Head: the gauge-invariant summary
(scalars + norms of the rho_n copies) -> MLP, per vertex (segmentation) or
area-weighted mean over the mesh -> MLP (classification). With invariant inputs the
output is invariant to the choice of gauges, rigid motions and vertex order.

``kind="diffusion"``: DiffusionNet (Sharp et al. 2022) on the invariant summary of
the input features, ``n_layers`` blocks of ``width`` channels, every mesh scaled to
unit area first (:func:`meshgdl.operators.unit_area`, so learned diffusion times
mean the same in any units); for classification the per-vertex logits are
averaged (area-weighted), as in the paper.

Kernel radii: when ``radial > 0`` the edge lengths are divided by each mesh level's
mean edge length, so ``radial_cutoff`` is in mean edge lengths and the model does not
depend on the mesh's scale or units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from meshgdl.errors import MeshError
from meshgdl.hierarchy import Hierarchy, build_hierarchy, collate_hierarchies
from meshgdl.nn.diffusion import DiffusionNet
from meshgdl.nn.features import KINDS, feature_irreps, input_features
from meshgdl.nn.gem_conv import GEMConv
from meshgdl.nn.irreps import Irreps
from meshgdl.nn.nonlinearities import GatedNonlinearity, NormNonlinearity, RegularNonlinearity
from meshgdl.nn.norm import EquivariantBatchNorm, EquivariantInstanceNorm
from meshgdl.nn.pooling import GaugePool, GaugeUnpool, global_pool, invariant_features
from meshgdl.operators import Operators, TorchOperators, compute_operators, unit_area

KIND_CHOICES = ("gem", "diffusion")
TASK_CHOICES = ("segmentation", "classification")
NONLINEARITY_CHOICES = ("regular", "norm", "gated")
NORM_CHOICES = ("instance", "batch", "none")
AGGR_CHOICES = ("mean", "sqrt", "sum")
LAPLACIAN_CHOICES = ("auto", "cotan", "robust")


# --------------------------------------------------------------------------- config


@dataclass
class ModelConfig:
    """Architecture + geometry settings of a model (all JSON-serialisable).

    Shared: ``kind`` (``"gem" | "diffusion"``), ``task`` (``"segmentation" |
    "classification"``), ``n_classes``, ``in_features`` (names from
    :mod:`meshgdl.nn.features`), ``n_layers`` (GEM: conv blocks per stage;
    DiffusionNet: blocks), ``head_hidden`` (width of the output MLP), ``dropout``.

    Geometry (used by :func:`prepare`): ``k_eig`` eigenpairs, ``n_hks`` HKS times,
    ``laplacian`` (``"auto" | "cotan" | "robust"``), ``n_levels`` resolution levels
    (GEM U-Net; 1 = no pooling), each with ``level_ratio`` times the vertices of the
    previous one, ``coarse_k_eig`` eigenpairs on the coarse levels.

    GEM: ``hidden_irreps`` (e.g. ``"16x0 + 16x1 + 16x2"``; ``"regular"`` needs equal
    multiplicities of frequencies 0..L), ``nonlinearity`` (``"regular" | "norm" |
    "gated"``), ``n_samples`` (angles for ``"regular"``, >= 2L+1; the whole network's
    relative gauge-invariance error with ``"4x0 + 4x1 + 4x2"``, two blocks, was 40% /
    18% / 3% / 0.6% for 5 / 7 / 17 / 33 samples, so the default is 17), ``norm``
    (``"instance" | "batch" | "none"``), ``radial`` (radial basis functions; 0 =
    angular kernels only), ``radial_cutoff`` (in mean edge lengths), ``aggr``
    (neighbour normalisation of :class:`GEMConv`), ``unit_area`` (scale every mesh
    to total area 1 before computing the input features, so HKS values and
    gradients mean the same in any units: the model becomes invariant to uniform
    scaling; off by default to keep earlier checkpoints' inputs unchanged).

    DiffusionNet: ``width`` (always scales meshes to unit area).
    """

    kind: str = "gem"
    task: str = "segmentation"
    n_classes: int = 2
    in_features: list = field(default_factory=lambda: ["hks"])
    # geometry
    k_eig: int = 128
    n_hks: int = 16
    laplacian: str = "auto"
    n_levels: int = 1
    level_ratio: float = 0.25
    coarse_k_eig: int = 16
    # GEM-CNN
    hidden_irreps: str = "16x0 + 16x1 + 16x2"
    n_layers: int = 4
    nonlinearity: str = "regular"
    n_samples: int = 17
    norm: str = "instance"
    radial: int = 0
    radial_cutoff: float = 2.0
    aggr: str = "mean"
    unit_area: bool = False
    # DiffusionNet
    width: int = 128
    # heads
    head_hidden: int = 64
    dropout: float = 0.0

    def __post_init__(self):
        if isinstance(self.in_features, str):
            self.in_features = [self.in_features]
        self.in_features = [str(k) for k in self.in_features]
        self.validate()

    def validate(self) -> None:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"model option {name} must be one of {', '.join(options)}, got {getattr(self, name)!r}")

        def positive(name, minimum=1):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"model option {name} must be an integer >= {minimum}, got {v!r}")

        choice("kind", KIND_CHOICES)
        choice("task", TASK_CHOICES)
        choice("nonlinearity", NONLINEARITY_CHOICES)
        choice("norm", NORM_CHOICES)
        choice("aggr", AGGR_CHOICES)
        choice("laplacian", LAPLACIAN_CHOICES)
        positive("n_classes", 2 if self.task == "classification" else 1)
        for name in ("k_eig", "n_hks", "n_levels", "coarse_k_eig", "n_layers", "n_samples", "width", "head_hidden"):
            positive(name)
        positive("radial", 0)
        if not isinstance(self.unit_area, bool):
            raise ValueError(f"model option unit_area must be true or false, got {self.unit_area!r}")
        if not 0.0 < float(self.level_ratio) < 1.0:
            raise ValueError(f"model option level_ratio must be in (0, 1), got {self.level_ratio!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"model option dropout must be in [0, 1), got {self.dropout!r}")
        if not float(self.radial_cutoff) > 0:
            raise ValueError(f"model option radial_cutoff must be > 0, got {self.radial_cutoff!r}")
        feature_irreps(self.in_features, n_hks=self.n_hks)  # raises on unknown/repeated kinds
        if "wks" in self.in_features:
            raise ValueError("input feature 'wks' is not computed by prepare(); choose from "
                             + ", ".join(k for k in KINDS if k != "wks"))
        H = Irreps(self.hidden_irreps)
        if H.dim == 0:
            raise ValueError("hidden_irreps must not be empty")
        if self.kind == "gem" and self.nonlinearity == "regular":
            L = H.max_freq
            counts = {H.count(f) for f in range(L + 1)}
            if len(counts) != 1:
                raise ValueError(f"nonlinearity 'regular' needs equal multiplicities of frequencies 0..{L} in "
                                 f"hidden_irreps, got {H}")
            if self.n_samples < 2 * L + 1:
                raise ValueError(f"n_samples must be >= 2L+1 = {2 * L + 1} for hidden_irreps {H}")
        if self.kind == "gem" and self.nonlinearity == "gated" and H.count(0) == 0:
            raise ValueError("nonlinearity 'gated' needs scalar (0) channels in hidden_irreps to compute gates")

    @property
    def ratios(self) -> list[float]:
        return [float(self.level_ratio) ** l for l in range(self.n_levels)]

    @property
    def uses_hierarchy(self) -> bool:
        return self.kind == "gem" and self.n_levels > 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model option(s): {', '.join(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------- samples and batches


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


def prepare(V: np.ndarray, F: np.ndarray, config: ModelConfig, cache_dir=None) -> Sample:
    """Compute (or load from ``cache_dir``) the geometry ``config``'s model needs.

    V: (n, 3) float64, F: (m, 3) int64 (bad arrays raise MeshError). With
    ``config.unit_area`` the mesh is first scaled to total area 1: the decimator
    behind the hierarchy has absolute thresholds, so only then is the whole sample
    (hence the model) independent of the mesh's units.
    """
    from meshgdl.geometry.normals import face_areas
    from meshgdl.io import check_arrays

    config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))
    V, F = check_arrays(V, F)
    if config.unit_area:
        area = float(face_areas(V, F).sum())
        if not (np.isfinite(area) and area > 0):
            raise MeshError("the mesh has no surface area (all faces are degenerate)")
        V = V / np.sqrt(area)
    if config.uses_hierarchy:
        h = build_hierarchy(
            V,
            F,
            ratios=config.ratios,
            k_eig=config.k_eig,
            coarse_k_eig=config.coarse_k_eig,
            n_hks=config.n_hks,
            laplacian=config.laplacian,
            cache_dir=cache_dir,
        )
        return Sample(ops=h.levels[0], coarse=list(h.levels[1:]), pools=list(h.pools))
    ops = compute_operators(V, F, k_eig=config.k_eig, n_hks=config.n_hks, laplacian=config.laplacian, cache_dir=cache_dir)
    return Sample(ops=ops)


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


# --------------------------------------------------------------------------- building blocks


class IrrepDropout(nn.Module):
    """Dropout of whole irrep copies (both components of a rho_n together), so that
    training-mode dropout stays gauge-equivariant."""

    def __init__(self, irreps, p: float):
        super().__init__()
        self.irreps, self.p = Irreps(irreps), float(p)
        owner = [i for i, (f, _) in enumerate(self.irreps.copies()) for _ in range(Irreps.irrep_dim(f))]
        self.register_buffer("_owner", torch.tensor(owner, dtype=torch.long), persistent=False)
        self.n_copies = self.irreps.num_irreps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = (torch.rand(x.shape[0], self.n_copies, device=x.device) >= self.p).to(x.dtype) / (1.0 - self.p)
        return x * keep[:, self._owner]

    def extra_repr(self) -> str:
        return f"{self.irreps}, p={self.p}"


class _GateFromScalars(nn.Module):
    """Gated non-linearity whose gates are a linear function of the feature's own scalars."""

    def __init__(self, H: Irreps):
        super().__init__()
        self.mask = H.scalar_mask()
        scal = [(m, f) for m, f in H if f == 0]
        gated = [(m, f) for m, f in H if f != 0]
        self.S = sum(m for m, _ in scal)
        self.gated = Irreps(gated)
        self.gate = nn.Linear(self.S, self.gated.num_irreps) if self.gated.num_irreps else None
        self.act = GatedNonlinearity(f"{self.S}x0", self.gated)
        idx = torch.cat([torch.nonzero(self.mask).flatten(), torch.nonzero(~self.mask).flatten()])
        inv = torch.empty_like(idx)
        inv[idx] = torch.arange(len(idx))
        self.register_buffer("_idx", idx, persistent=False)
        self.register_buffer("_inv", inv, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.index_select(1, self._idx)  # [scalars | non-scalars]
        s, v = x[:, : self.S], x[:, self.S :]
        parts = [s] + ([self.gate(s)] if self.gate is not None else []) + [v]
        return self.act(torch.cat(parts, 1)).index_select(1, self._inv)


def _make_act(H: Irreps, cfg: ModelConfig) -> nn.Module:
    if cfg.nonlinearity == "regular":
        return RegularNonlinearity(H, cfg.n_samples, torch.relu)
    if cfg.nonlinearity == "norm":
        return NormNonlinearity(H, torch.relu)
    return _GateFromScalars(H)


class _Norm(nn.Module):
    def __init__(self, H: Irreps, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "instance":
            self.norm = EquivariantInstanceNorm(H)
        elif kind == "batch":
            self.norm = EquivariantBatchNorm(H)
        else:
            self.norm = None

    def forward(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return x
        return self.norm(x, batch) if self.kind == "instance" else self.norm(x)


def _conv_kwargs(cfg: ModelConfig) -> dict:
    return dict(radial=cfg.radial, radial_cutoff=float(cfg.radial_cutoff), aggr=cfg.aggr)


class GEMBlock(nn.Module):
    """Residual block ``x + GEMConv(dropout(act(norm(x))))`` of type ``H -> H``."""

    def __init__(self, H: Irreps, cfg: ModelConfig):
        super().__init__()
        self.norm = _Norm(H, cfg.norm)
        self.act = _make_act(H, cfg)
        self.dropout = IrrepDropout(H, cfg.dropout)
        self.conv = GEMConv(H, H, **_conv_kwargs(cfg))

    def forward(self, x, geom, batch):
        return x + self.conv(self.dropout(self.act(self.norm(x, batch))), geom)


def _head(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, n_out))
    return nn.Sequential(*layers)


def _to_finest(x: torch.Tensor, level: int, batch: Batch) -> torch.Tensor:
    """Copy per-vertex invariant features of ``level`` onto the input mesh's vertices."""
    if level == 0:
        return x
    idx = batch.pools[0].parent
    for l in range(1, level):
        idx = batch.pools[l].parent[idx]
    return x[idx]


def _layer_index(layer: int, n: int) -> int:
    i = int(layer) + n if int(layer) < 0 else int(layer)
    if not 0 <= i < n:
        raise IndexError(f"layer {layer} out of range for a model with {n} feature layers")
    return i


# --------------------------------------------------------------------------- models


class GEMNet(nn.Module):
    """GEM-CNN ResNet (``n_levels = 1``) or U-Net (``n_levels > 1``); see module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        cfg = config
        self.H = H = Irreps(cfg.hidden_irreps)
        self.in_irreps = feature_irreps(cfg.in_features, n_hks=cfg.n_hks)
        L = cfg.n_levels
        self.conv_in = GEMConv(self.in_irreps, H, **_conv_kwargs(cfg))
        self.down = nn.ModuleList(nn.ModuleList(GEMBlock(H, cfg) for _ in range(cfg.n_layers)) for _ in range(L))
        self.up = nn.ModuleList(nn.ModuleList(GEMBlock(H, cfg) for _ in range(cfg.n_layers)) for _ in range(L - 1))
        self.pool = nn.ModuleList(GaugePool(H) for _ in range(L - 1))
        self.unpool = nn.ModuleList(GaugeUnpool(H) for _ in range(L - 1))
        self.out_norm = _Norm(H, cfg.norm)
        self.out_act = _make_act(H, cfg)
        n_inv = H.count(0) + sum(m for m, f in H if f != 0)
        self.n_invariant = n_inv
        if cfg.task == "segmentation":
            self.head = _head(n_inv, cfg.head_hidden, cfg.n_classes, cfg.dropout)
        else:
            self.vertex_mlp = nn.Sequential(nn.Linear(n_inv, cfg.head_hidden), nn.ReLU())
            self.head = _head(cfg.head_hidden, cfg.head_hidden, cfg.n_classes, cfg.dropout)

    @property
    def num_feature_layers(self) -> int:
        """conv_in, every block (down then up), the invariant summary fed to the head."""
        L, n = self.config.n_levels, self.config.n_layers
        return 1 + n * L + n * (L - 1) + 1

    def _geometry(self, batch: Batch, l: int):
        lv = batch.levels[l]
        r = batch.r_rel[l] if self.config.radial > 0 else None
        return self.conv_in.precompute(lv.edge_index, lv.theta, lv.transport, r, lv.num_vertices)

    def _run(self, batch: Batch, record: list | None):
        cfg = self.config
        if not isinstance(batch, Batch):
            raise TypeError(f"model input must be a Batch from collate_samples, got {type(batch).__name__}")
        if len(batch.levels) != cfg.n_levels:
            raise ValueError(f"batch has {len(batch.levels)} levels but the model uses n_levels={cfg.n_levels}; "
                             "prepare the samples with this model's config")
        x, ir = input_features(unit_area(batch.ops) if cfg.unit_area else batch.ops, cfg.in_features)
        if ir != self.in_irreps:
            raise ValueError(f"input features have type {ir}, the model expects {self.in_irreps} "
                             f"(samples prepared with another n_hks?)")
        geoms = [self._geometry(batch, l) for l in range(cfg.n_levels)]
        h = self.conv_in(x, geoms[0])
        if record is not None:
            record.append((0, h))
        skips = []
        for l in range(cfg.n_levels):
            if l > 0:
                h = self.pool[l - 1](h, batch.pools[l - 1], batch.levels[l - 1].mass)
            for blk in self.down[l]:
                h = blk(h, geoms[l], batch.levels[l].batch)
                if record is not None:
                    record.append((l, h))
            skips.append(h)
        for l in reversed(range(cfg.n_levels - 1)):
            h = self.unpool[l](h, batch.pools[l]) + skips[l]
            for blk in self.up[l]:
                h = blk(h, geoms[l], batch.levels[l].batch)
                if record is not None:
                    record.append((l, h))
        inv = invariant_features(self.out_act(self.out_norm(h, batch.batch)), self.H)
        if record is not None:
            record.append((0, inv))
        if cfg.task == "segmentation":
            return self.head(inv)
        z = global_pool(self.vertex_mlp(inv), batch.mass, batch.batch, batch.num_graphs)
        return self.head(z)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self._run(batch, None)

    def features(self, batch: Batch, layer: int) -> torch.Tensor:
        """(N, C) gauge-invariant features after ``layer`` on the input vertices (no autograd):
        rho_0 channels + norms of the rho_n copies; coarse levels are copied to their children."""
        i = _layer_index(layer, self.num_feature_layers)
        rec: list = []
        with torch.no_grad():
            self._run(batch, rec)
        level, h = rec[i]
        if i != len(rec) - 1:  # the last record is the invariant summary already
            h = invariant_features(h, self.H)
        return _to_finest(h, level, batch)


class DiffusionNetModel(nn.Module):
    """DiffusionNet on the invariant summary of the configured input features."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        self.in_irreps = feature_irreps(cfg.in_features, n_hks=cfg.n_hks)
        c_in = self.in_irreps.count(0) + sum(m for m, f in self.in_irreps if f != 0)
        self.net = DiffusionNet(c_in, cfg.n_classes, width=cfg.width, n_blocks=cfg.n_layers, dropout=cfg.dropout)

    @property
    def num_feature_layers(self) -> int:
        return 1 + self.config.n_layers

    def _run(self, batch: Batch):
        if not isinstance(batch, Batch):
            raise TypeError(f"model input must be a Batch from collate_samples, got {type(batch).__name__}")
        # Like the reference implementation's mesh normalisation: the diffusion
        # times and the first layer's weights then mean the same on every mesh.
        ops = unit_area(batch.ops)
        x, ir = input_features(ops, self.config.in_features)
        if ir != self.in_irreps:
            raise ValueError(f"input features have type {ir}, the model expects {self.in_irreps} "
                             f"(samples prepared with another n_hks?)")
        return self.net(invariant_features(x, ir), ops, return_hidden=True)

    def forward(self, batch: Batch) -> torch.Tensor:
        out, _ = self._run(batch)
        if self.config.task == "classification":
            return global_pool(out, batch.mass, batch.batch, batch.num_graphs)
        return out

    def features(self, batch: Batch, layer: int) -> torch.Tensor:
        """(N, width) hidden state after the input layer (0) or block ``layer`` (no autograd)."""
        i = _layer_index(layer, self.num_feature_layers)
        with torch.no_grad():
            _, hidden = self._run(batch)
        return hidden[i]


def build_model(config: ModelConfig | dict) -> nn.Module:
    """The network ``config`` describes (weights from torch's current RNG state)."""
    config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))
    if config.kind == "gem":
        return GEMNet(config)
    return DiffusionNetModel(config)


__all__ = [
    "ModelConfig",
    "Sample",
    "Batch",
    "prepare",
    "collate_samples",
    "build_model",
    "GEMNet",
    "GEMBlock",
    "DiffusionNetModel",
    "IrrepDropout",
]
