"""Small helpers shared by the format readers (no format logic here)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError


def readable_file(path: str | os.PathLike, what: str,
                  extensions: tuple[str, ...] | None = None) -> tuple[Path, str, int]:
    """``(path, name for messages, size in bytes)`` of an existing, readable, non-empty file
    (with one of ``extensions``, lower case, when given); else MeshError with one line
    naming the file. ``what``: the kind of file, for "is a directory, not a WHAT"."""
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise MeshError(f"{name}: file not found")
    if p.is_dir():
        raise MeshError(f"{name}: is a directory, not a {what}")
    if extensions is not None and p.suffix.lower() not in extensions:
        raise MeshError(
            f"{name}: unsupported file type '{p.suffix or '(none)'}'; "
            f"supported: {', '.join(extensions)}"
        )
    if not os.access(p, os.R_OK):
        raise MeshError(f"{name}: file is not readable (permission denied)")
    size = p.stat().st_size
    if size == 0:
        raise MeshError(f"{name}: file is empty")
    return p, name, size


def _check_polygon_indices(name: str, idx: np.ndarray, lens: np.ndarray, n: int) -> None:
    """0-based flat polygon indices ``idx`` (polygon sizes ``lens``) must lie in [0, n)."""
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        k = int(np.argmax(bad))
        fj = int(np.searchsorted(np.cumsum(lens), k, side="right"))
        raise MeshError(
            f"{name}: face {fj} references vertex {int(idx[k])}, "
            f"but the file has {n} vertices (indices 0..{n - 1})"
        )


def _too_large(name: str, n: int, max_vertices: int) -> None:
    if n > max_vertices:
        raise MeshError(f"{name}: too large: {n} vertices (limit {max_vertices})")


def _decode(p: Path) -> str:
    data = p.read_bytes()
    if b"\x00" in data[:4096]:
        raise MeshError(f"{p}: not a text file (binary data found)")
    return data.decode("utf-8", errors="replace")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"
