"""ASCII OFF reader."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.io._common import _check_polygon_indices, _decode, _too_large


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
