""":func:`save_mesh`: PLY (with colours and named scalars), OBJ, OFF, and STL/GLB
through trimesh; always atomic."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from meshgdl.atomic import atomic_path
from meshgdl.errors import MeshError
from meshgdl.geometry.validation import check_arrays

#: Formats :func:`save_mesh` writes.
SAVE_EXTENSIONS = (".ply", ".obj", ".off", ".stl", ".glb")

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
