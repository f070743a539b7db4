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
        coeffs = x.index_select(-1, self._perm).reshape(*lead, self.channels, 2 * self.L + 1)
        samples = self.act(coeffs @ self._synth_T.to(x.dtype))  # (..., C, N)
        out = (samples @ self._analysis_T.to(x.dtype)).reshape(*lead, self.irreps.dim)
        return out.index_select(-1, self._inv)

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
