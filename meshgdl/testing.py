"""Gauge-equivariance checks for mesh layers, as e3nn ships ``assert_equivariant``.

Public API so that anyone writing a new layer tests it the same way the library's own
layers are tested (it needs only torch, not pytest)::

    from meshgdl.testing import assert_gauge_equivariant
    assert_gauge_equivariant(conv, "8x0 + 4x1", "8x0 + 4x1", x, edge_index, theta, transport)

Gauge transformation law (see :mod:`meshgdl.nn.irreps`): rotating every vertex's reference
direction counter-clockwise by ``alpha_v`` (radians) changes

* features:       ``f_v -> rho(-alpha_v) f_v``
* log-map angles: ``theta_pq -> theta_pq - alpha_p``            (p = receiver, row 1)
* transport:      ``g_{q->p} -> g_{q->p} + alpha_q - alpha_p``   (q = source, row 0)

A layer is gauge equivariant iff ``layer(transformed inputs) = rho_out(-alpha) layer(inputs)``.
Edges may join two different vertex sets (e.g. pooling from a fine to a coarse mesh): then
``alpha`` holds the source (input) vertices' angles and ``alpha_out`` the receivers'.
Use float64 inputs so ``atol`` can be tight (float32 round-off is ~1e-6 relative).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch

from meshgdl.nn.irreps import IrrepsLike, as_irreps

__all__ = [
    "random_gauge",
    "transform_features",
    "gauge_transform_inputs",
    "assert_gauge_equivariant",
    "other_reference",
    "regauged_operators",
    "regauged_sample",
]


def random_gauge(n: int, generator: Optional[torch.Generator] = None, dtype=torch.float64, device=None) -> torch.Tensor:
    """Random per-vertex gauge rotations.

    Returns ``alpha: (n,)`` angles in radians, uniform in ``[-pi, pi)``, of ``dtype`` on
    ``device`` (drawn on the CPU from ``generator`` so a seed gives the same angles anywhere).
    """
    return (torch.rand(n, generator=generator, dtype=dtype) * 2 - 1).mul_(math.pi).to(device)


def transform_features(irreps: IrrepsLike, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Express features in the rotated gauges: ``rho(-alpha_v) x_v`` per vertex.

    ``x: (n, irreps.dim)`` features laid out as ``irreps``; ``alpha: (n,)`` gauge rotations
    in radians. Returns a tensor of ``x``'s shape and dtype.
    """
    return as_irreps(irreps).transform(x, -alpha.to(x.dtype))


def gauge_transform_inputs(
    alpha: torch.Tensor,
    *,
    x: Optional[torch.Tensor] = None,
    irreps: Optional[IrrepsLike] = None,
    edge_index: Optional[torch.Tensor] = None,
    theta: Optional[torch.Tensor] = None,
    transport: Optional[torch.Tensor] = None,
    alpha_target: Optional[torch.Tensor] = None,
) -> dict:
    """Apply the gauge change ``alpha`` to whichever inputs are given.

    ``alpha: (n,)`` rotations of the source (input) vertices, radians. ``x: (n, irreps.dim)``
    features (needs ``irreps``); ``edge_index: (2, E)`` long, row 0 source, row 1 receiver;
    ``theta: (E,)`` log-map angles and ``transport: (E,)`` transport angles, radians.
    ``alpha_target: (m,)`` are the receivers' angles when edges point into another vertex
    set (defaults to ``alpha``). Returns a dict with keys ``x``, ``theta``, ``transport``
    (each of its input's shape; None where not given). Angles are not wrapped to a range.
    """
    alpha_target = alpha if alpha_target is None else alpha_target
    out: dict = {"x": None, "theta": None, "transport": None}
    if x is not None:
        if irreps is None:
            raise ValueError("transforming features needs their irreps")
        out["x"] = transform_features(irreps, x, alpha)
    if theta is not None or transport is not None:
        if edge_index is None:
            raise ValueError("transforming theta/transport needs edge_index")
        src, dst = edge_index[0], edge_index[1]
        if theta is not None:
            out["theta"] = theta - alpha_target.to(theta.dtype)[dst]
        if transport is not None:
            out["transport"] = transport + alpha.to(transport.dtype)[src] - alpha_target.to(transport.dtype)[dst]
    return out


def assert_gauge_equivariant(
    fn: Callable,
    irreps_in: IrrepsLike,
    irreps_out: IrrepsLike,
    x: torch.Tensor,
    edge_index: Optional[torch.Tensor] = None,
    theta: Optional[torch.Tensor] = None,
    transport: Optional[torch.Tensor] = None,
    r: Optional[torch.Tensor] = None,
    *,
    atol: float = 1e-6,
    generator: Optional[torch.Generator] = None,
    alpha: Optional[torch.Tensor] = None,
    alpha_out: Optional[Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]] = None,
    n_trials: int = 1,
    kwargs: Optional[dict] = None,
    require_nonzero: bool = True,
) -> float:
    """Check ``fn`` against the gauge transformation law; return the largest error.

    Shapes: ``x: (n, irreps_in.dim)``; ``edge_index: (2, E)`` (row 0 source in ``x``'s vertex
    set, row 1 receiver in the output's); ``theta, transport, r: (E,)`` (angles in radians,
    ``r`` in the mesh's length unit); ``fn`` must return ``(m, irreps_out.dim)``.

    ``fn`` is called as ``fn(x, **kwargs)`` when no geometry is given (non-linearities,
    norms), else ``fn(x, edge_index, theta, transport, r=r, **kwargs)`` (``r`` only if given;
    ``r`` is gauge invariant). ``alpha`` fixes the input vertices' rotations (default: random;
    ``n_trials`` draws several). ``alpha_out`` gives the output vertices' rotations: None
    (same vertex set: ``alpha``), a tensor (first trial; later trials draw random ones) or a
    callable ``alpha -> alpha_out`` (e.g. ``lambda a: a[coarse_index]`` for pooling).
    Raises AssertionError if ``|fn(x') - rho_out(-alpha_out) fn(x)| > atol`` anywhere, or
    (``require_nonzero``) if the output is identically zero, which would make the check vacuous.
    """
    irreps_in, irreps_out = as_irreps(irreps_in), as_irreps(irreps_out)
    kwargs = dict(kwargs or {})
    if x.shape[-1] != irreps_in.dim:
        raise ValueError(f"x has {x.shape[-1]} channels but irreps_in {irreps_in} has dim {irreps_in.dim}")
    geometric = edge_index is not None

    def call(xx, th, tr):
        if not geometric:
            return fn(xx, **kwargs)
        extra = dict(kwargs)
        if r is not None:
            extra["r"] = r
        return fn(xx, edge_index, th, tr, **extra)

    out = call(x, theta, transport)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"fn must return a tensor, got {type(out).__name__}")
    if out.shape[-1] != irreps_out.dim:
        raise AssertionError(f"output has {out.shape[-1]} channels, irreps_out {irreps_out} has dim {irreps_out.dim}")
    if require_nonzero and not (out.numel() and bool(out.detach().abs().max() > 0)):
        raise AssertionError("output is identically zero: the equivariance check would be vacuous")
    worst = 0.0
    for trial in range(n_trials):
        a_in = alpha if (alpha is not None and trial == 0) else random_gauge(x.shape[0], generator, device=x.device)
        if alpha_out is None:
            a_out = a_in
        elif callable(alpha_out):
            a_out = alpha_out(a_in)
        elif trial == 0:
            a_out = alpha_out
        else:
            a_out = random_gauge(out.shape[0], generator, device=x.device)
        t = gauge_transform_inputs(
            a_in, x=x, irreps=irreps_in, edge_index=edge_index, theta=theta, transport=transport, alpha_target=a_out
        )
        out_t = call(t["x"], t["theta"], t["transport"])
        expected = transform_features(irreps_out, out, a_out)
        err = float((out_t - expected).detach().abs().max()) if out.numel() else 0.0
        worst = max(worst, err)
        if not err <= atol:
            raise AssertionError(f"not gauge equivariant: max error {err:.3e} > atol {atol:.1e} (trial {trial})")
    return worst


# ----------------------------------------------------------------------------- whole models


def other_reference(ops):
    """(n,) int64: for each vertex, the neighbour half-way along its edge list -- a
    reference direction other than the default one (:func:`regauged_operators`)."""
    import numpy as np

    q, p = ops.edge_index
    order = np.argsort(p, kind="stable")
    q, p = q[order], p[order]
    start = np.searchsorted(p, np.arange(ops.num_vertices))
    count = np.bincount(p, minlength=ops.num_vertices)
    return q[start + count // 2].astype(np.int64)


def regauged_operators(ops, reference=None, offsets=None):
    """The same mesh's :class:`~meshgdl.operators.Operators` in other gauges: each
    vertex's reference neighbour ``reference (n,)`` and an extra rotation ``offsets (n,)``
    (radians), with everything that depends on the gauges (frames, log-map angles,
    transport, tangent gradients) recomputed. A model whose outputs change is not gauge
    equivariant end to end."""
    import dataclasses

    from meshgdl.geometry.gauges import compute_gauges
    from meshgdl.geometry.gradient import tangent_gradient

    g = compute_gauges(ops.V, ops.F, reference=reference, offsets=offsets, normals=ops.normals)
    gx, gy = tangent_gradient(g)
    return dataclasses.replace(ops, frames=g.frames, edge_index=g.edge_index, theta=g.theta, r=g.r,
                               transport=g.transport, grad_x=gx, grad_y=gy)


def regauged_sample(sample, rng):
    """A :class:`~meshgdl.data.batching.Sample` with other gauges on every level (other
    reference neighbours, random rotations from ``rng``) and the pooling angles between
    levels recomputed for them."""
    from meshgdl.data.batching import Sample
    from meshgdl.data.hierarchy import pool_map

    levels = [regauged_operators(o, other_reference(o), rng.uniform(-math.pi, math.pi, o.num_vertices))
              for o in sample.levels]
    pools = [pool_map(levels[l], levels[l + 1], pm.parent) for l, pm in enumerate(sample.pools)]
    return Sample(levels[0], levels[1:], pools)
