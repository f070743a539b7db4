r"""Gauge-equivariant mesh convolution (GEM-CNN, de Haan, Weiler, Cohen & Welling, ICLR 2021).

.. math::

    (K \star f)_p \;=\; K_{self}\, f_p \;+\; c_p \sum_{q \in \mathcal N(p)}
        K_{neigh}(\theta_{pq}, r_{pq})\; \rho_{in}(g_{q\to p})\, f_q

* ``f_p``: input features in p's gauge, type ``irreps_in``; output type ``irreps_out``.
* ``theta_pq``: log-map angle of q in p's gauge; ``r_pq``: its radius (edge length);
  ``g_{q->p}``: the parallel-transport angle, so ``rho_in(g) f_q`` is ``f_q`` expressed in
  p's gauge.
* ``K_neigh(theta, r) = sum_b sum_j w_bj phi_j(r) K_b(theta)`` and ``K_self = sum_b w_b S_b``
  with one learnable weight per basis kernel (see :mod:`meshgdl.nn.kernels`), per
  input/output channel pair and per radial function ``phi_j`` (if ``radial > 0``).
* ``c_p`` normalises the neighbour sum by the receiver's in-degree ``deg_p``:
  ``1/deg_p`` (``aggr="mean"``, default: resolution independent, approximates an average
  over the one-ring), ``1/sqrt(deg_p)`` (``"sqrt"``) or 1 (``"sum"``).

The layer is exactly gauge equivariant: with per-vertex gauge rotations ``alpha``
(``theta_pq -> theta_pq - alpha_p``, ``g_{q->p} -> g_{q->p} + alpha_q - alpha_p``,
``f_p -> rho_in(-alpha_p) f_p``) the output becomes ``rho_out(-alpha_p) out_p``.

**Computation.** Writing a ``rho_n`` feature as a complex number ``f = u + i v``, every
basis kernel applied to a transported neighbour is a constant times ``e^{i psi} f`` or its
conjugate, with a phase ``psi = k theta + n g`` (``k = m - n`` or ``-(m + n)``); for
``n = 0`` it is ``e^{i m theta} f``. The layer therefore

1. gathers the neighbours' features of each input frequency into a padded per-vertex
   table ("sliced ELL": rows of ``D`` slots, ``D`` chosen from the degree histogram;
   vertices of higher degree get extra rows that are summed back);
2. forms the neighbour sums ``z = c_p sum_q phi_j(r_pq) e^{i psi_pq} f_q`` of all phases the
   output frequencies need with one batched matmul per input frequency, against a
   precomputed coefficient table that folds in transport, angle, radial profile and
   ``c_p`` (real form: a 2x2 rotation block per slot and phase);
3. per output frequency ``m``, accumulates dense GEMMs of ``f_p`` (self term, ``n = m``)
   and the ``z`` blocks for ``m`` with weights gathered from the parameters (every entry
   is +-1 times one parameter: no structurally zero weights are multiplied).

Steps 1-3 run over blocks of receiver rows (on the CPU; one block on other devices) with
a hand-written backward that recomputes a block's ``z`` instead of storing it and adds the
neighbours' gradients back with a parallel gather-sum over a reverse (by-source) layout,
so no intermediate larger than a few MiB is allocated per layer (see "fast path" below
for the measurements behind this). The same function in plain autograd ops,
:meth:`GEMConv._forward_autograd`, serves double backward and the tests.

Everything that depends only on geometry (the layout, ``cos``/``sin`` of the angles, the
radial functions, the normalisation) lives in a :class:`GEMGeometry`, built once per
``(edge_index, theta, transport, r)`` and cached (keyed by tensor identity and version)
so every layer and every forward pass on the same mesh batch reuses it (at most 8 entries;
:func:`clear_geometry_cache` drops them). Tensors created under ``torch.inference_mode``
have no version counter and are not cached: build the geometry once with
:meth:`GEMConv.precompute` and pass it instead of ``edge_index``. Geometry inputs are
constants: no gradient flows into ``theta``, ``transport`` or ``r``.

Initialisation: the radial functions are normalised to ``sum_j phi_j(r)^2 = 1`` and the
weights are drawn so that, for independent unit-variance inputs and ``aggr="sqrt"``, the
self part and the neighbour part each contribute variance 1/2 to every output component
(measured: 0.97-1.04). With the default ``aggr="mean"`` the neighbour part shrinks by the
degree for independent inputs (measured total ~0.6); for spatially smooth inputs the
isotropic neighbour terms keep their scale and the anisotropic ones nearly cancel, so
stack GEM layers with the equivariant normalisations of :mod:`meshgdl.nn.norm`.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from typing import Optional

import torch
from torch import nn

from .irreps import Irreps, IrrepsLike, as_irreps
from .kernels import kernel_basis_size, neighbour_kernel_basis, self_kernel_basis

__all__ = ["GEMConv", "GEMGeometry", "radial_basis", "clear_geometry_cache"]

_AGGR = ("mean", "sqrt", "sum")


def radial_basis(r: torch.Tensor, num: int, cutoff: float) -> torch.Tensor:
    """Gaussian radial functions, L2-normalised per edge: ``r (E,) -> (E, num)``.

    Centres ``linspace(0, cutoff, num)``, width ``cutoff / (num - 1)``; each row satisfies
    ``sum_j phi_j(r)^2 = 1`` (computed stably, so radii beyond ``cutoff`` fall on the last
    function instead of underflowing). ``num = 1`` gives the constant 1.
    """
    if num < 1:
        raise ValueError(f"number of radial functions must be >= 1, got {num}")
    if num == 1:
        return torch.ones(*r.shape, 1, dtype=r.dtype, device=r.device)
    if not cutoff > 0:
        raise ValueError(f"radial_cutoff must be > 0, got {cutoff}")
    centres = torch.linspace(0.0, float(cutoff), num, dtype=r.dtype, device=r.device)
    width = float(cutoff) / (num - 1)
    logits = -0.5 * ((r[..., None] - centres) / width) ** 2
    logits = logits - logits.amax(-1, keepdim=True)
    e = torch.exp(logits)
    return e / e.square().sum(-1, keepdim=True).sqrt()


def _choose_width(deg: torch.Tensor, max_width: int = 64) -> int:
    """Row width ``D`` minimising padded slots plus a per-row overhead (``rows * (D + 1)``)."""
    if deg.numel() == 0 or int(deg.max()) == 0:
        return 1
    counts = torch.bincount(deg.clamp(min=1)).double()  # counts[d] = vertices of degree d
    ds = torch.arange(counts.numel(), dtype=torch.float64)
    widths = torch.arange(1, min(int(deg.max()), max_width) + 1, dtype=torch.float64)
    rows = (counts * torch.ceil(ds / widths[:, None])).sum(1)
    cost = rows * (widths + 1)
    # ties go to the widest row (fewer rows)
    best = int(torch.nonzero(cost == cost.min()).max())
    return int(widths[best])


class GEMGeometry:
    """Per-batch geometry for :class:`GEMConv`: padded neighbour layout plus memoised tables.

    edge_index: ``(2, E)`` int64, row 0 source q, row 1 receiver p (batched graphs
    concatenated with offset indices); theta, transport: ``(E,)`` radians; r: ``(E,)``
    or None; num_nodes: N.

    Layout ("sliced ELL"): every receiver owns a row of ``D`` neighbour slots; a vertex of
    degree above ``D`` gets extra rows (``extra_owner``) whose results are summed back.
    ``nbr`` holds the source vertex of each slot (padding slots point at vertex 0 and get
    zero coefficients). Tables derived from the angles are built on first use by the
    layers (keyed by what they depend on, dtype and device) and kept in :meth:`memo`.
    """

    def __init__(
        self,
        edge_index: torch.Tensor,
        theta: torch.Tensor,
        transport: torch.Tensor,
        r: Optional[torch.Tensor] = None,
        num_nodes: Optional[int] = None,
    ):
        edge_index = torch.as_tensor(edge_index)
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
            raise ValueError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
        E = edge_index.shape[1]
        edge_index = edge_index.long()
        if num_nodes is None:
            num_nodes = int(edge_index.max()) + 1 if E else 0
        N = int(num_nodes)
        if E and (int(edge_index.min()) < 0 or int(edge_index.max()) >= N):
            raise ValueError(f"edge_index refers to vertices outside [0, {N})")
        if E and bool((edge_index[0] == edge_index[1]).any()):
            raise ValueError("edge_index contains self-loops; the self interaction is built into GEMConv")
        self.theta_in, self.transport_in, self.r_in = (
            self._edge_values(theta, E, "theta"),
            self._edge_values(transport, E, "transport"),
            None if r is None else self._edge_values(r, E, "r"),
        )
        if self.r_in is not None and bool((self.r_in < 0).any()):
            raise ValueError("edge lengths r must be >= 0")
        self.num_nodes, self.num_edges = N, E
        self.device = edge_index.device
        src, dst = edge_index[0], edge_index[1]
        order = torch.argsort(dst, stable=True)
        src, dst = src[order], dst[order]
        deg = torch.bincount(dst, minlength=N)
        ptr = torch.zeros(N + 1, dtype=torch.long, device=self.device)
        ptr[1:] = torch.cumsum(deg, 0)
        pos = torch.arange(E, device=self.device) - ptr[dst]
        D = _choose_width(deg.cpu())
        extra = (torch.div(deg + D - 1, D, rounding_mode="floor") - 1).clamp(min=0)
        extra_start = torch.cumsum(extra, 0) - extra
        chunk = torch.div(pos, D, rounding_mode="floor")
        row = torch.where(chunk == 0, dst, N + extra_start[dst] + chunk - 1)
        slot = row * D + pos % D
        n_rows = N + int(extra.sum())
        self.width, self.num_rows = D, n_rows
        self.extra_owner = torch.repeat_interleave(torch.arange(N, device=self.device), extra)
        valid = torch.zeros(n_rows * D, dtype=torch.bool, device=self.device)
        valid[slot] = True
        nbr = torch.zeros(n_rows * D, dtype=torch.long, device=self.device)
        nbr[slot] = src
        self.nbr, self.valid = nbr, valid  # (n_rows * D,)
        self._slot, self._order = slot, order
        self.deg = deg
        row_vertex = torch.cat([torch.arange(N, device=self.device), self.extra_owner])
        self._slot_deg = deg[row_vertex].repeat_interleave(D)  # degree of each slot's receiver
        self._memo: dict = {}

    @staticmethod
    def _edge_values(t, E: int, name: str) -> torch.Tensor:
        t = torch.as_tensor(t)
        if t.shape != (E,):
            raise ValueError(f"{name} must have shape ({E},) (one value per edge), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        t = t.detach()
        if E and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        return t

    def padded(self, values: torch.Tensor) -> torch.Tensor:
        """Per-edge values -> per-slot ``(n_rows * D,)`` with zeros in padding slots."""
        out = values.new_zeros(self.num_rows * self.width)
        out[self._slot] = values[self._order]
        return out

    def slot_theta(self) -> torch.Tensor:
        return self.memo(("theta",), lambda: self.padded(self.theta_in))

    def slot_transport(self) -> torch.Tensor:
        return self.memo(("transport",), lambda: self.padded(self.transport_in))

    def slot_r(self) -> torch.Tensor:
        if self.r_in is None:
            raise ValueError("this layer uses radial basis functions: pass the edge lengths r")
        return self.memo(("r",), lambda: self.padded(self.r_in))

    def slot_scale(self, aggr: str) -> torch.Tensor:
        """Neighbour normalisation ``c_p`` per slot (0 in padding slots)."""

        def build():
            deg = self._slot_deg.to(self.theta_in.dtype).clamp(min=1)
            scale = {"mean": 1.0 / deg, "sqrt": deg.rsqrt(), "sum": torch.ones_like(deg)}[aggr]
            return scale * self.valid.to(scale.dtype)

        return self.memo(("scale", aggr), build)

    def memo(self, key, build):
        """Return ``self._memo[key]``, building it with ``build()`` on first use."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Neighbour features per slot: ``(N, C) -> (n_rows, D, C)`` (padding slots hold x[0])."""
        return torch.index_select(x, 0, self.nbr).view(self.num_rows, self.width, x.shape[1])

    def combine_rows(self, z: torch.Tensor) -> torch.Tensor:
        """Sum the extra rows of high-degree vertices into their owners: ``(n_rows, K) -> (N, K)``."""
        if self.num_rows == self.num_nodes:
            return z
        return z[: self.num_nodes].index_add(0, self.extra_owner, z[self.num_nodes :])


_CACHE: "OrderedDict[tuple, tuple[tuple, GEMGeometry]]" = OrderedDict()
_CACHE_SIZE = 8


def _version(t):
    try:
        return t._version
    except RuntimeError:  # inference tensors carry no version counter
        return None


def clear_geometry_cache() -> None:
    """Drop every cached :class:`GEMGeometry` (they hold references to geometry tensors)."""
    _CACHE.clear()


def _cached_geometry(edge_index, theta, transport, r, num_nodes) -> GEMGeometry:
    tensors = (edge_index, theta, transport, r)
    versions = tuple(None if t is None else _version(t) for t in tensors)
    key = tuple(id(t) for t in tensors) + (num_nodes,)
    hit = _CACHE.get(key)
    # identity alone is not enough (ids are recycled): the entry keeps the tensors alive,
    # and a changed version counter means someone wrote into them in place
    if (
        hit is not None
        and all(a is b for a, b in zip(hit[0][0], tensors))
        and hit[0][1] == versions
        and None not in versions[:3]
    ):
        _CACHE.move_to_end(key)
        return hit[1]
    geom = GEMGeometry(edge_index, theta, transport, r, num_nodes)
    if None not in versions[:3]:
        _CACHE[key] = ((tensors, versions), geom)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return geom


def _cos_sin(psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos psi, sin psi)``: the phases ``k theta + s g`` recur across frequency pairs and
    layers of one geometry, so tables memoise them per ``(k, s)``."""
    return torch.cos(psi), torch.sin(psi)


def _items(n: int, m: int) -> list[tuple[int, int, bool]]:
    """Complex neighbour sums needed for ``rho_n -> rho_m``: ``(k, s, conj)`` with phase
    ``psi = k theta + s n g`` (module docstring, "Computation")."""
    if n == 0:
        return [(m, 0, False)]
    if m == 0:
        return [(-n, 1, False)]
    return [(m - n, 1, False), (-(m + n), 1, True)]


def _item_rows(n: int, items, theta: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-slot real rows of the items: ``(S,) -> (S, rows, d_n)``.

    For ``n = 0`` an item ``e^{i k theta} f`` gives rows ``[cos]``, ``[sin]`` (only ``[1]`` if
    ``k = 0``); for ``n >= 1`` it is the complex product ``e^{i psi} (u + i v)`` as rows
    ``[cos psi, -sin psi]``, ``[sin psi, cos psi]``, the second negated when conjugated.
    """
    rows = []
    for k, sgn, conj in items:
        psi = k * theta + (sgn * n) * g
        c, s = torch.cos(psi), torch.sin(psi)
        if n == 0:
            rows.append(c[:, None])
            if k != 0:
                rows.append(s[:, None])
        else:
            rows.append(torch.stack([c, -s], -1))
            rows.append(torch.stack([s, c], -1) * (-1.0 if conj else 1.0))
    return torch.stack(rows, 1)


@functools.lru_cache(maxsize=None)
def _solve_coefficients(n: int, m: int) -> torch.Tensor:
    """Coefficients ``C_b`` with ``K_b(theta) rho_n(g) = C_b P(theta, g)``: ``(B, d_m, rows)``.

    Solved by least squares on random angles and verified to be exact (entries are 0, +-1).
    """
    items = _items(n, m)
    gen = torch.Generator().manual_seed(1234 + 31 * n + m)
    S = 24
    theta = torch.rand(S, generator=gen, dtype=torch.float64) * 2 * math.pi
    g = torch.rand(S, generator=gen, dtype=torch.float64) * 2 * math.pi
    P = _item_rows(n, items, theta, g)  # (S, rows, d_n)
    basis = neighbour_kernel_basis(n, m)
    d_n = P.shape[2]
    rho = torch.ones(S, 1, 1, dtype=torch.float64) if n == 0 else torch.stack(
        [torch.stack([torch.cos(n * g), -torch.sin(n * g)], -1), torch.stack([torch.sin(n * g), torch.cos(n * g)], -1)], -2
    )
    T = basis(theta) @ rho[:, None]  # (S, B, d_m, d_n)
    A = P.permute(0, 2, 1).reshape(S * d_n, -1)  # C P_s = T_s for all s  <=>  P_s^T C^T = T_s^T
    out = []
    for b in range(len(basis)):
        rhs = T[:, b].permute(0, 2, 1).reshape(S * d_n, -1)
        C = torch.linalg.lstsq(A, rhs).solution.T
        C_round = torch.round(C * 2) / 2
        if not torch.allclose(A @ C_round.T, rhs, atol=1e-9):
            raise AssertionError(f"kernel basis {n}->{m}[{b}] is not spanned by the neighbour sums")
        out.append(C_round)
    return torch.stack(out)  # cached: callers must not modify it


class GEMConv(nn.Module):
    r"""Gauge-equivariant mesh convolution ``irreps_in -> irreps_out`` (see module docstring).

    Args:
        irreps_in, irreps_out: feature types, e.g. ``"16x0 + 8x1 + 4x2"``.
        radial: number of Gaussian radial functions of the edge length ``r`` (0: the
            kernel depends on the angle only and ``r`` is not needed).
        radial_cutoff: radius of the last radial centre, in the units of ``r``.
        bias: learnable bias on the scalar (``rho_0``) outputs only (a bias on other
            types would break equivariance).
        self_interaction: include ``K_self f_p``.
        aggr: neighbour normalisation ``"mean"`` (default), ``"sqrt"`` or ``"sum"``.

    Shapes:
        x: ``(N, irreps_in.dim)``; edge_index: ``(2, E)`` (row 0 source q, row 1
        receiver p) or a :class:`GEMGeometry`; theta, transport, r: ``(E,)``;
        output ``(N, irreps_out.dim)``. float32/float64, any device.

    Parameters: ``weight`` holds, for every (output term, input term) pair in that order, a
    ``(mul_out, mul_in, n_basis, max(radial, 1))`` block of neighbour-kernel coefficients;
    ``self_weight`` a ``(mul_out, mul_in, n_self_basis)`` block per pair of equal
    frequency; ``bias`` one entry per scalar output channel.

    The computation (batched neighbour sums, per-frequency GEMMs) is described in the
    module docstring; :meth:`kernel` and :meth:`self_kernel` evaluate the learned kernels
    directly from the basis.
    """

    def __init__(
        self,
        irreps_in: IrrepsLike,
        irreps_out: IrrepsLike,
        *,
        radial: int = 0,
        radial_cutoff: float = 1.0,
        bias: bool = True,
        self_interaction: bool = True,
        aggr: str = "mean",
    ):
        super().__init__()
        self.irreps_in, self.irreps_out = as_irreps(irreps_in), as_irreps(irreps_out)
        if self.irreps_in.dim == 0 or self.irreps_out.dim == 0:
            raise ValueError("GEMConv needs non-empty input and output irreps")
        if radial < 0:
            raise ValueError(f"radial must be >= 0, got {radial}")
        if radial > 1 and not radial_cutoff > 0:
            raise ValueError(f"radial_cutoff must be > 0, got {radial_cutoff}")
        if aggr not in _AGGR:
            raise ValueError(f"aggr must be one of {_AGGR}, got {aggr!r}")
        self.radial, self.radial_cutoff, self.aggr = int(radial), float(radial_cutoff), aggr
        self.self_interaction = bool(self_interaction)
        R = max(self.radial, 1)
        self.in_freqs = sorted({f for _, f in self.irreps_in})
        self.out_freqs = sorted({f for _, f in self.irreps_out})
        dim = Irreps.irrep_dim

        # input channels regrouped: frequencies ascending, within each as (component, copy)
        in_slices, out_slices = self.irreps_in.slices(), self.irreps_out.slices()
        self._in_copies, in_off, perm_in, self._in_cols = {}, {}, [], {}
        for n in self.in_freqs:
            chans: list[list[int]] = [[] for _ in range(dim(n))]
            count = 0
            for t, (mul, f) in enumerate(self.irreps_in):
                if f == n:
                    in_off[t] = count
                    count += mul
                    for c in range(mul):
                        for comp in range(dim(n)):
                            chans[comp].append(in_slices[t].start + dim(n) * c + comp)
            self._in_copies[n] = count
            self._in_cols[n] = (len(perm_in), len(perm_in) + dim(n) * count)
            perm_in += sum(chans, [])
        self.register_buffer("_perm_in", torch.tensor(perm_in, dtype=torch.long), persistent=False)
        # output channels of each frequency in layout order (copy, component)
        self._out_copies, out_off, perm_out = {}, {}, []
        for m in self.out_freqs:
            count = 0
            for t, (mul, f) in enumerate(self.irreps_out):
                if f == m:
                    out_off[t] = count
                    count += mul
                    perm_out += list(range(out_slices[t].start, out_slices[t].stop))
            self._out_copies[m] = count
        inv = torch.empty(len(perm_out), dtype=torch.long)
        inv[torch.tensor(perm_out)] = torch.arange(len(perm_out))
        self._identity_out = perm_out == list(range(len(perm_out)))
        self.register_buffer("_inv_out", inv, persistent=False)
        # fast path: output columns of each frequency in the grouped layout, and the
        # permutations that take gradients back (inverse of _inv_out, inverse of _perm_in)
        self._out_cols, start = {}, 0
        for m in self.out_freqs:
            self._out_cols[m] = (start, start + dim(m) * self._out_copies[m])
            start += dim(m) * self._out_copies[m]
        self.register_buffer("_perm_out", torch.tensor(perm_out, dtype=torch.long), persistent=False)
        inv_in = torch.empty(len(perm_in), dtype=torch.long)
        inv_in[torch.tensor(perm_in, dtype=torch.long)] = torch.arange(len(perm_in))
        self.register_buffer("_inv_perm_in", inv_in, persistent=False)

        # neighbour sums: rows of the table for input frequency n, grouped by output m
        self._items = {(n, m): _items(n, m) for n in self.in_freqs for m in self.out_freqs}
        self._rows, self._row_block = {}, {}
        for n in self.in_freqs:
            start = 0
            for m in self.out_freqs:
                nr = _item_rows(n, self._items[n, m], torch.zeros(1), torch.zeros(1)).shape[1]
                self._row_block[n, m] = (start, R * nr, nr)
                start += R * nr
            self._rows[n] = start
        # columns of the (n, m) block in the flattened neighbour sums z_n (rows_n * M_n)
        self._zcols = {
            (n, m): (st * self._in_copies[n], (st + cnt) * self._in_copies[n])
            for (n, m), (st, cnt, _) in self._row_block.items()
        }

        # parameters: one flat vector per kernel type, a block per (output term, input term)
        self._neigh_pairs, self._self_pairs = [], []
        n_neigh = n_self = 0
        neigh_gain = torch.zeros(len(self.irreps_out), dtype=torch.float64)
        self_gain = torch.zeros(len(self.irreps_out), dtype=torch.float64)
        probe = torch.tensor([0.37], dtype=torch.float64)
        for o, (mul_o, m) in enumerate(self.irreps_out):
            for t, (mul_i, n) in enumerate(self.irreps_in):
                B = kernel_basis_size(n, m)
                size = mul_o * mul_i * B * R
                self._neigh_pairs.append(
                    dict(out=o, term=t, n=n, m=m, mul_i=mul_i, mul_o=mul_o, B=B, offset=n_neigh, size=size,
                         in_off=in_off[t], out_off=out_off[o])
                )
                n_neigh += size
                # variance contributed per output component by unit-variance independent inputs
                Kb = neighbour_kernel_basis(n, m)(probe)[0]
                neigh_gain[o] += mul_i * Kb.square().sum() / dim(m)
                S = self_kernel_basis(n, m)
                if self.self_interaction and S.shape[0]:
                    size = mul_o * mul_i * S.shape[0]
                    self._self_pairs.append(
                        dict(out=o, term=t, n=n, mul_i=mul_i, mul_o=mul_o, B=S.shape[0], offset=n_self, size=size,
                             in_off=in_off[t], out_off=out_off[o])
                    )
                    n_self += size
                    self_gain[o] += mul_i * S.square().sum() / dim(m)
        self._neigh_gain, self._self_gain = neigh_gain, self_gain
        self.weight = nn.Parameter(torch.empty(n_neigh))
        self.self_weight = nn.Parameter(torch.empty(n_self)) if n_self else None
        n_scalar = self.irreps_out.count(0)
        self.bias = nn.Parameter(torch.empty(n_scalar)) if (bias and n_scalar) else None
        self._build_weight_index()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal weights scaled so each output component has variance ~1 (see module doc)."""
        with torch.no_grad():
            for pairs, param, gain, other in (
                (self._neigh_pairs, self.weight, self._neigh_gain, self._self_gain),
                (self._self_pairs, self.self_weight, self._self_gain, self._neigh_gain),
            ):
                for pr in pairs:
                    o = pr["out"]
                    share = 0.5 if (gain[o] > 0 and other[o] > 0) else 1.0
                    std = math.sqrt(share / float(gain[o]))
                    param[pr["offset"] : pr["offset"] + pr["size"]].normal_(0.0, std)
            if self.bias is not None:
                self.bias.zero_()

    # -- weights -------------------------------------------------------------------------
    def _build_weight_index(self) -> None:
        """Each entry of the GEMM weight blocks is +-1 times one parameter (or 0): precompute
        the parameter index and sign of every entry, so assembling the weights in forward is
        a single gather."""
        R = max(self.radial, 1)
        dim = Irreps.irrep_dim
        n_neigh = self.weight.numel()
        blocks, idx_parts, sign_parts = [], [], []
        for n in self.in_freqs:
            for m in self.out_freqs:
                _, _, per_r = self._row_block[n, m]
                shape = (R, per_r, self._in_copies[n], self._out_copies[m], dim(m))
                idx, sign = torch.zeros(shape, dtype=torch.long), torch.zeros(shape)
                for pr in self._neigh_pairs:
                    if (pr["n"], pr["m"]) != (n, m):
                        continue
                    C = _solve_coefficients(n, m)  # (B, d_m, rows)
                    P = pr["offset"] + torch.arange(pr["size"]).view(pr["mul_o"], pr["mul_i"], pr["B"], R)
                    i0, o0 = pr["in_off"], pr["out_off"]
                    for b, k, j in torch.nonzero(C).tolist():
                        dst = (slice(None), j, slice(i0, i0 + pr["mul_i"]), slice(o0, o0 + pr["mul_o"]), k)
                        if bool((sign[dst] != 0).any()):
                            raise AssertionError("two basis kernels share a weight entry")
                        idx[dst] = P[:, :, b, :].permute(2, 1, 0)
                        sign[dst] = float(C[b, k, j])
                blocks.append((("neigh", n, m), (-1, self._out_copies[m] * dim(m))))
                idx_parts.append(idx.flatten())
                sign_parts.append(sign.flatten())
        if self.self_weight is not None:
            for m in self.out_freqs:
                if m not in self._in_copies:
                    continue
                shape = (dim(m), self._in_copies[m], self._out_copies[m], dim(m))
                idx, sign = torch.zeros(shape, dtype=torch.long), torch.zeros(shape)
                for pr in self._self_pairs:
                    if pr["n"] != m:
                        continue
                    S = self_kernel_basis(m, m)  # (B, d_m, d_n)
                    P = n_neigh + pr["offset"] + torch.arange(pr["size"]).view(pr["mul_o"], pr["mul_i"], pr["B"])
                    i0, o0 = pr["in_off"], pr["out_off"]
                    for b, k, c in torch.nonzero(S).tolist():
                        dst = (c, slice(i0, i0 + pr["mul_i"]), slice(o0, o0 + pr["mul_o"]), k)
                        if bool((sign[dst] != 0).any()):
                            raise AssertionError("two basis kernels share a weight entry")
                        idx[dst] = P[:, :, b].T
                        sign[dst] = float(S[b, k, c])
                blocks.append((("self", m), (-1, self._out_copies[m] * dim(m))))
                idx_parts.append(idx.flatten())
                sign_parts.append(sign.flatten())
        self._wblocks = [(key, shape, part.numel()) for (key, shape), part in zip(blocks, idx_parts)]
        self.register_buffer("_widx", torch.cat(idx_parts), persistent=False)
        self.register_buffer("_wsign", torch.cat(sign_parts), persistent=False)

    def _block_weights(self, dtype, device) -> tuple[dict, dict]:
        """Assembled GEMM weights: ``{(n, m): (R * rows * M_n, C_m)}`` and ``{m: (d_m * M_m, C_m)}``."""
        return self._weight_views(self._flat_weights(dtype).to(device))

    def kernel(self, theta: torch.Tensor, r: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The learned neighbour kernel ``K_neigh(theta, r)``: ``(E,) -> (E, d_out, d_in)``.

        Evaluated directly from the basis of :mod:`meshgdl.nn.kernels` (independent of the
        fast path in :meth:`forward`; the tests compare the two). Excludes ``c_p``.
        """
        R = max(self.radial, 1)
        theta = torch.as_tensor(theta)
        dtype = theta.dtype
        if self.radial > 0:
            if r is None:
                raise ValueError("this layer uses radial basis functions: pass r")
            phi = radial_basis(torch.as_tensor(r, dtype=dtype), self.radial, self.radial_cutoff)
        else:
            phi = torch.ones(*theta.shape, 1, dtype=dtype, device=theta.device)
        K = torch.zeros(*theta.shape, self.irreps_out.dim, self.irreps_in.dim, dtype=dtype, device=theta.device)
        in_slices, out_slices = self.irreps_in.slices(), self.irreps_out.slices()
        for pr in self._neigh_pairs:
            kb = neighbour_kernel_basis(pr["n"], pr["m"])(theta)  # (E, B, d_m, d_n)
            w = self.weight[pr["offset"] : pr["offset"] + pr["size"]].to(dtype).view(pr["mul_o"], pr["mul_i"], pr["B"], R)
            blk = torch.einsum("oibr,er,ebmn->eomin", w, phi, kb)
            K[..., out_slices[pr["out"]], in_slices[pr["term"]]] = blk.reshape(
                *theta.shape, pr["mul_o"] * kb.shape[-2], pr["mul_i"] * kb.shape[-1]
            )
        return K

    def self_kernel(self) -> torch.Tensor:
        """``K_self``: ``(d_out, d_in)`` (zeros without self interaction), from the basis directly."""
        K = torch.zeros(self.irreps_out.dim, self.irreps_in.dim, dtype=self.weight.dtype, device=self.weight.device)
        in_slices, out_slices = self.irreps_in.slices(), self.irreps_out.slices()
        for pr in self._self_pairs:
            S = self_kernel_basis(pr["n"], pr["n"]).to(K)
            w = self.self_weight[pr["offset"] : pr["offset"] + pr["size"]].view(pr["mul_o"], pr["mul_i"], pr["B"])
            blk = torch.einsum("oib,bmn->omin", w, S)
            K[out_slices[pr["out"]], in_slices[pr["term"]]] = blk.reshape(pr["mul_o"] * S.shape[1], pr["mul_i"] * S.shape[2])
        return K

    # -- geometry ------------------------------------------------------------------------
    def precompute(
        self,
        edge_index: torch.Tensor,
        theta: torch.Tensor,
        transport: torch.Tensor,
        r: Optional[torch.Tensor] = None,
        num_nodes: Optional[int] = None,
    ) -> GEMGeometry:
        """Build (or fetch from the cache) the geometry; pass it as ``edge_index`` to forward.

        One :class:`GEMGeometry` can be shared by all layers of a network.
        """
        return _cached_geometry(edge_index, theta, transport, r, num_nodes)

    def _table(self, geom: GEMGeometry, n: int, dtype, device) -> torch.Tensor:
        """``(n_rows, rows_n, D * d_n)`` coefficients of the neighbour sums of frequency n."""
        key = ("gem", n, tuple(self.out_freqs), self.radial, self.radial_cutoff, self.aggr, dtype, device)

        def build():
            # written straight into the final layout (rows, slot, component): the same values
            # as stacking _item_rows per output frequency and permuting (same float ops in
            # the same order), without the intermediate copies
            theta, g = geom.slot_theta(), geom.slot_transport()
            R = max(self.radial, 1)
            rows_D = (geom.num_rows, geom.width)
            phi = None
            if self.radial > 0:
                phi = radial_basis(geom.slot_r().to(theta.dtype), self.radial, self.radial_cutoff)
            scale = geom.slot_scale(self.aggr).to(theta.dtype)
            d_n = Irreps.irrep_dim(n)
            T = theta.new_empty(geom.num_rows, self._rows[n], geom.width, d_n)
            row = 0
            for m in self.out_freqs:
                cs = []
                for k, sgn, conj in self._items[n, m]:
                    c, sn = geom.memo(("trig", k, sgn * n), lambda k=k, s=sgn * n: _cos_sin(k * theta + s * g))
                    cs.append((c, sn, k, conj))
                for r in range(R):
                    for c, sn, k, conj in cs:
                        if phi is not None:
                            c, sn = phi[:, r] * c, phi[:, r] * sn
                        c, sn = (c * scale).view(rows_D), (sn * scale).view(rows_D)
                        if n == 0:
                            T[:, row, :, 0] = c
                            row += 1
                            if k != 0:
                                T[:, row, :, 0] = sn
                                row += 1
                        else:
                            sign = -1.0 if conj else 1.0
                            T[:, row, :, 0], T[:, row, :, 1] = c, -sn
                            T[:, row + 1, :, 0], T[:, row + 1, :, 1] = sign * sn, sign * c
                            row += 2
            return T.view(geom.num_rows, self._rows[n], -1).to(dtype=dtype, device=device)

        return geom.memo(key, build)

    def flops(self, geometry: GEMGeometry) -> int:
        """Floating-point operations of one forward pass (multiply-add = 2), as executed."""
        dim = Irreps.irrep_dim
        total = 0
        for n in self.in_freqs:
            total += 2 * geometry.num_rows * self._rows[n] * geometry.width * dim(n) * self._in_copies[n]
            for m in self.out_freqs:
                total += 2 * geometry.num_nodes * self._row_block[n, m][1] * self._in_copies[n] * self._out_copies[m] * dim(m)
        for pr in self._self_pairs:
            total += 2 * geometry.num_nodes * pr["mul_i"] * pr["mul_o"] * dim(pr["n"]) ** 2
        return total

    def forward(
        self,
        x: torch.Tensor,
        edge_index,
        theta: Optional[torch.Tensor] = None,
        transport: Optional[torch.Tensor] = None,
        r: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.irreps_in.dim:
            raise ValueError(
                f"x must have shape (N, {self.irreps_in.dim}) for irreps {self.irreps_in}, got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"x must be floating point, got {x.dtype}")
        if isinstance(edge_index, GEMGeometry):
            if theta is not None or transport is not None or r is not None:
                raise ValueError("pass either a GEMGeometry or (edge_index, theta, transport, r), not both")
            geom = edge_index
        else:
            if theta is None or transport is None:
                raise ValueError("GEMConv needs theta and transport for every edge")
            geom = _cached_geometry(edge_index, theta, transport, r, x.shape[0])
        if geom.num_nodes != x.shape[0]:
            raise ValueError(f"geometry has {geom.num_nodes} vertices but x has {x.shape[0]} rows")
        if geom.device != x.device:
            raise ValueError(f"geometry is on {geom.device} but x is on {x.device}: move edge_index/theta/transport too")
        flat = self._flat_weights(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        plan = self._plan(geom, x.dtype, x.device)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, flat, bias)):
            return _GEMConvFunction.apply(x, flat, bias, self, plan)
        return _run_forward(self, plan, x, flat, bias)

    def _flat_weights(self, dtype) -> torch.Tensor:
        """All GEMM weight blocks in one vector (layout: ``_wblocks``), from the parameters."""
        params = self.weight if self.self_weight is None else torch.cat([self.weight, self.self_weight])
        return params.to(dtype).index_select(0, self._widx) * self._wsign.to(dtype)

    def _weight_views(self, flat: torch.Tensor) -> tuple[dict, dict]:
        """Views of ``flat``: ``{(n, m): (R * rows * M_n, C_m)}`` and ``{m: (d_m * M_m, C_m)}``."""
        neigh, selfw = {}, {}
        for (key, shape, size), part in zip(self._wblocks, flat.split([b[2] for b in self._wblocks])):
            if key[0] == "neigh":
                neigh[key[1], key[2]] = part.view(shape)
            else:
                selfw[key[1]] = part.view(shape)
        return neigh, selfw

    def _plan(self, geom: "GEMGeometry", dtype, device) -> "_Plan":
        """Tables and row chunks of this layer on ``geom`` (memoised in the geometry)."""
        key = ("plan", tuple(self.in_freqs), tuple(self.out_freqs), tuple(sorted(self._in_copies.items())),
               self.radial, self.radial_cutoff, self.aggr, dtype, device)
        return geom.memo(key, lambda: _Plan(self, geom, dtype, device))

    def _forward_autograd(self, x: torch.Tensor, geom: "GEMGeometry", flat=None, bias=None) -> torch.Tensor:
        """The same layer in plain differentiable torch ops (per-frequency gathers, a batched
        matmul and GEMMs, all recorded by autograd). Used for double backward; the fast path
        in :meth:`forward` is tested against it."""
        dtype, device = x.dtype, x.device
        dim = Irreps.irrep_dim
        if flat is None:
            flat = self._flat_weights(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
        W_neigh, W_self = self._weight_views(flat)

        xp = x.index_select(1, self._perm_in)
        xs, zs = {}, {}
        for n in self.in_freqs:
            a, b = self._in_cols[n]
            xs[n] = xp[:, a:b]  # (N, d_n * M_n) as (component, copy)
            M = self._in_copies[n]
            nb = geom.gather(xs[n]).view(geom.num_rows, geom.width * dim(n), M)  # rows (slot, component)
            z = torch.bmm(self._table(geom, n, dtype, device), nb)  # (n_rows, rows_n, M)
            z = geom.combine_rows(z.reshape(geom.num_rows, -1))
            # split (not slice) so the backward pass concatenates instead of zero-filling per block
            zs[n] = dict(zip(self.out_freqs, z.split([self._row_block[n, m][1] * M for m in self.out_freqs], 1)))
        outs = []
        for m in self.out_freqs:
            terms = [(xs[m], W_self[m])] if m in W_self else []
            terms += [(zs[n][m], W_neigh[n, m]) for n in self.in_freqs]
            (a, w), rest = terms[0], terms[1:]
            o = torch.addmm(bias, a, w) if (m == 0 and bias is not None) else a @ w
            for a, w in rest:
                o = o.addmm_(a, w)
            outs.append(o)
        out = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
        return out if self._identity_out else out.index_select(1, self._inv_out)

    def extra_repr(self) -> str:
        s = f"{self.irreps_in} -> {self.irreps_out}, aggr={self.aggr!r}"
        if self.radial:
            s += f", radial={self.radial}, radial_cutoff={self.radial_cutoff}"
        if not self.self_interaction:
            s += ", self_interaction=False"
        return s


# -- fast path ---------------------------------------------------------------------------
#
# One layer is: gather the neighbours' features (per input frequency), contract them with the
# coefficient table (batched matmul) into the neighbour sums z, and multiply z and the vertex's
# own features with the weights (GEMMs). Done on the whole mesh batch at once, autograd keeps
# z (N x ~800 floats for 32x0 + 32x1 + 32x2) and the gathered neighbours are a ~70 MB tensor at
# 15k vertices, ~600 MB at a batch of 8 meshes: on the CPU the time goes into memory traffic
# and into the page faults of such fresh allocations (glibc serves them by mmap), not into
# the arithmetic. So on the CPU the layer runs over blocks of receiver rows whose
# intermediates stay in the caches, and its backward recomputes a block's z instead of
# storing it (the gather and batched matmul are ~1/5 of the GEMM flops). On a GPU the same
# code runs as a single block (few kernel launches, memory is not the constraint there).

# elements of a block's intermediates (z plus the gathered neighbours): 2^23 floats, each
# tensor a few MiB, below glibc's largest mmap threshold (32 MiB), so blocks reuse heap memory
# instead of faulting in fresh pages. Smaller blocks keep more in cache but pay more
# per-operation overhead (waking the OpenMP threads); measured on the RNA U-Net step,
# 2^20 ... 2^24: 2^23 and 2^24 best, 2^20 ~15 % slower.
_CHUNK_ELEMENTS = 1 << 23
# neighbour sums kept from forward to backward up to this many elements per layer (64 MiB in
# float32: a 15k-vertex mesh at 32x0 + 32x1 + 32x2 keeps them, a batch of 8 recomputes)
_KEEP_ELEMENTS = 1 << 24


class _Plan:
    """What the fast path needs about one layer on one geometry (built once per batch).

    ``tables[n]``: ``(n_rows, rows_n, D * d_n)`` coefficients (:meth:`GEMConv._table`);
    ``tables_t(n)``: their transposes, contiguous, for the backward (built on first use);
    ``chunks``: ``(start, stop)`` row blocks of the main rows ``[0, N)`` then of the extra rows
    of high-degree vertices ``[N, n_rows)`` (whose results are added to ``extra_owner``).
    """

    def __init__(self, conv: "GEMConv", geom: GEMGeometry, dtype, device):
        self.geom = geom
        self.N, self.n_rows, self.D = geom.num_nodes, geom.num_rows, geom.width
        self.nbr = geom.nbr
        self.owner = geom.extra_owner
        self.tables = {n: conv._table(geom, n, dtype, device) for n in conv.in_freqs}
        self._tables_t: dict = {}
        dim = Irreps.irrep_dim
        per_row = sum(conv._rows[n] * conv._in_copies[n] + self.D * dim(n) * conv._in_copies[n] for n in conv.in_freqs)
        step = max(self.n_rows, 1) if device.type != "cpu" else max(16, _CHUNK_ELEMENTS // max(per_row, 1))
        self.chunks = [(a, min(a + step, self.N)) for a in range(0, self.N, step)]
        self.chunks += [(a, min(a + step, self.n_rows)) for a in range(self.N, self.n_rows, step)]
        # reverse layout for the backward: the real slots grouped by source vertex (CSR), so
        # "add every slot's gradient to its source" is a parallel gather-sum (embedding_bag)
        # instead of a scatter (index_add_ runs on one thread on the CPU)
        self.rev_slots, self.rev_offsets = geom.memo(("reverse",), lambda: _reverse_layout(geom))

    def tables_t(self, n: int) -> torch.Tensor:
        """``(n_rows, D * d_n, rows_n)``: the tables transposed, contiguous (backward only)."""
        if n not in self._tables_t:
            self._tables_t[n] = self.tables[n].transpose(1, 2).contiguous()
        return self._tables_t[n]


_SCRATCH = threading.local()


def _scratch(name, shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``shape`` tensor reused across calls on the CPU (per thread and name).

    A large fresh tensor costs a page fault per 4 KiB page on every call (glibc returns
    allocations above 32 MiB to the kernel on free); this buffer is faulted in once. Elsewhere
    a plain allocation (the CUDA caching allocator already reuses memory).
    """
    if like.device.type != "cpu":
        return like.new_empty(shape)
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    numel = math.prod(shape)
    key = (name, like.dtype)
    buf = bufs.get(key)
    if buf is None or buf.numel() < numel:
        buf = bufs[key] = like.new_empty(numel)
    return buf[:numel].view(shape)


def _split_input(conv: "GEMConv", x: torch.Tensor) -> dict:
    """``{n: (N, d_n * M_n)}`` contiguous, columns as (component, copy) (see ``_perm_in``)."""
    xp = x.index_select(1, conv._perm_in)
    if len(conv.in_freqs) == 1:
        return {conv.in_freqs[0]: xp}
    return dict(zip(conv.in_freqs, (t.contiguous() for t in xp.split(
        [conv._in_cols[n][1] - conv._in_cols[n][0] for n in conv.in_freqs], 1))))


def _reverse_layout(geom: GEMGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Real slots sorted by source vertex and each source's first position (CSR offsets)."""
    slots = torch.nonzero(geom.valid).flatten()
    src = geom.nbr[slots]
    order = torch.argsort(src, stable=True)
    counts = torch.bincount(src, minlength=geom.num_nodes)
    return slots[order], torch.cumsum(counts, 0) - counts


def _neighbour_sums(conv: "GEMConv", plan: _Plan, xs: dict, a: int, b: int) -> dict:
    """Neighbour sums of rows ``[a, b)`` (main or extra rows): ``{n: (b - a, rows_n * M_n)}``."""
    D = plan.D
    dim = Irreps.irrep_dim
    zs = {}
    for n in conv.in_freqs:
        M = conv._in_copies[n]
        nb = xs[n].index_select(0, plan.nbr[a * D : b * D])  # (rows * D, d_n * M)
        z = torch.bmm(plan.tables[n][a:b], nb.view(b - a, D * dim(n), M))
        zs[n] = z.view(b - a, -1)
    return zs


def _run_forward(conv: "GEMConv", plan: _Plan, x: torch.Tensor, flat: torch.Tensor, bias, keep=None) -> torch.Tensor:
    """The layer's output, block by block (no autograd): ``(N, irreps_out.dim)``.

    ``keep``: a list that receives every block's neighbour sums (for the backward)."""
    W_neigh, W_self = conv._weight_views(flat)
    xs = _split_input(conv, x)
    out = x.new_empty(plan.N, conv.irreps_out.dim)  # frequency-grouped layout, as conv._out_cols
    for a, b in plan.chunks:
        zs = _neighbour_sums(conv, plan, xs, a, b)
        if keep is not None:
            keep.append(zs)
        main = a < plan.N
        o_rows = out[a:b] if main else x.new_empty(b - a, out.shape[1])
        for m in conv.out_freqs:
            o = o_rows[:, conv._out_cols[m][0] : conv._out_cols[m][1]]
            terms = [(xs[m][a:b], W_self[m])] if (main and m in W_self) else []
            terms += [(zs[n][:, conv._zcols[n, m][0] : conv._zcols[n, m][1]], W_neigh[n, m]) for n in conv.in_freqs]
            torch.mm(terms[0][0], terms[0][1], out=o)
            for t, w in terms[1:]:
                o.addmm_(t, w)
            if main and m == 0 and bias is not None:
                o.add_(bias)
        if not main:
            out.index_add_(0, plan.owner[a - plan.N : b - plan.N], o_rows)
    return out if conv._identity_out else out.index_select(1, conv._inv_out)


def _run_backward(conv: "GEMConv", plan: _Plan, x: torch.Tensor, flat: torch.Tensor, g: torch.Tensor, need_x: bool,
                  kept=None):
    """Gradients ``(x, flat, bias)`` of the layer for output gradient ``g`` (no autograd).

    ``kept``: the blocks' neighbour sums from the forward, or None to recompute them."""
    W_neigh, W_self = conv._weight_views(flat)
    gflat = torch.zeros_like(flat)
    gW_neigh, gW_self = conv._weight_views(gflat)
    xs = _split_input(conv, x)
    g = g if conv._identity_out else g.index_select(1, conv._perm_out)
    # per-frequency gradient buffers, contiguous: index_add_ into a column slice of one
    # (N, dim) buffer takes a slow strided path (measured ~4x slower)
    gxs = {n: torch.zeros_like(t) for n, t in xs.items()} if need_x else None
    D = plan.D
    dim = Irreps.irrep_dim
    # per-slot gradients of the gathered neighbours, all slots, one buffer per frequency
    gnbs = {n: _scratch(("gnb", n), (plan.n_rows * D, t.shape[1]), t) for n, t in xs.items()} if need_x else None
    for i, (a, b) in enumerate(plan.chunks):
        zs = _neighbour_sums(conv, plan, xs, a, b) if kept is None else kept[i]
        main = a < plan.N
        g_rows = g[a:b] if main else g.index_select(0, plan.owner[a - plan.N : b - plan.N])
        gz = {n: torch.empty_like(zs[n]) for n in conv.in_freqs} if need_x else None
        for m in conv.out_freqs:
            gm = g_rows[:, conv._out_cols[m][0] : conv._out_cols[m][1]]
            if main and m in W_self:
                gW_self[m].addmm_(xs[m][a:b].T, gm)
                if need_x:
                    gxs[m][a:b].addmm_(gm, W_self[m].T)
            for n in conv.in_freqs:
                z0, z1 = conv._zcols[n, m]
                gW_neigh[n, m].addmm_(zs[n][:, z0:z1].T, gm)
                if need_x:
                    torch.mm(gm, W_neigh[n, m].T, out=gz[n][:, z0:z1])
        if need_x:
            for n in conv.in_freqs:
                M = conv._in_copies[n]
                out = gnbs[n][a * D : b * D].view(b - a, D * dim(n), M)
                torch.bmm(plan.tables_t(n)[a:b], gz[n].view(b - a, -1, M), out=out)
    if need_x:
        for n in conv.in_freqs:
            gxs[n] += torch.nn.functional.embedding_bag(plan.rev_slots, gnbs[n], plan.rev_offsets, mode="sum")
    gbias = None
    if conv.bias is not None:
        gbias = g[:, conv._out_cols[0][0] : conv._out_cols[0][1]].sum(0)
    gx = None
    if need_x:
        gxp = torch.cat([gxs[n] for n in conv.in_freqs], 1) if len(gxs) > 1 else gxs[conv.in_freqs[0]]
        gx = gxp.index_select(1, conv._inv_perm_in)
    return gx, gflat, gbias


class _GEMConvFunction(torch.autograd.Function):
    """Autograd of the fast path. Saves only the input and the weights; the backward runs
    block by block like the forward (:func:`_run_backward`). Under ``create_graph`` (double
    backward) it differentiates :meth:`GEMConv._forward_autograd` instead, which computes the
    same function with recorded ops."""

    @staticmethod
    def forward(ctx, x, flat, bias, conv, plan):
        ctx.conv, ctx.plan = conv, plan
        ctx.save_for_backward(x, flat, bias)
        # keep the neighbour sums when they are small enough (saves the backward's gathers and
        # batched matmuls, ~1/4 of the layer's time), else recompute them block by block
        size = plan.N * sum(conv._rows[n] * conv._in_copies[n] for n in conv.in_freqs)
        ctx.kept = [] if size <= _KEEP_ELEMENTS else None
        return _run_forward(conv, plan, x, flat, bias, keep=ctx.kept)

    @staticmethod
    def backward(ctx, g):
        x, flat, bias = ctx.saved_tensors
        conv, plan = ctx.conv, ctx.plan
        if torch.is_grad_enabled():  # create_graph: gradients must be differentiable
            inputs = [t for t in (x, flat, bias) if t is not None and t.requires_grad]
            out = conv._forward_autograd(x, plan.geom, flat, bias)
            grads = iter(torch.autograd.grad(out, inputs, g, create_graph=True, allow_unused=True))
            return tuple(next(grads) if (t is not None and t.requires_grad) else None for t in (x, flat, bias)) + (None, None)
        kept, ctx.kept = ctx.kept, None
        gx, gflat, gbias = _run_backward(conv, plan, x, flat, g.contiguous(), ctx.needs_input_grad[0], kept)
        return gx, gflat, (gbias if ctx.needs_input_grad[2] else None), None, None
