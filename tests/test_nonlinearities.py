import math

import pytest
import torch

from meshgdl.nn.irreps import Irreps
from meshgdl.nn.nonlinearities import GatedNonlinearity, NormNonlinearity, RegularNonlinearity
from meshgdl.testing import assert_gauge_equivariant, random_gauge, transform_features

DT = torch.float64
# frequencies 0..2, three channels each, terms deliberately interleaved
REG = "2x0 + 3x1 + 1x0 + 3x2"


def _x(irreps, n=400, seed=0):
    return torch.randn(n, Irreps(irreps).dim, generator=torch.Generator().manual_seed(seed), dtype=DT)


def test_regular_exact_for_multiples_of_sample_spacing():
    for N in (5, 7, 12):
        nl = RegularNonlinearity(REG, N)
        g = torch.Generator().manual_seed(N)
        x = _x(REG)
        alpha = torch.randint(-3 * N, 3 * N, (x.shape[0],), generator=g).to(DT) * (2 * math.pi / N)
        err = assert_gauge_equivariant(nl, REG, REG, x, alpha=alpha, atol=1e-12)
        assert err < 1e-12


def test_regular_error_decreases_with_N():
    """Equivariance error for arbitrary rotations (ReLU, Gaussian coefficients, L = 2).

    Bound asserted: max error / max |output| <= 4 (L/N)^2 (measured ~1.5-2.5 (L/N)^2; the
    error comes from aliasing of the harmonics ReLU creates above L), and it decreases
    strictly along N = 7, 11, 15, 21, 31.
    """
    x = _x(REG, n=2000, seed=1)
    alpha = random_gauge(x.shape[0], torch.Generator().manual_seed(2))
    errs = []
    for N in (7, 11, 15, 21, 31):
        nl = RegularNonlinearity(REG, N)
        out = nl(x)
        diff = nl(transform_features(REG, x, alpha)) - transform_features(REG, out, alpha)
        rel = float(diff.abs().max() / out.abs().max())
        assert rel <= 4 * (2 / N) ** 2, (N, rel)
        errs.append(rel)
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[0] > 1e-3  # not exact for arbitrary angles: the check above measures something


def test_regular_identity_and_scalar_cases():
    # identity activation: sampling then projecting is exactly the identity, so exactly equivariant
    x = _x(REG)
    nl = RegularNonlinearity(REG, 9, act=lambda t: t)
    torch.testing.assert_close(nl(x), x, atol=1e-13, rtol=0)
    assert_gauge_equivariant(nl, REG, REG, x, atol=1e-12, n_trials=2)
    # only scalars (L = 0): a pointwise activation
    x = _x("5x0")
    torch.testing.assert_close(RegularNonlinearity("5x0", 1)(x), torch.relu(x), atol=1e-14, rtol=0)


def test_regular_matches_sampled_function():
    """One channel 1x0 + 1x1: f(phi) = a0 + a1 cos phi + b1 sin phi, ReLU, DFT by hand."""
    a0, a1, b1 = 0.2, 1.0, -0.5
    N = 8
    phi = 2 * math.pi * torch.arange(N, dtype=DT) / N
    f = torch.relu(a0 + a1 * torch.cos(phi) + b1 * torch.sin(phi))
    expected = torch.stack([f.mean(), 2 * (f * torch.cos(phi)).mean(), 2 * (f * torch.sin(phi)).mean()])
    out = RegularNonlinearity("1x0 + 1x1", N)(torch.tensor([[a0, a1, b1]], dtype=DT))
    torch.testing.assert_close(out[0], expected, atol=1e-14, rtol=0)


def test_regular_bad_input():
    with pytest.raises(ValueError, match="equal multiplicities"):
        RegularNonlinearity("2x0 + 1x1", 7)
    with pytest.raises(ValueError, match="equal multiplicities"):
        RegularNonlinearity("1x0 + 1x2", 7)  # frequency 1 missing
    with pytest.raises(ValueError, match="N >= 2L\\+1 = 5"):
        RegularNonlinearity("1x0 + 1x1 + 1x2", 4)
    with pytest.raises(ValueError):
        RegularNonlinearity(REG, 7)(_x("3x0"))


IRR = "2x0 + 2x1 + 1x0 + 1x3"


def test_norm_nonlinearity_equivariant_and_values():
    torch.manual_seed(0)
    nl = NormNonlinearity(IRR).double()
    with torch.no_grad():
        nl.bias.normal_()
    x = _x(IRR)
    assert_gauge_equivariant(nl, IRR, IRR, x, atol=1e-12, n_trials=3)
    out = nl(x)
    mask = Irreps(IRR).scalar_mask()
    torch.testing.assert_close(out[:, mask], torch.relu(x[:, mask]))
    # first vector block: direction kept, norm relu(|v| + b)
    v, w = x[:, 2:4], out[:, 2:4]
    expected = torch.relu(v.norm(dim=1) + nl.bias[0])
    torch.testing.assert_close(w.norm(dim=1), expected, atol=1e-5, rtol=1e-5)
    keep = expected > 0
    torch.testing.assert_close(w[keep] / w[keep].norm(dim=1, keepdim=True), v[keep] / v[keep].norm(dim=1, keepdim=True))


def test_norm_nonlinearity_safe_at_zero():
    nl = NormNonlinearity("1x1", act=torch.nn.functional.softplus).double()
    z = torch.zeros(1, 2, dtype=DT, requires_grad=True)
    out = nl(z)
    assert torch.equal(out.detach(), torch.zeros(1, 2, dtype=DT))
    out.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_gated_layout_values_and_equivariance():
    gated = "2x1 + 1x0 + 1x2"
    nl = GatedNonlinearity("3x0", gated)
    assert nl.irreps_in == Irreps("3x0 + 4x0 + 2x1 + 1x0 + 1x2")
    assert nl.irreps_out == Irreps("3x0 + 2x1 + 1x0 + 1x2")
    x = _x(nl.irreps_in)
    out = nl(x)
    torch.testing.assert_close(out[:, :3], torch.relu(x[:, :3]))
    gates = torch.sigmoid(x[:, 3:7])
    expected = x[:, 7:] * torch.repeat_interleave(gates, torch.tensor([2, 2, 1, 2]), dim=1)
    torch.testing.assert_close(out[:, 3:], expected)
    err = assert_gauge_equivariant(nl, nl.irreps_in, nl.irreps_out, x, atol=1e-12, n_trials=3)
    assert err < 1e-12
    with pytest.raises(ValueError, match="gates"):
        nl(x[:, 1:])
    with pytest.raises(ValueError):
        GatedNonlinearity("1x1", gated)
