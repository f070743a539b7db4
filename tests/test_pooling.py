"""Gauge pooling / unpooling between hierarchy levels and global pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from meshes import icosphere

from meshgdl.geometry.gauges import compute_gauges
from meshgdl.geometry.gradient import tangent_gradient
from meshgdl.geometry.normals import vertex_areas, vertex_normals
from meshgdl.data.batching import TorchPoolMap
from meshgdl.geometry.gauges import tangent_jacobian, transport_angles
from meshgdl.geometry.remesh import decimate
from meshgdl.nn.irreps import Irreps
from meshgdl.nn.pooling import GaugePool, GaugeUnpool, global_pool, invariant_features
from meshgdl.testing import assert_gauge_equivariant, random_gauge, transform_features

IRREPS = Irreps("3x0 + 2x1 + 2x2 + 1x3")


@pytest.fixture(scope="module")
def two_levels():
    V, F = icosphere(3)
    V = V * (1 + 0.05 * np.random.default_rng(0).standard_normal((len(V), 1)))
    Vc, Fc, par = decimate(V, F, len(V) // 4)
    return V, F, Vc, Fc, par


def _pool_map(V, F, Vc, Fc, par, af=None, ac=None, ref_f=None, ref_c=None):
    def jac(V, F, off, ref):
        return tangent_jacobian(V, *tangent_gradient(compute_gauges(V, F, offsets=off, reference=ref)))

    ang = transport_angles(jac(V, F, af, ref_f), vertex_normals(V, F), jac(Vc, Fc, ac, ref_c), vertex_normals(Vc, Fc), par)
    return TorchPoolMap(torch.as_tensor(par), torch.as_tensor(ang), len(Vc))


def test_pool_and_unpool_equivariant_with_shared_helper(two_levels):
    V, F, Vc, Fc, par = two_levels
    pm = _pool_map(V, F, Vc, Fc, par)
    w = torch.as_tensor(vertex_areas(V, F))
    g = torch.Generator().manual_seed(0)
    x = IRREPS.randn(len(V), dtype=torch.float64, generator=g)
    fine = torch.arange(len(V))
    pool = GaugePool(IRREPS)

    # edges fine -> parent carry the transport angle (same law as g_{q->p})
    def fpool(x, ei, th, tr):
        return pool(x, TorchPoolMap(ei[1], tr, len(Vc)), w)

    ei = torch.stack([fine, pm.parent])
    err = assert_gauge_equivariant(
        fpool, IRREPS, IRREPS, x, ei, pm.angle, pm.angle,
        alpha_out=random_gauge(len(Vc), g), n_trials=3, generator=g, atol=1e-12,
    )
    assert err < 1e-12
    unpool = GaugeUnpool(IRREPS)

    def funpool(y, ei, th, tr):  # edges parent -> fine carry minus the angle
        return unpool(y, TorchPoolMap(ei[0], -tr, len(Vc)))

    y = IRREPS.randn(len(Vc), dtype=torch.float64, generator=g)
    assert_gauge_equivariant(
        funpool, IRREPS, IRREPS, y, torch.stack([pm.parent, fine]), -pm.angle, -pm.angle,
        alpha_out=random_gauge(len(V), g), n_trials=3, generator=g, atol=1e-12,
    )


def test_pool_equivariant_under_recomputed_independent_gauges(two_levels):
    """End to end: new random gauges on both meshes, angles recomputed from the frames."""
    V, F, Vc, Fc, par = two_levels
    rng = np.random.default_rng(1)
    af, ac = rng.uniform(-np.pi, np.pi, len(V)), rng.uniform(-np.pi, np.pi, len(Vc))
    pm0 = _pool_map(V, F, Vc, Fc, par)
    pm1 = _pool_map(V, F, Vc, Fc, par, af, ac)
    w = torch.as_tensor(vertex_areas(V, F))
    x = IRREPS.randn(len(V), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x1 = transform_features(IRREPS, x, torch.as_tensor(af))
    for reduce in ("mean", "sum"):
        pool = GaugePool(IRREPS, reduce=reduce)
        y0, y1 = pool(x, pm0, w), pool(x1, pm1, w)
        torch.testing.assert_close(y1, transform_features(IRREPS, y0, torch.as_tensor(ac)), atol=1e-10, rtol=0)
    y = IRREPS.randn(len(Vc), dtype=torch.float64)
    u0 = GaugeUnpool(IRREPS)(y, pm0)
    u1 = GaugeUnpool(IRREPS)(transform_features(IRREPS, y, torch.as_tensor(ac)), pm1)
    torch.testing.assert_close(u1, transform_features(IRREPS, u0, torch.as_tensor(af)), atol=1e-10, rtol=0)


def test_pool_is_area_weighted_mean_and_inverts_unpool(two_levels):
    V, F, Vc, Fc, par = two_levels
    pm = _pool_map(V, F, Vc, Fc, par)
    w = vertex_areas(V, F)
    xs = np.random.default_rng(3).standard_normal((len(V), 2))
    got = GaugePool("2x0")(torch.as_tensor(xs), pm, torch.as_tensor(w)).numpy()
    for c in range(0, len(Vc), 17):
        m = par == c
        np.testing.assert_allclose(got[c], (w[m, None] * xs[m]).sum(0) / w[m].sum(), rtol=1e-12)
    tot = GaugePool("2x0", reduce="sum")(torch.as_tensor(xs), pm, torch.as_tensor(w)).numpy()
    np.testing.assert_allclose(tot.sum(0), (w[:, None] * xs).sum(0), rtol=1e-12)
    # a coarse field copied down and pooled back up is unchanged (every coarse vertex has children)
    y = IRREPS.randn(len(Vc), dtype=torch.float64)
    back = GaugePool(IRREPS)(GaugeUnpool(IRREPS)(y, pm), pm, torch.as_tensor(w))
    torch.testing.assert_close(back, y, atol=1e-12, rtol=0)


def test_pool_bad_input(two_levels):
    V, F, Vc, Fc, par = two_levels
    pm = _pool_map(V, F, Vc, Fc, par)
    with pytest.raises(ValueError, match="fine vertices"):
        GaugePool(IRREPS)(IRREPS.randn(len(V) - 1, dtype=torch.float64), pm)
    with pytest.raises(ValueError, match="coarse vertices"):
        GaugeUnpool(IRREPS)(IRREPS.randn(len(V), dtype=torch.float64), pm)
    with pytest.raises(ValueError, match="reduce"):
        GaugePool(IRREPS, reduce="max")


def test_global_pool():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]], dtype=torch.float64)
    mass = torch.tensor([1.0, 3.0, 2.0, 2.0, 4.0], dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1, 1])
    out = global_pool(x, mass, batch, irreps="2x0")
    torch.testing.assert_close(out, torch.tensor([[2.5, 3.5], [(10 + 14 + 36) / 8, (12 + 16 + 40) / 8]], dtype=torch.float64))
    torch.testing.assert_close(global_pool(x, mass), (x * mass[:, None]).sum(0, keepdim=True) / mass.sum())
    # a trailing empty mesh yields zeros, not NaN
    assert torch.equal(global_pool(x, mass, batch, num_graphs=3)[2], torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="invariant"):
        global_pool(torch.zeros(5, 4), mass, batch, irreps="2x0 + 1x1")
    with pytest.raises(ValueError, match="irreps"):
        global_pool(torch.zeros(5, 3), mass, batch, irreps="2x0")


def test_invariant_features_are_gauge_invariant_norms():
    g = torch.Generator().manual_seed(4)
    x = IRREPS.randn(30, dtype=torch.float64, generator=g)
    inv = invariant_features(x, IRREPS)
    assert inv.shape == (30, 3 + 2 + 2 + 1)
    assert_gauge_equivariant(lambda y: invariant_features(y, IRREPS), IRREPS, "8x0", x, n_trials=3, generator=g, atol=1e-12)
    torch.testing.assert_close(inv[:, :3], x[:, :3])
    torch.testing.assert_close(inv[:, 3], x[:, 3:5].norm(dim=1), atol=1e-6, rtol=0)
    # differentiable at a zero vector
    z = torch.zeros(1, IRREPS.dim, dtype=torch.float64, requires_grad=True)
    invariant_features(z, IRREPS).sum().backward()
    assert torch.isfinite(z.grad).all()
