"""OBJ reader (``v`` and ``f`` lines; 1-based and negative indices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.io._common import _decode, _too_large


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
