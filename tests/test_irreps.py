import math

import pytest
import torch

from meshgdl.nn.irreps import Irreps, as_irreps, concat


@pytest.mark.parametrize(
    "spec, terms, dim",
    [
        ("16x0 + 8x1", ((16, 0), (8, 1)), 32),
        ("0", ((1, 0),), 1),
        ("3", ((1, 3),), 2),
        (" 2 x 1+1x0 ", ((2, 1), (1, 0)), 5),
        ("3x0 + 2x1 + 2x2", ((3, 0), (2, 1), (2, 2)), 11),
        ("0x1 + 2x0", ((2, 0),), 2),  # zero multiplicities are dropped
        ("", (), 0),
    ],
)
def test_parse_good(spec, terms, dim):
    ir = Irreps(spec)
    assert ir.terms == terms
    assert ir.dim == dim
    assert Irreps(str(ir)) == ir  # str round trip
    assert eval(repr(ir), {"Irreps": Irreps}) == ir


@pytest.mark.parametrize("spec", ["x1", "2x", "a", "1x-1", "1 + + 2", "2x1.5", "-1x0", "2x1 +", "1y2", "+"])
def test_parse_bad(spec):
    with pytest.raises(ValueError):
        Irreps(spec)


def test_bad_terms_from_sequence():
    with pytest.raises(ValueError):
        Irreps([(2, -1)])
    with pytest.raises(ValueError):
        Irreps([(-1, 0)])


def test_container_helpers():
    ir = Irreps("2x0 + 3x1 + 1x0 + 2x2")
    assert ir.num_irreps == 8 and ir.max_freq == 2 and len(ir) == 4
    assert ir.count(0) == 3 and ir.count(1) == 3 and ir.count(5) == 0
    assert [(s.start, s.stop) for s in ir.slices()] == [(0, 2), (2, 8), (8, 9), (9, 13)]
    assert ir.copies() == [(0, 0), (0, 1), (1, 2), (1, 4), (1, 6), (0, 8), (2, 9), (2, 11)]
    assert Irreps("2x1 + 1x1 + 1x0").simplify() == Irreps("3x1 + 1x0")
    assert ir.sort() == Irreps("3x0 + 3x1 + 2x2")
    assert Irreps("1x0") + "2x1" == Irreps("1x0 + 2x1")
    assert concat(["1x0", Irreps("1x1"), [(2, 2)]]) == Irreps("1x0 + 1x1 + 2x2")
    assert as_irreps(ir) is ir
    assert ir.scalar_mask().tolist() == [True, True] + [False] * 6 + [True] + [False] * 4
    assert hash(Irreps("2x1")) == hash(Irreps([(2, 1)]))
    assert Irreps("1x0") != "1x1"


def test_rho_matches_definition():
    a = torch.tensor(0.7, dtype=torch.float64)
    R = Irreps("1x0 + 1x3").rho(a)
    c, s = math.cos(2.1), math.sin(2.1)
    expected = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    torch.testing.assert_close(R, expected, atol=1e-15, rtol=0)


def test_rho_homomorphism_and_orthogonal():
    g = torch.Generator().manual_seed(0)
    ir = Irreps("2x0 + 1x1 + 2x2 + 1x5")
    a = torch.rand(20, generator=g, dtype=torch.float64) * 20 - 10
    b = torch.rand(20, generator=g, dtype=torch.float64) * 20 - 10
    Ra, Rb, Rab = ir.rho(a), ir.rho(b), ir.rho(a + b)
    assert Ra.shape == (20, ir.dim, ir.dim)
    torch.testing.assert_close(Ra @ Rb, Rab, atol=1e-12, rtol=0)
    eye = torch.eye(ir.dim, dtype=torch.float64).expand(20, -1, -1)
    torch.testing.assert_close(Ra @ Ra.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(Ra @ ir.rho(-a), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(ir.rho(torch.tensor(2 * math.pi, dtype=torch.float64)), eye[0], atol=1e-12, rtol=0)
    assert torch.linalg.det(Ra).sub(1).abs().max() < 1e-12


def test_transform_equals_rho_matmul():
    g = torch.Generator().manual_seed(1)
    ir = Irreps("1x1 + 3x0 + 2x2 + 1x1")
    x = torch.randn(30, ir.dim, generator=g, dtype=torch.float64)
    a = torch.randn(30, generator=g, dtype=torch.float64) * 3
    torch.testing.assert_close(ir.transform(x, a), (ir.rho(a) @ x[:, :, None])[..., 0], atol=1e-13, rtol=0)
    # transforming by a then -a is the identity; scalars are untouched
    torch.testing.assert_close(ir.transform(ir.transform(x, a), -a), x, atol=1e-13, rtol=0)
    mask = ir.scalar_mask()
    assert torch.equal(ir.transform(x, a)[:, mask], x[:, mask])
    with pytest.raises(ValueError):
        ir.transform(x[:, :-1], a)
