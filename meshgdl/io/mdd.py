"""MDD (LightWave Motion Designer) point caches, as read by Blender's Mesh Cache modifier.

Layout (all big-endian): int32 frame count ``T``, int32 point count ``n``, ``T`` float32
frame times in seconds, then float32 (x, y, z) positions, frame after frame.

Blender's MDD exporter (the ``io_shape_mdd`` add-on) writes one block of positions
*more* than the header's ``T``: a rest-pose block (the mesh at the start frame) before
the ``T`` frames, so its files hold ``T + 1`` blocks. Readers that take the first ``T``
blocks (Blender's own importer and modifier) then play the rest pose as frame 0 and
never reach the last frame. We read such a file (size exactly ``T + 1`` blocks) as the
``T`` frames after the rest block, so frame ``i`` is the pose at ``times[i]`` and no
frame is lost, and say so in the animation's ``warnings``. Any other size mismatch is
an error (truncated cache / trailing data).

Positions are returned as stored, with no change of axes: Blender's exporter writes
world coordinates with y and z swapped (LightWave is y-up), so such a cache lines up
with a mesh file only if that file uses the same axes.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.io._cache import CacheData, check_counts, map_frames, open_cache


def read_mdd(path: str | os.PathLike) -> CacheData:
    """Open a ``.mdd`` file: header and frame times read, frames memory-mapped (``>f4``)."""
    p, name, size = open_cache(path)
    if size < 8:
        raise MeshError(f"{name}: truncated MDD file: {size} bytes, shorter than the 8-byte header")
    with open(p, "rb") as fh:
        T, n = struct.unpack(">ii", fh.read(8))
        check_counts(name, "MDD", T, n)
        times_end = 8 + 4 * T
        if size < times_end:
            raise MeshError(
                f"{name}: truncated MDD cache: header says {T} frames, the file ends inside "
                f"the frame-time table ({size} bytes, the table alone ends at byte {times_end})"
            )
        times = np.frombuffer(fh.read(4 * T), dtype=">f4").astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise MeshError(f"{name}: frame {int(bad[0])}: the MDD frame time is {times[bad[0]]}")
    warnings = []
    offset = times_end
    frame_bytes = 12 * n
    if size == times_end + (T + 1) * frame_bytes:
        offset += frame_bytes
        warnings.append(
            f"{name}: skipped the extra rest-pose block that Blender's MDD exporter writes before frame 0"
        )
    positions = map_frames(p, name, "MDD", size, offset, T, n, ">f4")
    start = float(times[0])
    rate = float(times[1] - times[0]) if T > 1 else 1.0
    if not (math.isfinite(rate) and rate > 0):
        rate = 1.0
    return CacheData(positions, times, "second", start, rate, warnings)
