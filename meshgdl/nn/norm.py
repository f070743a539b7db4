"""Gauge-equivariant normalisation layers for SO(2) features.

Scalars (``rho_0``) are normalised as usual (mean and variance). A ``rho_n`` copy ``v`` has
no gauge-invariant mean, so it is only rescaled: ``v / sqrt(mean |v|^2 + eps)``, the mean
of the squared norm (a gauge invariant) taken over the vertices that share the statistics,
then multiplied by a learnable per-copy scale (no bias, which would not be equivariant).
Both layers are therefore exactly gauge equivariant.

Input ``x: (N, irreps.dim)`` (any leading shape for batch norm: all leading dims are the
batch).

Computation (instance norm): everything happens in the feature layout itself, with
per-channel statistics: the mean is taken over all channels and masked to the scalar ones,
the mean square of every channel is summed over the components of its irrep copy, and the
output is one fused ``x_centred * scale + shift`` with per-channel ``scale``/``shift``. So a
layer is a handful of passes over ``x`` (forward and backward) instead of splitting into
scalar and vector tensors and merging them back. Per-mesh statistics of a batch use a
small ``(B, N)`` averaging matrix (a matmul, parallel on every device) instead of
scatter/gather by mesh index.
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
        # channel -> copy index, copies numbered as the parameters: scalars in layout order,
        # then the rho_n copies in layout order
        copy_of = torch.empty(self.irreps.dim, dtype=torch.long)
        copy_of[perm] = torch.cat([torch.arange(self.n_scalars), torch.arange(self.n_vectors).repeat_interleave(2)
                                   + self.n_scalars])
        smask = torch.zeros(self.irreps.dim)
        smask[torch.tensor(scal, dtype=torch.long)] = 1.0
        self.register_buffer("_copy_of", copy_of, persistent=False)
        self.register_buffer("_smask", smask, persistent=False)
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

    def _channel_affine(self, dtype):
        """Per-channel ``(scale, shift)`` of the affine part, ``(dim,)`` each, or ``(None, None)``."""
        if not self.affine:
            return None, None
        w = torch.cat([self.weight, self.vector_weight]).to(dtype).index_select(0, self._copy_of)
        b = torch.cat([self.bias, self.bias.new_zeros(self.n_vectors)]).to(dtype).index_select(0, self._copy_of)
        return w, b

    def _copy_sum(self, q: torch.Tensor) -> torch.Tensor:
        """Per-channel values ``(..., dim)`` -> the sum over each channel's irrep copy, per channel."""
        n = self.n_scalars + self.n_vectors
        per_copy = q.new_zeros(*q.shape[:-1], n).index_add_(-1, self._copy_of, q)
        return per_copy.index_select(-1, self._copy_of)

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
        if x.shape[-1] != self.irreps.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, irreps {self.irreps} need {self.irreps.dim}")
        smask = self._smask.to(x.dtype)
        w, b = self._channel_affine(x.dtype)
        avg = None if batch is None else _mesh_averaging(batch, x)
        if avg is None:  # one mesh: plain reductions over the vertices
            xc = x - x.mean(0) * smask
            scale = (self._copy_sum(xc.square().mean(0)) + self.eps).rsqrt()
            if w is None:
                return xc * scale
            return torch.addcmul(b, xc, scale * w)
        # several meshes: avg (B, N) averages over each mesh, member (N, B) spreads back
        avg, member = avg
        xc = x - member @ ((avg @ x) * smask)
        scale = (self._copy_sum(avg @ xc.square()) + self.eps).rsqrt()  # (B, dim)
        if w is None:
            return xc * (member @ scale)
        return torch.addcmul(b, xc, member @ (scale * w))


_AVG_CACHE: dict = {}


def _mesh_averaging(batch: torch.Tensor, x: torch.Tensor):
    """``(avg (B, N), member (N, B))`` for a mesh index ``batch (N,)``, or None for one mesh.

    ``avg @ t`` is the per-mesh mean of ``t (N, C)`` and ``member @ s`` copies per-mesh rows
    ``s (B, C)`` back to the vertices. Both are dense (B x N, small next to the features).
    Cached per batch tensor (identity and version, as the GEM geometry cache): every norm
    layer of a step sees the same one.
    """
    batch = torch.as_tensor(batch, device=x.device)
    if batch.shape != (x.shape[0],) or batch.is_floating_point() or batch.is_complex():
        raise ValueError(f"batch must be an integer tensor of shape ({x.shape[0]},), got {batch.dtype} {tuple(batch.shape)}")
    try:
        version = batch._version
    except RuntimeError:  # inference tensors carry no version counter
        version = None
    key = (id(batch), x.dtype, x.device)
    hit = _AVG_CACHE.get(key)
    if hit is not None and hit[0] is batch and hit[1] == version and version is not None:
        return hit[2]
    batch_l = batch.long()
    if batch_l.numel() and int(batch_l.min()) < 0:
        raise ValueError("batch indices must be >= 0")
    B = int(batch_l.max()) + 1 if batch_l.numel() else 0
    if B <= 1:
        out = None
    else:
        member = (batch_l[:, None] == torch.arange(B, device=x.device)).to(x.dtype)  # (N, B)
        count = member.sum(0).clamp(min=1)
        out = ((member / count).T.contiguous(), member)
    if version is not None:
        _AVG_CACHE[key] = (batch, version, out)
        while len(_AVG_CACHE) > 8:
            _AVG_CACHE.pop(next(iter(_AVG_CACHE)))
    return out
