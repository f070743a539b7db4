"""Deforming meshes with fixed connectivity: :class:`Animation` and :func:`load_animation`.

An animation is one rest :class:`~meshgdl.io.Mesh` (connectivity, cleaning and index
maps) plus ``(T, n_file, 3)`` vertex positions in the *file's* vertex order, read from

* a mesh file + a point cache: ``.pc2`` (:mod:`meshgdl.io.pc2`) or ``.mdd``
  (:mod:`meshgdl.io.mdd`); the cache is memory-mapped, so a cache of any size opens
  at once and frames are read from disk when used;
* a folder of frame meshes sharing connectivity (sorted naturally by name,
  ``f2.obj`` before ``f10.obj``; frame 0 is the rest mesh).

Cleaning is done once, on the rest mesh; every frame reuses its ``F`` and maps (no
re-cleaning), so ``frame(t).V[j]`` is the position of file vertex
``rest.new_to_orig[j]`` at frame ``t``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.io._cache import FINITE_CHECK_BYTES, first_nonfinite
from meshgdl.io.load import SUPPORTED_EXTENSIONS, load_mesh
from meshgdl.io.mdd import read_mdd
from meshgdl.io.mesh import Mesh
from meshgdl.io.pc2 import read_pc2

#: Point-cache extensions :func:`load_animation` reads.
CACHE_EXTENSIONS = (".pc2", ".mdd")


@dataclass
class Animation:
    """A triangle mesh whose vertices move: fixed connectivity, one position array per frame.

    Attributes
    ----------
    rest : Mesh
        The rest mesh as :func:`load_mesh` cleaned it (the mesh file, or frame 0 of a
        folder). Its ``F``, ``orig_to_new``, ``new_to_orig`` and ``face_origin`` hold
        for every frame.
    positions : (T, n_file, 3) float32, read-only
        Every frame's vertex positions in the file's (cache's) vertex order,
        ``n_file = rest.n_orig_vertices``. A ``np.memmap`` of the cache for PC2
        (``<f4``) and MDD (``>f4``) files: slicing it reads only those frames.
        Not checked for NaN/Inf when the cache is large; use :meth:`frame_positions`.
    times : (T,) float64
        The cache's frame times: PC2 ``start_frame + i * sample_rate`` (frames), MDD the
        stored seconds, folder ``0 .. T-1`` (frames); the unit is ``time_unit``.
    time_unit : "frame" or "second"
    path : the mesh file or frame folder; cache_path : the cache file (None for a folder).
    start_frame, sample_rate : float
        The PC2 header values (pass them to :func:`meshgdl.io.save_pc2` to write the
        cache back byte for byte); for other sources ``times[0]`` and the first step.
    frame_paths : list of str or None
        For a folder, the file of each frame.
    warnings : list of str
        What reading did that the caller may want to know (e.g. a skipped MDD rest block,
        folder coordinates rounded to float32).
    """

    rest: Mesh
    positions: np.ndarray
    times: np.ndarray
    time_unit: str = "frame"
    path: str | None = None
    cache_path: str | None = None
    start_frame: float = 0.0
    sample_rate: float = 1.0
    frame_paths: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    _new_to_orig: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self._new_to_orig = self.rest.new_to_orig

    @property
    def n_frames(self) -> int:
        return int(len(self.positions))

    def __len__(self) -> int:
        return self.n_frames

    def _source(self, t: int) -> str:
        if self.frame_paths is not None:
            return self.frame_paths[t]
        return self.cache_path or self.path or "animation"

    def _index(self, t) -> int:
        T = self.n_frames
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"frame index must be an integer, got {t!r}")
        if not -T <= t < T:
            raise IndexError(f"{self._source(0)}: frame {t} out of range (the animation has {T} frames)")
        return int(t) % T

    def frame_positions(self, t: int) -> np.ndarray:
        """``(n_file, 3) float64``: the file's vertex positions at frame ``t`` (a fresh
        array). Raises MeshError naming the file and frame if any is NaN or Inf."""
        t = self._index(t)
        P = np.asarray(self.positions[t], dtype=np.float64)
        ok = np.isfinite(P).all(axis=1)
        if not ok.all():
            i = int(np.argmin(ok))
            raise MeshError(f"{self._source(t)}: frame {t}: NaN or Inf position (vertex {i})")
        return P

    def frame_V(self, t: int) -> np.ndarray:
        """``(n, 3) float64``: the cleaned mesh's vertex positions at frame ``t``
        (``frame_positions(t)[rest.new_to_orig]``)."""
        return self.frame_positions(t)[self._new_to_orig]

    def frame(self, t: int) -> Mesh:
        """The mesh at frame ``t``: ``rest``'s ``F`` and maps (shared, not copied) with
        ``V = frame_V(t)`` and ``file_V = frame_positions(t)``. Not re-cleaned."""
        t = self._index(t)
        P = self.frame_positions(t)
        r = self.rest
        return Mesh(
            V=P[self._new_to_orig], F=r.F, orig_to_new=r.orig_to_new, face_origin=r.face_origin,
            n_orig_vertices=r.n_orig_vertices, n_orig_faces=r.n_orig_faces,
            path=self.frame_paths[t] if self.frame_paths is not None else r.path,
            warnings=list(r.warnings), file_V=P,
        )

    def __iter__(self):
        """The frames as :class:`Mesh` objects, in order (see :meth:`frame`)."""
        return (self.frame(t) for t in range(self.n_frames))

    def check_finite(self) -> None:
        """Scan every frame (reads the whole cache); MeshError naming the first bad frame."""
        bad = first_nonfinite(self.positions)
        if bad is not None:
            raise MeshError(f"{self._source(bad[0])}: frame {bad[0]}: NaN or Inf position (vertex {bad[1]})")


def _natural_key(name: str):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The mesh files of a frame folder (extensions :data:`SUPPORTED_EXTENSIONS`, hidden
    files skipped), sorted naturally by name: ``f2.obj`` before ``f10.obj``."""
    p = Path(folder)
    files = [f for f in p.iterdir()
             if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in SUPPORTED_EXTENSIONS]
    return sorted(files, key=lambda f: (_natural_key(f.name), f.name))


def load_animation(mesh: str | os.PathLike, cache: str | os.PathLike | None = None, *,
                   max_frames: int | None = None) -> Animation:
    """Read a deforming mesh into an :class:`Animation`.

    ``mesh`` a mesh file (anything :func:`load_mesh` reads) and ``cache`` a ``.pc2`` or
    ``.mdd`` file with one position per vertex of that file, in its order; or ``mesh`` a
    folder of frame meshes (``cache=None``) that all have frame 0's faces.
    ``max_frames``: keep only the first frames (a folder then reads only those files).

    Caches are memory-mapped, never loaded whole. One smaller than
    ``FINITE_CHECK_BYTES`` (256 MiB) is scanned for NaN/Inf here; a larger one is
    checked frame by frame as frames are read (:meth:`Animation.frame_positions`).

    Raises MeshError (one line, naming the file and, where it applies, the frame):
    missing file, unknown cache extension, bad magic / version, negative counts, zero
    frames, truncated cache or trailing data, point count different from the mesh's
    vertex count, NaN/Inf positions, empty folder, a folder frame with different faces
    or vertex count.
    """
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    p = Path(mesh)
    if not p.exists():
        raise MeshError(f"{mesh}: file not found")
    if p.is_dir():
        if cache is not None:
            raise MeshError(f"{mesh}: a frame folder takes no cache file (got {cache})")
        return _load_folder(p, max_frames)
    if cache is None:
        raise MeshError(
            f"{mesh}: an animation needs a point cache ({', '.join(CACHE_EXTENSIONS)}) "
            "or a folder of frame meshes"
        )
    cname = str(cache)
    ext = Path(cache).suffix.lower()
    if ext not in CACHE_EXTENSIONS:
        raise MeshError(
            f"{cname}: unknown point-cache type '{Path(cache).suffix or '(none)'}'; "
            f"supported: {', '.join(CACHE_EXTENSIONS)}"
        )
    data = read_pc2(cache) if ext == ".pc2" else read_mdd(cache)  # header only: fails fast
    rest = load_mesh(mesh)
    n_cache = data.positions.shape[1]
    if n_cache != rest.n_orig_vertices:
        raise MeshError(
            f"{cname}: {n_cache} points per frame, but the mesh {mesh} has "
            f"{rest.n_orig_vertices} vertices (the cache must list every vertex of the file, in order)"
        )
    positions, times = data.positions, data.times
    if max_frames is not None:
        positions, times = positions[:max_frames], times[:max_frames]
    if positions.nbytes < FINITE_CHECK_BYTES:
        bad = first_nonfinite(positions)
        if bad is not None:
            raise MeshError(f"{cname}: frame {bad[0]}: NaN or Inf position (vertex {bad[1]})")
    return Animation(
        rest=rest, positions=positions, times=times, time_unit=data.time_unit, path=str(mesh),
        cache_path=cname, start_frame=data.start_frame, sample_rate=data.sample_rate,
        warnings=list(data.warnings),
    )


def _load_folder(folder: Path, max_frames: int | None) -> Animation:
    name = str(folder)
    files = frame_files(folder)
    if not files:
        raise MeshError(f"{name}: no mesh files in the folder (looked for {', '.join(SUPPORTED_EXTENSIONS)})")
    if max_frames is not None:
        files = files[:max_frames]

    def read(t: int, **kw) -> Mesh:
        try:
            return load_mesh(files[t], **kw)
        except MeshError as exc:
            raise MeshError(f"{exc} (frame {t} of {name})") from None

    rest = read(0)
    raw0 = read(0, merge_vertices=False, process=False)
    n = raw0.n_orig_vertices
    positions = np.empty((len(files), n, 3), dtype=np.float32)
    worst = 0.0
    for t in range(len(files)):
        raw = raw0 if t == 0 else read(t, merge_vertices=False, process=False)
        if raw.n_orig_vertices != n:
            raise MeshError(
                f"{files[t]}: frame {t} has {raw.n_orig_vertices} vertices, frame 0 ({files[0].name}) has {n}"
            )
        if not (raw.n_orig_faces == raw0.n_orig_faces and np.array_equal(raw.F, raw0.F)
                and np.array_equal(raw.face_origin, raw0.face_origin)):
            raise MeshError(
                f"{files[t]}: frame {t} has different faces from frame 0 ({files[0].name}); "
                "the frames of an animation must share connectivity"
            )
        positions[t] = raw.file_V
        if not np.isfinite(positions[t]).all():
            i = int(np.argmin(np.isfinite(positions[t]).all(axis=1)))
            raise MeshError(f"{files[t]}: frame {t}: vertex {i} is too large for float32")
        worst = max(worst, float(np.abs(positions[t] - raw.file_V).max()))
    positions.flags.writeable = False
    warnings = []
    if worst > 0:
        warnings.append(f"{name}: coordinates rounded to float32 (largest change {worst:.3g})")
    return Animation(
        rest=rest, positions=positions, times=np.arange(len(files), dtype=np.float64), time_unit="frame",
        path=name, cache_path=None, start_frame=0.0, sample_rate=1.0,
        frame_paths=[str(f) for f in files], warnings=warnings,
    )
