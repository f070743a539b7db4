"""Geodesic distances on triangle meshes and geodesic farthest-point sampling.

* :class:`HeatGeodesics` / :func:`heat_geodesic_distance`: the heat method (Crane,
  Weischedel & Wardetzky 2013) through ``potpourri3d``; one factorisation per mesh,
  then each query costs two sparse back-substitutions. Approximate (a few percent).
* :func:`exact_geodesic_distance`: exact polyhedral distances (MMP algorithm via
  ``pygeodesic``). Much slower; meant for verification and small meshes.

Shapes: ``V: (n, 3) float64``, ``F: (m, 3) int64``; distances ``(n,) float64`` in the
units of ``V``. Vertices that cannot be reached from any source (another connected
component, or a vertex used by no face) get ``inf``; outputs never contain NaN.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.geometry.topology import is_edge_manifold, is_vertex_manifold, vertex_components
from meshgdl.geometry.validation import check_arrays


def _source_array(sources, n: int) -> np.ndarray:
    if isinstance(sources, (bool, np.bool_)):
        raise MeshError(f"source vertex must be an integer index, got {sources!r}")
    if isinstance(sources, (int, np.integer)):
        arr = np.array([int(sources)], dtype=np.int64)
    else:
        if not isinstance(sources, (Iterable, np.ndarray)):
            raise MeshError(f"sources must be an int or a sequence of ints, got {type(sources).__name__}")
        raw = np.asarray(list(sources) if not isinstance(sources, np.ndarray) else sources)
        if raw.size == 0:
            raise MeshError("need at least one source vertex")
        if raw.dtype == bool or not np.issubdtype(raw.dtype, np.integer):
            raise MeshError(f"source indices must be integers, got dtype {raw.dtype}")
        arr = raw.astype(np.int64).ravel()
    bad = (arr < 0) | (arr >= n)
    if np.any(bad):
        raise MeshError(f"source index {int(arr[bad][0])} out of range for a mesh with {n} vertices")
    return np.unique(arr)


def _finalize(d: np.ndarray, src: np.ndarray, labels: np.ndarray, referenced: np.ndarray) -> np.ndarray:
    """Unreachable -> inf, sources -> 0, tiny negative round-off -> 0."""
    d = np.asarray(d, dtype=np.float64).copy()
    reach = np.isin(labels, labels[src]) & referenced
    d[~reach] = np.inf
    bad = ~np.isfinite(d) & reach
    if np.any(bad):
        # the heat method can break down on pathological input; never hand out NaN
        d[bad] = np.inf
    d[reach] = np.maximum(d[reach], 0.0)
    d[src] = 0.0
    return d


class HeatGeodesics:
    """Reusable heat-method distance solver for one mesh.

    ``HeatGeodesics(V, F, t_coef=1.0)`` precomputes and factorises the heat and Poisson
    systems once (``potpourri3d.MeshHeatMethodDistanceSolver`` with ``use_robust=True``,
    i.e. on the intrinsic Delaunay / tufted-cover Laplacian, so non-manifold and
    poorly shaped meshes are accepted). ``t_coef`` scales the heat time
    ``t = t_coef * h²`` (h: mean edge length); larger is smoother, smaller is closer to
    exact but noisier.

    ``distance(sources)`` returns ``(n,) float64``: distance to the nearest source
    (an int or a sequence of ints). Vertices in components with no source are ``inf``.
    """

    def __init__(self, V, F, t_coef: float = 1.0):
        import potpourri3d as pp3d

        V, F = check_arrays(V, F)
        if not (np.isfinite(t_coef) and t_coef > 0):
            raise MeshError(f"t_coef must be a positive finite number, got {t_coef!r}")
        self.n = len(V)
        self.t_coef = float(t_coef)
        self._labels = vertex_components(F, self.n)[1]
        self._referenced = np.zeros(self.n, dtype=bool)
        self._referenced[F.ravel()] = True
        # potpourri3d drops vertices that no face uses (shifting indices): solve on the
        # compacted mesh and map back.
        self._used = np.flatnonzero(self._referenced)
        self._remap = np.full(self.n, -1, dtype=np.int64)
        self._remap[self._used] = np.arange(len(self._used))
        try:
            self._solver = pp3d.MeshHeatMethodDistanceSolver(
                V[self._used], self._remap[F], t_coef=self.t_coef, use_robust=True
            )
        except (RuntimeError, ValueError) as e:
            raise MeshError(f"heat-method solver could not be built for this mesh: {e}") from e

    def distance(self, sources) -> np.ndarray:
        """(n,) distances to the nearest of ``sources`` (int or sequence of ints)."""
        src = _source_array(sources, self.n)
        local = self._remap[src]
        local = local[local >= 0]
        d = np.full(self.n, np.inf)
        if len(local) == 1:
            d[self._used] = self._solver.compute_distance(int(local[0]))
        elif len(local) > 1:
            d[self._used] = self._solver.compute_distance_multisource([int(s) for s in local])
        return _finalize(d, src, self._labels, self._referenced)


def heat_geodesic_distance(V, F, sources, t_coef: float = 1.0) -> np.ndarray:
    """(n,) heat-method distances from ``sources`` (see :class:`HeatGeodesics`)."""
    return HeatGeodesics(V, F, t_coef=t_coef).distance(sources)


def exact_geodesic_distance(V, F, sources) -> np.ndarray:
    """(n,) exact polyhedral geodesic distances to the nearest source (MMP, pygeodesic).

    The slow verification path: O(n² log n) worst case, fine up to ~10⁴ vertices.
    Requires an edge- and vertex-manifold mesh (MeshError otherwise, since pygeodesic
    crashes on non-manifold input); unreachable vertices get ``inf``.
    """
    from pygeodesic import geodesic

    V, F = check_arrays(V, F)
    n = len(V)
    src = _source_array(sources, n)
    repeated = (F[:, 0] == F[:, 1]) | (F[:, 1] == F[:, 2]) | (F[:, 2] == F[:, 0])
    # pygeodesic crashes the interpreter (segfault) on such meshes: refuse them up front
    if np.any(repeated) or not is_edge_manifold(F) or not is_vertex_manifold(F):
        raise MeshError("exact geodesics need a manifold mesh without repeated-vertex faces; use HeatGeodesics")
    labels = vertex_components(F, n)[1]
    referenced = np.zeros(n, dtype=bool)
    referenced[F.ravel()] = True
    used = np.flatnonzero(referenced)  # pygeodesic rejects vertices that no face uses
    remap = np.full(n, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    local = remap[src]
    local = local[local >= 0]
    d = np.full(n, np.inf)
    if len(local):
        alg = geodesic.PyGeodesicAlgorithmExact(V[used], remap[F].astype(np.int32))
        res = alg.geodesicDistances(local.astype(np.int32), None)
        if res is None or res[0] is None:
            raise MeshError("exact geodesics failed on this mesh (pygeodesic needs a manifold mesh)")
        dl = np.asarray(res[0], dtype=np.float64)
        # pygeodesic reports unreachable targets with a huge sentinel value
        dl[~np.isfinite(dl) | (dl > 1e300)] = np.inf
        d[used] = dl
    return _finalize(d, src, labels, referenced)


def farthest_point_sampling(V, F, k: int, start: int = 0, solver: HeatGeodesics | None = None) -> np.ndarray:
    """(k,) int64 vertex indices chosen by geodesic farthest-point sampling.

    Starts at ``start``; each next sample maximises the heat-geodesic distance to the
    samples so far (one :class:`HeatGeodesics` factorisation reused, or pass
    ``solver``). Unreachable components count as infinitely far, so every component
    gets a sample before any gets a second one. Indices are distinct; ``k`` may be at
    most the number of vertices.
    """
    V, F = check_arrays(V, F)
    n = len(V)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n:
        raise MeshError(f"k must be an integer in [1, {n}], got {k!r}")
    start_arr = _source_array(start, n)
    if solver is None:
        solver = HeatGeodesics(V, F)
    elif solver.n != n:
        raise MeshError(f"solver was built for {solver.n} vertices, mesh has {n}")
    chosen = np.empty(int(k), dtype=np.int64)
    chosen[0] = start_arr[0]
    taken = np.zeros(n, dtype=bool)
    taken[chosen[0]] = True
    mind = solver.distance(int(chosen[0]))
    for i in range(1, int(k)):
        score = np.where(taken, -1.0, mind)
        nxt = int(np.argmax(score))  # first index among ties (incl. inf): deterministic
        chosen[i] = nxt
        taken[nxt] = True
        mind = np.minimum(mind, solver.distance(nxt))
    return chosen
