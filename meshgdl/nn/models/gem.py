"""``kind="gem"``: gauge-equivariant mesh CNNs (GEM-CNN ResNet or U-Net).

A GEM-CNN (de Haan, Weiler, Cohen, Welling, ICLR 2021). Input
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

Kernel radii: when ``radial > 0`` the edge lengths are divided by each mesh level's
mean edge length, so ``radial_cutoff`` is in mean edge lengths and the model does not
depend on the mesh's scale or units.
"""

from __future__ import annotations

import torch
from torch import nn

from meshgdl.data.batching import Batch
from meshgdl.nn.features import feature_irreps, input_features
from meshgdl.nn.gem_conv import GEMConv
from meshgdl.nn.irreps import Irreps
from meshgdl.nn.models.config import ModelConfig
from meshgdl.nn.models.registry import layer_index, register_model
from meshgdl.nn.nonlinearities import GatedNonlinearity, NormNonlinearity, RegularNonlinearity
from meshgdl.nn.norm import EquivariantBatchNorm, EquivariantInstanceNorm
from meshgdl.nn.pooling import GaugePool, GaugeUnpool, global_pool, invariant_features
from meshgdl.operators import unit_area


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
        # 16-bit uniform integers: half the cost of torch.rand on the CPU (its float
        # conversion), with the drop probability rounded to a multiple of 2^-16 and the
        # kept copies scaled by the probability actually used, so E[output] = x exactly.
        cut = round(self.p * 65536)
        bits = torch.randint(0, 65536, (x.shape[0], self.n_copies), device=x.device, dtype=torch.int32)
        keep = (bits >= cut).to(x.dtype).div_(1.0 - cut / 65536)
        return x * keep.index_select(1, self._owner)  # same values as keep[:, owner], without its copy

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


@register_model("gem")
class GEMNet(nn.Module):
    """GEM-CNN ResNet (``n_levels = 1``) or U-Net (``n_levels > 1``); see module docstring."""

    #: prepare() builds the decimation hierarchy for n_levels > 1 (the U-Net's levels).
    uses_hierarchy = True

    @staticmethod
    def check_config(cfg: ModelConfig) -> None:
        """ValueError for hidden types the chosen non-linearity cannot act on."""
        H = Irreps(cfg.hidden_irreps)
        if cfg.nonlinearity == "regular":
            L = H.max_freq
            counts = {H.count(f) for f in range(L + 1)}
            if len(counts) != 1:
                raise ValueError(f"nonlinearity 'regular' needs equal multiplicities of frequencies 0..{L} in "
                                 f"hidden_irreps, got {H}")
            if cfg.n_samples < 2 * L + 1:
                raise ValueError(f"n_samples must be >= 2L+1 = {2 * L + 1} for hidden_irreps {H}")
        if cfg.nonlinearity == "gated" and H.count(0) == 0:
            raise ValueError("nonlinearity 'gated' needs scalar (0) channels in hidden_irreps to compute gates")

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        cfg = config
        self.H = H = Irreps(cfg.hidden_irreps)
        self.in_irreps = feature_irreps(cfg.in_features, n_hks=cfg.n_hks, n_wks=cfg.n_wks or None)
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
        i = layer_index(layer, self.num_feature_layers)
        rec: list = []
        with torch.no_grad():
            self._run(batch, rec)
        level, h = rec[i]
        if i != len(rec) - 1:  # the last record is the invariant summary already
            h = invariant_features(h, self.H)
        return _to_finest(h, level, batch)


__all__ = ["GEMNet", "GEMBlock", "IrrepDropout"]
