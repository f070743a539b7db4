"""Helpers shared by the ``meshgdl`` sub-commands: loading the mesh argument,
checking output paths, slow-step status lines and colour maps.

Every problem a user can cause is raised as an exception the dispatcher turns
into one ``meshgdl: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from meshgdl.errors import UsageError  # noqa: F401  (re-exported for the commands)

if TYPE_CHECKING:
    from meshgdl.io import Mesh


def add_mesh_argument(parser, help: str = "input mesh (.obj .ply .off .stl .glb .gltf)") -> None:
    parser.add_argument("mesh", metavar="MESH", help=help)


def load_mesh_arg(path: str) -> "Mesh":
    """Load the MESH argument (status line on stderr only if loading is slow)."""
    from meshgdl.io import load_mesh

    with status(f"loading {path}"):
        return load_mesh(path)


def print_notes(mesh: "Mesh") -> None:
    """What cleaning changed, as one stderr line. Commands call this after their
    output is written, so a failing command still prints exactly one error line."""
    if mesh.warnings:
        print(f"meshgdl: note: {mesh.path}: {'; '.join(mesh.warnings)}", file=sys.stderr)


def output_path(path: str, allowed: tuple[str, ...], what: str = "output") -> Path:
    """Check an output file name before any work is done: extension in ``allowed``,
    not a directory, parent folder exists."""
    p = Path(path)
    if p.suffix.lower() not in allowed:
        raise UsageError(
            f"{path}: {what} must end with {' or '.join(allowed)} (got '{p.suffix or 'no extension'}')"
        )
    if p.is_dir():
        raise UsageError(f"{path}: {what} is a directory")
    if not p.parent.exists():
        raise UsageError(f"{path}: folder {p.parent} does not exist")
    return p


@contextlib.contextmanager
def status(message: str, delay: float = 2.0, stream=None) -> Iterator[None]:
    """Say ``meshgdl: <message> ...`` on stderr only if the block is still running
    after ``delay`` seconds, and then its duration when it ends; quick steps stay silent."""
    stream = stream if stream is not None else sys.stderr
    t0 = time.perf_counter()
    shown = threading.Event()

    def show():
        shown.set()
        print(f"meshgdl: {message} ...", file=stream, flush=True)

    timer = threading.Timer(delay, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if shown.is_set():
            print(f"meshgdl: {message}: done in {time.perf_counter() - t0:.1f} s", file=stream, flush=True)


# A perceptually ordered dark-blue -> teal -> yellow ramp (viridis-like control points).
_RAMP = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.283, 0.141, 0.458],
        [0.254, 0.265, 0.530],
        [0.207, 0.372, 0.553],
        [0.164, 0.471, 0.558],
        [0.128, 0.567, 0.551],
        [0.135, 0.659, 0.518],
        [0.267, 0.749, 0.441],
        [0.478, 0.821, 0.318],
        [0.741, 0.873, 0.150],
        [0.993, 0.906, 0.144],
    ]
)


def colormap(values: np.ndarray, invalid_rgb=(0.6, 0.6, 0.6)) -> np.ndarray:
    """(n,) scalars -> (n, 3) uint8 colours, min..max of the finite values mapped
    along the ramp; non-finite values get ``invalid_rgb``."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    out = np.tile(np.asarray(invalid_rgb, dtype=np.float64), (len(v), 1))
    if ok.any():
        lo, hi = v[ok].min(), v[ok].max()
        t = (v[ok] - lo) / (hi - lo) if hi > lo else np.zeros(int(ok.sum()))
        x = t * (len(_RAMP) - 1)
        i = np.minimum(x.astype(int), len(_RAMP) - 2)
        f = (x - i)[:, None]
        out[ok] = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    return np.round(out * 255).astype(np.uint8)
