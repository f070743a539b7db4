import pytest
import torch

from meshgdl.nn.irreps import Irreps
from meshgdl.nn.norm import EquivariantBatchNorm, EquivariantInstanceNorm
from meshgdl.testing import assert_gauge_equivariant, transform_features

DT = torch.float64
IRR = "2x0 + 2x1 + 1x0 + 1x2"


def _x(n=300, seed=0, irreps=IRR):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, Irreps(irreps).dim, generator=g, dtype=DT) * 3 + 1


def _stats(out, irreps=IRR):
    ir = Irreps(irreps)
    mask = ir.scalar_mask()
    s = out[:, mask]
    vec = [out[:, st : st + 2] for f, st in ir.copies() if f]
    return s.mean(0), s.var(0, unbiased=False), torch.stack([v.square().sum(1).mean() for v in vec])


def test_batch_norm_train_statistics_and_equivariance():
    bn = EquivariantBatchNorm(IRR).double()
    x = _x()
    mean, var, sq = _stats(bn(x))
    torch.testing.assert_close(mean, torch.zeros(3, dtype=DT), atol=1e-12, rtol=0)
    torch.testing.assert_close(var, torch.ones(3, dtype=DT), atol=1e-3, rtol=0)
    torch.testing.assert_close(sq, torch.ones(3, dtype=DT), atol=1e-3, rtol=0)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
        bn.vector_weight.normal_()
    assert_gauge_equivariant(bn, IRR, IRR, x, atol=1e-12, n_trials=2)
    bn.eval()
    assert_gauge_equivariant(bn, IRR, IRR, x, atol=1e-12, n_trials=2)


def test_batch_norm_matches_torch_for_scalars_and_running_stats():
    x = _x(irreps="4x0")
    ours, ref = EquivariantBatchNorm("4x0", momentum=0.2).double(), torch.nn.BatchNorm1d(4, momentum=0.2).double()
    for _ in range(3):
        torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


def test_batch_norm_eval_uses_running_sqnorm():
    bn = EquivariantBatchNorm(IRR, momentum=1.0).double()
    x = _x()
    train_out = bn(x)
    bn.eval()
    ir = Irreps(IRR)
    vec = ~ir.scalar_mask()
    torch.testing.assert_close(bn(x)[:, vec], train_out[:, vec], atol=1e-12, rtol=0)
    assert int(bn.num_batches_tracked) == 1
    expected_sq = torch.stack([x[:, st : st + 2].square().sum(1).mean() for f, st in ir.copies() if f])
    torch.testing.assert_close(bn.running_sqnorm, expected_sq)


def test_instance_norm_per_mesh():
    inn = EquivariantInstanceNorm(IRR).double()
    a, b = _x(100, 1), _x(57, 2) * 5
    batch = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(57, dtype=torch.long)])
    out = inn(torch.cat([a, b]), batch)
    torch.testing.assert_close(out[:100], inn(a), atol=1e-12, rtol=0)
    torch.testing.assert_close(out[100:], inn(b), atol=1e-12, rtol=0)
    mean, var, sq = _stats(out[100:])
    torch.testing.assert_close(mean, torch.zeros(3, dtype=DT), atol=1e-12, rtol=0)
    torch.testing.assert_close(var, torch.ones(3, dtype=DT), atol=1e-3, rtol=0)
    torch.testing.assert_close(sq, torch.ones(3, dtype=DT), atol=1e-3, rtol=0)
    with torch.no_grad():
        inn.weight.normal_()
        inn.bias.normal_()
        inn.vector_weight.normal_()
    x = torch.cat([a, b])
    err = assert_gauge_equivariant(inn, IRR, IRR, x, atol=1e-12, n_trials=2, kwargs={"batch": batch})
    assert err < 1e-12


def test_norms_scale_vectors_not_rotate():
    x = _x()
    for layer in (EquivariantBatchNorm(IRR).double(), EquivariantInstanceNorm(IRR).double()):
        out = layer(x)
        v, w = x[:, 2:4], out[:, 2:4]
        cos = (v * w).sum(1) / (v.norm(dim=1) * w.norm(dim=1))
        torch.testing.assert_close(cos, torch.ones_like(cos))


def test_norm_bad_input():
    with pytest.raises(ValueError):
        EquivariantBatchNorm(IRR)(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="batch"):
        EquivariantInstanceNorm(IRR)(torch.zeros(5, Irreps(IRR).dim), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="more than one"):
        EquivariantBatchNorm(IRR)(torch.zeros(1, Irreps(IRR).dim))


def test_batch_norm_leading_dims_are_batch():
    x = _x(300)
    a, b = EquivariantBatchNorm(IRR).double(), EquivariantBatchNorm(IRR).double()
    torch.testing.assert_close(a(x.reshape(3, 100, -1)).reshape(300, -1), b(x), atol=1e-13, rtol=0)
