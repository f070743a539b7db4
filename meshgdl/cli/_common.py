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


#: Exit code of ``segment`` / ``classify --reject-ood`` when a mesh is flagged as out of distribution.
EXIT_OOD = 3


def add_ood_argument(parser, consequence: str) -> None:
    parser.add_argument("--reject-ood", action="store_true",
                        help="exit with code 3 when the model flags a mesh as unlike its training data "
                        f"(out of distribution){consequence}")


def model_label(model) -> str:
    """How messages name a loaded model: its shipped name, else its checkpoint file."""
    return str(model.info.get("name") or Path(model.path).name)


def ood_warning(path, ood: dict, model) -> str | None:
    """The one stderr line for a mesh the model's OOD threshold flags (None otherwise)."""
    if ood.get("in_distribution") is not False:
        return None
    return (f"meshgdl: warning: {path}: unlike the meshes {model_label(model)} was trained on "
            f"({ood['score']} score {ood['ood_score']:.3f} > threshold {ood['threshold']:.3f}); "
            "its answer may be wrong")


def ood_json(ood: dict) -> dict:
    """The OOD fields of a mesh in the JSON output (``parts`` only for segmentation)."""
    out = {"in_distribution": ood.get("in_distribution"), "ood_score": ood.get("ood_score"),
           "ood_threshold": ood.get("threshold"), "ood_score_kind": ood.get("score")}
    if "parts" in ood:
        out["ood_parts"] = ood["parts"]
        out["ood_part_threshold"] = ood.get("part_threshold")
    if "frames_flagged" in ood:
        out["ood_frames_flagged"] = ood["frames_flagged"]
    return out


def ood_line(ood: dict) -> str:
    """One stdout summary line: the score, the threshold and the verdict."""
    s = f"{ood['score']} score {ood['ood_score']:.3f}"
    if ood.get("threshold") is None:
        return s + " (the model has no out-of-distribution threshold)"
    verdict = "in distribution" if ood["in_distribution"] else "OUT OF DISTRIBUTION"
    flagged = [p["name"] for p in ood.get("parts", []) if p.get("in_distribution") is False]
    shown = ", ".join(flagged[:8]) + (f" and {len(flagged) - 8} more" if len(flagged) > 8 else "")
    tail = f"; parts unlike the training data: {shown}" if flagged else ""
    return f"{s} (threshold {ood['threshold']:.3f}): {verdict}{tail}"


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
