"""``trimesh.Trimesh`` <-> meshgdl. trimesh is a core dependency, but it is imported
only when a conversion runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from meshgdl.interop._core import ConvertedMesh, check_kind, export, from_arrays


def from_trimesh(tm: Any, *, name: str | None = None, process: bool = True) -> ConvertedMesh:
    """``trimesh.Trimesh`` -> :class:`~meshgdl.interop.ConvertedMesh` (cleaned, with maps
    back to ``tm.vertices`` / ``tm.faces``, which it keeps for :func:`to_trimesh`).

    Raises TypeError for anything but a ``Trimesh`` (a ``Scene`` must be flattened
    first, e.g. ``scene.to_geometry()``), MeshError for an empty or broken mesh.
    """
    if type(tm).__name__ == "Scene":
        raise TypeError("expected a trimesh.Trimesh, got a trimesh.Scene; flatten it first "
                        "(scene.to_geometry())")
    check_kind(tm, "trimesh", ("Trimesh",), "a trimesh.Trimesh")
    return from_arrays(np.asarray(tm.vertices), np.asarray(tm.faces), name=name or "trimesh.Trimesh",
                       process=process)


def to_trimesh(mesh_like: Any, *, vertex_colors=None, vertex_attributes: dict | None = None,
               face_attributes: dict | None = None, cleaned: bool = False):
    """A mesh-like -> ``trimesh.Trimesh`` (built with ``process=False``: nothing is
    merged or reordered).

    A mesh converted by :mod:`meshgdl.interop` comes back as its input's own arrays
    (exact round trip); ``cleaned=True`` or a Mesh loaded from a file gives the
    cleaned ``V``/``F``. ``vertex_colors``: (n, 3|4) uint8; ``vertex_attributes``:
    name -> per-vertex array (n, ...); ``face_attributes``: name -> per-face array
    (m, ...). Per-vertex arrays may also have one row per *cleaned* vertex; they are
    then mapped back to the input's vertices (unreferenced ones get 0).
    """
    import trimesh

    ex = export(mesh_like, cleaned=cleaned)
    kw = {}
    if vertex_colors is not None:
        kw["vertex_colors"] = ex.vertex_values(vertex_colors, "vertex_colors")
    tm = trimesh.Trimesh(vertices=ex.V.copy(), faces=ex.F.copy(), process=False, validate=False, **kw)
    for k, v in (vertex_attributes or {}).items():
        tm.vertex_attributes[k] = ex.vertex_values(v, f"vertex_attributes[{k!r}]")
    for k, v in (face_attributes or {}).items():
        a = np.asarray(v)
        if len(a) != len(ex.F):
            raise ValueError(f"face_attributes[{k!r}]: expected {len(ex.F)} rows, one per face, got {a.shape}")
        tm.face_attributes[k] = a
    return tm
