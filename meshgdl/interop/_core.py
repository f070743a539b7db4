"""What every converter shares: :class:`ConvertedMesh`, :func:`as_mesh` and the
export helpers. Numpy only; the other libraries are imported by their own modules,
and only when one of their objects is converted."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.io import Mesh

#: Top-level packages whose objects :func:`as_mesh` recognises, by the object's module.
LIBRARIES = ("trimesh", "open3d", "torch_geometric", "pytorch3d")

_EXPECTED = ("a path, (V, F) arrays, a meshgdl Mesh, a trimesh.Trimesh, an open3d TriangleMesh, "
             "a torch_geometric Data or a pytorch3d Meshes batch")


@dataclass
class ConvertedMesh(Mesh):
    """A :class:`meshgdl.io.Mesh` made from another library's object or from arrays.

    It is cleaned exactly like a loaded file (``V``, ``F``, and the index maps
    ``orig_to_new`` / ``face_origin`` back to the input; see :mod:`meshgdl.io`), and
    it also keeps the input's own arrays -- ``file_V (n_in, 3) float64`` and
    ``source_F (m_in, 3) int64`` (the input's triangles in the input's vertex
    numbering) -- so the ``to_*`` converters give the input back exactly: same
    vertices, same faces, same order, duplicates and unreferenced vertices included.
    ``source`` names where it came from (``"trimesh.Trimesh"``, ``"Meshes[1]"``...).
    """

    source_F: np.ndarray | None = None
    source: str = ""

    @property
    def is_clean(self) -> bool:
        """True when cleaning changed nothing (the input's arrays are ``V`` and ``F``)."""
        return bool(self.n_orig_vertices == self.n_vertices and self.source_F is not None
                    and len(self.source_F) == self.n_faces
                    and np.array_equal(self.orig_to_new, np.arange(self.n_vertices))
                    and np.array_equal(self.F, self.source_F))


def to_numpy(x: Any) -> np.ndarray:
    """An array-like or a torch tensor (any device; detached) -> numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def from_arrays(V, F, *, name: str = "mesh", process: bool = True) -> ConvertedMesh:
    """``(V (n, 3), F (m, 3))`` (numpy, torch or lists) -> :class:`ConvertedMesh`.

    Cleaned by :meth:`meshgdl.io.Mesh.from_arrays` (duplicate positions merged,
    unreferenced vertices dropped, with index maps back; ``process=False`` keeps the
    arrays as they are); ``name`` starts every error message. Raises MeshError.
    """
    V, F = to_numpy(V), to_numpy(F)
    if F.ndim != 2 or F.shape[1] != 3:
        if F.ndim == 2 and F.shape[0] == 3 and F.shape[1] != 3:
            raise MeshError(f"{name}: faces must have shape (m, 3), got {F.shape} (transposed?)")
        if not (F.ndim == 1 and F.size == 0):
            raise MeshError(f"{name}: faces must have shape (m, 3), got {F.shape}")
        F = F.reshape(0, 3)
    if F.size and not np.issubdtype(F.dtype, np.integer):
        raise MeshError(f"{name}: faces must be integers, got dtype {F.dtype}")
    if V.ndim == 2 and V.shape[1] == 3 and (not np.issubdtype(V.dtype, np.number) or np.iscomplexobj(V)):
        raise MeshError(f"{name}: vertices must be real numbers, got dtype {V.dtype}")
    m = Mesh.from_arrays(V, F.astype(np.int64), name=name, process=process)
    return ConvertedMesh(**{f.name: getattr(m, f.name) for f in fields(Mesh)},
                         source_F=np.array(F, dtype=np.int64), source=name)


def library_of(obj: Any) -> str | None:
    """The top-level package of ``obj``'s type if it is one of :data:`LIBRARIES`."""
    for cls in type(obj).__mro__:
        top = (cls.__module__ or "").split(".", 1)[0]
        if top in LIBRARIES:
            return top
    return None


def is_batch(mesh_like: Any) -> bool:
    """True for a PyTorch3D ``Meshes`` batch or a PyTorch Geometric ``Batch`` (the
    ``meshgdl.*`` functions then return one result per mesh, in a list)."""
    lib = library_of(mesh_like)
    names = {c.__name__ for c in type(mesh_like).__mro__}
    return (lib == "pytorch3d" and "Meshes" in names) or (lib == "torch_geometric" and "Batch" in names)


def as_mesh(mesh_like: Any, *, name: str | None = None) -> Mesh:
    """Anything mesh-like -> a cleaned :class:`meshgdl.io.Mesh` with maps back to the input.

    ``mesh_like``: a path (:func:`meshgdl.io.load_mesh`), ``(V, F)`` arrays (numpy
    or torch), a meshgdl ``Mesh`` (returned as is), ``trimesh.Trimesh``,
    ``open3d.geometry.TriangleMesh`` (or ``open3d.t.geometry.TriangleMesh``),
    ``torch_geometric.data.Data`` with ``pos`` and ``face``, or a PyTorch3D ``Meshes``
    batch holding exactly one mesh (use :func:`as_meshes` for larger batches).
    Everything but a path or a ``Mesh`` becomes a :class:`ConvertedMesh`. Raises
    TypeError for anything else, MeshError for an unusable mesh (empty, bad indices,
    non-finite coordinates).
    """
    if isinstance(mesh_like, Mesh):
        return mesh_like
    if isinstance(mesh_like, (str, os.PathLike)):
        from meshgdl.io import load_mesh

        return load_mesh(mesh_like)
    lib = library_of(mesh_like)
    if lib == "trimesh":
        from meshgdl.interop.trimesh import from_trimesh

        return from_trimesh(mesh_like, name=name)
    if lib == "open3d":
        from meshgdl.interop.open3d import from_open3d

        return from_open3d(mesh_like, name=name)
    if lib == "torch_geometric":
        from meshgdl.interop.pyg import from_pyg

        return from_pyg(mesh_like, name=name)
    if lib == "pytorch3d":
        from meshgdl.interop.pytorch3d import from_pytorch3d

        meshes = from_pytorch3d(mesh_like)
        if len(meshes) != 1:
            raise TypeError(f"a pytorch3d Meshes batch of {len(meshes)} meshes is not one mesh; "
                            "use meshgdl.interop.as_meshes or from_pytorch3d (one Mesh per batch entry)")
        return meshes[0]
    if isinstance(mesh_like, (tuple, list)) and len(mesh_like) == 2:
        return from_arrays(mesh_like[0], mesh_like[1], name=name or "mesh")
    if isinstance(mesh_like, np.ndarray) or hasattr(mesh_like, "detach"):
        raise TypeError(f"an array of shape {tuple(mesh_like.shape)} alone is not a mesh; pass (V, F)")
    raise TypeError(f"cannot use a {_type_name(mesh_like)} as a mesh; expected {_EXPECTED}")


def as_meshes(mesh_like: Any) -> list[Mesh]:
    """Like :func:`as_mesh`, as a list: one Mesh per mesh of a PyTorch3D ``Meshes`` or a
    PyG ``Batch``, else a list of one."""
    if is_batch(mesh_like):
        if library_of(mesh_like) == "pytorch3d":
            from meshgdl.interop.pytorch3d import from_pytorch3d

            return from_pytorch3d(mesh_like)
        from meshgdl.interop.pyg import from_pyg

        return [from_pyg(d, name=f"Batch[{i}]") for i, d in enumerate(mesh_like.to_data_list())]
    return [as_mesh(mesh_like)]


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# ----------------------------------------------------------------------------- export


@dataclass
class Exported:
    """The arrays a ``to_*`` converter writes, and how to bring per-vertex values there.

    ``V (n_out, 3) float64``, ``F (m_out, 3) int64``; ``mesh`` the meshgdl Mesh;
    ``source``: True when the arrays are the input's own (``file_V``/``source_F``),
    False when they are the cleaned ``mesh.V``/``mesh.F``.
    """

    V: np.ndarray
    F: np.ndarray
    mesh: Mesh
    source: bool

    def vertex_values(self, values, what: str = "vertex values", fill=0) -> np.ndarray:
        """Per-vertex values (rows: ``n_out``, or the cleaned mesh's ``n`` vertices when
        exporting the input's arrays -- mapped back, merged duplicates sharing a row,
        unreferenced vertices getting ``fill``) -> (n_out, ...) numpy."""
        a = to_numpy(values)
        n_out = len(self.V)
        if a.ndim >= 1 and len(a) == n_out:
            return a
        if self.source and a.ndim >= 1 and len(a) == self.mesh.n_vertices:
            return self.mesh.to_original_vertices(a, fill=fill)
        want = f"{n_out}" + (f" (or {self.mesh.n_vertices}, the cleaned mesh's)" if self.source
                             and self.mesh.n_vertices != n_out else "")
        raise ValueError(f"{what}: expected {want} rows, one per vertex, got shape {tuple(a.shape)}")


def export(mesh_like: Any, *, cleaned: bool = False) -> Exported:
    """The arrays to hand to another library for ``mesh_like``.

    A :class:`ConvertedMesh` (anything converted by this package, arrays included)
    gives back its input's own arrays, so ``to_x(from_x(obj))`` equals ``obj``;
    ``cleaned=True``, or a Mesh loaded from a file, gives the cleaned ``V``, ``F``.
    """
    mesh = as_mesh(mesh_like)
    src = getattr(mesh, "source_F", None)
    if not cleaned and src is not None and mesh.file_V is not None:
        return Exported(V=np.asarray(mesh.file_V, dtype=np.float64), F=src, mesh=mesh, source=True)
    return Exported(V=mesh.V, F=mesh.F, mesh=mesh, source=False)


def check_kind(obj: Any, lib: str, names: tuple[str, ...], what: str) -> None:
    """TypeError (one line) unless ``obj`` is one of ``lib``'s classes ``names``."""
    if library_of(obj) != lib or not any(c.__name__ in names for c in type(obj).__mro__):
        raise TypeError(f"expected {what}, got a {_type_name(obj)}")
