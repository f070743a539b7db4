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

Layout (one module per job): ``mesh`` (:class:`Mesh`, the cleaning, :func:`validate`),
``load`` (:func:`load_mesh`), ``obj`` / ``off`` / ``ply`` / ``_trimesh`` (readers),
``save`` (:func:`save_mesh`); animations: ``animation`` (:class:`Animation`,
:func:`load_animation`, frame folders), ``pc2`` (:func:`read_pc2`, :func:`save_pc2`),
``mdd`` (:func:`read_mdd`), ``_cache`` (what the cache readers share). Every name is
re-exported here, so ``from meshgdl.io import X`` is the import to use.
"""

from __future__ import annotations

from meshgdl.atomic import atomic_path
from meshgdl.errors import MeshError
from meshgdl.geometry.validation import check_arrays, check_finite
from meshgdl.io._common import _check_polygon_indices, _decode, _plural, _too_large
from meshgdl.io._trimesh import _read_trimesh
from meshgdl.io.animation import CACHE_EXTENSIONS, Animation, frame_files, load_animation
from meshgdl.io.load import DEFAULT_MAX_VERTICES, SUPPORTED_EXTENSIONS, load_mesh
from meshgdl.io.mesh import (
    _DEGENERATE_REL_AREA, Mesh, MeshReport, _build_mesh, _group_rows, _triangulate, validate,
)
from meshgdl.io.mdd import read_mdd
from meshgdl.io.obj import _read_obj
from meshgdl.io.off import _read_off
from meshgdl.io.ply import (
    _PLY_TYPES, _parse_ply_header, _PlyAsciiReader, _PlyBinaryReader, _PlyElement, _PlyProp,
    _read_ply, _read_ply_mesh, load_vertex_scalars,
)
from meshgdl.io.pc2 import read_pc2, save_pc2
from meshgdl.io.save import _RESERVED_PLY_NAMES, SAVE_EXTENSIONS, _colors_u8, save_mesh

__all__ = [
    "DEFAULT_MAX_VERTICES", "SAVE_EXTENSIONS", "SUPPORTED_EXTENSIONS", "Mesh", "MeshError", "MeshReport",
    "check_arrays", "check_finite", "load_mesh", "load_vertex_scalars", "save_mesh", "validate",
    "CACHE_EXTENSIONS", "Animation", "frame_files", "load_animation", "read_mdd", "read_pc2", "save_pc2",
]
