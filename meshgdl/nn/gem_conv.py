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

**Computation.** Every basis kernel is a single angular harmonic, so the neighbour term is
``sum_k C_k z_{p,k} + S_k z'_{p,k}`` with ``z_{p,k} = c_p sum_q cos(k theta_pq) phi_j(r_pq)
rho_in(g) f_q`` (and ``sin`` for ``z'``). The layer therefore

1. gathers neighbour features into a padded per-vertex table ("sliced ELL": rows of width
   ``D`` chosen from the degree histogram; vertices of higher degree get extra rows that
   are summed back), applies the transport rotations blockwise,
2. contracts them with the precomputed angular/radial table of each input frequency with
   one batched matmul per input frequency, giving ``z_p`` of shape
   ``(N, sum_n n_angular(n) * R * d_n)``,
3. multiplies ``[f_p, z_p]`` by one assembled weight matrix (a dense GEMM).

Everything that depends only on geometry (the layout, ``cos``/``sin`` of the angles, the
radial functions, the normalisation) lives in a :class:`GEMGeometry`, built once per
``(edge_index, theta, transport, r)`` and cached (keyed by tensor identity and version)
so every layer and every forward pass on the same mesh batch reuses it. Geometry inputs
are constants: no gradient flows into ``theta``, ``transport`` or ``r``.

The radial functions are normalised to ``sum_j phi_j(r)^2 = 1``. With ``aggr="sqrt"`` and
independent unit-variance neighbour inputs, the ``k = 0`` components of ``z`` then have unit
variance and the ``cos``/``sin`` ones variance 1/2 (for uniformly spread angles). Weights
are initialised so that the self and the neighbour parts each contribute variance 1/2 to
each output component under that assumption; with the default ``aggr="mean"`` independent
inputs give output variance ~0.5-0.6 and spatially smooth inputs somewhat more (their
isotropic neighbour components keep unit variance, the anisotropic ones shrink).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import torch
from torch import nn

from .irreps import Irreps, IrrepsLike, as_irreps
from .kernels import neighbour_kernel_basis, self_kernel_basis

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


def _choose_width(deg: torch.Tensor) -> int:
    """Row width ``D`` minimising padded slots plus a per-row overhead."""
    if deg.numel() == 0 or int(deg.max()) == 0:
        return 1
    counts = torch.bincount(deg.clamp(min=1))
    ds = torch.arange(counts.numel())
    best, best_cost = 1, None
    for D in range(1, int(deg.max()) + 1):
        rows = int((counts * torch.div(ds + D - 1, D, rounding_mode="floor")).sum())
        cost = rows * (D + 1)
        if best_cost is None or cost <= best_cost:
            best, best_cost = D, cost
    return best


class GEMGeometry:
    """Per-batch geometry for :class:`GEMConv`: padded neighbour layout plus memoised tables.

    edge_index: ``(2, E)`` int64, row 0 source q, row 1 receiver p (batched graphs
    concatenated with offset indices); theta, transport: ``(E,)`` radians; r: ``(E,)``
    or None; num_nodes: N. Tables derived from the angles are computed on first use per
    (frequencies, radial set-up, normalisation, dtype, device) and kept.
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
        nbr = torch.full((n_rows * D,), N, dtype=torch.long, device=self.device)
        nbr[slot] = src
        self.nbr = nbr  # (n_rows * D,), N = padding (points at an appended zero row)
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

    def _padded(self, values: torch.Tensor) -> torch.Tensor:
        """Per-edge values -> per-slot ``(n_rows * D,)`` with zeros in padding slots."""
        out = values.new_zeros(self.num_rows * self.width)
        out[self._slot] = values[self._order]
        return out

    def transport_table(self, freq: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos(freq g), sin(freq g)`` per slot, each ``(n_rows, D, 1)``."""
        key = ("transport", freq, dtype, device)
        if key not in self._memo:
            g = self._padded(self.transport_in)
            c = torch.cos(freq * g).to(dtype=dtype, device=device).view(self.num_rows, self.width, 1)
            s = torch.sin(freq * g).to(dtype=dtype, device=device).view(self.num_rows, self.width, 1)
            self._memo[key] = (c, s)
        return self._memo[key]

    def angular_table(
        self, freqs: tuple[int, ...], radial: int, cutoff: float, aggr: str, dtype, device
    ) -> torch.Tensor:
        """``(n_rows, D, R * J)``: ``c_p phi_j(r) a_i(theta)`` per slot, 0 in padding.

        ``a_i`` runs over ``1`` (k = 0) or ``cos k theta, sin k theta`` for each k in
        ``freqs``; the radial index is the slow one.
        """
        key = ("angular", freqs, radial, cutoff, aggr, dtype, device)
        if key in self._memo:
            return self._memo[key]
        theta = self._padded(self.theta_in)
        comps = []
        for k in freqs:
            if k == 0:
                comps.append(torch.ones_like(theta))
            else:
                comps += [torch.cos(k * theta), torch.sin(k * theta)]
        table = torch.stack(comps, -1)
        if radial > 0:
            if self.r_in is None:
                raise ValueError("this layer uses radial basis functions: pass the edge lengths r")
            phi = radial_basis(self._padded(self.r_in), radial, cutoff)
            table = (phi[:, :, None] * table[:, None, :]).reshape(table.shape[0], -1)
        deg = self._slot_deg.to(table.dtype)
        valid = deg > 0
        if aggr == "mean":
            scale = torch.where(valid, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
        elif aggr == "sqrt":
            scale = torch.where(valid, deg.clamp(min=1).rsqrt(), torch.zeros_like(deg))
        else:
            scale = valid.to(table.dtype)
        scale = scale * (self.nbr < self.num_nodes).to(table.dtype)  # zero padding slots
        table = (table * scale[:, None]).to(dtype=dtype, device=device)
        table = table.view(self.num_rows, self.width, -1)
        self._memo[key] = table
        return table

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Neighbour features per slot: ``(N, C) -> (n_rows, D, C)``."""
        xp = torch.cat([x, x.new_zeros(1, x.shape[1])], 0)
        return torch.index_select(xp, 0, self.nbr).view(self.num_rows, self.width, x.shape[1])

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

        in_slices, out_slices = self.irreps_in.slices(), self.irreps_out.slices()
        out_freqs = sorted({f for _, f in self.irreps_out})
        # input channels regrouped by frequency so every frequency is one contiguous block
        self.in_freqs = sorted({f for _, f in self.irreps_in})
        perm, group_of, offset_in_group = [], {}, {}
        self._groups = []  # (freq, start, stop, angular freqs) in the permuted layout
        for n in self.in_freqs:
            start = len(perm)
            for t, (mul, f) in enumerate(self.irreps_in):
                if f == n:
                    offset_in_group[t] = len(perm) - start
                    perm += list(range(in_slices[t].start, in_slices[t].stop))
            ks = sorted({int(k) for m in out_freqs for k in neighbour_kernel_basis(n, m).freq})
            self._groups.append((n, start, len(perm), tuple(ks)))
            group_of[n] = len(self._groups) - 1
        self.register_buffer("_perm", torch.tensor(perm, dtype=torch.long), persistent=False)
        self._identity_perm = perm == list(range(len(perm)))

        # angular component index of each (k, cos|sin) within its group's table
        def comp_index(ks, k, which):
            i = 0
            for kk in ks:
                if kk == k:
                    return i + (1 if which == "sin" else 0)
                i += 1 if kk == 0 else 2
            raise AssertionError

        # row offsets of each group's z block in the neighbour weight matrix
        row = 0
        self._group_rows = []
        for n, a, b, ks in self._groups:
            J = sum(1 if k == 0 else 2 for k in ks)
            self._group_rows.append((row, R, J, b - a))
            row += R * J * (b - a)
        self._z_dim = row

        # one flat parameter vector per kernel type; a coefficient tensor per term pair maps
        # its weights to a block of the assembled matrix
        self._neigh_pairs, self._self_pairs = [], []
        n_neigh = n_self = 0
        neigh_gain = torch.zeros(len(self.irreps_out), dtype=torch.float64)
        self_gain = torch.zeros(len(self.irreps_out), dtype=torch.float64)
        for o, (mul_o, m) in enumerate(self.irreps_out):
            for t, (mul_i, n) in enumerate(self.irreps_in):
                g = group_of[n]
                _, gstart, _, ks = self._groups[g]
                row0, _, J, C = self._group_rows[g]
                basis = neighbour_kernel_basis(n, m)
                # entries are 0/+-1, exact in every dtype
                coef = torch.zeros(len(basis), J, basis.shape[0], basis.shape[1], dtype=torch.float64)
                comp_var = torch.ones(J, dtype=torch.float64)
                for b in range(len(basis)):
                    k = int(basis.freq[b])
                    if k == 0:
                        coef[b, comp_index(ks, 0, "cos")] = basis.cos[b]
                    else:
                        i_c, i_s = comp_index(ks, k, "cos"), comp_index(ks, k, "sin")
                        coef[b, i_c], coef[b, i_s] = basis.cos[b], basis.sin[b]
                        comp_var[i_c] = comp_var[i_s] = 0.5  # mean of cos^2 over a uniform angle
                size = mul_o * mul_i * len(basis) * R
                self._neigh_pairs.append(
                    dict(out=o, term=t, group=g, col=offset_in_group[t], mul_i=mul_i, mul_o=mul_o,
                         B=len(basis), offset=n_neigh, size=size, coef_name=f"_coef_n{o}_{t}")
                )
                self.register_buffer(f"_coef_n{o}_{t}", coef.to(torch.get_default_dtype()), persistent=False)
                n_neigh += size
                # variance of one output component from unit-variance independent z entries
                neigh_gain[o] += mul_i * (coef.square() * comp_var[:, None, None]).sum((0, 1, 3)).mean()
                if self.self_interaction:
                    S = self_kernel_basis(n, m)
                    if S.shape[0]:
                        size = mul_o * mul_i * S.shape[0]
                        self._self_pairs.append(
                            dict(out=o, term=t, mul_i=mul_i, mul_o=mul_o, B=S.shape[0], offset=n_self,
                                 size=size, coef_name=f"_coef_s{o}_{t}")
                        )
                        self.register_buffer(f"_coef_s{o}_{t}", S.to(torch.get_default_dtype()), persistent=False)
                        n_self += size
                        self_gain[o] += mul_i * S.square().sum((0, 2)).mean()
        self._neigh_gain, self._self_gain = neigh_gain, self_gain
        self.weight = nn.Parameter(torch.empty(n_neigh))
        self.self_weight = nn.Parameter(torch.empty(n_self)) if n_self else None
        n_scalar = self.irreps_out.count(0)
        if bias and n_scalar:
            self.bias = nn.Parameter(torch.empty(n_scalar))
            self.register_buffer("_bias_index", torch.nonzero(self.irreps_out.scalar_mask()).flatten(), persistent=False)
        else:
            self.register_parameter("bias", None)
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
    def _neigh_weight(self, dtype, device) -> torch.Tensor:
        """Assembled ``(z_dim, d_out)`` matrix acting on the concatenated z blocks."""
        R = max(self.radial, 1)
        W = torch.zeros(self._z_dim, self.irreps_out.dim, dtype=dtype, device=device)
        out_slices = self.irreps_out.slices()
        for pr in self._neigh_pairs:
            row0, _, J, C = self._group_rows[pr["group"]]
            w = self.weight[pr["offset"] : pr["offset"] + pr["size"]].to(dtype)
            w = w.view(pr["mul_o"], pr["mul_i"], pr["B"], R)
            coef = getattr(self, pr["coef_name"]).to(dtype)  # (B, J, d_m, d_n)
            dm, dn = coef.shape[2], coef.shape[3]
            block = torch.einsum("oibr,bjmn->rjinom", w, coef)  # rows (r, j, i, n), cols (o, m)
            Wg = W[row0 : row0 + R * J * C].view(R, J, C, -1)
            c0 = pr["col"]
            Wg[:, :, c0 : c0 + pr["mul_i"] * dn, out_slices[pr["out"]]] = block.reshape(
                R, J, pr["mul_i"] * dn, pr["mul_o"] * dm
            )
        return W

    def _self_weight(self, dtype, device) -> Optional[torch.Tensor]:
        if self.self_weight is None:
            return None
        W = torch.zeros(self.irreps_in.dim, self.irreps_out.dim, dtype=dtype, device=device)
        in_slices, out_slices = self.irreps_in.slices(), self.irreps_out.slices()
        for pr in self._self_pairs:
            w = self.self_weight[pr["offset"] : pr["offset"] + pr["size"]].to(dtype)
            w = w.view(pr["mul_o"], pr["mul_i"], pr["B"])
            S = getattr(self, pr["coef_name"]).to(dtype)  # (B, d_m, d_n)
            block = torch.einsum("oib,bmn->inom", w, S)
            W[in_slices[pr["term"]], out_slices[pr["out"]]] = block.reshape(
                pr["mul_i"] * S.shape[2], pr["mul_o"] * S.shape[1]
            )
        return W

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
            (mul_o, m), (mul_i, n) = self.irreps_out.terms[pr["out"]], self.irreps_in.terms[pr["term"]]
            kb = neighbour_kernel_basis(n, m)(theta)  # (E, B, d_m, d_n)
            w = self.weight[pr["offset"] : pr["offset"] + pr["size"]].to(dtype).view(mul_o, mul_i, pr["B"], R)
            blk = torch.einsum("oibr,er,ebmn->eomin", w, phi, kb)
            K[..., out_slices[pr["out"]], in_slices[pr["term"]]] = blk.reshape(
                *theta.shape, mul_o * kb.shape[-2], mul_i * kb.shape[-1]
            )
        return K

    def self_kernel(self) -> torch.Tensor:
        """``K_self``: ``(d_out, d_in)`` (zeros without self interaction)."""
        W = self._self_weight(self.weight.dtype, self.weight.device)
        if W is None:
            return torch.zeros(self.irreps_out.dim, self.irreps_in.dim, dtype=self.weight.dtype)
        return W.T

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
        dtype, device = x.dtype, x.device

        xg = x if self._identity_perm else x.index_select(1, self._perm)
        nb = geom.gather(xg)  # (rows, D, d_in)
        zs = []
        for n, a, b, ks in self._groups:
            xn = nb[..., a:b]
            if n > 0:
                c, s = geom.transport_table(n, dtype, device)
                pair = xn.reshape(geom.num_rows, geom.width, -1, 2)
                u, v = pair[..., 0], pair[..., 1]
                xn = torch.stack([c * u - s * v, s * u + c * v], -1).reshape(xn.shape)
            table = geom.angular_table(ks, self.radial, self.radial_cutoff, self.aggr, dtype, device)
            zs.append(torch.bmm(table.transpose(1, 2), xn).reshape(geom.num_rows, -1))
        z = geom.combine_rows(torch.cat(zs, 1) if len(zs) > 1 else zs[0])

        out = z @ self._neigh_weight(dtype, device)
        W_self = self._self_weight(dtype, device)
        if W_self is not None:
            out = torch.addmm(out, x, W_self)
        if self.bias is not None:
            out = out.index_add(1, self._bias_index, self.bias.to(dtype).expand(out.shape[0], -1))
        return out

    def extra_repr(self) -> str:
        s = f"{self.irreps_in} -> {self.irreps_out}, aggr={self.aggr!r}"
        if self.radial:
            s += f", radial={self.radial}, radial_cutoff={self.radial_cutoff}"
        if not self.self_interaction:
            s += ", self_interaction=False"
        return s
