import math

import numpy as np
import pytest
import torch
from meshes import icosphere

from meshgdl.nn.gem_conv import GEMConv, GEMGeometry, clear_geometry_cache, radial_basis
from meshgdl.nn.irreps import Irreps
from meshgdl.testing import assert_gauge_equivariant, random_gauge, transform_features

IN, OUT = "3x0 + 2x1 + 2x2", "2x0 + 3x1 + 1x3"
DT = torch.float64


def mesh_edges(F):
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)
    return torch.as_tensor(e.T.copy())


def random_geometry(ei, seed, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    E = ei.shape[1]
    theta = torch.rand(E, generator=g, dtype=dtype) * 2 * math.pi
    transport = (torch.rand(E, generator=g, dtype=dtype) * 2 - 1) * math.pi
    r = torch.rand(E, generator=g, dtype=dtype) * 0.5 + 0.05
    return theta, transport, r


@pytest.fixture(scope="module")
def sphere():
    V, F = icosphere(2)
    ei = mesh_edges(F)
    return V, F, ei, *random_geometry(ei, 0)


def with_hub(ei, n):
    """Add edges from every vertex to vertex 0, giving it a degree far above the rest."""
    has = set(ei[0][ei[1] == 0].tolist())
    src = torch.tensor([q for q in range(1, n) if q not in has])
    return torch.cat([ei, torch.stack([src, torch.zeros_like(src)])], 1)


def reference_forward(conv, x, ei, theta, transport, r):
    """The docstring formula, edge by edge, from conv.kernel() (independent of the fast path)."""
    n = x.shape[0]
    K = conv.kernel(theta, r)  # (E, d_out, d_in)
    t = conv.irreps_in.transform(x[ei[0]], transport)
    deg = torch.bincount(ei[1], minlength=n).to(x.dtype)
    c = {"mean": 1 / deg, "sqrt": deg.rsqrt(), "sum": torch.ones_like(deg)}[conv.aggr]
    msg = (K @ t[:, :, None])[..., 0] * c[ei[1], None]
    out = torch.zeros(n, conv.irreps_out.dim, dtype=x.dtype).index_add_(0, ei[1], msg)
    out = out + x @ conv.self_kernel().T
    if conv.bias is not None:
        out[:, conv.irreps_out.scalar_mask()] += conv.bias
    return out


@pytest.mark.parametrize(
    "radial, aggr, irreps_in, irreps_out",
    [
        (0, "mean", IN + " + 1x1 + 1x0", OUT),
        (3, "mean", IN + " + 1x1 + 1x0", OUT),
        (0, "sqrt", IN, OUT),
        (2, "sum", IN, OUT),
        # terms out of frequency order on both sides, frequencies absent on the other side
        (2, "mean", "1x2 + 2x0 + 1x1 + 1x0", "1x1 + 2x0 + 1x4 + 1x0 + 2x1"),
        (0, "mean", "2x3", "1x0"),
    ],
)
def test_matches_reference_formula(sphere, radial, aggr, irreps_in, irreps_out):
    V, _, ei, _, _, _ = sphere
    ei = with_hub(ei, len(V))  # exercises the extra rows of high-degree vertices
    theta, transport, r = random_geometry(ei, 1)
    torch.manual_seed(0)
    conv = GEMConv(irreps_in, irreps_out, radial=radial, radial_cutoff=0.6, aggr=aggr).double()
    with torch.no_grad():
        if conv.bias is not None:
            conv.bias.normal_()
    x = conv.irreps_in.randn(len(V), dtype=DT)
    out = conv(x, ei, theta, transport, r if radial else None)
    geom = conv.precompute(ei, theta, transport, r, len(V))
    assert geom.num_rows > geom.num_nodes
    torch.testing.assert_close(out, reference_forward(conv, x, ei, theta, transport, r), atol=1e-12, rtol=0)


@pytest.mark.parametrize("radial", [0, 2])
def test_gauge_equivariant(sphere, radial):
    V, _, ei, theta, transport, r = sphere
    torch.manual_seed(1)
    conv = GEMConv(IN, OUT, radial=radial, radial_cutoff=0.5).double()
    x = conv.irreps_in.randn(len(V), dtype=DT)
    g = torch.Generator().manual_seed(2)
    err = assert_gauge_equivariant(
        conv, IN, OUT, x, ei, theta, transport, r if radial else None, atol=1e-6, n_trials=3, generator=g
    )
    assert err < 1e-11


def test_equivariance_check_catches_broken_layers(sphere):
    """The shared helper must fail for a layer that ignores transport or the angle."""
    V, _, ei, theta, transport, _ = sphere
    torch.manual_seed(2)
    conv = GEMConv(IN, OUT).double()
    x = conv.irreps_in.randn(len(V), dtype=DT)
    no_transport = lambda x, ei, th, tr: conv(x, ei, th, torch.zeros_like(tr))  # noqa: E731
    fixed_angle = lambda x, ei, th, tr: conv(x, ei, theta, tr)  # noqa: E731
    for fn in (no_transport, fixed_angle):
        with pytest.raises(AssertionError, match="not gauge equivariant"):
            assert_gauge_equivariant(fn, IN, OUT, x, ei, theta, transport, atol=1e-6)


def test_real_gauges_equivariant_and_edge_order_free():
    """With geometry computed by compute_gauges, a new choice of reference directions
    (offsets) recomputes theta and transport (edges re-sorted) and the output rotates."""
    from meshgdl.geometry.gauges import compute_gauges

    V, F = icosphere(2)
    torch.manual_seed(3)
    conv = GEMConv(IN, OUT, radial=2, radial_cutoff=0.3).double()
    x = conv.irreps_in.randn(len(V), dtype=DT)
    alpha = random_gauge(len(V), torch.Generator().manual_seed(4))
    outs = []
    for off in (None, alpha):
        G = compute_gauges(V, F, offsets=None if off is None else off.numpy())
        ei, th, tr, r = (torch.as_tensor(a) for a in (G.edge_index, G.theta, G.transport, G.r))
        xi = x if off is None else transform_features(IN, x, alpha)
        outs.append(conv(xi, ei, th, tr, r))
    torch.testing.assert_close(outs[1], transform_features(OUT, outs[0], alpha), atol=1e-10, rtol=0)
    assert_gauge_equivariant(conv, IN, OUT, x, ei, th, tr, r, atol=1e-9)


def test_batched_graphs_equal_separate(sphere):
    V, F, ei, theta, transport, r = sphere
    V2, F2 = icosphere(1)
    ei2 = mesh_edges(F2)
    th2, tr2, r2 = random_geometry(ei2, 5)
    torch.manual_seed(4)
    conv = GEMConv(IN, OUT, radial=2).double()
    x1, x2 = conv.irreps_in.randn(len(V), dtype=DT), conv.irreps_in.randn(len(V2), dtype=DT)
    eib = torch.cat([ei, ei2 + len(V)], 1)
    out = conv(torch.cat([x1, x2]), eib, torch.cat([theta, th2]), torch.cat([transport, tr2]), torch.cat([r, r2]))
    torch.testing.assert_close(out[: len(V)], conv(x1, ei, theta, transport, r), atol=1e-12, rtol=0)
    torch.testing.assert_close(out[len(V) :], conv(x2, ei2, th2, tr2, r2), atol=1e-12, rtol=0)


def test_gradcheck():
    V, F = icosphere(0)
    ei = mesh_edges(F)
    theta, transport, r = random_geometry(ei, 6)
    torch.manual_seed(5)
    conv = GEMConv("1x0 + 1x1 + 1x2", "1x0 + 1x1 + 1x3", radial=2, radial_cutoff=0.5).double()
    x = conv.irreps_in.randn(len(V), dtype=DT).requires_grad_()
    params = [conv.weight, conv.self_weight, conv.bias]
    fn = lambda x, *p: conv(x, ei, theta, transport, r)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(lambda x: conv(x, ei, theta, transport, r), (x,), eps=1e-6, atol=1e-7)


def test_float32_matches_float64(sphere):
    V, _, ei, theta, transport, r = sphere
    torch.manual_seed(6)
    conv = GEMConv(IN, OUT, radial=2)
    x = conv.irreps_in.randn(len(V))
    out32 = conv(x, ei, theta.float(), transport.float(), r.float())
    assert out32.dtype == torch.float32
    out64 = conv.double()(x.double(), ei, theta, transport, r)
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=1e-5)


def test_variance_at_init():
    V, F = icosphere(3)
    ei = mesh_edges(F)
    theta, transport, r = random_geometry(ei, 7)
    ratios = {}
    for aggr in ("sqrt", "mean"):
        vals = []
        for seed in range(4):
            torch.manual_seed(seed)
            conv = GEMConv("16x0 + 16x1 + 8x2", "16x0 + 16x1 + 8x2", aggr=aggr).double()
            x = conv.irreps_in.randn(len(V), dtype=DT)
            with torch.no_grad():
                vals.append(float(conv(x, ei, theta, transport).var()))
        ratios[aggr] = sum(vals) / len(vals)
    # documented: sqrt keeps unit variance for independent inputs, mean gives ~1/2 + 1/(2 deg)
    assert 0.8 < ratios["sqrt"] < 1.25, ratios
    assert 0.45 < ratios["mean"] < 0.75, ratios


def test_learned_kernel_satisfies_constraint():
    torch.manual_seed(7)
    conv = GEMConv(IN, OUT, radial=2).double()
    g = torch.Generator().manual_seed(8)
    th = torch.rand(50, generator=g, dtype=DT) * 10
    gg = torch.rand(50, generator=g, dtype=DT) * 10
    r = torch.rand(50, generator=g, dtype=DT)
    ri, ro = Irreps(IN).rho(gg), Irreps(OUT).rho(-gg)
    torch.testing.assert_close(conv.kernel(th - gg, r), ro @ conv.kernel(th, r) @ ri, atol=1e-12, rtol=0)
    S = conv.self_kernel()
    torch.testing.assert_close(ro @ S @ ri, S.expand(50, -1, -1), atol=1e-12, rtol=0)


def test_cache_and_precomputed_geometry(sphere):
    V, _, ei, theta, transport, r = sphere
    clear_geometry_cache()
    torch.manual_seed(8)
    conv = GEMConv(IN, OUT).double()
    x = conv.irreps_in.randn(len(V), dtype=DT)
    out = conv(x, ei, theta, transport)
    geom = conv.precompute(ei, theta, transport, num_nodes=len(V))
    assert conv.precompute(ei, theta, transport, num_nodes=len(V)) is geom  # cached
    torch.testing.assert_close(conv(x, geom), out, atol=0, rtol=0)
    # writing into the geometry in place invalidates the cache
    th = theta.clone()
    out_a = conv(x, ei, th, transport)
    th.add_(0.3)
    torch.testing.assert_close(conv(x, ei, th, transport), conv(x, GEMGeometry(ei, th, transport)), atol=1e-14, rtol=0)
    assert (conv(x, ei, th, transport) - out_a).abs().max() > 1e-3


def test_structure_bias_and_self_interaction():
    conv = GEMConv("2x1", "2x1")
    assert conv.bias is None  # no scalar outputs, no bias
    conv = GEMConv("1x0", "3x0 + 1x1", self_interaction=False).double()
    assert conv.bias.shape == (3,) and conv.self_weight is None
    # one edge 1 -> 0: vertex 1 receives nothing and has no self term -> zero (bias zero at init)
    ei = torch.tensor([[1], [0]])
    out = conv(torch.ones(2, 1, dtype=DT), ei, torch.zeros(1, dtype=DT), torch.zeros(1, dtype=DT))
    assert torch.all(out[1] == 0) and out[0].abs().max() > 0
    # parameter count: 1x0 -> 3x0 (1 basis each) + 1x0 -> 1x1 (2 basis kernels)
    assert conv.weight.numel() == 3 + 2


def test_state_dict_holds_only_parameters():
    conv = GEMConv(IN, OUT, radial=2)
    assert set(conv.state_dict()) == {"weight", "self_weight", "bias"}
    # 3x0+2x1+2x2 -> 2x0+3x1+1x3: neighbour basis sizes d_out*d_in, radial 2
    n_basis = sum(mo * mi * (1 if f == 0 else 2) * (1 if g == 0 else 2) for mo, g in Irreps(OUT) for mi, f in Irreps(IN))
    assert conv.weight.numel() == 2 * n_basis
    assert conv.self_weight.numel() == 2 * 3 * 1 + 3 * 2 * 2  # 3x0 -> 2x0 ([1]) and 2x1 -> 3x1 (I, J)
    other = GEMConv(IN, OUT, radial=2)
    other.load_state_dict(conv.state_dict())
    x = Irreps(IN).randn(5)
    ei = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    th, tr = torch.rand(5), torch.rand(5)
    torch.testing.assert_close(other(x, ei, th, tr, th), conv(x, ei, th, tr, th))


def test_row_width_choice():
    from meshgdl.nn.gem_conv import _choose_width

    assert _choose_width(torch.tensor([5, 6, 6, 6, 5, 6])) == 6
    assert _choose_width(torch.tensor([6] * 100 + [64, 64])) == 6  # hubs get extra rows
    assert _choose_width(torch.tensor([40] * 10)) == 40
    assert _choose_width(torch.tensor([0, 0])) == 1
    assert _choose_width(torch.tensor([3, 100000])) == 64  # capped


def test_radial_basis():
    r = torch.tensor([0.0, 0.2, 0.5, 1.0, 50.0], dtype=DT)
    phi = radial_basis(r, 4, 1.0)
    torch.testing.assert_close(phi.square().sum(1), torch.ones(5, dtype=DT))
    assert phi[0].argmax() == 0 and phi[3].argmax() == 3 and phi[4].argmax() == 3
    assert torch.isfinite(phi).all()
    assert torch.equal(radial_basis(r, 1, 1.0), torch.ones(5, 1, dtype=DT))
    with pytest.raises(ValueError):
        radial_basis(r, 0, 1.0)


def test_bad_input(sphere):
    V, _, ei, theta, transport, r = sphere
    conv = GEMConv(IN, OUT, radial=2).double()
    x = conv.irreps_in.randn(len(V), dtype=DT)
    with pytest.raises(ValueError, match="shape"):
        conv(x[:, :-1], ei, theta, transport, r)
    with pytest.raises(ValueError, match="pass the edge lengths r"):
        conv(x, ei, theta, transport)
    with pytest.raises(ValueError, match="one value per edge"):
        conv(x, ei, theta[:-1], transport, r)
    with pytest.raises(ValueError, match="self-loops"):
        conv(x, torch.cat([ei, torch.tensor([[3], [3]])], 1), *(torch.cat([t, t[:1]]) for t in (theta, transport, r)))
    with pytest.raises(ValueError, match="outside"):
        conv(x[:10], ei, theta, transport, r)
    bad = theta.clone()
    bad[5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        conv(x, ei, bad, transport, r)
    with pytest.raises(ValueError, match="aggr"):
        GEMConv(IN, OUT, aggr="max")
    with pytest.raises(ValueError):
        GEMConv("", OUT)
    with pytest.raises(ValueError, match="not both"):
        conv(x, conv.precompute(ei, theta, transport, r), theta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(sphere):
    V, _, ei, theta, transport, r = sphere
    conv = GEMConv(IN, OUT, radial=2).double()
    x = conv.irreps_in.randn(len(V), dtype=DT)
    ref = conv(x, ei, theta, transport, r)
    out = conv.cuda()(x.cuda(), ei.cuda(), theta.cuda(), transport.cuda(), r.cuda())
    torch.testing.assert_close(out.cpu(), ref, atol=1e-12, rtol=0)
