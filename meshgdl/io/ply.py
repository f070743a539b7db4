"""PLY reader (ascii and binary, any element/property layout) and
:func:`load_vertex_scalars`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.io._common import _check_polygon_indices, _too_large

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
