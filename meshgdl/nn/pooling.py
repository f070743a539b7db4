"""Gauge-equivariant pooling between hierarchy levels, and global pooling.

Fine vertex f with parent c (see :mod:`meshgdl.data.hierarchy`) and transport angle
``a_f`` (fine gauge -> parent gauge):

* :class:`GaugePool`: ``y_c = sum_{f: parent(f)=c} w_f rho(a_f) x_f / sum w_f`` with
  ``w_f`` the fine vertex areas (``reduce="mean"``), or without the normalisation
  (``reduce="sum"``, an area integral).
* :class:`GaugeUnpool`: ``x_f = rho(-a_f) y_{parent(f)}``.

Both are exactly gauge-equivariant: under gauge rotations alpha (fine) and beta
(coarse), ``a'_f = a_f + alpha_f - beta_c`` and ``x'_f = rho(-alpha_f) x_f``, so
``rho(a'_f) x'_f = rho(-beta_c) rho(a_f) x_f``.

:func:`global_pool` averages gauge-invariant (rho_0) channels over each mesh of a batch.
"""

from __future__ import annotations

import torch
from torch import nn

from meshgdl.nn.irreps import IrrepsLike, as_irreps

REDUCTIONS = ("mean", "sum")


def _scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    out = src.new_zeros((n,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


class GaugePool(nn.Module):
    """Fine -> coarse pooling of features of type ``irreps`` (no parameters).

    forward(x (N_f, d), pool: TorchPoolMap, weight (N_f,) | None) -> (N_c, d);
    ``weight`` is the fine vertex area (``mass``); None means uniform weights.
    Coarse vertices without children (impossible for hierarchies built by
    :func:`meshgdl.data.hierarchy.build_hierarchy`) get zeros.
    """

    def __init__(self, irreps: IrrepsLike, reduce: str = "mean"):
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.irreps = as_irreps(irreps)
        self.reduce = reduce

    def forward(self, x: torch.Tensor, pool, weight: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[0] != pool.parent.shape[0]:
            raise ValueError(f"features have {x.shape[0]} rows, the pool map {pool.parent.shape[0]} fine vertices")
        w = torch.ones_like(x[:, 0]) if weight is None else weight.to(x.dtype)
        y = self.irreps.transform(x, pool.angle.to(x.dtype)) * w[:, None]
        out = _scatter_sum(y, pool.parent, pool.num_coarse)
        if self.reduce == "mean":
            den = _scatter_sum(w, pool.parent, pool.num_coarse)
            out = out / den.clamp_min(torch.finfo(x.dtype).tiny)[:, None]
        return out

    def extra_repr(self) -> str:
        return f"{self.irreps}, reduce={self.reduce!r}"


class GaugeUnpool(nn.Module):
    """Coarse -> fine: each fine vertex gets its parent's feature, transported back.

    forward(x (N_c, d), pool: TorchPoolMap) -> (N_f, d).
    """

    def __init__(self, irreps: IrrepsLike):
        super().__init__()
        self.irreps = as_irreps(irreps)

    def forward(self, x: torch.Tensor, pool) -> torch.Tensor:
        if x.shape[0] != pool.num_coarse:
            raise ValueError(f"features have {x.shape[0]} rows, the pool map {pool.num_coarse} coarse vertices")
        return self.irreps.transform(x[pool.parent], -pool.angle.to(x.dtype))

    def extra_repr(self) -> str:
        return str(self.irreps)


def global_pool(
    x: torch.Tensor,
    mass: torch.Tensor,
    batch: torch.Tensor | None = None,
    num_graphs: int | None = None,
    irreps: IrrepsLike | None = None,
) -> torch.Tensor:
    """Area-weighted mean of invariant per-vertex features over each mesh.

    x: (N, C) gauge-invariant features; mass: (N,) vertex areas; batch: (N,) mesh
    index (None: one mesh). If ``irreps`` is given, all its terms must be rho_0
    (averaging rho_n coefficients expressed in different gauges is meaningless).
    Returns (B, C).
    """
    if irreps is not None:
        ir = as_irreps(irreps)
        if any(f != 0 for _, f in ir):
            raise ValueError(f"global_pool needs gauge-invariant (0) channels, got irreps {ir}")
        if ir.dim != x.shape[-1]:
            raise ValueError(f"features have {x.shape[-1]} channels, irreps {ir} need {ir.dim}")
    if x.ndim != 2 or mass.shape != x.shape[:1]:
        raise ValueError(f"expected x (N, C) and mass (N,), got {tuple(x.shape)} and {tuple(mass.shape)}")
    if batch is None:
        batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    B = int(num_graphs) if num_graphs is not None else (int(batch.max()) + 1 if batch.numel() else 0)
    w = mass.to(x.dtype)
    num = _scatter_sum(x * w[:, None], batch, B)
    den = _scatter_sum(w, batch, B)
    return num / den.clamp_min(torch.finfo(x.dtype).tiny)[:, None]


def invariant_features(x: torch.Tensor, irreps: IrrepsLike, eps: float = 1e-12) -> torch.Tensor:
    """Gauge-invariant summary of features of type ``irreps``: the rho_0 channels
    followed by the norm of every rho_n (n >= 1) copy (smoothed: sqrt(|v|^2 + eps)
    - sqrt(eps), differentiable at 0). (N, d) -> (N, count(0) + number of rho_n copies)."""
    ir = as_irreps(irreps)
    scal, norms = [], []
    for sl, (m, f) in zip(ir.slices(), ir.terms):
        xs = x[..., sl]
        if f == 0:
            scal.append(xs)
        else:
            sq = xs.reshape(*xs.shape[:-1], m, 2).pow(2).sum(-1)
            norms.append(torch.sqrt(sq + eps) - eps**0.5)
    return torch.cat(scal + norms, dim=-1)
