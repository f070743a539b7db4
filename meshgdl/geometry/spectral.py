"""Laplace–Beltrami eigenbasis and spectral point signatures (HKS, WKS).

Conventions follow :mod:`meshgdl.geometry.laplacian`: ``L`` is the PSD weak Laplacian,
``M`` the diagonal lumped mass matrix, and eigenpairs solve ``L φ = λ M φ`` with
``φᵀ M φ = I``. Eigenvalues are in 1/length², eigenvectors in 1/length (so that
``Σ_x M_x φ(x)² = 1``).

The eigen-solver
----------------
:func:`eigenbasis` computes the ``k`` smallest eigenpairs with a shift-invert
*block* Krylov method written for this problem rather than ARPACK:

* Because ``M`` is diagonal, the problem is reduced to the standard symmetric one
  ``A ψ = λ ψ`` with ``A = M^{-1/2} L M^{-1/2}`` and ``φ = M^{-1/2} ψ``.
* The null space (constants on each connected component, known in closed form) is
  deflated exactly, so the operator ``T = (A + s I)^{-1}`` never has the huge
  eigenvalue ``1/s`` in its projected matrix; ``s`` is a tiny positive shift
  (``1e-8 * max diag A``, i.e. the eigen-shift ``σ = -s`` sits just below 0) that
  makes ``A + sI`` positive definite.
* ``A + sI`` is factorised once with a sparse Cholesky (``cholespy``, CHOLMOD with a
  nested-dissection ordering) when that package is installed, otherwise with
  SuperLU (``scipy.sparse.linalg.splu``). Blocks of right-hand sides are solved
  together, which is several times cheaper per vector than one at a time.
* The Krylov operator is ``T²`` (two solves per block: same eigenvectors, a ~25%
  smaller basis for the same accuracy, so less Gram–Schmidt work) when the solves are
  cholespy's and the estimated spread ``λ_k / λ_1`` is at most ``SQUARE_MAX_RATIO``
  (squaring squares the round-off relative to the k-th eigenvalue), else ``T`` itself.
* Block Lanczos with full re-orthogonalisation done as BLAS-3: a cheap local step
  against the two most recent blocks, then one classical Gram–Schmidt pass over the
  whole basis (its update skipped when every coefficient is below ``SKIP_TOL`` = 1e-13
  of the block's norm, i.e. when it would only move round-off; a second pass only when
  a column loses more than half its norm). The
  basis is Fortran-ordered and the products go to ``dgemm`` directly, in the
  (basis-columns x n)(n x b) / in-place update shapes OpenBLAS is fast at.
  Converged Ritz pairs are detected from the Lanczos residual ``‖B_m y_last‖ <=
  tol·θ``; when the basis hits ``max_dim`` it is thick-restarted from the best Ritz
  vectors.
* A Krylov space grown from ``b`` random vectors sees at most ``b`` directions of an
  eigenspace, so when ``b`` of the converged eigenvalues coincide (only then can a copy
  be missing) a short random probe of the orthogonal complement checks for
  eigenvalues of exact multiplicity above the block size (symmetric meshes, identical
  disconnected parts) and adds any that were missed.
* A final Rayleigh–Ritz step with ``A`` itself on the converged Ritz vectors gives
  eigenvalues accurate to round-off and exactly M-orthonormal eigenvectors.

Measured against DiffusionNet's ``robust_laplacian`` + ``eigsh(L, 128, M, sigma=1e-8)``
in ``tools/bench/operators.py`` (numbers in ``docs/benchmarks.md``, "Operators").

``tests/test_spectral.py`` checks it against ``scipy.sparse.linalg.eigsh`` (ARPACK).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import dgemm as _dgemm
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from meshgdl.threads import blas_threads as limit_blas

#: Problems with at most this many vertices are solved with dense LAPACK (ARPACK's
#: generalised path; the block solver's bound is :func:`use_dense`).
DENSE_MAX_N = 1200


def use_dense(n: int, k: int) -> bool:
    """Whether :func:`eigenbasis` solves ``k`` pairs of an ``n``-vertex problem with dense
    LAPACK rather than the block solver: up to ``max(400, 4k)`` vertices.

    Dense LAPACK's O(n³) overtakes the block solver's fixed cost (factorisation, a
    basis of ~2k vectors) there: with one BLAS thread, ``tools/bench/eigen.py --sizes
    200,400,750,1200,2000 --k K --settings dense,krylov`` timed the block solver 0.41 /
    1.10 / 3.1x as fast as dense at 200 / 400 / 750 vertices for k = 16, 0.49 / 0.95 /
    2.3x for k = 64, 1.00 / 0.76 / 1.33x for k = 128 (bumpy spheres; 2.2x on a
    752-vertex human at k = 64, the segmenters' working meshes).
    """
    return n <= max(400, 4 * k)

#: A Gram-Schmidt update whose coefficients are all below this fraction of the
#: smallest column norm is skipped (see ``_block_krylov``).
SKIP_TOL = 1e-13

#: Krylov on T² only while λ_k / λ_1 (estimated) stays below this (see ``_square_is_safe``).
SQUARE_MAX_RATIO = 1000.0

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers
def _mass_vector(M, n: int) -> np.ndarray | None:
    """Diagonal of M as (n,) float64, or None when M is not diagonal."""
    if sp.issparse(M):
        M = sp.csr_matrix(M)
        if M.shape != (n, n):
            raise ValueError(f"M must have shape ({n}, {n}), got {M.shape}")
        off = M - sp.diags(M.diagonal())
        if off.count_nonzero():
            return None
        m = np.asarray(M.diagonal(), dtype=np.float64)
    else:
        M = np.asarray(M, dtype=np.float64)
        if M.ndim == 1:
            m = M
        elif M.ndim == 2 and M.shape == (n, n):
            if np.count_nonzero(M - np.diag(np.diag(M))):
                return None
            m = np.diag(M).copy()
        else:
            raise ValueError(f"M must be (n, n) or a (n,) vector of masses, got shape {M.shape}")
    if m.shape != (n,):
        raise ValueError(f"M must have {n} diagonal entries, got {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("M must have finite, strictly positive diagonal entries")
    return m


class _SPDSolver:
    """Factorisation of a sparse SPD matrix; ``solve(B)`` for ``B: (n,) or (n, b)``."""

    def __init__(self, S: sp.csr_matrix, backend: str = "auto"):
        self.n = S.shape[0]
        self.backend = None
        if backend in ("auto", "cholespy"):
            try:
                import cholespy
            except ImportError:
                if backend == "cholespy":
                    raise
            else:
                S = sp.csr_matrix(S)
                # CHOLMOD reads one triangle; pass the lower one explicitly.
                Lo = sp.tril(S, format="csr")
                try:
                    self._chol = cholespy.CholeskySolverD(
                        self.n,
                        Lo.indptr.astype(np.int32),
                        Lo.indices.astype(np.int32),
                        np.ascontiguousarray(Lo.data, dtype=np.float64),
                        cholespy.MatrixType.CSR,
                    )
                except (ValueError, RuntimeError):
                    pass  # not positive definite: LU below copes with that
                else:
                    self.backend = "cholespy"
                    if not self._verify(S):
                        self.backend = None
        if self.backend is None:
            if backend == "cholespy":
                raise np.linalg.LinAlgError("matrix is not positive definite for cholespy")
            self._lu = spla.splu(sp.csc_matrix(S))
            self.backend = "superlu"

    def _verify(self, S) -> bool:
        rng = np.random.default_rng(12345)
        u = rng.standard_normal(self.n)
        x = self.solve(u)
        if not np.all(np.isfinite(x)):
            return False
        return bool(np.linalg.norm(S @ x - u) <= 1e-6 * np.linalg.norm(u))

    def solve(self, B: np.ndarray) -> np.ndarray:
        if self.backend == "cholespy":
            B = np.ascontiguousarray(B, dtype=np.float64)
            X = np.empty_like(B)
            self._chol.solve(B, X)
            return X
        return self._lu.solve(np.asarray(B, dtype=np.float64))


def _null_vectors(A: sp.csr_matrix, m: np.ndarray) -> np.ndarray:
    """(n, c) orthonormal null vectors of the scaled Laplacian A = D L D (D = M^-1/2):
    ``sqrt(m)`` restricted to each connected component, when A annihilates it."""
    n = A.shape[0]
    pattern = A.copy()
    pattern.data = np.abs(pattern.data)
    pattern.eliminate_zeros()
    c, labels = connected_components(pattern, directed=False)
    Z = sp.csc_matrix((np.sqrt(m), (np.arange(n), labels)), shape=(n, c)).toarray()
    Z /= np.linalg.norm(Z, axis=0)
    scale = max(float(np.abs(A.diagonal()).max()), np.finfo(float).tiny)
    ok = np.linalg.norm(A @ Z, axis=0) <= 1e-9 * scale
    return np.ascontiguousarray(Z[:, ok])


def _colnorms(W: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->j", W, W))


def _orthonormalize_against(W: np.ndarray, Z: np.ndarray, passes: int = 2) -> None:
    if Z.shape[1]:
        for _ in range(passes):
            W -= Z @ (Z.T @ W)


# The Gram-Schmidt products are tall-skinny (n x nq against n x b) and memory-bound.
# Called through BLAS directly on Fortran-ordered operands they run as
# (nq x n)(n x b) and an in-place (n x nq)(nq x b) update, the shapes OpenBLAS is fast
# at; numpy's ``Q.T @ W`` / ``W -= Q @ C`` produce C-ordered results (computed as
# (b x n)(n x nq)) plus a temporary: ~1.5x the time at 10k vertices, 400 columns.
def _project(Q: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``Q.T @ W`` (Q, W Fortran-ordered float64)."""
    return _dgemm(1.0, Q, W, trans_a=1)


def _subtract(W: np.ndarray, Q: np.ndarray, C: np.ndarray) -> None:
    """``W -= Q @ C`` in place (W, Q Fortran-ordered float64)."""
    out = _dgemm(-1.0, Q, C, 1.0, W, overwrite_c=1)
    if out is not W:  # not expected (W is Fortran-ordered): keep the result anyway
        W[...] = out


def _deflate(W: np.ndarray, Z: np.ndarray) -> None:
    """One CGS pass of Fortran-ordered W against the orthonormal columns of Z."""
    if Z.shape[1]:
        _subtract(W, Z, _project(Z, W))


def _block_krylov(A, solver, kw, Z, *, b, tol, max_dim, rng, max_restarts, probe_dim=None, info=None,
                  power=1):
    """Top-kw eigenpairs of T = solver^{-1} (``power=2``: of T², two solves per block,
    same eigenvectors, eigenvalues squared) on the complement of span(Z).

    Returns (theta (kw,), X (n, kw) Ritz vectors, orthonormal to ~eps). With
    ``probe_dim`` it stops once the basis has that size and returns the top Ritz
    values only (lower bounds of the true ones), with X = None. ``info`` (a dict), if
    given, gets ``"fresh": True`` when exhausted directions were refilled with new
    random vectors (the basis is then no longer a Krylov space of ``b`` vectors)."""
    n = A.shape[0]
    p = min(kw + max(b, kw // 4), max_dim - 2 * b)
    p = max(p, kw)
    Z = np.asfortranarray(Z, dtype=np.float64)
    Q = np.empty((n, max_dim + b), order="F")
    H = np.zeros((max_dim + b, max_dim + b))
    W = np.asfortranarray(rng.standard_normal((n, b)))
    _deflate(W, Z)
    _deflate(W, Z)
    Q[:, :b] = np.linalg.qr(W)[0]
    nq = b
    next_check = min(max(int(2.5 * kw), kw + 2 * b), max_dim)
    restarts = 0
    last_check = None
    theta_scale = 0.0
    while True:
        j0 = nq - b
        W = np.asarray(solver.solve(Q[:, j0:nq]), dtype=np.float64).reshape(n, b)
        if power == 2:
            W = np.asarray(solver.solve(W), dtype=np.float64).reshape(n, b)
        W = np.asfortranarray(W)
        # T maps span(Z) to itself, so T Q_j keeps only round-off in span(Z): one pass
        _deflate(W, Z)
        C = np.zeros((nq, b))
        # local three-term step against the two newest blocks (orthonormal to each
        # other): removes the large components cheaply
        lo = max(0, j0 - b)
        Cl = _project(Q[:, lo:nq], W)
        _subtract(W, Q[:, lo:nq], Cl)
        C[lo:nq] = Cl
        Qa = Q[:, :nq]
        before = _colnorms(W)
        C2 = _project(Qa, W)
        # The update only when it changes W beyond round-off: after the local step W's
        # components along the older basis are often already ~1e-14 of its norm (about a
        # third of the blocks at 10k vertices), and subtracting them is a second pass over
        # the whole basis. Skipped, they stay in the basis as a non-orthogonality of at
        # most SKIP_TOL (H keeps the exact Krylov relation T Q = Q H + ..., the final
        # Rayleigh-Ritz uses the Gram matrix of the Ritz vectors).
        if float(np.abs(C2).max(initial=0.0)) > SKIP_TOL * float(before.min()):
            _subtract(W, Qa, C2)
            C += C2
            if np.any(_colnorms(W) < 0.5 * before):
                C2 = _project(Qa, W)
                _subtract(W, Qa, C2)
                C += C2
        H[:nq, j0:nq] = C
        theta_scale = max(theta_scale, float(np.abs(np.diag(C[j0:nq])).max()))
        # Householder QR of the Fortran-ordered block: LAPACK's fast path (numpy's qr
        # of a C array is several times slower on tall-skinny blocks)
        Qn, R = sla.qr(W, mode="economic", overwrite_a=True, check_finite=False)
        # Krylov space exhausted in some direction: continue with fresh random vectors.
        dead = np.abs(np.diag(R)) <= 1e-12 * max(theta_scale, np.finfo(float).tiny)
        if np.any(dead):
            if info is not None:
                info["fresh"] = True
            for j in np.flatnonzero(dead):
                r = rng.standard_normal((n, 1))
                _orthonormalize_against(r, Z)
                for _ in range(2):
                    r -= Qa @ (Qa.T @ r)
                    r -= Qn @ (Qn.T @ r)
                Qn[:, j] = r[:, 0] / np.linalg.norm(r)
                R[j, :] = 0.0
            Qn, R2 = np.linalg.qr(Qn)
            R = R2 @ R
        H[nq:nq + b, j0:nq] = R
        Q[:, nq:nq + b] = Qn
        nq += b
        m = nq - b
        if probe_dim is not None:
            if m < probe_dim and m + b <= max_dim:
                continue
            Hm = H[:m, :m]
            return sla.eigvalsh(0.5 * (Hm + Hm.T))[-kw:], None
        if m < next_check and m + b <= max_dim:
            continue
        Hm = H[:m, :m]
        Hm = 0.5 * (Hm + Hm.T)
        keep = min(p, m)
        # all pairs by divide and conquer, then the top `keep`: 2x faster than MRRR
        # (evr) for the subset at these sizes (m ~ 300-450, keep ~ m / 3)
        th, Y = sla.eigh(Hm, driver="evd", overwrite_a=True, check_finite=False)
        th, Y = th[m - keep:], Y[:, m - keep:]
        res = np.linalg.norm(H[m:m + b, :m] @ Y, axis=0)
        worst = float(np.max(res[-kw:] / np.maximum(tol * np.abs(th[-kw:]), np.finfo(float).tiny)))
        if worst <= 1.0:
            X = _dgemm(1.0, Q[:, :m], np.asfortranarray(Y[:, -kw:]))  # Fortran-ordered
            return th[-kw:], X
        # Each check costs an O(m^3) eigensolve: extrapolate the (geometric) residual
        # decay since the previous check to jump close to the converged size.
        step = max(b, m // 10)
        if last_check is not None and worst < last_check[1]:
            rate = (np.log(last_check[1]) - np.log(worst)) / (m - last_check[0])
            step = int(np.clip(np.ceil(np.log(worst) / rate / b) * b, b, max(b, m // 4)))
        last_check = (m, worst)
        next_check = m + step
        if m + b > max_dim:
            restarts += 1
            if restarts > max_restarts:
                raise RuntimeError(
                    f"eigenbasis: block Krylov did not converge after {max_restarts} restarts "
                    f"({int(np.sum(res[-kw:] <= tol * np.abs(th[-kw:])))}/{kw} pairs converged)"
                )
            coupling = H[m:m + b, :m] @ Y
            # Ritz vectors in place, a row chunk at a time (no n x keep temporary);
            # columns keep..m are only read, and keep + b < m. dgemm on a contiguous
            # copy of the chunk: 1.5x faster than numpy's product on the strided view
            # (whose C-ordered result takes the slow (keep x m)(m x rows) path).
            Y = np.asfortranarray(Y)
            for r0 in range(0, n, 1024):
                Q[r0:r0 + 1024, :keep] = _dgemm(1.0, np.asfortranarray(Q[r0:r0 + 1024, :m]), Y)
            Q[:, keep:keep + b] = Q[:, m:m + b]
            H[:] = 0.0
            H[:keep, :keep] = np.diag(th)
            H[keep:keep + b, :keep] = coupling
            nq = keep + b
            next_check = nq  # check again after one new block
            last_check = None


def _square_is_safe(solver, Z, m, kw, s, seed, max_ratio=None) -> bool:
    """Whether block Lanczos may run on T² instead of T = (A + sI)^-1.

    T² (two solves per block) reaches the same accuracy with a ~25% smaller Krylov
    space, which saves more Gram-Schmidt work than the extra solves cost (bumpy
    spheres, k = 128: 1.16x at 10k vertices, 1.08x at 30k, 1.02x at 100k). Squaring
    also squares the spread of the spectrum, and with it the round-off relative to the
    k-th eigenvalue, ~eps (λ_k / λ_1)²: only when λ_k / λ_1 <= ``max_ratio``.
    λ_1 (smallest non-zero) from three steps of power iteration on T (a lower bound on
    its top eigenvalue, i.e. λ_1 at most somewhat over-estimated; a bottleneck's
    isolated λ_1 is found at once), λ_k from Weyl's law, 4πk / area.
    """
    if max_ratio is None:
        max_ratio = SQUARE_MAX_RATIO
    n = len(m)
    v = np.random.default_rng([seed, 1]).standard_normal((n, 1))
    theta = 0.0
    for _ in range(4):
        _orthonormalize_against(v, Z)
        nv = float(np.linalg.norm(v))
        if not nv > 0:
            return False
        v /= nv
        w = np.asarray(solver.solve(v), dtype=np.float64).reshape(n, 1)
        theta = float(v[:, 0] @ w[:, 0])
        v = w
    if not theta > 0:
        return False
    lam1 = 1.0 / theta - s
    lamk = 4.0 * np.pi * kw / float(np.sum(m))
    return bool(lam1 > 0 and lamk <= max_ratio * lam1)


def _has_cluster(theta: np.ndarray, size: int, rtol: float = 1e-6) -> bool:
    """Whether ``size`` of the values agree to a relative ``rtol``."""
    if size <= 1:
        return len(theta) > 0
    th = np.sort(theta)
    if len(th) < size:
        return False
    spread = th[size - 1:] - th[:len(th) - size + 1]
    return bool(np.any(spread <= rtol * np.abs(th[size - 1:])))


def _complete_multiplets(A, solver, theta, X, Z, *, b, rng, max_restarts, max_rounds=10, krylov=True,
                         power=1):
    """Recover eigenvectors a block Krylov space cannot see.

    A Krylov space grown from ``b`` start vectors holds at most ``b`` directions of any
    eigenspace, so an eigenvalue of exact multiplicity > ``b`` (symmetric meshes,
    identical disconnected parts) can be silently under-counted. Probe the orthogonal
    complement of everything found with a fresh random block: any eigenvalue there
    that beats the current k-th one was missed; swap it in and probe again.

    With ``krylov=True`` (theta, X come from one block Krylov space of ``b`` start
    vectors, thick restarts included: every restart stays inside the T-invariant space
    the start block generates, whose projection on an eigenspace has rank <= b), a
    missed copy implies that ``b`` copies of that eigenvalue were found, all converged
    (so within ``tol`` of each other): without ``b`` values agreeing to 1e-6 nothing
    can be missing and the probe is skipped.
    """
    n, kw = X.shape
    if krylov and not _has_cluster(theta, b):
        return theta, X
    for _ in range(max_rounds):
        D = np.empty((n, Z.shape[1] + kw), order="F")
        D[:, :Z.shape[1]] = Z
        D[:, Z.shape[1]:] = X
        room = n - D.shape[1]
        kp = min(b, max(room // 8, 1))
        # A short probe (no convergence needed): Ritz values are lower bounds, so one
        # above the current k-th value proves a missed eigenvalue. A missed copy of an
        # already-found eigenvalue dominates the complement and shows up within a few
        # blocks unless it sits right at the cut-off.
        md = min(max(6 * b, 32), room - b)
        md -= md % b
        if md < kp + 2 * b:
            break
        th_p, _ = _block_krylov(A, solver, kp, D, b=b, tol=0.0, max_dim=md, rng=rng, power=power,
                                max_restarts=0, probe_dim=md)
        n_missed = int(np.sum(th_p > theta.min() * (1.0 + 1e-9)))
        if n_missed == 0:
            break
        md = min(max(4 * n_missed + 4 * b, 8 * b, 64), room - b)
        md -= md % b
        th_p, X_p = _block_krylov(A, solver, n_missed, D, b=b, tol=1e-8, max_dim=md, rng=rng, power=power,
                                  max_restarts=max_restarts)
        missed = th_p > theta.min() * (1.0 + 1e-9)
        if not np.any(missed):
            break
        theta = np.concatenate([theta, th_p[missed]])
        X = np.concatenate([X, X_p[:, missed]], axis=1)
        keep = np.argsort(theta)[-kw:]
        theta, X = theta[keep], X[:, keep]
    return theta, X


def _fix_signs(evecs: np.ndarray) -> np.ndarray:
    """Make the largest-magnitude entry of each eigenvector positive (determinism).

    Flips the columns of ``evecs`` in place (callers pass arrays they own)."""
    if evecs.size == 0:
        return evecs
    idx = np.argmax(np.abs(evecs), axis=0)
    s = np.sign(evecs[idx, np.arange(evecs.shape[1])])
    s[s == 0] = 1.0
    evecs *= s
    return evecs


def _finish(evals: np.ndarray, evecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort, clip round-off negatives, fix signs; ``evecs`` (owned by the caller's
    computation) may be modified in place."""
    order = np.argsort(evals, kind="stable")
    if np.any(order != np.arange(len(order))):
        evals, evecs = evals[order], evecs[:, order]
    else:  # already sorted: no copy, but the same Fortran layout the reordering gives
        evecs = np.asfortranarray(evecs)
    scale = max(float(np.abs(evals).max(initial=0.0)), np.finfo(float).tiny)
    # round-off can push the null eigenvalues slightly below zero
    evals = np.where((evals < 0) & (evals > -1e-8 * scale), 0.0, evals)
    return evals, _fix_signs(evecs)


# --------------------------------------------------------------------------- public API
def eigenbasis(
    L,
    M,
    k: int,
    *,
    sigma: float | None = None,
    tol: float = 1e-8,
    block_size: int | None = None,
    max_dim: int | None = None,
    seed: int = 0,
    factorization: str = "auto",
    max_restarts: int = 30,
    blas_threads: int | None = 1,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenpairs of ``L φ = λ M φ``.

    Args:
      L: (n, n) sparse symmetric PSD Laplacian (rows sum to zero), e.g. from
        :func:`meshgdl.geometry.laplacian.laplacian`.
      M: (n, n) mass matrix, sparse or dense, or its (n,) diagonal; entries > 0.
      k: number of eigenpairs (>= 1). If ``k >= n`` all ``n`` pairs are returned.
      sigma: ``None`` (default) for the smallest eigenvalues with the fast solver
        described in the module docstring. A float requests the ``k`` eigenvalues
        nearest ``sigma`` through ARPACK (``scipy.sparse.linalg.eigsh`` shift-invert);
        that path is also used when ``M`` is not diagonal.
      tol: relative Ritz residual ``‖Tx - θx‖ <= tol·θ`` at which a pair counts as
        converged (``T = (A + sI)^{-1}``, or ``T²`` and ``θ²`` when the solver uses
        it); 1e-8 gives eigenvalues to ~1e-12 relative.
      block_size: vectors per Krylov block (solved together); default 8 for k >= 96,
        4 for k >= 24, else 2 (larger blocks amortise solves, smaller ones need a
        smaller Krylov space).
      max_dim: Krylov basis size before a thick restart (memory: ``8·n·max_dim`` bytes);
        default ``max(1.75k + 4·block_size, 64)`` with the ``T²`` operator (module
        docstring), ``max(2.25k + 4·block_size, 64)`` with ``T`` (one or two thick
        restarts; the restarts cost no extra solves on the benchmark meshes, and the
        smaller basis makes each Gram-Schmidt pass cheaper: with ``T`` at k = 128,
        1.05-1.1x faster than ``3k + 4·block_size`` at 10k-30k vertices, the same at
        100k, with a quarter less basis memory).
      seed: seed of the random start block (results are deterministic for a seed).
      factorization: ``"auto"`` (cholespy if installed, else SuperLU), ``"cholespy"``
        or ``"superlu"``.
      blas_threads: BLAS threads for the block solver (default 1: its dense blocks
        are n x 8, too small to share; on 2 cores, 2 threads were 1.6-3.4x slower at
        15k vertices and 1.2x slower at 100k, ``tools/bench/eigen.py``); None leaves the
        process setting.
      method: ``"auto"`` (dense LAPACK for small problems, :func:`use_dense`, else the
        block solver), ``"dense"`` or ``"krylov"`` (forced; Krylov still falls back to
        dense where its basis would not fit). With ``sigma`` or a non-diagonal ``M``
        only ``"auto"`` and ``"dense"`` apply (ARPACK above the dense size).

    Returns:
      ``evals: (k,) float64`` ascending, with round-off negatives clipped to 0, and
      ``evecs: (n, k) float64`` with ``evecsᵀ M evecs = I``; each eigenvector's
      largest-magnitude entry is positive. Multiple eigenvalues come with an arbitrary
      orthonormal basis of their eigenspace.

    Known limit: an eigenvalue whose exact multiplicity exceeds ``block_size`` is
    completed by a random probe (see module docstring); a missed copy lying within a
    relative ~1e-3 of the next eigenvalue *at the cut-off k* may go unnoticed, which
    then returns that next, nearly equal eigenvalue in its place.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if method not in ("auto", "dense", "krylov"):
        raise ValueError(f"method must be 'auto', 'dense' or 'krylov', got {method!r}")
    if factorization not in ("auto", "cholespy", "superlu"):
        raise ValueError(f"factorization must be 'auto', 'cholespy' or 'superlu', got {factorization!r}")
    if block_size is None:
        block_size = 8 if k >= 96 else 4 if k >= 24 else 2
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if blas_threads is not None and (not isinstance(blas_threads, (int, np.integer)) or blas_threads < 1):
        raise ValueError(f"blas_threads must be None or an integer >= 1, got {blas_threads!r}")
    L = sp.csr_matrix(L, dtype=np.float64)
    n = L.shape[0]
    if L.shape != (n, n) or n == 0:
        raise ValueError(f"L must be a non-empty square matrix, got shape {L.shape}")
    if not np.all(np.isfinite(L.data)):
        raise ValueError("L contains NaN or inf")
    m = _mass_vector(M, n)
    k = min(k, n)

    if m is None or sigma is not None:
        Mm = sp.csr_matrix(sp.diags(m)) if m is not None else sp.csr_matrix(M, dtype=np.float64)
        if method == "dense" or n <= DENSE_MAX_N or k >= n - 1:
            Ld, Md = L.toarray(), Mm.toarray()
            if sigma is None:
                evals, evecs = sla.eigh(0.5 * (Ld + Ld.T), Md, subset_by_index=[0, k - 1])
            else:
                evals, evecs = sla.eigh(0.5 * (Ld + Ld.T), Md)
                sel = np.sort(np.argsort(np.abs(evals - sigma), kind="stable")[:k])
                evals, evecs = evals[sel], evecs[:, sel]
        else:
            s0 = float(sigma) if sigma is not None else -1e-8 * float(np.abs(L.diagonal()).max())
            evals, evecs = spla.eigsh(L, k=k, M=Mm, sigma=s0, which="LM")
        return _finish(evals, evecs)

    d = 1.0 / np.sqrt(m)
    A = sp.csr_matrix(L.multiply(d[:, None]).multiply(d[None, :]))
    A = (0.5 * (A + A.T)).tocsr()

    if method == "dense" or (method == "auto" and use_dense(n, k)) or k >= n // 2:
        evals, psi = sla.eigh(A.toarray(), subset_by_index=[0, k - 1])
        return _finish(evals, d[:, None] * psi)

    Z = _null_vectors(A, m)
    c = Z.shape[1]
    if c >= k:
        return _finish(np.zeros(k), d[:, None] * Z[:, :k])
    kw = k - c
    b = int(min(block_size, max(1, (n - c) // 8)))

    def basis_size(factor):
        md = max_dim if max_dim is not None else max(int(factor * kw) + 4 * b, 64)
        md = int(min(max(md, kw + 3 * b), n - c - b))
        return md - md % b

    md = basis_size(2.25)
    if md < kw + 2 * b:
        evals, psi = sla.eigh(A.toarray(), subset_by_index=[0, k - 1])
        return _finish(evals, d[:, None] * psi)

    s = 1e-8 * max(float(A.diagonal().max()), np.finfo(float).tiny)
    solver = _SPDSolver((A + s * sp.eye(n, format="csr")).tocsr(), backend=factorization)
    rng = np.random.default_rng(seed)
    try:
        with limit_blas(blas_threads):
            # T² trades Gram-Schmidt work for solves: only with cholespy's cheap
            # multi-RHS solves (with SuperLU it was 2% slower at 10k vertices)
            power = 2 if solver.backend == "cholespy" and _square_is_safe(solver, Z, m, kw, s, seed) else 1
            if power == 2 and basis_size(1.75) >= kw + 2 * b:
                md = basis_size(1.75)
            info = {}
            theta, X = _block_krylov(A, solver, kw, Z, b=b, tol=tol, max_dim=md, rng=rng,
                                     max_restarts=max_restarts, info=info, power=power)
            theta, X = _complete_multiplets(A, solver, theta, X, Z, b=b, rng=rng, max_restarts=max_restarts,
                                            krylov=not info.get("fresh", False), power=power)
    except RuntimeError as exc:
        # Badly conditioned meshes (tiny components, slivers) can stall the block
        # solver; ARPACK's shift-invert is slower but converges there.
        log.warning("%s; falling back to ARPACK shift-invert", exc)
        s0 = -1e-8 * float(np.abs(L.diagonal()).max())
        # Extra pairs and a seeded start: ARPACK can miss a copy of a multiple eigenvalue
        # at the cut-off k, and its default random start makes that a coin toss.
        k2 = int(min(n - 1, k + max(4, k // 2)))
        evals, evecs = spla.eigsh(L, k=k2, M=sp.diags(m).tocsr(), sigma=s0, which="LM",
                                  v0=np.random.default_rng(seed).standard_normal(n))
        order = np.argsort(evals)[:k]
        return _finish(evals[order], evecs[:, order])

    # Rayleigh–Ritz with A itself: eigenvalues to round-off, exactly orthonormal vectors.
    # X is orthogonal to span(Z) to round-off already (every block was deflated): one pass.
    X = np.asfortranarray(X)
    _deflate(X, Z)
    G = X.T @ (A @ X)
    B = X.T @ X
    lam, Y = sla.eigh(0.5 * (G + G.T), 0.5 * (B + B.T), overwrite_a=True, overwrite_b=True,
                      check_finite=False)
    evals = np.concatenate([np.zeros(c), lam])
    # [Z, X Y] scaled by M^-1/2, written in place into one Fortran-ordered array
    evecs = np.empty((n, c + kw), order="F")
    evecs[:, :c] = Z
    out = _dgemm(1.0, X, np.asfortranarray(Y), 0.0, evecs[:, c:], overwrite_c=1)
    if not np.shares_memory(out, evecs):
        evecs[:, c:] = out
    evecs *= d[:, None]
    return _finish(evals, evecs)


def _positive_spectrum(evals: np.ndarray, evecs: np.ndarray):
    evals = np.asarray(evals, dtype=np.float64)
    evecs = np.asarray(evecs, dtype=np.float64)
    if evals.ndim != 1 or evecs.ndim != 2 or evecs.shape[1] != len(evals):
        raise ValueError(f"evals (k,) and evecs (n, k) do not match: {evals.shape} vs {evecs.shape}")
    if not (np.all(np.isfinite(evals)) and np.all(np.isfinite(evecs))):
        raise ValueError("evals/evecs contain NaN or inf")
    scale = max(float(np.abs(evals).max(initial=0.0)), np.finfo(float).tiny)
    pos = evals > 1e-8 * scale
    if not np.any(pos):
        raise ValueError("need at least one positive eigenvalue for HKS/WKS")
    return evals, evecs, pos


def default_hks_times(evals, n_times: int = 16) -> np.ndarray:
    """(n_times,) log-spaced times from ``4 ln10 / λ_max`` to ``4 ln10 / λ_1``.

    ``λ_1`` is the smallest positive eigenvalue (Sun, Ovsjanikov & Guibas 2009): at the
    shortest time the last eigenfunction is damped by ``e^{-4 ln 10} = 1e-4``, at the
    longest time the first non-constant one is. Units: length².
    """
    evals = np.asarray(evals, dtype=np.float64)
    scale = max(float(np.abs(evals).max(initial=0.0)), np.finfo(float).tiny)
    pos = evals[evals > 1e-8 * scale]
    if len(pos) == 0:
        raise ValueError("need at least one positive eigenvalue for HKS times")
    c = 4.0 * np.log(10.0)
    return np.geomspace(c / pos.max(), c / pos.min(), int(n_times))


def hks(evals, evecs, times=None, n_times: int = 16, *, normalize: bool = False, mass=None) -> np.ndarray:
    """Heat kernel signature ``HKS(x, t) = Σ_i exp(-λ_i t) φ_i(x)²``: (n, T) float64.

    ``evals: (k,)``, ``evecs: (n, k)`` M-orthonormal (from :func:`eigenbasis`).
    ``times: (T,)`` in length² (default :func:`default_hks_times` with ``n_times``).
    With ``normalize=True`` each column is divided by its mean over vertices
    (mass-weighted when ``mass: (n,)`` is given, where the mean is the heat trace over
    the area): the result is dimensionless and, with the default spectrum-relative
    times, invariant to a uniform scaling of the shape.
    """
    evals, evecs, _ = _positive_spectrum(evals, evecs)
    t = default_hks_times(evals, n_times) if times is None else np.atleast_1d(np.asarray(times, dtype=np.float64))
    if t.ndim != 1 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("times must be a 1-D array of finite, non-negative values")
    out = (evecs**2) @ np.exp(-np.outer(np.maximum(evals, 0.0), t))
    if normalize:
        out = _normalize_columns(out, mass)
    return out


def _normalize_columns(S: np.ndarray, mass) -> np.ndarray:
    if mass is None:
        mean = S.mean(axis=0)
    else:
        w = np.asarray(mass, dtype=np.float64).reshape(-1)
        if w.shape != (S.shape[0],):
            raise ValueError(f"mass must have shape ({S.shape[0]},), got {w.shape}")
        mean = (w @ S) / w.sum()
    return S / np.maximum(mean, np.finfo(float).tiny)


def wks(evals, evecs, n_energies: int = 16, sigma_factor: float = 7.0) -> np.ndarray:
    """Wave kernel signature (Aubry, Schlickewei & Cremers 2011): (n, E) float64.

    ``WKS(x, e) = Σ_i φ_i(x)² g_e(λ_i) / Σ_i g_e(λ_i)`` with
    ``g_e(λ) = exp(-(e - log λ)² / (2σ²))`` over the positive eigenvalues (the constant
    eigenfunction carries no shape information and ``log 0`` is undefined). Energies
    ``e`` are ``n_energies`` values evenly spaced in ``[log λ_1, log λ_max]`` and
    ``σ = sigma_factor * (energy spacing)``. Each column is normalised by its
    ``Σ_i g_e(λ_i)`` so every energy band has comparable magnitude; values are in
    1/area like ``φ²``.
    """
    evals, evecs, pos = _positive_spectrum(evals, evecs)
    if n_energies < 1:
        raise ValueError(f"n_energies must be >= 1, got {n_energies}")
    if not sigma_factor > 0:
        raise ValueError(f"sigma_factor must be > 0, got {sigma_factor}")
    loglam = np.log(evals[pos])
    phi2 = evecs[:, pos] ** 2
    lo, hi = float(loglam.min()), float(loglam.max())
    e = np.linspace(lo, hi, int(n_energies))
    delta = (hi - lo) / max(int(n_energies) - 1, 1)
    sigma = sigma_factor * delta if delta > 0 else 1.0
    g = np.exp(-((e[None, :] - loglam[:, None]) ** 2) / (2.0 * sigma**2))  # (k', E)
    return (phi2 @ g) / g.sum(axis=0)
