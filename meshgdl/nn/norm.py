"""Gauge-equivariant normalisation layers for SO(2) features.

Scalars (``rho_0``) are normalised as usual (mean and variance). A ``rho_n`` copy ``v`` has
no gauge-invariant mean, so it is only rescaled: ``v / sqrt(mean |v|^2 + eps)``, the mean
of the squared norm (a gauge invariant) taken over the vertices that share the statistics,
then multiplied by a learnable per-copy scale (no bias, which would not be equivariant).
Both layers are therefore exactly gauge equivariant.

Input ``x: (N, irreps.dim)`` (any leading shape for batch norm: all leading dims are the
batch).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .irreps import IrrepsLike, as_irreps

__all__ = ["EquivariantBatchNorm", "EquivariantInstanceNorm"]


class _IrrepsNorm(nn.Module):
    def __init__(self, irreps: IrrepsLike, eps: float, affine: bool):
        super().__init__()
        self.irreps, self.eps, self.affine = as_irreps(irreps), float(eps), bool(affine)
        copies = self.irreps.copies()
        scal = [s for f, s in copies if f == 0]
        vec = [s for f, s in copies if f != 0]
        self.n_scalars, self.n_vectors = len(scal), len(vec)
        idx_v = torch.tensor([[s, s + 1] for s in vec], dtype=torch.long).reshape(-1)
        perm = torch.cat([torch.tensor(scal, dtype=torch.long), idx_v])
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel())
        self.register_buffer("_scal", torch.tensor(scal, dtype=torch.long), persistent=False)
        self.register_buffer("_vec", idx_v, persistent=False)
        self.register_buffer("_inv", inv, persistent=False)
        if self.affine:
            self.weight = nn.Parameter(torch.ones(self.n_scalars))
            self.bias = nn.Parameter(torch.zeros(self.n_scalars))
            self.vector_weight = nn.Parameter(torch.ones(self.n_vectors))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
            self.register_parameter("vector_weight", None)

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)
            nn.init.ones_(self.vector_weight)

    def _split(self, x: torch.Tensor):
        if x.shape[-1] != self.irreps.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, irreps {self.irreps} need {self.irreps.dim}")
        s = x.index_select(-1, self._scal)
        v = x.index_select(-1, self._vec).reshape(*x.shape[:-1], self.n_vectors, 2)
        return s, v

    def _merge(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.affine:
            s = s * self.weight.to(s.dtype) + self.bias.to(s.dtype)
            v = v * self.vector_weight.to(v.dtype)[:, None]
        return torch.cat([s, v.flatten(-2)], -1).index_select(-1, self._inv)

    def extra_repr(self) -> str:
        return f"{self.irreps}, eps={self.eps}, affine={self.affine}"


class EquivariantBatchNorm(_IrrepsNorm):
    """Batch norm over all vertices of the batch.

    Scalars: standard batch norm (running mean/variance). ``rho_n`` copies: divided by the
    root of the mean squared norm (running estimate in eval mode), no mean subtraction.
    ``momentum`` as in :class:`torch.nn.BatchNorm1d` (running = (1 - m) running + m batch).
    """

    def __init__(self, irreps: IrrepsLike, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__(irreps, eps, affine)
        self.momentum = float(momentum)
        self.register_buffer("running_mean", torch.zeros(self.n_scalars))
        self.register_buffer("running_var", torch.ones(self.n_scalars))
        self.register_buffer("running_sqnorm", torch.ones(self.n_vectors))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.running_sqnorm.fill_(1.0)
        self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        s, v = self._split(x.reshape(-1, shape[-1]) if x.dim() != 2 else x)
        if self.training:
            n = s.shape[0]
            if n < 2 and self.n_scalars:
                raise ValueError("EquivariantBatchNorm needs more than one vertex per batch in training mode")
            mean = s.mean(0)
            var = s.var(0, unbiased=False)
            sqnorm = v.square().sum(-1).mean(0)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach().to(self.running_mean.dtype))
                unbiased = var.detach() * (n / max(n - 1, 1))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
                self.running_sqnorm.mul_(1 - m).add_(m * sqnorm.detach().to(self.running_sqnorm.dtype))
                self.num_batches_tracked += 1
        else:
            mean = self.running_mean.to(x.dtype)
            var = self.running_var.to(x.dtype)
            sqnorm = self.running_sqnorm.to(x.dtype)
        s = (s - mean) * (var + self.eps).rsqrt()
        v = v * (sqnorm + self.eps).rsqrt()[:, None]
        return self._merge(s, v).reshape(shape)


class EquivariantInstanceNorm(_IrrepsNorm):
    """Per-mesh normalisation: statistics over the vertices of each mesh of a batch.

    ``forward(x (N, dim), batch (N,) int64 or None)``: ``batch[i]`` is the mesh of vertex i
    (PyG convention, values ``0..B-1``); None normalises over all of ``x``. No running
    statistics: train and eval behave the same.
    """

    def __init__(self, irreps: IrrepsLike, eps: float = 1e-5, affine: bool = True):
        super().__init__(irreps, eps, affine)

    def forward(self, x: torch.Tensor, batch: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"x must have shape (N, {self.irreps.dim}), got {tuple(x.shape)}")
        s, v = self._split(x)
        if batch is None:
            mean = s.mean(0, keepdim=True)
            var = (s - mean).square().mean(0, keepdim=True)
            sqnorm = v.square().sum(-1).mean(0, keepdim=True)
        else:
            batch = torch.as_tensor(batch, device=x.device)
            if batch.shape != (x.shape[0],) or batch.is_floating_point():
                raise ValueError(f"batch must be an integer tensor of shape ({x.shape[0]},), got {batch.dtype} {tuple(batch.shape)}")
            batch = batch.long()
            if batch.numel() and int(batch.min()) < 0:
                raise ValueError("batch indices must be >= 0")
            B = int(batch.max()) + 1 if batch.numel() else 0
            count = torch.bincount(batch, minlength=B).to(x.dtype).clamp(min=1)[:, None]

            def seg_mean(t):
                return t.new_zeros(B, t.shape[1]).index_add_(0, batch, t) / count

            mean = seg_mean(s)[batch]
            var = seg_mean((s - mean).square())[batch]
            sqnorm = seg_mean(v.square().sum(-1))[batch]
        s = (s - mean) * (var + self.eps).rsqrt()
        v = v * (sqnorm + self.eps).rsqrt()[..., None]
        return self._merge(s, v)
