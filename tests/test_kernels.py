import itertools
import math

import pytest
import torch

from meshgdl.nn.kernels import (
    constraint_residual,
    evaluate_neighbour_basis,
    fourier_coefficients,
    kernel_basis_size,
    neighbour_kernel_basis,
    numerical_kernel_basis,
    self_kernel_basis,
)

PAIRS = list(itertools.product(range(4), range(4)))


def _angles(seed, n=200):
    g = torch.Generator().manual_seed(seed)
    theta = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 4 * math.pi
    gauge = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 4 * math.pi
    return theta, gauge


def _rho(n, a):
    if n == 0:
        return torch.ones(*a.shape, 1, 1, dtype=a.dtype)
    c, s = torch.cos(n * a), torch.sin(n * a)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


@pytest.mark.parametrize("n, m", PAIRS)
def test_neighbour_basis_satisfies_constraint(n, m):
    theta, g = _angles(n * 7 + m)
    basis = neighbour_kernel_basis(n, m)
    K, K_shift = basis(theta), basis(theta - g)  # (S, B, d_out, d_in)
    # direct statement of the constraint, independent of constraint_residual
    expected = _rho(m, -g)[:, None] @ K @ _rho(n, g)[:, None]
    assert (K_shift - expected).abs().max() < 1e-10
    assert constraint_residual(K, n, m, theta, g, K_shift).abs().max() < 1e-10


@pytest.mark.parametrize("n, m", PAIRS)
def test_self_basis_satisfies_constraint(n, m):
    _, g = _angles(100 + n * 7 + m)
    S = self_kernel_basis(n, m)
    lhs = _rho(m, -g)[:, None] @ S @ _rho(n, g)[:, None]
    if S.shape[0]:
        assert (lhs - S).abs().max() < 1e-10
    assert S.shape[0] == kernel_basis_size(n, m, "self")


@pytest.mark.parametrize("n, m", PAIRS)
def test_neighbour_basis_complete(n, m):
    """Analytic basis spans exactly the numerical solution space (band limit n+m+2)."""
    basis = neighbour_kernel_basis(n, m)
    L = n + m + 2
    numeric = numerical_kernel_basis(n, m, "neighbour", max_freq=L, seed=n * 4 + m)
    assert numeric.shape[0] == len(basis) == kernel_basis_size(n, m) == (1 if n == 0 else 2) * (1 if m == 0 else 2)
    C = fourier_coefficients(basis, L).reshape(len(basis), -1)
    Q = numeric.reshape(numeric.shape[0], -1)
    assert torch.linalg.matrix_rank(C) == len(basis)  # independent
    assert (C - (C @ Q.T) @ Q).abs().max() < 1e-9  # inside the solution space


@pytest.mark.parametrize("n, m", PAIRS)
def test_self_basis_complete(n, m):
    S = self_kernel_basis(n, m)
    numeric = numerical_kernel_basis(n, m, "self", seed=n * 4 + m)
    assert numeric.shape[0] == S.shape[0] == (1 if n == m == 0 else 2 if n == m else 0)
    if S.shape[0]:
        C, Q = S.reshape(S.shape[0], -1), numeric.reshape(numeric.shape[0], -1)
        assert torch.linalg.matrix_rank(C) == S.shape[0]
        assert (C - (C @ Q.T) @ Q).abs().max() < 1e-9


def test_numerical_solver_is_discriminating():
    # truncating the Fourier series below the band limit m+n loses the two m+n solutions
    assert numerical_kernel_basis(1, 2, "neighbour", max_freq=2).shape[0] == 2
    assert numerical_kernel_basis(2, 2, "neighbour", max_freq=3).shape[0] == 2
    # a constant kernel is not a neighbour solution for 0 -> 1: the residual is large
    theta, g = _angles(5)
    K = torch.tensor([[1.0], [0.0]], dtype=torch.float64).expand(len(theta), 1, 2, 1)
    assert constraint_residual(K, 0, 1, theta, g, K).abs().max() > 0.5


@pytest.mark.parametrize("n, m", PAIRS)
def test_basis_is_rotated_initial_value(n, m):
    """Every solution is K(theta) = rho_out(theta) K(0) rho_in(-theta), with band limit m+n."""
    theta, _ = _angles(3)
    basis = neighbour_kernel_basis(n, m)
    K = basis(theta)
    K0 = basis(torch.zeros(1, dtype=torch.float64))[0]
    expected = _rho(m, theta)[:, None] @ K0 @ _rho(n, -theta)[:, None]
    assert (K - expected).abs().max() < 1e-12
    assert int(basis.freq.max()) <= n + m
    assert set(basis.freq.tolist()) <= {abs(m - n), m + n}


def test_table_entries():
    t = torch.tensor([0.3, 1.1], dtype=torch.float64)
    c, s = torch.cos, torch.sin
    # rho_1 -> rho_2: first kernel R((2-1) theta), third R(3 theta) P
    K = evaluate_neighbour_basis(1, 2, t)
    assert K.shape == (2, 4, 2, 2)
    torch.testing.assert_close(K[:, 0], torch.stack([torch.stack([c(t), -s(t)], -1), torch.stack([s(t), c(t)], -1)], -2))
    torch.testing.assert_close(
        K[:, 2], torch.stack([torch.stack([c(3 * t), s(3 * t)], -1), torch.stack([s(3 * t), -c(3 * t)], -1)], -2)
    )
    # rho_2 -> rho_1 has frequency m - n = -1: R(-theta)
    K = evaluate_neighbour_basis(2, 1, t)
    torch.testing.assert_close(K[:, 0], torch.stack([torch.stack([c(t), s(t)], -1), torch.stack([-s(t), c(t)], -1)], -2))
    # rho_0 -> rho_3 and rho_3 -> rho_0
    torch.testing.assert_close(evaluate_neighbour_basis(0, 3, t)[:, 0, :, 0], torch.stack([c(3 * t), s(3 * t)], -1))
    torch.testing.assert_close(evaluate_neighbour_basis(3, 0, t)[:, 1, 0, :], torch.stack([-s(3 * t), c(3 * t)], -1))
    # m = n: constant I and J
    K = evaluate_neighbour_basis(2, 2, t)
    torch.testing.assert_close(K[:, 0], torch.eye(2, dtype=torch.float64).expand(2, 2, 2))
    torch.testing.assert_close(K[:, 1], torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64).expand(2, 2, 2))
    assert evaluate_neighbour_basis(0, 0, t).shape == (2, 1, 1, 1)


def test_dtype_and_bad_input():
    K = evaluate_neighbour_basis(1, 1, torch.zeros(3, dtype=torch.float32))
    assert K.dtype == torch.float32
    for bad in (-1, 1.5):
        with pytest.raises(ValueError):
            neighbour_kernel_basis(bad, 1)
        with pytest.raises(ValueError):
            self_kernel_basis(1, bad)
    with pytest.raises(ValueError):
        kernel_basis_size(1, 1, "other")
    with pytest.raises(ValueError):
        numerical_kernel_basis(1, 1, "other")
