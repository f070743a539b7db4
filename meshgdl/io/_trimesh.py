"""STL, GLB and GLTF through trimesh (GLTF scenes flattened with their node transforms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError


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
