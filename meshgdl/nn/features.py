"""Per-vertex input features computed from a :class:`TorchOperators` bundle.

``input_features(ops, kinds) -> (x, irreps)``; ``kinds`` is a list of names:

Gauge-invariant scalars (rho_0):

* ``"hks"``: the heat kernel signature stored in the bundle (``n_hks`` channels).
* ``"wks"``: a wave kernel signature, if the bundle carries one (``ops.wks``).
* ``"xyz"``: positions minus each mesh's area-weighted centroid (3 channels). Not
  invariant to rotations of the mesh: only when asked for.
* ``"mean_curvature"``: ``H = <L pos, n> / (2 mass)`` (1/length; 1 on the unit
  sphere with outward normals, positive where convex). ``L`` is the positive
  semi-definite weak Laplacian, so ``L pos ~ 2 H n mass``. Meaningless on boundary
  vertices (the boundary term leaks in).
* ``"gauss_curvature"``: angle defect / mass (1/length^2; 1 on the unit sphere);
  ``2 pi - angle sum`` inside, ``pi - angle sum`` (geodesic curvature) on the boundary.
* ``"constant"``: a channel of ones (lets a network see pure geometry).

Gauge-equivariant features:

* ``"hks_grad"`` (``n_hks x 1``, rho_1): the gradient of every HKS channel in the
  vertex gauge, ``(G_x h, G_y h)``.
* ``"shape_operator"`` (``1x2``, rho_2): the traceless part of the shape operator
  ``S_ij = <G_i n, G_j X>`` (normal field and positions differentiated with the
  tangent gradient ``G_x, G_y``; S is symmetric up to discretisation),
  ``((S11 - S22)/2, (S12 + S21)/2) = (k1 - k2)/2 (cos 2 phi, sin 2 phi)``, where
  phi is the angle of the first principal direction: principal curvature
  directions as a frequency-2 feature.

The output is sorted by frequency (all scalars first, in the order of ``kinds``,
then rho_1, then rho_2) and :func:`feature_irreps` predicts its type without data.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from meshgdl.nn.irreps import Irreps

SCALAR_KINDS = ("hks", "wks", "xyz", "mean_curvature", "gauss_curvature", "constant")
EQUIVARIANT_KINDS = ("hks_grad", "shape_operator")
KINDS = SCALAR_KINDS + EQUIVARIANT_KINDS


def _kind_terms(kind: str, n_hks: int, n_wks: int | None) -> list[tuple[int, int]]:
    if kind == "hks":
        return [(n_hks, 0)]
    if kind == "wks":
        if not n_wks:
            raise ValueError("feature 'wks' requested but the operators carry no WKS")
        return [(n_wks, 0)]
    if kind == "xyz":
        return [(3, 0)]
    if kind in ("mean_curvature", "gauss_curvature", "constant"):
        return [(1, 0)]
    if kind == "hks_grad":
        return [(n_hks, 1)]
    if kind == "shape_operator":
        return [(1, 2)]
    raise ValueError(f"unknown input feature {kind!r}; choose from {', '.join(KINDS)}")


def _check_kinds(kinds: Sequence[str]) -> list[str]:
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = list(kinds)
    if not kinds:
        raise ValueError("at least one input feature kind is needed")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"input feature kinds repeat: {kinds}")
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown input feature {k!r}; choose from {', '.join(KINDS)}")
    return kinds


def feature_irreps(kinds: Sequence[str], n_hks: int = 16, n_wks: int | None = None) -> Irreps:
    """The :class:`Irreps` that :func:`input_features` returns for these ``kinds``."""
    kinds = _check_kinds(kinds)
    terms = [t for k in kinds for t in _kind_terms(k, n_hks, n_wks)]
    return Irreps(sorted(terms, key=lambda t: t[1])).simplify()


def _spmm(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(A, x) if A.is_sparse else A @ x


def _interleave(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """(N, m) cos- and sin-components -> (N, 2m) laid out (c_0, s_0, c_1, s_1, ...)."""
    return torch.stack([gx, gy], dim=-1).reshape(gx.shape[0], -1)


def mean_curvature(ops) -> torch.Tensor:
    """(N,) mean curvature ``<L pos, n> / (2 mass)`` (see the module docstring)."""
    Lp = _spmm(ops.L, ops.pos)
    return (Lp * ops.normals).sum(-1) / (2.0 * ops.mass.clamp_min(torch.finfo(ops.pos.dtype).tiny))


def gauss_curvature(ops) -> torch.Tensor:
    """(N,) Gaussian curvature: angle defect / vertex area (see the module docstring)."""
    pos, F = ops.pos, ops.faces
    N = pos.shape[0]
    sums = pos.new_zeros(N)
    for k in range(3):
        p = pos[F[:, k]]
        a = pos[F[:, (k + 1) % 3]] - p
        b = pos[F[:, (k + 2) % 3]] - p
        ang = torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1))
        sums = sums.index_add(0, F[:, k], ang)
    E = torch.cat([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]).sort(dim=1).values
    # 1-D keys: far cheaper to sort than unique(dim=0) on rows
    uniq, counts = torch.unique(E[:, 0] * N + E[:, 1], return_counts=True)
    boundary = torch.zeros(N, dtype=torch.bool, device=pos.device)
    ends = uniq[counts == 1]
    boundary[torch.cat([ends // N, ends % N])] = True
    target = torch.where(boundary, torch.full_like(sums, math.pi), torch.full_like(sums, 2 * math.pi))
    return (target - sums) / ops.mass.clamp_min(torch.finfo(pos.dtype).tiny)


def shape_operator(ops) -> torch.Tensor:
    """(N, 2, 2) second fundamental form ``S_ij = <G_i n, G_j X>`` in each vertex gauge.

    Both factors come from the intrinsic tangent gradient (``G_j X`` is the 3D image
    of the gauge axis j), not from the extrinsic ``frames``, so S transforms exactly
    as a tensor, ``S -> rho_1(-alpha) S rho_1(alpha)``, under any gauge change.
    """
    dn = torch.stack([_spmm(ops.grad_x, ops.normals), _spmm(ops.grad_y, ops.normals)], 1)  # (N, 2, 3)
    dX = torch.stack([_spmm(ops.grad_x, ops.pos), _spmm(ops.grad_y, ops.pos)], 1)
    return dn @ dX.transpose(1, 2)


def _centered_pos(ops) -> torch.Tensor:
    B = int(ops.num_graphs)
    w = ops.mass[:, None]
    num = ops.pos.new_zeros(B, 3).index_add(0, ops.batch, ops.pos * w)
    den = ops.mass.new_zeros(B).index_add(0, ops.batch, ops.mass)
    return ops.pos - (num / den.clamp_min(torch.finfo(ops.pos.dtype).tiny)[:, None])[ops.batch]


def input_features(ops, kinds: Sequence[str]) -> tuple[torch.Tensor, Irreps]:
    """Input features of the requested ``kinds`` (module docstring) for a mesh or batch.

    Returns ``x`` (N, irreps.dim) in ``ops.pos.dtype`` and its :class:`Irreps`
    (scalars first, then by increasing frequency).
    """
    kinds = _check_kinds(kinds)
    n_hks = int(ops.hks.shape[1])
    wks = getattr(ops, "wks", None)
    n_wks = int(wks.shape[1]) if wks is not None else None
    blocks: list[tuple[int, torch.Tensor]] = []  # (frequency, (N, d))
    N = ops.pos.shape[0]
    for k in kinds:
        if k == "hks":
            blocks.append((0, ops.hks))
        elif k == "wks":
            if wks is None:
                raise ValueError("feature 'wks' requested but the operators carry no WKS")
            blocks.append((0, wks))
        elif k == "xyz":
            blocks.append((0, _centered_pos(ops)))
        elif k == "mean_curvature":
            blocks.append((0, mean_curvature(ops)[:, None]))
        elif k == "gauss_curvature":
            blocks.append((0, gauss_curvature(ops)[:, None]))
        elif k == "constant":
            blocks.append((0, ops.pos.new_ones(N, 1)))
        elif k == "hks_grad":
            blocks.append((1, _interleave(_spmm(ops.grad_x, ops.hks), _spmm(ops.grad_y, ops.hks))))
        elif k == "shape_operator":
            S = shape_operator(ops)
            a = 0.5 * (S[:, 0, 0] - S[:, 1, 1])
            b = 0.5 * (S[:, 0, 1] + S[:, 1, 0])
            blocks.append((2, torch.stack([a, b], -1)))
    # Stable sort by frequency keeps the order of ``kinds`` within each frequency.
    blocks = sorted(blocks, key=lambda fb: fb[0])
    x = torch.cat([b.to(ops.pos.dtype) for _, b in blocks], dim=-1)
    irreps = feature_irreps(kinds, n_hks=n_hks, n_wks=n_wks)
    if x.shape[1] != irreps.dim:  # pragma: no cover - internal consistency
        raise AssertionError(f"features have {x.shape[1]} channels, irreps {irreps} say {irreps.dim}")
    return x, irreps
