"""Deforming models: built-in near-isometric deformations, frame folders (read by
:func:`meshgdl.io.load_animation`, like point caches) and frame subsampling.

A deformation is a stack of vertex positions ``(T, n, 3) float64`` that all share
one face array ``F``; frame 0 is the undeformed (rest) shape. The viewer recomputes a
feature on every frame, so a feature that depends only on the metric (HKS, geodesic
distance, Laplacian eigenfunctions) stays attached to the surface while extrinsic
ones (raw coordinates) visibly swim.

Built-ins move rigid parts rigidly and confine the non-rigid part to a band, so
lengths change only inside the band (the "joint"):

* ``twist``: rotate about the principal (longest) axis by an angle that ramps up
  smoothly along that axis between 25% and 75% of the length: both ends stay rigid.
* ``bend``: the principal axis, as a centre line, curves (keeping its length) over the
  middle half of the shape, in the plane of the two largest principal axes (the
  plane the viewer's camera looks at); the far end turns rigidly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError

BUILTIN_DEFORMATIONS = ("twist", "bend")


def principal_axes(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid ``(3,)`` and principal axes ``(3, 3)`` (rows, largest variance first).

    Each axis is oriented so its largest-magnitude world component is positive, so the
    result does not flip between calls or between nearly identical shapes.
    """
    V = np.asarray(V, dtype=np.float64)
    c = V.mean(axis=0)
    X = V - c
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    axes = Vt.copy()
    for i in range(3):
        k = int(np.argmax(np.abs(axes[i])))
        if axes[i, k] < 0:
            axes[i] = -axes[i]
    # keep a right-handed frame; flip the middle axis (the view keeps looking from +)
    if np.linalg.det(axes) < 0:
        axes[1] = -axes[1]
    return c, axes


def smoothstep(x: np.ndarray) -> np.ndarray:
    """C1 ramp: 0 for x <= 0, 1 for x >= 1, 3x^2 - 2x^3 between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def rotation_matrices(axis: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``(k, 3, 3)`` rotations by ``angles (k,)`` (radians, counter-clockwise) about unit ``axis``."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    s, c = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3)[None] + s * K[None] + (1.0 - c) * (K @ K)[None]


def _axial(V: np.ndarray):
    c, axes = principal_axes(V)
    t = (V - c) @ axes[0]
    lo, hi = float(t.min()), float(t.max())
    if not hi > lo:
        raise MeshError("cannot deform a mesh with zero extent along its principal axis")
    return c, axes, (t - lo) / (hi - lo), lo, hi


def twist(V: np.ndarray, angle: float) -> np.ndarray:
    """Twist ``V (n, 3)`` about its principal axis; the far end turns by ``angle`` radians.

    The twist angle at axial position ``u in [0, 1]`` is ``angle * smoothstep((u - 0.25) / 0.5)``.
    """
    V = np.asarray(V, dtype=np.float64)
    c, axes, u, _, _ = _axial(V)
    R = rotation_matrices(axes[0], angle * smoothstep((u - 0.25) / 0.5))
    return c + np.einsum("nij,nj->ni", R, V - c)


def bend(V: np.ndarray, angle: float, band: float = 0.5) -> np.ndarray:
    """Bend ``V (n, 3)`` by ``angle`` radians in the plane of its two largest principal axes.

    The principal axis is treated as a centre line that curves along a band of
    relative length ``band`` around the middle (curvature ``angle * w'(s)`` with ``w``
    a smoothstep), keeping its arc length; every vertex keeps its offset from the
    centre line in the line's moving frame. So the part before the band is fixed, the
    part after it rotates rigidly by ``angle``, the centre line is exactly isometric
    and the surface at distance r from it is stretched or compressed by at most
    ``r * 1.5 * angle / (band * length)``.
    """
    V = np.asarray(V, dtype=np.float64)
    c, axes, u, lo, hi = _axial(V)
    length = hi - lo
    a, nrm, b = axes[0], axes[1], axes[2]
    s = u * length  # arclength along the axis from the low end
    s0, s1 = (0.5 - band / 2) * length, (0.5 + band / 2) * length
    # centre line C(s) with tangent angle phi(s), integrated on a fine grid
    grid = np.linspace(0.0, length, 4097)
    phi = angle * smoothstep((grid - s0) / max(s1 - s0, 1e-12))
    tang = np.cos(phi)[:, None] * a + np.sin(phi)[:, None] * nrm
    steps = 0.5 * (tang[1:] + tang[:-1]) * np.diff(grid)[:, None]
    C = np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])
    Cs = np.stack([np.interp(s, grid, C[:, k]) for k in range(3)], axis=1)
    ph = angle * smoothstep((s - s0) / max(s1 - s0, 1e-12))
    X = V - (c + lo * a)
    y, z = X @ nrm, X @ b
    N = -np.sin(ph)[:, None] * a + np.cos(ph)[:, None] * nrm
    return c + lo * a + Cs + y[:, None] * N + z[:, None] * b


def deformation_frames(V: np.ndarray, kind: str, T: int = 24, amount: float | None = None) -> np.ndarray:
    """``(T, n, 3)`` frames of built-in deformation ``kind`` ("twist" or "bend").

    Frame ``t`` applies fraction ``t / (T - 1)`` of the full deformation (``amount``
    radians; default pi/2 for both), so frame 0 is ``V``.
    """
    V = np.asarray(V, dtype=np.float64)
    if kind not in BUILTIN_DEFORMATIONS:
        raise ValueError(f"unknown deformation {kind!r}; built-ins are {', '.join(BUILTIN_DEFORMATIONS)}")
    if T < 1:
        raise ValueError(f"number of frames must be >= 1, got {T}")
    fn = {"twist": twist, "bend": bend}[kind]
    full = np.pi / 2 if amount is None else float(amount)
    fracs = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    return np.stack([V if f == 0 else fn(V, full * f) for f in fracs])


def frame_indices(n_frames: int, T: int | None = None) -> np.ndarray:
    """``T`` evenly spaced frame indices of a sequence of ``n_frames`` (first and last
    included; all of them when ``T`` is None or not smaller)."""
    if T is not None and T < 1:
        raise ValueError(f"number of frames must be >= 1, got {T}")
    if T is None or T >= n_frames:
        return np.arange(n_frames)
    return np.round(np.linspace(0, n_frames - 1, T)).astype(np.int64)


def folder_animation(folder: str | os.PathLike, reference):
    """A folder of frame meshes (:func:`meshgdl.io.load_animation`) checked to share the
    connectivity of ``reference``, the :class:`meshgdl.io.Mesh` being viewed: the same
    number of vertices and the same faces, in the file's own numbering."""
    from meshgdl.io import load_animation, load_mesh

    if not Path(folder).is_dir():
        raise MeshError(f"{folder}: not a folder of meshes")
    anim = load_animation(folder)
    first = anim.frame_paths[0]
    raw = load_mesh(first, process=False)
    ref_raw = _raw_faces(reference)
    if raw.n_orig_vertices != reference.n_orig_vertices or raw.F.shape != ref_raw.shape:
        raise MeshError(
            f"{first}: frame does not share the mesh's connectivity "
            f"({raw.n_orig_vertices} vertices / {len(raw.F)} triangles, expected "
            f"{reference.n_orig_vertices} / {len(ref_raw)})"
        )
    if not np.array_equal(raw.F, ref_raw):
        raise MeshError(f"{first}: frame has the same counts but different faces than the mesh")
    return anim


def cleaned_frames(positions: np.ndarray, reference, indices) -> np.ndarray:
    """Frames ``indices`` of file-order ``positions (T, n_file, 3)`` mapped through
    ``reference``'s cleaning (merged / dropped vertices): ``(len(indices), n, 3)`` float64
    lined up with ``reference.V``."""
    kept = np.flatnonzero(reference.orig_to_new >= 0)
    out = np.empty((len(indices),) + reference.V.shape)
    for i, t in enumerate(indices):
        out[i, reference.orig_to_new[kept]] = np.asarray(positions[int(t)], np.float64)[kept]
    return out


def load_frame_folder(folder: str | os.PathLike, reference, T: int | None = None) -> np.ndarray:
    """Load a folder of meshes that share ``reference``'s connectivity
    (:func:`folder_animation`; read by :func:`meshgdl.io.load_animation`, so positions
    are float32-exact).

    ``reference`` is the :class:`meshgdl.io.Mesh` being viewed; each frame's positions
    are mapped through its cleaning, so every frame lines up with ``reference.V``.
    Returns ``(T, n, 3)`` float64; ``T`` evenly subsamples the files when given.
    """
    anim = folder_animation(folder, reference)
    return cleaned_frames(anim.positions, reference, frame_indices(anim.n_frames, T))


def _raw_faces(reference) -> np.ndarray:
    """The reference file's triangles in file numbering (before cleaning)."""
    from meshgdl.io import load_mesh

    if reference.path is None:
        # built from arrays: its F already is the "file" numbering
        return np.asarray(reference.F)
    return load_mesh(reference.path, process=False).F
