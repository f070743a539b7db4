"""Mesh files in and out, with validation.

``load_mesh`` reads OBJ, PLY, OFF, STL, GLB and GLTF files into a :class:`Mesh`:
a clean triangle mesh ``V: (n, 3) float64``, ``F: (m, 3) int64`` plus the index
maps needed to write per-vertex / per-face results back in the *file's* order.

OBJ, OFF and PLY are parsed here (not by trimesh) so that the file's vertex order,
its polygon numbering and out-of-range indices are seen exactly as written;
STL, GLB and GLTF go through trimesh (GLTF scenes are flattened into one mesh with
their node transforms applied).

Cleaning done by ``load_mesh(..., process=True)``, in this order:

1. polygons are fan-triangulated (``face_origin`` remembers the source polygon);
2. exactly equal vertex positions are merged (``merge_vertices=True``);
3. triangles that use one vertex twice (after merging) are removed;
4. repeated triangles (same three vertices, any order) are removed, keeping the first;
5. vertices used by no triangle are dropped (``orig_to_new == -1``).

Everything else (non-manifold edges, degenerate but non-repeated triangles, several
components, boundaries) is kept and reported by :func:`validate`.
Fatal problems raise :class:`meshgdl.errors.MeshError` with a one-line message that
names the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meshgdl.atomic import atomic_path
from meshgdl.errors import MeshError
from meshgdl.geometry.validation import check_arrays, check_finite

SUPPORTED_EXTENSIONS = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
#: Formats :func:`save_mesh` writes.
SAVE_EXTENSIONS = (".ply", ".obj", ".off", ".stl", ".glb")
DEFAULT_MAX_VERTICES = 20_000_000

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


# ----------------------------------------------------------------------------- loading


def load_mesh(
    path: str | os.PathLike,
    *,
    merge_vertices: bool = True,
    process: bool = True,
    max_vertices: int = DEFAULT_MAX_VERTICES,
) -> Mesh:
    """Read a triangle/polygon mesh file into a cleaned :class:`Mesh`.

    Parameters
    ----------
    path : OBJ, PLY (ascii or binary), OFF, STL, GLB or GLTF file.
    merge_vertices : merge vertices with bit-identical positions (STL files need this
        to have any connectivity).
    process : run the cleaning steps listed in the module docstring. With
        ``process=False`` the arrays are the file's, only triangulated and checked.
    max_vertices : refuse files with more vertices than this ("too large").

    Raises
    ------
    MeshError : missing file, directory, unsupported extension, unreadable/corrupt
        file, no faces (point cloud or empty), non-finite coordinates, face indices
        out of range, too many vertices.
    """
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise MeshError(f"{name}: file not found")
    if p.is_dir():
        raise MeshError(f"{name}: is a directory, not a mesh file")
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise MeshError(
            f"{name}: unsupported file type '{p.suffix or '(none)'}'; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not os.access(p, os.R_OK):
        raise MeshError(f"{name}: file is not readable (permission denied)")
    if p.stat().st_size == 0:
        raise MeshError(f"{name}: file is empty")
    warnings: list[str] = []
    try:
        if ext == ".obj":
            V, idx, lens = _read_obj(p, name, max_vertices, warnings)
        elif ext == ".off":
            V, idx, lens = _read_off(p, name, max_vertices, warnings)
        elif ext == ".ply":
            V, idx, lens = _read_ply_mesh(p, name, max_vertices, warnings)
        else:
            V, idx, lens = _read_trimesh(p, name, ext)
    except MeshError:
        raise
    except MemoryError:
        raise MeshError(f"{name}: too large to load into memory") from None
    except Exception as exc:  # any parser failure is a corrupt file, not a crash
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise MeshError(f"{name}: cannot read {ext[1:].upper()} file ({msg[:200]})") from exc
    if len(V) > max_vertices:
        raise MeshError(f"{name}: too large: {len(V)} vertices (limit {max_vertices})")
    return _build_mesh(V, idx, lens, name, name, merge_vertices, process, warnings)



def _check_polygon_indices(name: str, idx: np.ndarray, lens: np.ndarray, n: int) -> None:
    """0-based flat polygon indices ``idx`` (polygon sizes ``lens``) must lie in [0, n)."""
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        k = int(np.argmax(bad))
        fj = int(np.searchsorted(np.cumsum(lens), k, side="right"))
        raise MeshError(
            f"{name}: face {fj} references vertex {int(idx[k])}, "
            f"but the file has {n} vertices (indices 0..{n - 1})"
        )

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


def _too_large(name: str, n: int, max_vertices: int) -> None:
    if n > max_vertices:
        raise MeshError(f"{name}: too large: {n} vertices (limit {max_vertices})")


def _decode(p: Path) -> str:
    data = p.read_bytes()
    if b"\x00" in data[:4096]:
        raise MeshError(f"{p}: not a text file (binary data found)")
    return data.decode("utf-8", errors="replace")


# --- OBJ


def _read_obj(p: Path, name: str, max_vertices: int, warnings: list[str]):
    text = _decode(p)
    verts: list[list[str]] = []
    faces: list[list[int]] = []
    bad_index = None  # (face number, index as written)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if len(line) < 2 or line[0] not in "vf" or line[1] not in " \t":
            continue
        parts = line.split()
        if parts[0] == "v":
            if len(parts) < 4:
                raise MeshError(f"{name}: line {lineno}: vertex needs 3 coordinates: {line[:60]!r}")
            verts.append(parts[1:4])
            if len(verts) > max_vertices:
                _too_large(name, len(verts), max_vertices)
        else:  # "f"
            nv = len(verts)
            face = []
            for tok in parts[1:]:
                s = tok.split("/", 1)[0]
                try:
                    i = int(s)
                except ValueError:
                    raise MeshError(f"{name}: line {lineno}: bad face index {tok!r}") from None
                j = i - 1 if i > 0 else nv + i  # OBJ is 1-based; negatives count back
                if (i == 0 or j < 0) and bad_index is None:
                    bad_index = (len(faces), i)
                face.append(j)
            faces.append(face)
    try:
        V = np.array(verts, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise MeshError(f"{name}: unparsable vertex coordinates") from None
    lens = np.array([len(f) for f in faces], dtype=np.int64)
    idx = np.fromiter((j for f in faces for j in f), dtype=np.int64, count=int(lens.sum()))
    n = len(V)
    if bad_index is None and idx.size and idx.max() >= n:
        k = int(np.argmax(idx >= n))
        fj = int(np.searchsorted(np.cumsum(lens), k, side="right"))
        bad_index = (fj, int(idx[k]) + 1)
    if bad_index is not None:
        raise MeshError(
            f"{name}: face {bad_index[0] + 1} references vertex {bad_index[1]}, "
            f"but the file has {n} vertices (OBJ indices are 1..{n})"
        )
    return V, idx, lens


# --- OFF


def _read_off(p: Path, name: str, max_vertices: int, warnings: list[str]):
    text = _decode(p)
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise MeshError(f"{name}: file has no content")
    head = lines[0]
    m = re.match(r"^([A-Za-z0-9]*OFF)(.*)$", head)
    if not m:
        raise MeshError(f"{name}: not an OFF file (first line is {head[:40]!r}, expected 'OFF')")
    kind, rest = m.group(1), m.group(2).strip()
    if "BINARY" in rest.upper():
        raise MeshError(f"{name}: binary OFF is not supported; convert it to ASCII OFF or PLY")
    if kind.startswith(("4", "n")):
        raise MeshError(f"{name}: {kind} (non-3D OFF) is not supported")
    pos = 1
    if not rest:  # counts on the next line ("OFF123 456 0" from some exporters is handled too)
        if len(lines) < 2:
            raise MeshError(f"{name}: truncated OFF file (no vertex/face counts)")
        rest = lines[1]
        pos = 2
    try:
        counts = [int(t) for t in rest.split()[:3]]
        nv, nf = counts[0], counts[1]
    except (ValueError, IndexError):
        raise MeshError(f"{name}: bad OFF counts line {rest[:40]!r}") from None
    if nv < 0 or nf < 0:
        raise MeshError(f"{name}: negative counts in OFF header")
    _too_large(name, nv, max_vertices)
    vlines = lines[pos : pos + nv]
    flines = lines[pos + nv : pos + nv + nf]
    if len(vlines) < nv or len(flines) < nf:
        raise MeshError(
            f"{name}: truncated OFF file: header promises {nv} vertices and {nf} faces, "
            f"found {len(vlines)} and {len(flines)}"
        )
    try:
        V = np.array([ln.split()[:3] for ln in vlines], dtype=np.float64).reshape(nv, 3)
    except ValueError:
        raise MeshError(f"{name}: unparsable vertex line in OFF file") from None
    ftoks = [ln.split() for ln in flines]
    lens = np.empty(nf, dtype=np.int64)
    idx_list = []
    try:
        for j, t in enumerate(ftoks):
            k = int(t[0])
            if len(t) < k + 1:
                raise MeshError(f"{name}: face {j} says {k} vertices but lists {len(t) - 1}")
            lens[j] = k
            idx_list.extend(t[1 : k + 1])
        idx = np.array(idx_list, dtype=np.int64)
    except ValueError:
        raise MeshError(f"{name}: unparsable face line in OFF file") from None
    _check_polygon_indices(name, idx, lens, nv)
    return V, idx, lens


# --- PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass
class _PlyProp:
    name: str
    dtype: str  # numpy code without byte order
    count_dtype: str | None = None  # set for list properties


@dataclass
class _PlyElement:
    name: str
    count: int
    props: list[_PlyProp]


def _parse_ply_header(data: bytes, name: str):
    if not data.startswith(b"ply"):
        raise MeshError(f"{name}: not a PLY file (missing 'ply' magic)")
    m = re.search(rb"end_header[ \t]*\r?\n", data)
    if not m:
        raise MeshError(f"{name}: corrupt PLY file (no end_header)")
    header = data[: m.start()].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[_PlyElement] = []
    for line in header[1:]:
        t = line.split()
        if not t or t[0] in ("comment", "obj_info"):
            continue
        if t[0] == "format":
            fmt = t[1] if len(t) > 1 else None
        elif t[0] == "element":
            if len(t) != 3 or not t[2].lstrip("-").isdigit():
                raise MeshError(f"{name}: corrupt PLY header line {line!r}")
            elements.append(_PlyElement(t[1], int(t[2]), []))
        elif t[0] == "property":
            if not elements:
                raise MeshError(f"{name}: corrupt PLY header (property before element)")
            try:
                if t[1] == "list":
                    prop = _PlyProp(t[4], _PLY_TYPES[t[3]], _PLY_TYPES[t[2]])
                else:
                    prop = _PlyProp(t[2], _PLY_TYPES[t[1]])
            except (KeyError, IndexError):
                raise MeshError(f"{name}: corrupt PLY header line {line!r}") from None
            elements[-1].props.append(prop)
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise MeshError(f"{name}: unknown PLY format {fmt!r}")
    return fmt, elements, m.end()


def _read_ply(p: Path, name: str, max_vertices: int | None = None):
    """Parse every element of a PLY file.

    Returns ``{element: {prop: array}}``; a list property becomes a tuple
    ``(flat_values, lengths)``.
    """
    data = p.read_bytes()
    fmt, elements, offset = _parse_ply_header(data, name)
    if max_vertices is not None:
        for el in elements:
            if el.name == "vertex":
                _too_large(name, el.count, max_vertices)
    out: dict[str, dict] = {}
    if fmt == "ascii":
        tokens = np.array(data[offset:].split())
        reader = _PlyAsciiReader(tokens, name)
    else:
        reader = _PlyBinaryReader(data, offset, "<" if fmt.endswith("little_endian") else ">", name)
    for el in elements:
        out[el.name] = reader.read(el)
    return out


class _PlyBinaryReader:
    def __init__(self, data: bytes, offset: int, bo: str, name: str):
        self.data, self.off, self.bo, self.name = data, offset, bo, name

    def _need(self, nbytes: int, el: _PlyElement):
        if self.off + nbytes > len(self.data):
            raise MeshError(f"{self.name}: truncated PLY file (in element '{el.name}')")

    def read(self, el: _PlyElement) -> dict:
        bo = self.bo
        if all(pr.count_dtype is None for pr in el.props):
            dt = np.dtype([(pr.name, bo + pr.dtype) for pr in el.props])
            self._need(dt.itemsize * el.count, el)
            arr = np.frombuffer(self.data, dt, el.count, self.off)
            self.off += dt.itemsize * el.count
            return {pr.name: arr[pr.name] for pr in el.props}
        if el.count == 0:
            return {pr.name: ((np.zeros(0), np.zeros(0, np.int64)) if pr.count_dtype else np.zeros(0))
                    for pr in el.props}
        # Fast path: assume every list has the length found in the first record
        # (all-triangle or all-quad faces) and verify it afterwards.
        off = self.off
        fields, first_lens = [], {}
        for pr in el.props:
            if pr.count_dtype is None:
                fields.append((pr.name, bo + pr.dtype))
                off += np.dtype(pr.dtype).itemsize
            else:
                self._need(off - self.off + np.dtype(pr.count_dtype).itemsize, el)
                k = int(np.frombuffer(self.data, bo + pr.count_dtype, 1, off)[0])
                first_lens[pr.name] = k
                fields.append(("__n_" + pr.name, bo + pr.count_dtype))
                fields.append((pr.name, bo + pr.dtype, (k,)))
                off += np.dtype(pr.count_dtype).itemsize + k * np.dtype(pr.dtype).itemsize
        dt = np.dtype(fields)
        if self.off + dt.itemsize * el.count <= len(self.data):
            arr = np.frombuffer(self.data, dt, el.count, self.off)
            if all((arr["__n_" + n] == k).all() for n, k in first_lens.items()):
                self.off += dt.itemsize * el.count
                res = {}
                for pr in el.props:
                    if pr.count_dtype is None:
                        res[pr.name] = arr[pr.name]
                    else:
                        k = first_lens[pr.name]
                        res[pr.name] = (arr[pr.name].reshape(-1), np.full(el.count, k, np.int64))
                return res
        return self._read_slow(el)

    def _read_slow(self, el: _PlyElement) -> dict:
        bo, data = self.bo, self.data
        cols: dict[str, list] = {pr.name: [] for pr in el.props}
        lens: dict[str, list] = {pr.name: [] for pr in el.props if pr.count_dtype}
        off = self.off
        sizes = {pr.name: np.dtype(pr.dtype).itemsize for pr in el.props}
        for _ in range(el.count):
            for pr in el.props:
                if pr.count_dtype is None:
                    if off + sizes[pr.name] > len(data):
                        raise MeshError(f"{self.name}: truncated PLY file (in element '{el.name}')")
                    cols[pr.name].append(np.frombuffer(data, bo + pr.dtype, 1, off))
                    off += sizes[pr.name]
                else:
                    cs = np.dtype(pr.count_dtype).itemsize
                    if off + cs > len(data):
                        raise MeshError(f"{self.name}: truncated PLY file (in element '{el.name}')")
                    k = int(np.frombuffer(data, bo + pr.count_dtype, 1, off)[0])
                    off += cs
                    if k < 0 or off + k * sizes[pr.name] > len(data):
                        raise MeshError(f"{self.name}: truncated PLY file (in element '{el.name}')")
                    cols[pr.name].append(np.frombuffer(data, bo + pr.dtype, k, off))
                    lens[pr.name].append(k)
                    off += k * sizes[pr.name]
        self.off = off
        res = {}
        for pr in el.props:
            flat = np.concatenate(cols[pr.name]) if cols[pr.name] else np.zeros(0, pr.dtype)
            res[pr.name] = (flat, np.array(lens[pr.name], np.int64)) if pr.count_dtype else flat
        return res


class _PlyAsciiReader:
    def __init__(self, tokens: np.ndarray, name: str):
        self.tok, self.pos, self.name = tokens, 0, name

    def _take(self, k: int, el: _PlyElement) -> np.ndarray:
        if self.pos + k > len(self.tok):
            raise MeshError(f"{self.name}: truncated PLY file (in element '{el.name}')")
        t = self.tok[self.pos : self.pos + k]
        self.pos += k
        return t

    @staticmethod
    def _num(t: np.ndarray, code: str) -> np.ndarray:
        if code[0] == "f":
            return t.astype(np.float64).astype(code)
        return t.astype(np.float64).astype(np.int64).astype(code)

    def read(self, el: _PlyElement) -> dict:
        nprops = len(el.props)
        if el.count == 0:
            return {pr.name: ((np.zeros(0), np.zeros(0, np.int64)) if pr.count_dtype else np.zeros(0))
                    for pr in el.props}
        if all(pr.count_dtype is None for pr in el.props):
            t = self._take(el.count * nprops, el).reshape(el.count, nprops)
            return {pr.name: self._num(t[:, j], pr.dtype) for j, pr in enumerate(el.props)}
        # Fast path as in the binary reader: record width from the first record.
        width, lens0 = 0, {}
        for pr in el.props:
            if pr.count_dtype is None:
                width += 1
            else:
                if self.pos + width >= len(self.tok):
                    raise MeshError(f"{self.name}: truncated PLY file (in element '{el.name}')")
                k = int(float(self.tok[self.pos + width]))
                lens0[pr.name] = (width, k)
                width += 1 + k
        if el.count and self.pos + width * el.count <= len(self.tok):
            t = self.tok[self.pos : self.pos + width * el.count].reshape(el.count, width)
            ok = all((t[:, c] == t[0, c]).all() for c, _ in lens0.values())
            if ok:
                self.pos += width * el.count
                res, c = {}, 0
                for pr in el.props:
                    if pr.count_dtype is None:
                        res[pr.name] = self._num(t[:, c], pr.dtype)
                        c += 1
                    else:
                        k = lens0[pr.name][1]
                        vals = self._num(t[:, c + 1 : c + 1 + k].reshape(-1), pr.dtype)
                        res[pr.name] = (vals, np.full(el.count, k, np.int64))
                        c += 1 + k
                return res
        cols: dict[str, list] = {pr.name: [] for pr in el.props}
        lens: dict[str, list] = {pr.name: [] for pr in el.props if pr.count_dtype}
        for _ in range(el.count):
            for pr in el.props:
                if pr.count_dtype is None:
                    cols[pr.name].append(self._take(1, el))
                else:
                    k = int(float(self._take(1, el)[0]))
                    if k < 0:
                        raise MeshError(f"{self.name}: negative list length in PLY element '{el.name}'")
                    cols[pr.name].append(self._take(k, el))
                    lens[pr.name].append(k)
        res = {}
        for pr in el.props:
            if cols[pr.name]:
                flat = self._num(np.concatenate(cols[pr.name]), pr.dtype)
            else:
                flat = np.zeros(0, pr.dtype)
            res[pr.name] = (flat, np.array(lens[pr.name], np.int64)) if pr.count_dtype else flat
        return res


def _read_ply_mesh(p: Path, name: str, max_vertices: int, warnings: list[str]):
    els = _read_ply(p, name, max_vertices)
    vert = els.get("vertex")
    if vert is None or not all(c in vert for c in "xyz"):
        if vert is None and "face" not in els:
            raise MeshError(f"{name}: no vertices and no faces (empty mesh)")
        raise MeshError(f"{name}: PLY file has no vertex x/y/z properties")
    V = np.stack([np.asarray(vert[c], dtype=np.float64) for c in "xyz"], axis=1)
    face = els.get("face", {})
    key = next((k for k in ("vertex_indices", "vertex_index") if k in face), None)
    if key is None:
        return V, np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat, lens = face[key]
    if not isinstance(flat, np.ndarray) or not np.issubdtype(flat.dtype, np.integer):
        raise MeshError(f"{name}: PLY face indices must be an integer list property")
    idx = flat.astype(np.int64)
    _check_polygon_indices(name, idx, lens, len(V))
    return V, idx, lens


def load_vertex_scalars(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All scalar per-vertex properties of a PLY file except ``x, y, z``.

    Returns ``{name: (n,) array}`` in the file's vertex order and stored dtype
    (e.g. ``distance`` float32, ``red`` uint8).
    """
    p = Path(path)
    if not p.is_file():
        raise MeshError(f"{path}: file not found")
    if p.suffix.lower() != ".ply":
        raise MeshError(f"{path}: vertex scalars can only be read from .ply files")
    els = _read_ply(p, str(path))
    vert = els.get("vertex", {})
    return {k: np.asarray(v) for k, v in vert.items() if k not in ("x", "y", "z") and not isinstance(v, tuple)}


# --- STL / GLB / GLTF through trimesh


def _read_trimesh(p: Path, name: str, ext: str):
    import trimesh

    if ext == ".stl":
        data = p.read_bytes()
        if not data.lstrip().startswith(b"solid") and len(data) >= 84:
            # binary STL: the header's triangle count must match the file size
            ntri = int(np.frombuffer(data, "<u4", 1, 80)[0])
            if 84 + 50 * ntri != len(data):
                raise MeshError(
                    f"{name}: corrupt binary STL (header says {ntri} triangles, "
                    f"file size fits {(len(data) - 84) // 50})"
                )
        elif len(data) < 84 and not data.lstrip().startswith(b"solid"):
            raise MeshError(f"{name}: corrupt STL file (too short)")
    loaded = trimesh.load(str(p), process=False, force=None)
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)] if loaded.geometry else []
        if not meshes:
            has_points = any(len(getattr(g, "vertices", ())) for g in loaded.geometry.values())
            raise MeshError(
                f"{name}: no faces ({'a point cloud?' if has_points else 'empty scene'}); "
                "a triangle mesh is needed"
            )
        V = np.concatenate([np.asarray(m.vertices, np.float64) for m in meshes])
        offs = np.cumsum([0] + [len(m.vertices) for m in meshes])
        F = np.concatenate([np.asarray(m.faces, np.int64) + o for m, o in zip(meshes, offs)])
    elif isinstance(loaded, trimesh.Trimesh):
        V = np.asarray(loaded.vertices, np.float64)
        F = np.asarray(loaded.faces, np.int64).reshape(-1, 3)
    else:
        V = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), np.float64).reshape(-1, 3)
        F = np.zeros((0, 3), np.int64)
    return V, F.ravel(), np.full(len(F), 3, np.int64)


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


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


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


# ----------------------------------------------------------------------------- saving

_RESERVED_PLY_NAMES = {"x", "y", "z", "red", "green", "blue", "alpha"}


def _colors_u8(colors, n: int) -> np.ndarray:
    c = np.asarray(colors)
    if c.ndim != 2 or c.shape[0] != n or c.shape[1] not in (3, 4):
        raise MeshError(f"vertex_colors must have shape ({n}, 3) or ({n}, 4), got {c.shape}")
    if np.issubdtype(c.dtype, np.floating):
        if not np.isfinite(c).all():
            raise MeshError("vertex_colors contain NaN or inf")
        c = np.round(np.clip(c, 0.0, 1.0) * 255.0)
    return c.astype(np.uint8)


def save_mesh(
    path: str | os.PathLike,
    V,
    F,
    *,
    vertex_colors=None,
    vertex_scalars: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a triangle mesh atomically (temp file + rename).

    ``.ply``: binary little-endian, coordinates as ``double`` (exact round trip),
    optional ``vertex_colors`` ((n, 3|4) uint8, or float in [0, 1]) as
    ``red green blue [alpha]`` and ``vertex_scalars`` ({name: (n,)}) as named
    vertex properties (float64 -> ``double``, other floats -> ``float``,
    integers/bools -> ``int``); read them back with :func:`load_vertex_scalars`.
    ``.obj`` / ``.off``: plain text geometry (17 significant digits, exact).
    ``.stl`` / ``.glb``: through trimesh. Colours and scalars need ``.ply``.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SAVE_EXTENSIONS:
        raise MeshError(f"{path}: cannot write '{p.suffix or '(none)'}' files; use one of {', '.join(SAVE_EXTENSIONS)}")
    V, F = check_arrays(V, F, str(path))
    n = len(V)
    if (vertex_colors is not None or vertex_scalars) and ext != ".ply":
        raise MeshError(f"{path}: vertex colours and scalars can only be saved to .ply")
    if ext == ".ply":
        cols = [("x", "<f8", V[:, 0]), ("y", "<f8", V[:, 1]), ("z", "<f8", V[:, 2])]
        ply_t = {"<f8": "double", "<f4": "float", "<i4": "int", "u1": "uchar"}
        if vertex_colors is not None:
            c = _colors_u8(vertex_colors, n)
            for j, nm in enumerate(["red", "green", "blue", "alpha"][: c.shape[1]]):
                cols.append((nm, "u1", c[:, j]))
        for nm, vals in (vertex_scalars or {}).items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", nm) or nm in _RESERVED_PLY_NAMES:
                raise MeshError(f"{path}: invalid vertex property name {nm!r}")
            a = np.asarray(vals)
            if a.shape != (n,):
                raise MeshError(f"{path}: vertex property {nm!r} must have shape ({n},), got {a.shape}")
            if a.dtype == np.float64:
                code = "<f8"
            elif np.issubdtype(a.dtype, np.floating):
                code = "<f4"
            elif np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
                code = "<i4"
            else:
                raise MeshError(f"{path}: vertex property {nm!r} has unsupported dtype {a.dtype}")
            cols.append((nm, code, a))
        vdt = np.dtype([(nm, code) for nm, code, _ in cols])
        varr = np.empty(n, vdt)
        for nm, _, a in cols:
            varr[nm] = a
        fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
        farr = np.empty(len(F), fdt)
        farr["n"] = 3
        farr["i"] = F
        header = ["ply", "format binary_little_endian 1.0", "comment written by meshgdl", f"element vertex {n}"]
        header += [f"property {ply_t[code]} {nm}" for nm, code, _ in cols]
        header += [f"element face {len(F)}", "property list uchar int vertex_indices", "end_header"]
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(("\n".join(header) + "\n").encode("ascii"))
                fh.write(varr.tobytes())
                fh.write(farr.tobytes())
    elif ext in (".obj", ".off"):
        with atomic_path(p) as tmp:
            with open(tmp, "w") as fh:
                if ext == ".off":
                    fh.write(f"OFF\n{n} {len(F)} 0\n")
                    np.savetxt(fh, V, fmt="%.17g")
                    np.savetxt(fh, np.column_stack([np.full(len(F), 3), F]), fmt="%d")
                else:
                    fh.write("# written by meshgdl\n")
                    np.savetxt(fh, V, fmt="v %.17g %.17g %.17g")
                    np.savetxt(fh, F + 1, fmt="f %d %d %d")
    else:
        import trimesh

        tm = trimesh.Trimesh(V, F, process=False)
        with atomic_path(p) as tmp:
            tm.export(str(tmp), file_type=ext[1:])
