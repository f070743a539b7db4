"""Validation of mesh arrays handed to the library: one rule set for every entry point.

``check_arrays(V, F)`` is what every geometry function, the model inputs and the
I/O layer run on arrays they are given: ``V`` real ``(n, 3)`` and finite, ``F``
integer ``(m, 3)`` with ``m > 0`` and indices in ``[0, n)``. Violations raise one
:class:`meshgdl.errors.MeshError` line naming the problem (and the first offending
vertex or face).
"""

from __future__ import annotations

import numpy as np

from meshgdl.errors import MeshError


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def check_arrays(V, F, name: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """Check arrays passed directly to the library; return them as float64 / int64.

    Raises MeshError for: wrong shapes, non-integer faces, no faces, non-finite
    coordinates, indices out of range.
    """
    V = np.asarray(V)
    F = np.asarray(F)
    if V.ndim != 2 or V.shape[1] != 3:
        raise MeshError(f"{name}: vertices must have shape (n, 3), got {V.shape}")
    if not np.issubdtype(V.dtype, np.number) or np.iscomplexobj(V):
        raise MeshError(f"{name}: vertices must be real numbers, got dtype {V.dtype}")
    if F.ndim != 2 or F.shape[1] != 3:
        raise MeshError(f"{name}: faces must have shape (m, 3), got {F.shape}")
    if len(F) == 0:
        raise MeshError(f"{name}: no faces (a point cloud?); a triangle mesh is needed")
    if not np.issubdtype(F.dtype, np.integer):
        raise MeshError(f"{name}: faces must be integers, got dtype {F.dtype}")
    V = V.astype(np.float64, copy=False)
    check_finite(V, name)
    n = len(V)
    lo, hi = int(F.min()), int(F.max())
    if lo < 0 or hi >= n:
        bad = (F < 0) | (F >= n)
        j = int(np.argmax(bad.any(axis=1)))
        raise MeshError(
            f"{name}: face {j} references vertex {int(F[j][bad[j]][0])}, "
            f"but there are only {n} vertices (indices 0..{n - 1})"
        )
    return np.ascontiguousarray(V), np.ascontiguousarray(F, dtype=np.int64)


def check_finite(V: np.ndarray, name: str) -> None:
    """Raise MeshError naming the first vertex of ``V`` (n, 3) with a NaN/inf coordinate."""
    bad = ~np.isfinite(V)
    if bad.any():
        i = int(np.argmax(bad.any(axis=1)))
        raise MeshError(
            f"{name}: vertex {i} (0-based) has a non-finite coordinate {V[i].tolist()} "
            f"({_plural(int(bad.any(axis=1).sum()), 'such vertex', 'such vertices')})"
        )


__all__ = ["check_arrays", "check_finite"]
