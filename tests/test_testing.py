"""The public equivariance helper (meshgdl.testing) must reject broken layers, not only
accept good ones: otherwise every layer test built on it could pass vacuously."""

import subprocess
import sys

import pytest
import torch

from meshgdl.nn.irreps import Irreps
from meshgdl.testing import assert_gauge_equivariant, gauge_transform_inputs, random_gauge, transform_features

DT = torch.float64
IRREPS = "2x0 + 2x1 + 1x2"


def _x(n=50, seed=0):
    return Irreps(IRREPS).randn(n, dtype=DT, generator=torch.Generator().manual_seed(seed))


def _norm_scale(x):
    """Equivariant: every rho_n copy scaled by a function of its own (invariant) norm."""
    out = x.clone()
    for sl, (_, freq) in zip(Irreps(IRREPS).slices(), Irreps(IRREPS)):
        block = x[:, sl]
        if freq == 0:
            out[:, sl] = torch.tanh(block)
        else:
            pairs = block.reshape(len(x), -1, 2)
            out[:, sl] = (pairs * torch.sigmoid(pairs.norm(dim=-1, keepdim=True))).reshape(len(x), -1)
    return out


def _add_constant_to_rho1(x):
    """Not equivariant: a constant 2-vector is the same in every gauge, a rho_1 feature is not."""
    out = x.clone()
    out[:, 2:4] += torch.tensor([0.5, -0.25], dtype=x.dtype)
    return out


def _transport_sum(x, edge_index, theta, transport):
    """Equivariant message passing: ``out_p = sum_{q->p} rho(g_{q->p}) x_q``."""
    src, dst = edge_index
    msg = Irreps(IRREPS).transform(x[src], transport)
    return torch.zeros_like(x).index_add_(0, dst, msg)


def _graph(n=50, e=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    theta = random_gauge(e, g)
    transport = random_gauge(e, g)
    return ei, theta, transport


def test_passes_equivariant_pointwise_layer():
    err = assert_gauge_equivariant(_norm_scale, IRREPS, IRREPS, _x(), atol=1e-12, n_trials=3)
    assert err < 1e-12


def test_fails_constant_added_to_rho1():
    with pytest.raises(AssertionError, match="not gauge equivariant"):
        assert_gauge_equivariant(_add_constant_to_rho1, IRREPS, IRREPS, _x(), atol=1e-6)
    # the scalar-only analogue is fine: constants are gauge invariant
    add_to_scalar = lambda x: x + torch.nn.functional.pad(torch.ones(1, 1, dtype=x.dtype), (0, x.shape[1] - 1))  # noqa: E731
    assert_gauge_equivariant(add_to_scalar, IRREPS, IRREPS, _x(), atol=1e-12)


def test_geometric_layer_passes_and_ignoring_transport_fails():
    ei, theta, transport = _graph()
    x = _x()
    err = assert_gauge_equivariant(_transport_sum, IRREPS, IRREPS, x, ei, theta, transport, atol=1e-12, n_trials=2)
    assert err < 1e-12
    no_transport = lambda x, ei, th, tr: _transport_sum(x, ei, th, torch.zeros_like(tr))  # noqa: E731
    with pytest.raises(AssertionError, match="not gauge equivariant"):
        assert_gauge_equivariant(no_transport, IRREPS, IRREPS, x, ei, theta, transport, atol=1e-6)


def test_vacuous_and_malformed_checks_are_errors():
    x = _x()
    with pytest.raises(AssertionError, match="identically zero"):
        assert_gauge_equivariant(torch.zeros_like, IRREPS, IRREPS, x)
    with pytest.raises(AssertionError, match="channels"):
        assert_gauge_equivariant(lambda x: x[:, :3], IRREPS, IRREPS, x)
    with pytest.raises(ValueError, match="channels"):
        assert_gauge_equivariant(_norm_scale, IRREPS, IRREPS, x[:, :4])


def test_transform_law_of_inputs():
    """theta shifts by the receiver's rotation, transport by source minus receiver (radians)."""
    ei, theta, transport = _graph(n=5, e=7)
    alpha = random_gauge(5, torch.Generator().manual_seed(3))
    x = _x(n=5)
    t = gauge_transform_inputs(alpha, x=x, irreps=IRREPS, edge_index=ei, theta=theta, transport=transport)
    torch.testing.assert_close(t["theta"], theta - alpha[ei[1]])
    torch.testing.assert_close(t["transport"], transport + alpha[ei[0]] - alpha[ei[1]])
    torch.testing.assert_close(t["x"], transform_features(IRREPS, x, alpha))
    # scalars are untouched; a rho_1 pair turns by -alpha
    torch.testing.assert_close(t["x"][:, :2], x[:, :2])
    c, s = torch.cos(-alpha), torch.sin(-alpha)
    torch.testing.assert_close(t["x"][:, 2], c * x[:, 2] - s * x[:, 3])


def test_importable_without_pytest():
    code = "import sys; sys.modules['pytest'] = None; import meshgdl.testing as t; print(t.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "assert_gauge_equivariant" in out.stdout
