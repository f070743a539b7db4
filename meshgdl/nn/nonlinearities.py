"""Gauge-equivariant non-linearities for SO(2) features.

Pointwise non-linearities break gauge equivariance for non-scalar features, so GEM-CNNs use

* :class:`RegularNonlinearity` (the GEM-CNN paper's choice): treat each channel's
  coefficients of frequencies ``0..L`` as a band-limited function on the circle, sample it
  at ``N`` angles, apply the non-linearity pointwise, project back;
* :class:`NormNonlinearity`: act on the norms of the ``rho_n`` blocks, keep their direction;
* :class:`GatedNonlinearity`: scale each ``rho_n`` block by a sigmoid of an extra scalar.

All take ``x: (..., irreps.dim)`` and involve no geometry.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .irreps import Irreps, IrrepsLike, as_irreps

__all__ = ["RegularNonlinearity", "NormNonlinearity", "GatedNonlinearity"]


def _inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv


# Chunks of rows whose (channels * N, rows) sample tensor holds about 2^22 elements (16 MiB):
# it stays in the L3 cache and below glibc's 32 MiB mmap threshold (at 120k vertices the
# whole tensor is ~260 MB per layer, freshly page-faulted on every call), while the chunks
# stay large enough that the per-operation cost (waking the OpenMP threads) is small
# (measured: 2^19 elements per chunk was 1.5x slower). On GPUs one chunk keeps the launch
# count minimal.
_CHUNK_ELEMENTS = 1 << 22


def _chunks(x: torch.Tensor, per_row: int):
    """Row ranges ``(start, stop)`` covering ``x``'s rows in cache-sized pieces."""
    n = x.shape[0]
    step = n if x.device.type != "cpu" else max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [(i, min(i + step, n)) for i in range(0, n, step)] or [(0, 0)]


def _regular_forward(x, act, mats, C):
    """``x (n, dim) -> (n, dim)``: sample, ``act``, project back, chunk by chunk (no autograd).

    Samples are kept transposed, ``(N, rows * C)``: MKL runs ``(17, 5) @ (5, R)`` and
    ``(5, 17) @ (17, R)`` several times faster than ``(R, 5) @ (5, 17)`` and ``(R, 17) @ (17, 5)``
    (measured on this project's CPU). ``mats``: ``(perm_kc, inv_kc, c2s (K, N), c2s^T,
    s2c (N, K), s2c^T)`` with ``samples = coeffs @ c2s`` and ``coeffs = samples @ s2c``.
    """
    perm, inv, c2s, c2s_t, s2c, s2c_t = mats
    K, N = c2s.shape
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for a, b in _chunks(x, C * N):
        h_t = c2s_t @ _to_kr(x[a:b], perm, K, C)  # (N, rows * C) samples
        h_t = h_t.relu_() if act is torch.relu else act(h_t)
        torch.index_select(_from_kr(s2c_t @ h_t, K, C), 1, inv, out=out[a:b])
    return out


def _to_kr(x: torch.Tensor, perm_kc: torch.Tensor, K: int, C: int) -> torch.Tensor:
    """Rows ``(r, dim)`` -> coefficients ``(K, r * C)``, columns ordered (row, channel).

    ``perm_kc`` orders the layout as (coefficient, channel), so the transposition moves runs
    of ``C`` contiguous values (a plain ``(r * C, K)`` transpose moves single values: ~15x
    slower, measured)."""
    r = x.shape[0]
    return x.index_select(1, perm_kc).view(r, K, C).transpose(0, 1).reshape(K, r * C)


def _from_kr(t: torch.Tensor, K: int, C: int) -> torch.Tensor:
    """Inverse of :func:`_to_kr` before its column permutation: ``(K, r * C) -> (r, K * C)``."""
    r = t.shape[1] // C
    return t.view(K, r, C).transpose(0, 1).reshape(r, K * C)


class _RegularFn(torch.autograd.Function):
    """Autograd for :class:`RegularNonlinearity` that keeps only the input for backward.

    The samples ``h = coeffs @ synth`` are recomputed chunk by chunk in backward (a few flops
    per entry) instead of being stored: for ReLU the gradient is
    ``((g @ analysis^T) * [h > 0]) @ synth^T``; other activations are differentiated by
    autograd on the chunk. The backward is written in differentiable torch ops on the saved
    input, so double backward works as well.
    """

    @staticmethod
    def forward(ctx, x, act, mats, C):
        ctx.act, ctx.mats, ctx.C = act, mats, C
        ctx.save_for_backward(x)
        return _regular_forward(x, act, mats, C)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        perm, inv, c2s, c2s_t, s2c, s2c_t = ctx.mats
        act, C = ctx.act, ctx.C
        K, N = c2s.shape
        create_graph = torch.is_grad_enabled()
        parts = []
        gx = None if create_graph else torch.empty_like(x, memory_format=torch.contiguous_format)
        for a, b in _chunks(x, C * N):
            h_t = c2s_t @ _to_kr(x[a:b], perm, K, C)  # (N, rows * C)
            gh_t = s2c @ _to_kr(g[a:b], perm, K, C)  # (N, rows * C)
            if act is torch.relu:
                # ReLU's own backward kernel: ~9x faster than masked_fill_/where on the CPU (measured)
                gh_t = torch.ops.aten.threshold_backward(gh_t, h_t, 0.0)
            else:
                with torch.enable_grad():
                    hh = h_t if create_graph else h_t.detach().requires_grad_()
                    gh_t = torch.autograd.grad(act(hh), hh, gh_t, create_graph=create_graph)[0]
            gc = _from_kr(c2s @ gh_t, K, C)
            if create_graph:
                parts.append(gc.index_select(1, inv))
            else:
                torch.index_select(gc, 1, inv, out=gx[a:b])
        if create_graph:
            gx = parts[0] if len(parts) == 1 else torch.cat(parts)
        return gx, None, None, None


class RegularNonlinearity(nn.Module):
    r"""Pointwise non-linearity on band-limited signals on the circle.

    Each of the ``C`` channels holds the Fourier coefficients of
    ``f(phi) = a_0 + sum_{n=1}^L a_n cos(n phi) + b_n sin(n phi)``, one ``rho_0`` copy ``a_0``
    and one ``rho_n`` copy ``(a_n, b_n)`` per frequency. Applying ``rho(beta)`` to the
    coefficients shifts the signal, ``f -> f(. - beta)``. The layer evaluates ``f`` at
    ``phi_j = 2 pi j / N`` (inverse DFT), applies ``act`` and projects back onto frequencies
    ``<= L`` (DFT). This commutes exactly with gauge rotations by multiples of ``2 pi / N``
    and approximately with all others; the error comes from aliasing of the frequencies
    above ``L`` that ``act`` creates and falls as ``N`` grows (measured in the tests).

    Requirements: ``irreps`` contains exactly the frequencies ``0..L``, each with the same
    total multiplicity ``C`` (terms may be in any order; the ``c``-th copy of each frequency
    belongs to channel ``c``), and ``N >= 2L + 1`` so sampling is invertible.
    """

    def __init__(self, irreps: IrrepsLike, N: int, act: Callable[[torch.Tensor], torch.Tensor] = torch.relu):
        super().__init__()
        self.irreps = as_irreps(irreps)
        if self.irreps.dim == 0:
            raise ValueError("RegularNonlinearity needs non-empty irreps")
        L = self.irreps.max_freq
        counts = [self.irreps.count(f) for f in range(L + 1)]
        if len(set(counts)) != 1:
            raise ValueError(
                f"RegularNonlinearity needs equal multiplicities of frequencies 0..{L}, got "
                + ", ".join(f"{c}x{f}" for f, c in enumerate(counts))
                + f" in {self.irreps}"
            )
        if N < 2 * L + 1:
            raise ValueError(f"need N >= 2L+1 = {2 * L + 1} sample angles for max frequency {L}, got N={N}")
        self.L, self.N, self.channels, self.act = L, int(N), counts[0], act
        # index[c] = positions of [a_0, a_1, b_1, ..., a_L, b_L] of channel c in the layout
        seen = [0] * (L + 1)
        index = torch.empty(self.channels, 2 * L + 1, dtype=torch.long)
        for f, start in self.irreps.copies():
            c = seen[f]
            seen[f] += 1
            if f == 0:
                index[c, 0] = start
            else:
                index[c, 2 * f - 1], index[c, 2 * f] = start, start + 1
        perm = index.flatten()
        self.register_buffer("_perm", perm, persistent=False)
        self.register_buffer("_inv", _inverse_permutation(perm), persistent=False)
        # the same coefficients ordered (coefficient, channel), for the fast path
        perm_kc = index.T.flatten()
        self.register_buffer("_perm_kc", perm_kc, persistent=False)
        self.register_buffer("_inv_kc", _inverse_permutation(perm_kc), persistent=False)
        phi = 2 * math.pi * torch.arange(self.N, dtype=torch.float64) / self.N
        cols = [torch.ones_like(phi)]
        for n in range(1, L + 1):
            cols += [torch.cos(n * phi), torch.sin(n * phi)]
        synth = torch.stack(cols, 1)  # (N, 2L+1): coefficients -> samples
        weights = torch.full((2 * L + 1,), 2.0 / self.N, dtype=torch.float64)
        weights[0] = 1.0 / self.N
        analysis = synth.T * weights[:, None]  # (2L+1, N): exact inverse on band-limited signals
        self.register_buffer("_synth_T", synth.T.contiguous(), persistent=False)
        self.register_buffer("_analysis_T", analysis.T.contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.irreps.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, irreps {self.irreps} need {self.irreps.dim}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.irreps.dim)
        c2s, s2c = self._synth_T.to(x.dtype), self._analysis_T.to(x.dtype)  # (K, N), (N, K)
        mats = (self._perm_kc, self._inv_kc, c2s, c2s.T.contiguous(), s2c, s2c.T.contiguous())
        if not torch.is_grad_enabled():
            out = _regular_forward(x2, self.act, mats, self.channels)
        elif isinstance(self.act, nn.Module) and any(p.requires_grad for p in self.act.parameters()):
            # a learnable activation needs its own gradients: plain autograd on the samples
            coeffs = x2.index_select(-1, self._perm).reshape(-1, self.channels, 2 * self.L + 1)
            out = (self.act(coeffs @ c2s) @ s2c).reshape(-1, self.irreps.dim).index_select(-1, self._inv)
        else:
            out = _RegularFn.apply(x2, self.act, mats, self.channels)
        return out.reshape(*lead, self.irreps.dim)

    def extra_repr(self) -> str:
        return f"{self.irreps}, N={self.N}"


class NormNonlinearity(nn.Module):
    r"""``act`` on scalars; each ``rho_n`` block ``v`` becomes ``v * act(|v|_eps + b) / |v|_eps``.

    ``|v|_eps = sqrt(|v|^2 + eps^2)`` keeps the map continuous with bounded gradients at
    ``v = 0`` (where the output is 0); it is gauge invariant, so the layer is exactly
    equivariant. ``b`` is a learnable bias per ``rho_n`` copy (initialised to 0, so with
    ``act = relu`` the non-scalar part starts as the identity up to ``eps``).
    """

    def __init__(
        self,
        irreps: IrrepsLike,
        act: Callable[[torch.Tensor], torch.Tensor] = torch.relu,
        *,
        bias: bool = True,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.irreps, self.act, self.eps = as_irreps(irreps), act, float(eps)
        copies = self.irreps.copies()
        scal = [s for f, s in copies if f == 0]
        vec = [s for f, s in copies if f != 0]
        self.n_vectors = len(vec)
        idx_v = torch.tensor([[s, s + 1] for s in vec], dtype=torch.long).reshape(-1)
        perm = torch.cat([torch.tensor(scal, dtype=torch.long), idx_v])
        self.register_buffer("_scal", torch.tensor(scal, dtype=torch.long), persistent=False)
        self.register_buffer("_vec", idx_v, persistent=False)
        self.register_buffer("_inv", _inverse_permutation(perm), persistent=False)
        self.bias = nn.Parameter(torch.zeros(self.n_vectors)) if (bias and self.n_vectors) else None

    def reset_parameters(self) -> None:
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.irreps.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, irreps {self.irreps} need {self.irreps.dim}")
        lead = x.shape[:-1]
        s = self.act(x.index_select(-1, self._scal))
        v = x.index_select(-1, self._vec).reshape(*lead, self.n_vectors, 2)
        norm = (v.square().sum(-1) + self.eps**2).sqrt()
        pre = norm if self.bias is None else norm + self.bias.to(x.dtype)
        v = v * (self.act(pre) / norm)[..., None]
        return torch.cat([s, v.reshape(*lead, -1)], -1).index_select(-1, self._inv)

    def extra_repr(self) -> str:
        return f"{self.irreps}, eps={self.eps}"


class GatedNonlinearity(nn.Module):
    r"""Gated non-linearity (Weiler et al. 2018): scalars through ``act``, other copies gated.

    Input layout ``[scalars | gates | gated]`` with types
    ``irreps_in = "{S}x0 + {G}x0 + irreps_gated"``: ``S`` free scalars, then one gate scalar
    per irrep copy of ``irreps_gated`` (``G = irreps_gated.num_irreps``, in layout order),
    then the gated features. Output ``[act(scalars) | gate_act(gate_i) * copy_i]`` with type
    ``irreps_out = "{S}x0 + irreps_gated"``. Exactly equivariant: the gates are invariant.
    """

    def __init__(
        self,
        irreps_scalars: IrrepsLike,
        irreps_gated: IrrepsLike,
        act: Callable[[torch.Tensor], torch.Tensor] = torch.relu,
        gate_act: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
    ):
        super().__init__()
        self.irreps_scalars, self.irreps_gated = as_irreps(irreps_scalars), as_irreps(irreps_gated)
        if any(f != 0 for _, f in self.irreps_scalars):
            raise ValueError(f"irreps_scalars must contain only frequency 0, got {self.irreps_scalars}")
        self.act, self.gate_act = act, gate_act
        self.n_scalars = self.irreps_scalars.dim
        self.n_gates = self.irreps_gated.num_irreps
        self.irreps_in = Irreps([(self.n_scalars, 0), (self.n_gates, 0)]) + self.irreps_gated
        self.irreps_out = Irreps([(self.n_scalars, 0)]) + self.irreps_gated
        reps = torch.tensor([Irreps.irrep_dim(f) for f, _ in self.irreps_gated.copies()], dtype=torch.long)
        self.register_buffer("_gate_index", torch.repeat_interleave(torch.arange(self.n_gates), reps), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.irreps_in.dim:
            raise ValueError(
                f"features have {x.shape[-1]} channels, GatedNonlinearity expects {self.irreps_in.dim} "
                f"([{self.n_scalars} scalars | {self.n_gates} gates | {self.irreps_gated}])"
            )
        s = x[..., : self.n_scalars]
        gates = self.gate_act(x[..., self.n_scalars : self.n_scalars + self.n_gates])
        gated = x[..., self.n_scalars + self.n_gates :] * gates.index_select(-1, self._gate_index)
        return torch.cat([self.act(s), gated], -1)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"
