"""The :class:`Mesh` type, the cleaning that builds it (``_build_mesh``: triangulate,
merge, drop) and :func:`validate` / :class:`MeshReport`. See :mod:`meshgdl.io` for the
cleaning steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.geometry.validation import check_arrays, check_finite
from meshgdl.io._common import _plural

# A face is "degenerate" when its area is below this fraction of the squared
# bounding-box diagonal: far below anything a cotangent weight can survive.
_DEGENERATE_REL_AREA = 1e-14


# ----------------------------------------------------------------------------- Mesh


@dataclass
class Mesh:
    """A cleaned triangle mesh and its relation to the file it came from.

    Attributes
    ----------
    V : (n, 3) float64
        Vertex positions (order: first appearance in the file).
    F : (m, 3) int64
        Triangles, indices into ``V``; orientation as in the file.
    orig_to_new : (n_orig_vertices,) int64
        For each vertex of the file, its index in ``V``; merged duplicates map to
        the same index, vertices used by no face map to -1.
    face_origin : (m,) int64
        For each triangle, the index of the file's face (polygon) it came from.
    n_orig_vertices, n_orig_faces : int
        Vertex and face (polygon) counts of the file.
    path : str or None
        The file, or None for meshes built from arrays.
    warnings : list of str
        What cleaning changed (merged / dropped / removed counts), as sentences.
    file_V : (n_orig_vertices, 3) float64
        The file's vertex positions in file order, so results can be written back
        on the user's own vertices (including dropped ones).
    """

    V: np.ndarray
    F: np.ndarray
    orig_to_new: np.ndarray
    face_origin: np.ndarray
    n_orig_vertices: int
    n_orig_faces: int
    path: str | None = None
    warnings: list[str] = field(default_factory=list)
    file_V: np.ndarray | None = None

    @property
    def n_vertices(self) -> int:
        return int(len(self.V))

    @property
    def n_faces(self) -> int:
        return int(len(self.F))

    @property
    def new_to_orig(self) -> np.ndarray:
        """(n,) int64: the first file vertex that maps to each vertex of ``V``."""
        out = np.full(len(self.V), -1, dtype=np.int64)
        kept = np.flatnonzero(self.orig_to_new >= 0)
        # Assign in reverse so the first file occurrence wins.
        out[self.orig_to_new[kept[::-1]]] = kept[::-1]
        return out

    def to_original_vertices(self, values: np.ndarray, fill=0) -> np.ndarray:
        """Per-vertex values on ``V`` (shape (n, ...)) -> values on the file's vertices (n_orig, ...).

        Merged duplicates all receive their shared vertex's value; dropped
        (unreferenced) vertices receive ``fill``.
        """
        values = np.asarray(values)
        if values.shape[:1] != (len(self.V),):
            raise MeshError(
                f"expected {len(self.V)} per-vertex values, got array of shape {values.shape}"
            )
        dtype = np.result_type(values.dtype, np.min_scalar_type(fill)) if np.isscalar(fill) else values.dtype
        out = np.full((self.n_orig_vertices,) + values.shape[1:], fill, dtype=dtype)
        kept = self.orig_to_new >= 0
        out[kept] = values[self.orig_to_new[kept]]
        return out

    def to_original_faces(self, values: np.ndarray, fill=0) -> np.ndarray:
        """Per-triangle values on ``F`` (shape (m, ...)) -> values on the file's faces (n_orig_faces, ...).

        A polygon split into several triangles takes the value of its *first*
        triangle; faces removed during cleaning (repeated vertex, duplicates) get ``fill``.
        """
        values = np.asarray(values)
        if values.shape[:1] != (len(self.F),):
            raise MeshError(
                f"expected {len(self.F)} per-face values, got array of shape {values.shape}"
            )
        dtype = np.result_type(values.dtype, np.min_scalar_type(fill)) if np.isscalar(fill) else values.dtype
        out = np.full((self.n_orig_faces,) + values.shape[1:], fill, dtype=dtype)
        # Reverse order so the first triangle of each polygon is written last and wins.
        idx = np.arange(len(self.F))[::-1]
        out[self.face_origin[idx]] = values[idx]
        return out

    def file_triangles(self) -> np.ndarray:
        """(m, 3) int64: ``F`` re-expressed in the file's vertex numbering (first
        occurrence of merged duplicates), for writing results next to ``file_V``."""
        return self.new_to_orig[self.F]

    def report(self) -> "MeshReport":
        """:func:`validate` on this mesh, with the loading warnings prepended."""
        rep = validate(self.V, self.F)
        rep.warnings = list(self.warnings) + rep.warnings
        return rep

    @classmethod
    def from_arrays(
        cls, V, F, *, merge_vertices: bool = True, process: bool = True, name: str = "mesh"
    ) -> "Mesh":
        """Build a Mesh from arrays with the same checks and cleaning as :func:`load_mesh`.

        ``F`` may be ``(m, 3)`` triangles or ``(m, k)`` polygons (fan-triangulated).
        """
        V = np.asarray(V)
        F = np.asarray(F)
        if V.ndim != 2 or V.shape[1] != 3:
            raise MeshError(f"{name}: vertices must have shape (n, 3), got {V.shape}")
        if F.ndim != 2 or F.shape[1] < 3 or (F.size and not np.issubdtype(F.dtype, np.integer)):
            raise MeshError(f"{name}: faces must be an (m, k>=3) integer array, got {F.shape} {F.dtype}")
        V = V.astype(np.float64)
        n = len(V)
        check_finite(V, name)
        if F.size:
            bad = (F < 0) | (F >= n)
            if bad.any():
                j = int(np.argmax(bad.any(axis=1)))
                raise MeshError(
                    f"{name}: face {j} references vertex {int(F[j][bad[j]][0])}, "
                    f"but there are only {n} vertices (indices 0..{n - 1})"
                )
        lens = np.full(len(F), F.shape[1], dtype=np.int64)
        return _build_mesh(
            V, F.astype(np.int64).ravel(), lens, name, None, merge_vertices, process, []
        )


# ----------------------------------------------------------------------------- cleaning


def _triangulate(idx: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate polygons given as flat indices + lengths.

    Returns ``(T (t, 3) int64, origin (t,) int64)``. Fans are exact for convex
    polygons (the usual quads); for non-convex ones they may fold, which
    :func:`validate` then reports as degenerate/inconsistent faces.
    """
    lens = np.asarray(lens, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    ntri = np.maximum(lens - 2, 0)
    origin = np.repeat(np.arange(len(lens), dtype=np.int64), ntri)
    # position of each triangle inside its polygon's fan: 1 .. k-2
    local = np.arange(len(origin), dtype=np.int64) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    s = starts[origin]
    T = np.stack([idx[s], idx[s + local], idx[s + local + 1]], axis=1)
    return T.astype(np.int64), origin


def _group_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group equal rows of a 2-D array: ``(first, inverse, counts)`` like
    ``np.unique(A, axis=0, return_index/inverse/counts)`` but with 1-D integer
    sorts (``np.unique(axis=0)`` sorts structured records and is ~10x slower).
    Groups are numbered in sorted-key order, not file order."""
    key = np.unique(A[:, 0], return_inverse=True)[1].ravel().astype(np.int64)
    for j in range(1, A.shape[1]):
        r = np.unique(A[:, j], return_inverse=True)[1].ravel().astype(np.int64)
        # ranks are < len(A) <= ~1e8, so the product stays far below 2**63
        key = np.unique(key, return_inverse=True)[1].ravel().astype(np.int64) * (int(r.max()) + 1) + r
    _, first, inv, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    return first, inv.ravel(), counts


def _build_mesh(V, idx, lens, name, path, merge_vertices, process, warnings) -> Mesh:
    n_orig = len(V)
    n_poly = len(lens)
    check_finite(V, name)
    short = lens < 3
    if short.any():
        warnings.append(f"ignored {_plural(int(short.sum()), 'face')} with fewer than 3 vertices")
    T, origin = _triangulate(idx, lens)
    if len(T) == 0:
        what = "no faces (a point cloud?)" if n_orig else "no vertices and no faces (empty mesh)"
        raise MeshError(f"{name}: {what}; a triangle mesh is needed")
    if not process:
        return Mesh(
            V=V, F=T, orig_to_new=np.arange(n_orig, dtype=np.int64), face_origin=origin,
            n_orig_vertices=n_orig, n_orig_faces=n_poly, path=path, warnings=warnings, file_V=V,
        )

    # 1. merge bit-identical positions, numbering merged vertices by first appearance
    rep = np.arange(n_orig, dtype=np.int64)
    if merge_vertices and n_orig:
        # compare bit patterns; + 0.0 turns -0.0 into 0.0 so both zeros merge
        first, inv, _ = _group_rows(np.ascontiguousarray(V + 0.0).view(np.int64))
        if len(first) < n_orig:
            rank = np.empty(len(first), dtype=np.int64)
            rank[np.argsort(first, kind="stable")] = np.arange(len(first))
            rep = rank[inv]
            warnings.append(f"merged {_plural(n_orig - len(first), 'duplicate vertex', 'duplicate vertices')}")
    F = rep[T]

    # 2. triangles that use a vertex twice
    keep = (F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 2] != F[:, 0])
    if not keep.all():
        warnings.append(f"removed {_plural(int((~keep).sum()), 'face')} that use the same vertex twice")
    F, origin = F[keep], origin[keep]

    # 3. repeated triangles (same vertex set), keeping the first
    if len(F):
        first_f = _group_rows(np.sort(F, axis=1))[0]
        if len(first_f) < len(F):
            warnings.append(f"removed {_plural(len(F) - len(first_f), 'duplicate face')}")
            first_f = np.sort(first_f)
            F, origin = F[first_f], origin[first_f]
    if len(F) == 0:
        raise MeshError(f"{name}: no valid faces (every face uses a vertex twice)")

    # 4. drop vertices used by no face, keeping the order of the rest
    n_rep = int(rep.max()) + 1 if n_orig else 0
    used = np.zeros(n_rep, dtype=bool)
    used[F.ravel()] = True
    new_id = np.full(n_rep, -1, dtype=np.int64)
    new_id[used] = np.arange(int(used.sum()))
    n_unused_orig = int((~used[rep]).sum())
    if n_unused_orig:
        warnings.append(f"dropped {_plural(n_unused_orig, 'unreferenced vertex', 'unreferenced vertices')}")
    orig_to_new = new_id[rep]
    F = new_id[F]
    Vn = np.empty((int(used.sum()), 3), dtype=np.float64)
    kept = np.flatnonzero(orig_to_new >= 0)
    Vn[orig_to_new[kept]] = V[kept]
    return Mesh(
        V=Vn, F=F, orig_to_new=orig_to_new, face_origin=origin, n_orig_vertices=n_orig,
        n_orig_faces=n_poly, path=path, warnings=warnings, file_V=V,
    )


# ----------------------------------------------------------------------------- validation


@dataclass
class MeshReport:
    """What :func:`validate` found. Counts refer to the arrays given (not a file).

    ``euler_characteristic`` is V - E + F over referenced vertices; ``genus`` is
    the total genus ``(2 * components - boundary_loops - chi) / 2`` and is only set
    for edge- and vertex-manifold, consistently oriented meshes.
    """

    n_vertices: int
    n_faces: int
    n_edges: int
    bbox_min: list[float]
    bbox_max: list[float]
    surface_area: float
    n_components: int
    component_sizes: list[int]  # vertices per component, largest first
    n_unreferenced_vertices: int
    n_boundary_edges: int
    n_boundary_loops: int
    n_nonmanifold_edges: int
    n_nonmanifold_vertices: int
    n_degenerate_faces: int
    n_duplicate_faces: int
    n_inconsistent_edges: int  # manifold edges whose two faces traverse it the same way
    euler_characteristic: int
    genus: int | None
    warnings: list[str] = field(default_factory=list)

    @property
    def is_watertight(self) -> bool:
        return self.n_boundary_edges == 0 and self.n_nonmanifold_edges == 0

    @property
    def is_manifold(self) -> bool:
        return self.n_nonmanifold_edges == 0 and self.n_nonmanifold_vertices == 0

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["is_watertight"] = self.is_watertight
        d["is_manifold"] = self.is_manifold
        return d


def validate(V, F, name: str = "mesh") -> MeshReport:
    """Topology and quality report of a triangle mesh.

    ``V: (n, 3) float64``, ``F: (m, 3) int64``. Raises MeshError for the fatal
    cases of :func:`check_arrays`; everything else is counted and, where it
    matters for downstream geometry, explained in ``report.warnings``.
    """
    import scipy.sparse as sp  # imported here: keeps ``import meshgdl.io`` (and the CLI) fast
    from scipy.sparse.csgraph import connected_components

    from meshgdl.geometry.topology import vertex_components, vertex_fan_counts

    V, F = check_arrays(V, F, name)
    n, m = len(V), len(F)
    referenced = np.zeros(n, dtype=bool)
    referenced[F.ravel()] = True
    n_ref = int(referenced.sum())

    # half-edges (f, k): from F[f, k] to F[f, k+1]
    he_from = F.ravel()
    he_to = np.roll(F, -1, axis=1).ravel()
    lo, hi = np.minimum(he_from, he_to), np.maximum(he_from, he_to)
    ekey = lo * n + hi
    uniq, e_inv, e_cnt = np.unique(ekey, return_inverse=True, return_counts=True)
    n_edges = len(uniq)
    n_boundary_edges = int((e_cnt == 1).sum())
    n_nm_edges = int((e_cnt > 2).sum())

    # inconsistent orientation: a manifold edge traversed twice in the same direction
    dkey = he_from * n + he_to
    manifold_he = e_cnt[e_inv] == 2
    dk = dkey[manifold_he]
    dk = np.sort(dk)
    n_inconsistent = int(np.count_nonzero(dk[1:] == dk[:-1]))

    # boundary loops: cycle rank of the graph of boundary edges (= number of loops
    # for manifold boundaries, and counts both loops of a boundary "figure eight")
    b_edges = uniq[e_cnt == 1]
    if len(b_edges):
        bu, bv = b_edges // n, b_edges % n
        verts, inv = np.unique(np.concatenate([bu, bv]), return_inverse=True)
        g = sp.coo_matrix(
            (np.ones(len(b_edges)), (inv[: len(b_edges)], inv[len(b_edges):])),
            shape=(len(verts), len(verts)),
        )
        nc, _ = connected_components(g, directed=False)
        n_loops = int(len(b_edges) - len(verts) + nc)
    else:
        n_loops = 0

    # connected components over faces sharing a vertex
    nc_all, comp = vertex_components(F, n)
    sizes = np.bincount(comp[referenced], minlength=nc_all)
    sizes = np.sort(sizes[sizes > 0])[::-1]
    n_components = int(len(sizes))

    # non-manifold vertices: the faces around a vertex must form one fan connected
    # through edges that contain the vertex.
    fans = vertex_fan_counts(F, n)
    n_nm_vertices = int((fans > 1).sum())

    # geometry
    cross = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    used_V = V[referenced]
    bmin, bmax = used_V.min(axis=0), used_V.max(axis=0)
    diag2 = float(np.sum((bmax - bmin) ** 2))
    repeated = (F[:, 0] == F[:, 1]) | (F[:, 1] == F[:, 2]) | (F[:, 2] == F[:, 0])
    degenerate = repeated | (areas <= _DEGENERATE_REL_AREA * diag2)
    n_dup = int(m - len(_group_rows(np.sort(F, axis=1))[0]))

    chi = int(n_ref - n_edges + m)
    manifold = n_nm_edges == 0 and n_nm_vertices == 0
    genus = None
    if manifold and n_inconsistent == 0 and n_dup == 0:
        g2 = 2 * n_components - n_loops - chi
        genus = g2 // 2 if g2 >= 0 and g2 % 2 == 0 else None

    w: list[str] = []
    if n_components > 1:
        w.append(
            f"{n_components} connected components (largest {sizes[0]} of {n_ref} vertices); "
            "distances between components are infinite"
        )
    if n - n_ref:
        w.append(f"{_plural(n - n_ref, 'vertex', 'vertices')} used by no face")
    if n_nm_edges:
        w.append(f"{_plural(n_nm_edges, 'non-manifold edge')} (shared by more than two faces)")
    if n_nm_vertices:
        w.append(f"{_plural(n_nm_vertices, 'non-manifold vertex', 'non-manifold vertices')} "
                 "(faces around it do not form a single fan)")
    if degenerate.any():
        w.append(f"{_plural(int(degenerate.sum()), 'degenerate (zero-area) face')}; "
                 "cotangent weights there are undefined, use the robust Laplacian")
    if n_dup:
        w.append(f"{_plural(n_dup, 'duplicate face')}")
    if n_inconsistent:
        w.append(f"inconsistent face orientation across {_plural(n_inconsistent, 'edge')}")
    if n_loops:
        w.append(f"open surface: {_plural(n_loops, 'boundary loop')}")
    return MeshReport(
        n_vertices=n, n_faces=m, n_edges=n_edges,
        bbox_min=bmin.tolist(), bbox_max=bmax.tolist(), surface_area=float(areas.sum()),
        n_components=n_components, component_sizes=[int(s) for s in sizes],
        n_unreferenced_vertices=n - n_ref, n_boundary_edges=n_boundary_edges,
        n_boundary_loops=n_loops, n_nonmanifold_edges=n_nm_edges,
        n_nonmanifold_vertices=n_nm_vertices, n_degenerate_faces=int(degenerate.sum()),
        n_duplicate_faces=n_dup, n_inconsistent_edges=n_inconsistent,
        euler_characteristic=chi, genus=genus, warnings=w,
    )
