"""What the point-cache readers (``pc2``, ``mdd``) share: opening the file, checking
its size against the header, memory-mapping the frames, and finding non-finite frames."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.io._common import readable_file

#: Caches whose positions take fewer bytes than this are scanned for NaN/Inf when
#: opened; larger ones only frame by frame, as frames are read (so they open at once).
FINITE_CHECK_BYTES = 256 << 20

# Scan for NaN/Inf in blocks of about this many bytes (bounded temporary memory).
_SCAN_BLOCK_BYTES = 16 << 20


@dataclass
class CacheData:
    """A point cache as read from its file, before it is matched to a mesh."""

    positions: np.ndarray  # (T, n, 3) float32 memmap, file byte order
    times: np.ndarray  # (T,) float64
    time_unit: str  # "frame" or "second"
    start_frame: float
    sample_rate: float
    warnings: list[str] = field(default_factory=list)


def open_cache(path: str | os.PathLike) -> tuple[Path, str, int]:
    """``(path, name for messages, size in bytes)`` of an existing, readable cache file."""
    return readable_file(path, "point-cache file")


def check_counts(name: str, fmt: str, n_frames: int, n_points: int) -> None:
    if n_frames < 0 or n_points < 0:
        what = "frame" if n_frames < 0 else "point"
        raise MeshError(
            f"{name}: corrupt {fmt} header: negative {what} count "
            f"({n_frames} frames, {n_points} points)"
        )
    if n_frames == 0:
        raise MeshError(f"{name}: {fmt} cache has zero frames")
    if n_points == 0:
        raise MeshError(f"{name}: {fmt} cache has zero points per frame")


def map_frames(p: Path, name: str, fmt: str, size: int, offset: int, n_frames: int, n_points: int,
               dtype: str) -> np.ndarray:
    """Memory-map ``n_frames`` frames of ``n_points`` float32 xyz starting at byte
    ``offset``, after checking that the file holds exactly that much."""
    frame_bytes = 12 * n_points
    expected = offset + n_frames * frame_bytes
    if size < expected:
        k = max(size - offset, 0) // frame_bytes
        cut = "cut short" if offset + k * frame_bytes < size else "missing"
        raise MeshError(
            f"{name}: truncated {fmt} cache: header says {n_frames} frames of {n_points} points "
            f"({expected} bytes), the file has {size} bytes; frame {k} is {cut}"
        )
    if size > expected:
        raise MeshError(
            f"{name}: {size - expected} bytes of trailing data after the last frame ({n_frames - 1}) "
            f"of this {fmt} cache (header says {n_frames} frames of {n_points} points): "
            "a wrong header or not a cache file"
        )
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=(n_frames, n_points, 3))


def first_nonfinite(positions: np.ndarray) -> tuple[int, int] | None:
    """``(frame, point)`` of the first NaN/Inf coordinate in ``(T, n, 3)`` positions, or None."""
    T = len(positions)
    step = max(1, _SCAN_BLOCK_BYTES // max(positions[0].nbytes, 1)) if T else 1
    for t0 in range(0, T, step):
        block = np.asarray(positions[t0 : t0 + step])
        ok = np.isfinite(block).all(axis=(1, 2))
        if not ok.all():
            t = int(np.argmin(ok))
            i = int(np.argmin(np.isfinite(block[t]).all(axis=1)))
            return t0 + t, i
    return None
