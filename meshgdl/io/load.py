""":func:`load_mesh`: dispatch on the extension to a format reader, then clean."""

from __future__ import annotations

import os

from meshgdl.errors import MeshError
from meshgdl.io._common import readable_file
from meshgdl.io._trimesh import _read_trimesh
from meshgdl.io.mesh import Mesh, _build_mesh
from meshgdl.io.obj import _read_obj
from meshgdl.io.off import _read_off
from meshgdl.io.ply import _read_ply_mesh

SUPPORTED_EXTENSIONS = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
DEFAULT_MAX_VERTICES = 20_000_000


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
    p, name, _ = readable_file(path, "mesh file", SUPPORTED_EXTENSIONS)
    ext = p.suffix.lower()
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
