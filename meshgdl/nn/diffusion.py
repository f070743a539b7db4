"""DiffusionNet (Sharp, Attaiki, Crane, Ovsjanikov, ACM TOG 2022) as a baseline.

A :class:`DiffusionBlock` maps ``C`` channels per vertex to ``C`` channels:

1. **Learned diffusion** (one time ``t_c >= 0`` per channel) through the truncated
   spectral basis of ``L phi = lambda M phi``:
   ``x_c -> Phi exp(-lambda t_c) Phi^T M x_c`` (:func:`spectral_diffusion`), done
   per mesh of a batch. ``t = 0`` is the projection onto the basis (the identity for
   a complete basis); ``t -> inf`` is the area-weighted mean on each connected mesh.
2. **Spatial gradient features**: the gradient of every diffused channel in the
   vertex's gauge, read as a complex number ``z_c = (G_x x)_c + i (G_y x)_c``. A
   learned complex-linear map across channels, ``w = A z`` (``A = A_re + i A_im``,
   C x C), can rotate and mix gradients; the feature is
   ``tanh(Re(conj(z_c) w_c))``, an inner product of two tangent vectors. A gauge
   rotation by alpha multiplies every ``z_c`` -- and therefore ``w_c``, since ``A``
   is complex-linear -- by ``exp(-i alpha)``, so the feature is gauge-invariant
   (and invariant to rigid motions: the gradient is intrinsic). With
   ``with_gradient_rotations=False``, ``A`` is real (no rotation, as in the paper's
   ablation).
3. A per-vertex MLP on ``[x, diffused x, gradient features]`` (3C -> C), added to
   ``x`` (residual).

No geometry is recomputed: everything comes from a :class:`TorchOperators` bundle
(``evecs``, ``evals``, ``mass``, ``grad_x``, ``grad_y``, ``ptr``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def spectral_diffusion(
    x: torch.Tensor,
    evecs: torch.Tensor,
    evals: torch.Tensor,
    mass: torch.Tensor,
    t: torch.Tensor,
    ptr: torch.Tensor | None = None,
) -> torch.Tensor:
    """Heat diffusion of each channel for its own time, per mesh.

    x: (N, C); evecs: (N, k) M-orthonormal per mesh; evals: (k,) or (B, k);
    mass: (N,) lumped vertex areas; t: (C,) non-negative times (length^2 units);
    ptr: (B + 1,) vertex offsets of the meshes (None: one mesh). Returns (N, C).
    """
    if t.ndim != 1 or t.shape[0] != x.shape[1]:
        raise ValueError(f"need one diffusion time per channel ({x.shape[1]}), got shape {tuple(t.shape)}")
    evals = evals.reshape(1, -1) if evals.ndim == 1 else evals
    if ptr is None:
        ptr = torch.tensor([0, x.shape[0]], device=x.device)
    bounds = ptr.tolist()
    if len(bounds) - 1 != evals.shape[0]:
        raise ValueError(f"{len(bounds) - 1} meshes but {evals.shape[0]} rows of eigenvalues")
    outs = []
    for b in range(len(bounds) - 1):
        s, e = bounds[b], bounds[b + 1]
        phi = evecs[s:e]
        coef = phi.transpose(0, 1) @ (mass[s:e, None] * x[s:e])  # (k, C)
        coef = coef * torch.exp(-evals[b, :, None].clamp_min(0) * t[None, :])
        outs.append(phi @ coef)
    return torch.cat(outs, dim=0)


def _sparse_mm(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(A, x) if A.is_sparse else A @ x


class MLP(nn.Sequential):
    """Linear -> ReLU (-> Dropout) ... -> Linear; the last layer has no activation."""

    def __init__(self, sizes: Sequence[int], dropout: float = 0.0):
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            last = i == len(sizes) - 2
            if dropout > 0 and i > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if not last:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class LearnedTimeDiffusion(nn.Module):
    """Per-channel spectral diffusion with learned times ``t = |diffusion_time|``.

    Times are initialised log-uniformly over ``init_range`` (length^2 units; for
    meshes normalised to about unit area the defaults span from a vertex ring to
    the whole surface), so different channels start at different scales.
    """

    def __init__(self, C: int, init_range: tuple[float, float] = (1e-4, 1e-1)):
        super().__init__()
        self.C = C
        self.init_range = init_range
        self.diffusion_time = nn.Parameter(torch.empty(C))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        lo, hi = self.init_range
        with torch.no_grad():
            if self.C == 1:
                self.diffusion_time.fill_(math.sqrt(lo * hi))
            else:
                self.diffusion_time.copy_(torch.logspace(math.log10(lo), math.log10(hi), self.C))

    def forward(self, x: torch.Tensor, ops) -> torch.Tensor:
        t = self.diffusion_time.abs().to(x.dtype)
        return spectral_diffusion(x, ops.evecs, ops.evals, ops.mass, t, ops.ptr)


class SpatialGradientFeatures(nn.Module):
    """Gauge-invariant features ``tanh(Re(conj(z) * (A z)))`` of per-channel gradients.

    forward(gx (N, C), gy (N, C)) -> (N, C), where ``gx + i gy`` is each channel's
    gradient in the vertex gauge.
    """

    def __init__(self, C: int, with_gradient_rotations: bool = True):
        super().__init__()
        self.C = C
        self.with_gradient_rotations = with_gradient_rotations
        self.A_re = nn.Linear(C, C, bias=False)
        self.A_im = nn.Linear(C, C, bias=False) if with_gradient_rotations else None

    def reset_parameters(self) -> None:
        self.A_re.reset_parameters()
        if self.A_im is not None:
            self.A_im.reset_parameters()

    def forward(self, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        if self.A_im is None:
            wx, wy = self.A_re(gx), self.A_re(gy)
        else:
            wx = self.A_re(gx) - self.A_im(gy)
            wy = self.A_re(gy) + self.A_im(gx)
        return torch.tanh(gx * wx + gy * wy)


class DiffusionBlock(nn.Module):
    """One DiffusionNet block, ``C -> C`` channels (see the module docstring).

    forward(x (N, C), ops: TorchOperators) -> (N, C).
    """

    def __init__(
        self,
        C: int,
        mlp_hidden: Sequence[int] | None = None,
        *,
        dropout: float = 0.0,
        with_gradient_features: bool = True,
        with_gradient_rotations: bool = True,
        diffusion_init: tuple[float, float] = (1e-4, 1e-1),
    ):
        super().__init__()
        self.C = C
        mlp_hidden = list(mlp_hidden) if mlp_hidden is not None else [C, C]
        self.diffusion = LearnedTimeDiffusion(C, diffusion_init)
        self.gradient_features = (
            SpatialGradientFeatures(C, with_gradient_rotations) if with_gradient_features else None
        )
        n_in = 3 * C if with_gradient_features else 2 * C
        self.mlp = MLP([n_in, *mlp_hidden, C], dropout=dropout)

    def forward(self, x: torch.Tensor, ops) -> torch.Tensor:
        if x.shape[-1] != self.C:
            raise ValueError(f"DiffusionBlock expects {self.C} channels, got {x.shape[-1]}")
        xd = self.diffusion(x, ops)
        parts = [x, xd]
        if self.gradient_features is not None:
            gx = _sparse_mm(ops.grad_x, xd)
            gy = _sparse_mm(ops.grad_y, xd)
            parts.append(self.gradient_features(gx, gy))
        return x + self.mlp(torch.cat(parts, dim=-1))


class DiffusionNet(nn.Module):
    """Linear(C_in -> width), ``n_blocks`` :class:`DiffusionBlock`, Linear(width -> C_out).

    forward(x (N, C_in), ops: TorchOperators) -> (N, C_out). Per-vertex output; pool
    with :func:`meshgdl.nn.pooling.global_pool` for per-mesh predictions.
    ``forward(..., return_hidden=True)`` also returns the list of hidden states
    (after the input layer and after each block), used for feature visualisation.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        width: int = 128,
        n_blocks: int = 4,
        *,
        mlp_hidden: Sequence[int] | None = None,
        dropout: float = 0.0,
        with_gradient_features: bool = True,
        with_gradient_rotations: bool = True,
        diffusion_init: tuple[float, float] = (1e-4, 1e-1),
    ):
        super().__init__()
        if min(C_in, C_out, width, n_blocks) < 1:
            raise ValueError("C_in, C_out, width and n_blocks must be positive")
        self.first = nn.Linear(C_in, width)
        self.blocks = nn.ModuleList(
            DiffusionBlock(
                width,
                mlp_hidden,
                dropout=dropout,
                with_gradient_features=with_gradient_features,
                with_gradient_rotations=with_gradient_rotations,
                diffusion_init=diffusion_init,
            )
            for _ in range(n_blocks)
        )
        self.last = nn.Linear(width, C_out)

    def forward(self, x: torch.Tensor, ops, return_hidden: bool = False):
        h = self.first(x)
        hidden = [h]
        for blk in self.blocks:
            h = blk(h, ops)
            hidden.append(h)
        out = self.last(h)
        return (out, hidden) if return_hidden else out
