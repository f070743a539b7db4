r"""Gauge-equivariant kernel bases for SO(2) irreps (GEM-CNN, de Haan et al., ICLR 2021).

A GEM convolution maps a feature of type ``rho_in`` to one of type ``rho_out`` with

* a **neighbour kernel** ``K(theta)``, a ``(d_out, d_in)`` matrix-valued function of the
  log-map angle ``theta`` of the neighbour q in the receiver p's gauge, applied to the
  neighbour's feature after parallel transport into p's gauge; and
* a **self kernel** ``K_self``, a constant ``(d_out, d_in)`` matrix applied to ``f_p``.

Under a gauge rotation by ``g`` at p, ``theta -> theta - g`` and both the transported
input and the output rotate, so the layer is gauge equivariant iff

.. math::

    K(\theta - g) = \rho_{out}(-g)\, K(\theta)\, \rho_{in}(g)
    \qquad\text{and}\qquad
    K_{self} = \rho_{out}(-g)\, K_{self}\, \rho_{in}(g) \quad \forall\, \theta, g.

**Solution.** Setting ``g = theta`` in the neighbour constraint gives
``K(theta) = rho_out(theta) K(0) rho_in(-theta)``, and conversely this satisfies the
constraint for *any* matrix ``K(0)``. So the neighbour kernels form a space of dimension
``d_out * d_in`` (1, 2, 2 or 4), parametrised by ``K(0)``, band-limited to angular
frequencies ``|m - n|`` and ``m + n``. The self kernels are the matrices commuting with the
gauge action: by Schur's lemma (over R) only ``rho_0 -> rho_0`` (1-dim) and
``rho_n -> rho_n`` (2-dim: rotations-and-scalings ``I`` and ``J``) are non-zero.

Notation: ``R(phi) = rho_1(phi) = [[cos phi, -sin phi], [sin phi, cos phi]]``,
``J = R(pi/2) = [[0, -1], [1, 0]]``, ``P = diag(1, -1)`` (a reflection), ``n, m >= 1``.
Our basis takes ``K(0)`` over the standard basis of the matrices (2x2 case: ``I, J, P, JP``),
which gives (``c_k = cos(k theta)``, ``s_k = sin(k theta)``):

=============  =====================================================  =====  ===============  =====
in -> out      neighbour basis ``K_b(theta)``                         count  self basis       count
=============  =====================================================  =====  ===============  =====
rho_0 -> rho_0 ``[1]``                                                1      ``[1]``          1
rho_n -> rho_0 ``[c_n, s_n]``, ``[-s_n, c_n]``                        2      --               0
rho_0 -> rho_m ``[c_m; s_m]``, ``[-s_m; c_m]``                        2      --               0
rho_n -> rho_m ``R((m-n)theta)``, ``R((m-n)theta) J``,                4      ``I``, ``J``     2 if m = n,
               ``R((m+n)theta) P``, ``R((m+n)theta) J P``                                     else 0
=============  =====================================================  =====  ===============  =====

with ``R(phi) J = [[-sin phi, -cos phi], [cos phi, -sin phi]]``,
``R(phi) P = [[cos phi, sin phi], [sin phi, -cos phi]]`` and
``R(phi) J P = [[-sin phi, cos phi], [cos phi, sin phi]]``. For ``m = n`` the first two
are the constant ``I`` and ``J`` (frequency 0), the last two have frequency ``2n``.
For ``m < n`` the frequency ``m - n`` is negative; we store every basis kernel as
``cos(k theta) A + sin(k theta) B`` with ``k >= 0`` (absorbing the sign into ``B``).

The sign conventions follow :mod:`meshgdl.nn.irreps`: ``rho_n(g)`` rotates a 2-vector
counter-clockwise by ``n g``, transported features are ``rho_in(g_{q->p}) f_q`` and a gauge
change by ``alpha`` maps ``f -> rho(-alpha) f``, ``theta_pq -> theta_pq - alpha_p``.

:func:`numerical_kernel_basis` solves the constraints numerically (truncated Fourier
series, random ``(theta, g)`` samples, SVD null space); the tests use it to prove that the
analytic bases above are complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "AngularBasis",
    "neighbour_kernel_basis",
    "self_kernel_basis",
    "evaluate_neighbour_basis",
    "kernel_basis_size",
    "fourier_coefficients",
    "numerical_kernel_basis",
    "constraint_residual",
]

_J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
_I = torch.eye(2, dtype=torch.float64)
_P = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)


def _check_freq(*freqs: int) -> None:
    for f in freqs:
        if int(f) != f or f < 0:
            raise ValueError(f"irrep frequencies must be integers >= 0, got {f!r}")


def _dim(freq: int) -> int:
    return 1 if freq == 0 else 2


@dataclass(frozen=True)
class AngularBasis:
    """A list of kernels ``K_b(theta) = cos(k_b theta) A_b + sin(k_b theta) B_b``.

    freq: ``(B,)`` int64, each ``k_b >= 0`` (``B_b = 0`` where ``k_b = 0``);
    cos, sin: ``(B, d_out, d_in)`` float64 matrices ``A_b`` and ``B_b``.
    """

    freq: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor

    def __len__(self) -> int:
        return int(self.freq.numel())

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)``."""
        return (int(self.cos.shape[1]), int(self.cos.shape[2]))

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """Evaluate every kernel: ``theta (*S,) -> (*S, B, d_out, d_in)`` in theta's dtype."""
        theta = torch.as_tensor(theta)
        if not theta.is_floating_point():
            theta = theta.to(torch.get_default_dtype())
        k = self.freq.to(device=theta.device, dtype=theta.dtype)
        kt = theta[..., None] * k  # (*S, B)
        A = self.cos.to(device=theta.device, dtype=theta.dtype)
        Bm = self.sin.to(device=theta.device, dtype=theta.dtype)
        return torch.cos(kt)[..., None, None] * A + torch.sin(kt)[..., None, None] * Bm


def _rot_times(k: int, M: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``R(k theta) M = cos(|k| theta) M + sign(k) sin(|k| theta) J M`` as (|k|, A, B)."""
    if k == 0:
        return 0, M, torch.zeros_like(M)
    return abs(k), M, math.copysign(1.0, k) * (_J @ M)


def neighbour_kernel_basis(n_in: int, n_out: int) -> AngularBasis:
    """Complete basis of the neighbour-kernel constraint for ``rho_{n_in} -> rho_{n_out}``.

    Returns an :class:`AngularBasis` of 1, 2, 2 or 4 kernels in the order of the table in
    the module docstring.
    """
    _check_freq(n_in, n_out)
    n, m = int(n_in), int(n_out)
    items: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    if n == 0 and m == 0:
        one = torch.ones(1, 1, dtype=torch.float64)
        items.append((0, one, torch.zeros_like(one)))
    elif n == 0:
        for e in _I.unbind(1):  # R(m theta) e_i
            items.append(_rot_times(m, e[:, None]))
    elif m == 0:
        for e in _I.unbind(1):  # (R(n theta) e_i)^T = e_i^T R(-n theta)
            k, A, B = _rot_times(n, e[:, None])
            items.append((k, A.T, B.T))
    else:
        for M in (_I, _J):
            items.append(_rot_times(m - n, M))
        for M in (_P, _J @ _P):
            items.append(_rot_times(m + n, M))
    return AngularBasis(
        freq=torch.tensor([k for k, _, _ in items], dtype=torch.int64),
        cos=torch.stack([A for _, A, _ in items]),
        sin=torch.stack([B for _, _, B in items]),
    )


def self_kernel_basis(n_in: int, n_out: int) -> torch.Tensor:
    """Complete basis of the self-kernel constraint: ``(B, d_out, d_in)`` float64, B in {0, 1, 2}."""
    _check_freq(n_in, n_out)
    n, m = int(n_in), int(n_out)
    if n != m:
        return torch.zeros(0, _dim(m), _dim(n), dtype=torch.float64)
    if n == 0:
        return torch.ones(1, 1, 1, dtype=torch.float64)
    return torch.stack([_I, _J])


def evaluate_neighbour_basis(n_in: int, n_out: int, theta: torch.Tensor) -> torch.Tensor:
    """All neighbour basis kernels at the given angles: ``(E,) -> (E, B, d_out, d_in)``."""
    return neighbour_kernel_basis(n_in, n_out)(theta)


def kernel_basis_size(n_in: int, n_out: int, kind: str = "neighbour") -> int:
    """Number of basis kernels (``kind`` = ``"neighbour"`` or ``"self"``)."""
    if kind == "neighbour":
        _check_freq(n_in, n_out)
        return _dim(n_in) * _dim(n_out)
    if kind == "self":
        return int(self_kernel_basis(n_in, n_out).shape[0])
    raise ValueError(f"kind must be 'neighbour' or 'self', got {kind!r}")


# -- verification utilities ----------------------------------------------------------------

def _fourier_features(theta: torch.Tensor, max_freq: int) -> torch.Tensor:
    """``(S,) -> (S, 2L+1)``: ``[1, cos t, sin t, cos 2t, sin 2t, ...]``."""
    cols = [torch.ones_like(theta)]
    for k in range(1, max_freq + 1):
        cols += [torch.cos(k * theta), torch.sin(k * theta)]
    return torch.stack(cols, -1)


def fourier_coefficients(basis: AngularBasis, max_freq: int) -> torch.Tensor:
    """Coefficients of each kernel on ``[1, cos t, sin t, ..., cos Lt, sin Lt]``: ``(B, 2L+1, d_out, d_in)``."""
    B = len(basis)
    out = torch.zeros(B, 2 * max_freq + 1, *basis.shape, dtype=torch.float64)
    for b in range(B):
        k = int(basis.freq[b])
        if k > max_freq:
            raise ValueError(f"basis kernel {b} has frequency {k} > max_freq={max_freq}")
        if k == 0:
            out[b, 0] = basis.cos[b]
        else:
            out[b, 2 * k - 1] = basis.cos[b]
            out[b, 2 * k] = basis.sin[b]
    return out


def _rho(freq: int, angle: torch.Tensor) -> torch.Tensor:
    if freq == 0:
        return torch.ones(*angle.shape, 1, 1, dtype=angle.dtype)
    c, s = torch.cos(freq * angle), torch.sin(freq * angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def constraint_residual(
    kernel: torch.Tensor, n_in: int, n_out: int, theta: torch.Tensor, g: torch.Tensor, kernel_shifted: torch.Tensor
) -> torch.Tensor:
    """``K(theta - g) - rho_out(-g) K(theta) rho_in(g)`` given ``K(theta)`` and ``K(theta - g)``.

    kernel, kernel_shifted: ``(S, ..., d_out, d_in)``; theta, g: ``(S,)``. Pass a constant
    kernel twice to check the self-kernel constraint.
    """
    extra = kernel.dim() - 3
    ro = _rho(n_out, -g).reshape(g.shape[0], *([1] * extra), _dim(n_out), _dim(n_out))
    ri = _rho(n_in, g).reshape(g.shape[0], *([1] * extra), _dim(n_in), _dim(n_in))
    return kernel_shifted - ro @ kernel @ ri


def numerical_kernel_basis(
    n_in: int,
    n_out: int,
    kind: str = "neighbour",
    *,
    max_freq: int | None = None,
    num_samples: int = 64,
    seed: int = 0,
    rtol: float = 1e-9,
) -> torch.Tensor:
    """Solve the kernel constraint numerically (verification utility, float64).

    Neighbour kernels are expanded in a Fourier series up to ``max_freq`` (default
    ``n_in + n_out + 2``, beyond the band limit so spurious higher-frequency solutions
    would show up); the constraint is imposed at ``num_samples`` random ``(theta, g)`` and
    the null space of the stacked linear system is read off the SVD (singular values below
    ``rtol`` times the largest).

    Returns an orthonormal null-space basis: ``(B, 2L+1, d_out, d_in)`` Fourier
    coefficients (ordering as :func:`fourier_coefficients`) for ``kind="neighbour"``, or
    ``(B, d_out, d_in)`` matrices for ``kind="self"``.
    """
    _check_freq(n_in, n_out)
    do, di = _dim(n_out), _dim(n_in)
    gen = torch.Generator().manual_seed(seed)
    theta = torch.rand(num_samples, generator=gen, dtype=torch.float64) * 2 * math.pi
    g = torch.rand(num_samples, generator=gen, dtype=torch.float64) * 2 * math.pi
    ro = _rho(n_out, -g)  # (S, do, do)
    ri = _rho(n_in, g)  # (S, di, di)
    # vec(ro K ri) = (ro kron ri^T) vec(K) for row-major vec
    action = torch.einsum("sab,sdc->sacbd", ro, ri).reshape(num_samples, do * di, do * di)
    if kind == "self":
        system = (action - torch.eye(do * di, dtype=torch.float64)).reshape(-1, do * di)
        shape: tuple[int, ...] = (do, di)
    elif kind == "neighbour":
        L = n_in + n_out + 2 if max_freq is None else int(max_freq)
        phi_shift = _fourier_features(theta - g, L)  # (S, F)
        phi = _fourier_features(theta, L)
        # K(theta) = sum_f phi_f(theta) C_f with C_f (do*di) free: unknown vector (F, do*di)
        eye = torch.eye(do * di, dtype=torch.float64)
        lhs = torch.einsum("sf,ij->sifj", phi_shift, eye)
        rhs = torch.einsum("sf,sij->sifj", phi, action)
        system = (lhs - rhs).reshape(num_samples * do * di, -1)
        shape = (2 * L + 1, do, di)
    else:
        raise ValueError(f"kind must be 'neighbour' or 'self', got {kind!r}")
    _, S, Vh = torch.linalg.svd(system, full_matrices=True)
    smax = S.max() if S.numel() else torch.tensor(1.0, dtype=torch.float64)
    rank = int((S > rtol * smax).sum())
    return Vh[rank:].reshape(-1, *shape)
