"""Point Cache 2 (``.pc2``), the vertex cache of Blender's Mesh Cache modifier and 3ds Max.

Layout (little-endian): a 32-byte header ``struct '<12siiffi'`` = magic
``b'POINTCACHE2\\0'``, version 1, points per frame, start frame, sample rate (frames
between samples), number of samples; then ``samples x points x 3`` float32 (x, y, z),
frame after frame. Frame ``i`` is at time ``start_frame + i * sample_rate`` (frames).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from meshgdl.atomic import atomic_path
from meshgdl.errors import MeshError
from meshgdl.io._cache import CacheData, check_counts, first_nonfinite, map_frames, open_cache

PC2_MAGIC = b"POINTCACHE2\0"
PC2_VERSION = 1
_HEADER = struct.Struct("<12siiffi")  # 32 bytes

# Frames converted and written per block by save_pc2 (bounded memory for memmap input).
_WRITE_BLOCK_BYTES = 64 << 20


def read_pc2(path: str | os.PathLike) -> CacheData:
    """Open a ``.pc2`` file: header checked, frames memory-mapped (``<f4``), nothing else read."""
    p, name, size = open_cache(path)
    if size < _HEADER.size:
        raise MeshError(f"{name}: truncated PC2 file: {size} bytes, shorter than the {_HEADER.size}-byte header")
    with open(p, "rb") as fh:
        magic, version, n, start, rate, T = _HEADER.unpack(fh.read(_HEADER.size))
    if magic != PC2_MAGIC:
        raise MeshError(f"{name}: not a PC2 point cache (magic {magic!r}, expected {PC2_MAGIC!r})")
    if version != PC2_VERSION:
        raise MeshError(f"{name}: unsupported PC2 version {version} (only version {PC2_VERSION} exists)")
    check_counts(name, "PC2", T, n)
    if not (math.isfinite(start) and math.isfinite(rate)) or rate <= 0:
        raise MeshError(f"{name}: corrupt PC2 header: start frame {start}, sample rate {rate} (must be finite, rate > 0)")
    positions = map_frames(p, name, "PC2", size, _HEADER.size, T, n, "<f4")
    times = float(start) + np.arange(T, dtype=np.float64) * float(rate)
    return CacheData(positions, times, "frame", float(start), float(rate))


def save_pc2(path: str | os.PathLike, positions, start_frame: float = 0.0, sample_rate: float = 1.0) -> None:
    """Write ``positions (T, n, 3)`` as a ``.pc2`` file, atomically (temp file + rename).

    Coordinates are stored as little-endian float32, ``start_frame`` and ``sample_rate``
    as float32. Writing what :func:`read_pc2` (or :func:`meshgdl.io.load_animation`) read,
    with its ``start_frame`` / ``sample_rate``, reproduces the file byte for byte. A
    memory-mapped ``positions`` is converted block by block, never loaded whole.
    Raises MeshError for a wrong shape, zero frames or points, NaN/Inf (naming the frame).
    """
    name = str(path)
    pos = positions if isinstance(positions, np.ndarray) else np.asarray(positions)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise MeshError(f"{name}: positions must have shape (frames, points, 3), got {pos.shape}")
    T, n = int(pos.shape[0]), int(pos.shape[1])
    if T == 0 or n == 0:
        raise MeshError(f"{name}: cannot write a PC2 cache with {T} frames of {n} points")
    if not np.issubdtype(pos.dtype, np.floating) and not np.issubdtype(pos.dtype, np.integer):
        raise MeshError(f"{name}: positions must be numbers, got dtype {pos.dtype}")
    start32, rate32 = np.float32(start_frame), np.float32(sample_rate)
    if not (np.isfinite(start32) and np.isfinite(rate32)) or rate32 <= 0:
        raise MeshError(f"{name}: start_frame {start_frame} / sample_rate {sample_rate} must be finite, rate > 0")
    step = max(1, _WRITE_BLOCK_BYTES // (12 * n))
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(_HEADER.pack(PC2_MAGIC, PC2_VERSION, n, start32, rate32, T))
            for t0 in range(0, T, step):
                block = np.ascontiguousarray(pos[t0 : t0 + step], dtype="<f4")
                bad = first_nonfinite(block)
                if bad is not None:
                    raise MeshError(f"{name}: frame {t0 + bad[0]}: NaN or Inf position (point {bad[1]})")
                fh.write(block.tobytes())
