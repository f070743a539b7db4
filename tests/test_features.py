"""Input features: analytic curvature values, gauge laws of the rho_1/rho_2 features, layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from meshes import grid, icosphere

from meshgdl.geometry.gauges import compute_gauges
from meshgdl.geometry.gradient import tangent_gradient
from meshgdl.geometry.normals import boundary_vertices
from meshgdl.nn.features import feature_irreps, input_features
from meshgdl.nn.irreps import Irreps
from meshgdl.operators import collate, compute_operators


def tube(n_around=40, n_z=16, radius=0.5, height=2.0):
    """Open cylinder around the z axis, outward-oriented."""
    u = np.linspace(0, 2 * np.pi, n_around, endpoint=False)
    z = np.linspace(-height / 2, height / 2, n_z)
    uu, zz = np.meshgrid(u, z, indexing="ij")
    V = np.stack([radius * np.cos(uu), radius * np.sin(uu), zz], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_around), np.arange(n_z - 1), indexing="ij")
    a, b = i * n_z + j, ((i + 1) % n_around) * n_z + j
    F = np.concatenate([np.stack([a, b, b + 1], -1).reshape(-1, 3), np.stack([a, b + 1, a + 1], -1).reshape(-1, 3)])
    return V, F.astype(np.int64)


def ops_of(V, F, **kw):
    kw = {"k_eig": 12, "n_hks": 5, **kw}
    return compute_operators(V, F, **kw)


def T(ops):
    return ops.to_torch(torch.float64)


def test_feature_irreps_layout_and_errors():
    ir = feature_irreps(["shape_operator", "hks", "hks_grad", "xyz", "gauss_curvature"], n_hks=4)
    assert ir == Irreps("8x0 + 4x1 + 1x2")
    with pytest.raises(ValueError, match="unknown input feature"):
        feature_irreps(["hks", "curvature"])
    with pytest.raises(ValueError, match="repeat"):
        feature_irreps(["hks", "hks"])
    with pytest.raises(ValueError, match="at least one"):
        feature_irreps([])
    with pytest.raises(ValueError, match="WKS"):
        feature_irreps(["wks"])


def test_scalar_blocks_keep_order_of_kinds():
    ops = T(ops_of(*icosphere(2)))
    x, ir = input_features(ops, ["hks_grad", "constant", "hks", "xyz"])
    assert ir == Irreps("9x0 + 5x1") and x.shape == (ops.num_vertices, 9 + 10)
    assert torch.equal(x[:, 0], torch.ones(ops.num_vertices, dtype=torch.float64))
    torch.testing.assert_close(x[:, 1:6], ops.hks)
    # hks_grad interleaves (x, y) components per channel
    gx = torch.sparse.mm(ops.grad_x, ops.hks)
    torch.testing.assert_close(x[:, 9::2], gx)
    with pytest.raises(ValueError, match="WKS"):
        input_features(ops, ["wks"])
    ops.wks = ops.hks * 2  # a bundle that carries a WKS
    xw, irw = input_features(ops, ["wks"])
    assert irw == Irreps("5x0") and torch.equal(xw, ops.hks * 2)


@pytest.mark.parametrize("radius", [1.0, 2.0])
def test_curvatures_of_a_sphere(radius):
    V, F = icosphere(3, radius=radius)
    ops = T(ops_of(V, F))
    x, _ = input_features(ops, ["mean_curvature", "gauss_curvature"])
    H, K = x[:, 0].numpy(), x[:, 1].numpy()
    # pointwise estimates converge at valence-6 vertices only; the 12 valence-5 ones
    # of an icosphere stay ~14% off at any resolution (lumped-mass discretisation)
    reg = np.bincount(F.ravel()) == 6
    np.testing.assert_allclose(H[reg], 1 / radius, rtol=0.02)
    np.testing.assert_allclose(K[reg], 1 / radius**2, rtol=0.02)
    np.testing.assert_allclose(H, 1 / radius, rtol=0.16)
    np.testing.assert_allclose(K, 1 / radius**2, rtol=0.16)
    # discrete Gauss-Bonnet: the integral is exactly 4 pi
    assert abs((K * ops.mass.numpy()).sum() - 4 * np.pi) < 1e-9


def test_curvatures_of_a_plane_and_a_tube():
    V, F = grid(9, 9, jitter=0.25, seed=1)
    ops = T(ops_of(V, F))
    x, _ = input_features(ops, ["mean_curvature", "gauss_curvature", "shape_operator"])
    inner = ~boundary_vertices(F, len(V))
    assert np.abs(x[inner].numpy()).max() < 1e-9
    V, F = tube(radius=0.5)
    ops = T(ops_of(V, F))
    x, _ = input_features(ops, ["mean_curvature", "gauss_curvature"])
    inner = ~boundary_vertices(F, len(V))
    np.testing.assert_allclose(x[inner, 0].numpy(), 1.0, rtol=0.02)  # H = 1/(2r)
    assert np.abs(x[inner, 1].numpy()).max() < 1e-9


def test_shape_operator_gives_principal_directions_of_a_tube():
    r = 0.5
    V, F = tube(radius=r)
    ops = T(ops_of(V, F))
    x, ir = input_features(ops, ["shape_operator"])
    assert ir == Irreps("1x2")
    # away from the rims (one-sided stencils there are less accurate)
    inner = np.abs(V[:, 2]) < 0.8
    # circumferential direction (maximal curvature 1/r) at angle phi in each gauge;
    # gauge coordinates of a 3D tangent vector: project on the gauge axes G_x X, G_y X
    t = np.stack([-V[:, 1], V[:, 0], np.zeros(len(V))], 1) / r
    gx, gy = ops.grad_x.to_dense().numpy() @ V, ops.grad_y.to_dense().numpy() @ V
    phi = np.arctan2(np.einsum("ij,ij->i", t, gy), np.einsum("ij,ij->i", t, gx))
    want = (1 / (2 * r)) * np.stack([np.cos(2 * phi), np.sin(2 * phi)], 1)
    np.testing.assert_allclose(x[inner].numpy(), want[inner], atol=0.02)
    # a sphere's shape operator is isotropic: no preferred direction
    xs, _ = input_features(T(ops_of(*icosphere(3))), ["shape_operator"])
    assert xs.abs().max() < 0.05


def _regauged(ops, rng):
    """Other reference neighbours + random rotations; returns the bundle and the
    intrinsic rotation alpha (theta_new = theta_old - alpha_p on every edge)."""
    n = ops.num_vertices
    q, p = ops.edge_index
    ref = np.array([rng.choice(q[p == v]) for v in range(n)])
    g = compute_gauges(ops.V, ops.F, reference=ref, offsets=rng.uniform(-np.pi, np.pi, n), normals=ops.normals)
    gx, gy = tangent_gradient(g)
    o0, o1 = np.argsort(q * n + p), np.argsort(g.edge_index[0] * n + g.edge_index[1])
    alpha = np.zeros(n)
    alpha[p[o0]] = ops.theta[o0] - g.theta[o1]
    new = dataclasses.replace(ops, frames=g.frames, edge_index=g.edge_index, theta=g.theta, transport=g.transport,
                              grad_x=gx, grad_y=gy)
    return new, alpha


def test_equivariant_features_obey_the_gauge_law():
    V, F = icosphere(2)
    V = V * (1 + 0.1 * np.random.default_rng(0).standard_normal((len(V), 1)))
    ops = ops_of(V, F)
    ops2, alpha = _regauged(ops, np.random.default_rng(1))
    kinds = ["hks", "mean_curvature", "gauss_curvature", "hks_grad", "shape_operator"]
    x, ir = input_features(T(ops), kinds)
    x2, ir2 = input_features(T(ops2), kinds)
    assert ir == ir2 and ir.max_freq == 2
    assert x[:, ir.scalar_mask().logical_not()].abs().max() > 1e-2
    torch.testing.assert_close(x2, ir.transform(x, -torch.as_tensor(alpha)), atol=1e-10, rtol=0)


def test_xyz_is_centred_per_mesh_and_batch_matches_singles():
    a = ops_of(*icosphere(1))
    V, F = icosphere(2)
    b = ops_of(V + np.array([5.0, 0.0, 0.0]), F)
    kinds = ["xyz", "gauss_curvature", "hks_grad"]
    xb, _ = input_features(collate([a, b], dtype=torch.float64), kinds)
    xa1, _ = input_features(T(a), kinds)
    xb1, _ = input_features(T(b), kinds)
    torch.testing.assert_close(xb, torch.cat([xa1, xb1]))
    m = torch.as_tensor(b.mass)
    assert (m[:, None] * xb1[:, :3]).sum(0).abs().max() < 1e-12
    assert xb1[:, :3].norm(dim=1).max() < 1.01
