"""``open3d.geometry.TriangleMesh`` <-> meshgdl. Open3D (``open3d-cpu``, the
``viewer`` extra) is imported only when a conversion runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from meshgdl.interop._core import ConvertedMesh, check_kind, export, from_arrays


def from_open3d(mesh: Any, *, name: str | None = None, process: bool = True) -> ConvertedMesh:
    """``open3d.geometry.TriangleMesh`` (or the tensor ``open3d.t.geometry.TriangleMesh``)
    -> :class:`~meshgdl.interop.ConvertedMesh` (cleaned, with maps back to the
    input's ``vertices`` / ``triangles``, which it keeps for :func:`to_open3d`).

    Raises TypeError for other Open3D geometry (point clouds...), MeshError for an
    empty or broken mesh.
    """
    check_kind(mesh, "open3d", ("TriangleMesh",), "an open3d TriangleMesh")
    if not hasattr(mesh, "triangles"):  # open3d.t.geometry.TriangleMesh
        mesh = mesh.to_legacy()
    return from_arrays(np.asarray(mesh.vertices), np.asarray(mesh.triangles),
                       name=name or "open3d TriangleMesh", process=process)


def to_open3d(mesh_like: Any, *, vertex_colors=None, cleaned: bool = False):
    """A mesh-like -> ``open3d.geometry.TriangleMesh`` (float64 vertices, int32 triangles).

    A mesh converted by :mod:`meshgdl.interop` comes back as its input's own arrays
    (exact round trip); ``cleaned=True`` or a Mesh loaded from a file gives the
    cleaned ``V``/``F``. ``vertex_colors``: (n, 3) floats in [0, 1] or uint8 0..255,
    one row per output vertex or per cleaned vertex (mapped back; unreferenced
    vertices black).
    """
    import open3d as o3d

    ex = export(mesh_like, cleaned=cleaned)
    if ex.F.max(initial=0) >= 2**31:
        raise ValueError("open3d triangles are int32: the mesh has too many vertices")
    out = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.ascontiguousarray(ex.V, dtype=np.float64)),
                                    o3d.utility.Vector3iVector(np.ascontiguousarray(ex.F, dtype=np.int32)))
    if vertex_colors is not None:
        c = ex.vertex_values(vertex_colors, "vertex_colors")
        if c.ndim != 2 or c.shape[1] not in (3, 4):
            raise ValueError(f"vertex_colors: expected shape (n, 3) or (n, 4), got {tuple(c.shape)}")
        c = c[:, :3] / 255.0 if np.issubdtype(c.dtype, np.integer) else c[:, :3]
        out.vertex_colors = o3d.utility.Vector3dVector(np.ascontiguousarray(c, dtype=np.float64))
    return out
