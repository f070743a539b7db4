"""DiffusionNet baseline: spectral diffusion laws, gradient features, whole-network invariances."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.linalg
import torch
from meshes import icosphere
from scipy.spatial.transform import Rotation

from meshgdl.nn.diffusion import DiffusionBlock, DiffusionNet, SpatialGradientFeatures, spectral_diffusion
from meshgdl.operators import collate, compute_operators
from meshgdl.testing import assert_gauge_equivariant, other_reference, regauged_operators


def bumpy_sphere(subdiv=2, seed=0, amp=0.05):
    V, F = icosphere(subdiv)
    return V * (1 + amp * np.random.default_rng(seed).standard_normal((len(V), 1))), F


@pytest.fixture(scope="module")
def small():
    """A 42-vertex mesh with its complete M-orthonormal eigenbasis."""
    V, F = bumpy_sphere(1, seed=3)
    ops = compute_operators(V, F, k_eig=8, n_hks=4)
    M = np.diag(ops.mass)
    w, U = scipy.linalg.eigh(ops.L.toarray(), M)
    return ops, np.clip(w, 0, None), U


def test_diffusion_time_zero_is_identity_and_matches_expm(small):
    ops, w, U = small
    x = np.random.default_rng(0).standard_normal((ops.num_vertices, 3))
    T = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    out0 = spectral_diffusion(T(x), T(U), T(w), T(ops.mass), T([0.0, 0.0, 0.0]))
    torch.testing.assert_close(out0, T(x), atol=1e-10, rtol=0)
    ts = np.array([1e-3, 1e-2, 1e-1])
    out = spectral_diffusion(T(x), T(U), T(w), T(ops.mass), T(ts)).numpy()
    A = ops.L.toarray() / ops.mass[:, None]  # heat equation M u' = -L u
    for c, t in enumerate(ts):
        np.testing.assert_allclose(out[:, c], scipy.linalg.expm(-t * A) @ x[:, c], atol=1e-9)


def test_diffusion_long_time_is_area_weighted_mean(small):
    ops, w, U = small
    x = np.random.default_rng(1).standard_normal((ops.num_vertices, 2))
    T = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    # truncated basis (k = 8) still contains the constant eigenvector
    out = spectral_diffusion(T(x), T(U[:, :8]), T(w[:8]), T(ops.mass), T([1e4, 1e4])).numpy()
    mean = (ops.mass[:, None] * x).sum(0) / ops.mass.sum()
    np.testing.assert_allclose(out, np.broadcast_to(mean, out.shape), atol=1e-10)


def test_batched_diffusion_equals_per_mesh():
    a = compute_operators(*bumpy_sphere(1, seed=1), k_eig=10, n_hks=4)
    b = compute_operators(*bumpy_sphere(2, seed=2), k_eig=10, n_hks=4)
    batch = collate([a, b], dtype=torch.float64)
    x = torch.randn(batch.num_vertices, 4, dtype=torch.float64)
    t = torch.tensor([1e-3, 1e-2, 1e-1, 1.0], dtype=torch.float64)
    out = spectral_diffusion(x, batch.evecs, batch.evals, batch.mass, t, batch.ptr)
    for i, o in enumerate((a, b)):
        s, e = int(batch.ptr[i]), int(batch.ptr[i + 1])
        ot = o.to_torch(torch.float64)
        torch.testing.assert_close(out[s:e], spectral_diffusion(x[s:e], ot.evecs, ot.evals, ot.mass, t))
    with pytest.raises(ValueError, match="one diffusion time per channel"):
        spectral_diffusion(x, batch.evecs, batch.evals, batch.mass, t[:2], batch.ptr)


@pytest.mark.parametrize("rot", [True, False])
def test_gradient_features_gauge_invariant(rot):
    torch.manual_seed(0)
    C = 5
    layer = SpatialGradientFeatures(C, with_gradient_rotations=rot).double()
    x = torch.randn(40, 2 * C, dtype=torch.float64)  # "5x1": (gx, gy) pairs per channel

    def fn(v):
        v = v.reshape(-1, C, 2)
        return layer(v[..., 0], v[..., 1])

    with torch.no_grad():
        assert_gauge_equivariant(fn, f"{C}x1", f"{C}x0", x, n_trials=3, atol=1e-12)


def _net(C_in, seed=0, **kw):
    torch.manual_seed(seed)
    return DiffusionNet(C_in, 3, width=8, n_blocks=2, **kw).double()


@pytest.fixture(scope="module")
def mesh_ops():
    V, F = bumpy_sphere(2, seed=5)
    return V, F, compute_operators(V, F, k_eig=25, n_hks=6)


def _run(net, ops):
    t = ops.to_torch(torch.float64)
    return net(t.hks, t)


def test_diffusionnet_invariant_to_rigid_motion(mesh_ops):
    V, F, ops = mesh_ops
    net = _net(6)
    R = Rotation.random(random_state=3).as_matrix()
    ops_r = compute_operators(V @ R.T + np.array([1.0, -2.0, 0.5]), F, k_eig=25, n_hks=6)
    a, b = _run(net, ops), _run(net, ops_r)
    assert a.abs().max() > 1e-3
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_diffusionnet_permutation_equivariant(mesh_ops):
    V, F, ops = mesh_ops
    net = _net(6, seed=1)
    perm = np.random.default_rng(4).permutation(len(V))
    inv = np.argsort(perm)
    ops_p = compute_operators(V[perm], inv[F], k_eig=25, n_hks=6)
    torch.testing.assert_close(_run(net, ops)[torch.as_tensor(perm)], _run(net, ops_p), atol=1e-5, rtol=0)


def test_diffusionnet_gauge_invariant(mesh_ops):
    V, F, ops = mesh_ops
    rng = np.random.default_rng(5)
    ops_g = regauged_operators(ops, reference=other_reference(ops), offsets=rng.uniform(-np.pi, np.pi, len(V)))
    assert np.abs(ops_g.theta - ops.theta).max() > 0.1
    for rot in (True, False):
        net = _net(6, seed=2, with_gradient_rotations=rot)
        a, b = _run(net, ops), _run(net, ops_g)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    # the gradient features really matter (otherwise gauge invariance is vacuous)
    net_ng = _net(6, seed=2, with_gradient_features=False)
    assert (_run(net_ng, ops) - _run(_net(6, seed=2), ops)).abs().max() > 1e-4


def test_diffusion_block_gradcheck():
    ops = compute_operators(*bumpy_sphere(1, seed=6), k_eig=6, n_hks=3).to_torch(torch.float64)
    torch.manual_seed(0)
    blk = DiffusionBlock(3, [4], diffusion_init=(1e-2, 1e-1)).double()
    x = torch.randn(ops.num_vertices, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: blk(v, ops), (x,))
    # gradients also reach the diffusion times
    blk(x, ops).square().sum().backward()
    assert blk.diffusion.diffusion_time.grad.abs().min() > 0


def test_diffusionnet_float32_and_bad_input(mesh_ops):
    _, _, ops = mesh_ops
    torch.manual_seed(0)
    net = DiffusionNet(6, 2, width=8, n_blocks=1)
    t = ops.to_torch(torch.float32)
    out, hidden = net(t.hks, t, return_hidden=True)
    assert out.shape == (ops.num_vertices, 2) and out.dtype == torch.float32 and len(hidden) == 2
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="channels"):
        net.blocks[0](torch.zeros(ops.num_vertices, 5), t)
    with pytest.raises(ValueError, match="positive"):
        DiffusionNet(6, 2, width=0)
