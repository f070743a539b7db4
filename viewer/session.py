"""From user inputs (mesh, feature choice, deformation) to a :class:`ViewerModel`.

Shared by ``meshgdl view`` (headless export and the window) and by Python callers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .deform import BUILTIN_DEFORMATIONS, deformation_frames, load_frame_folder
from .features import (Feature, ViewerError, array_feature, array_tangent, builtin_feature,
                       labels_feature, load_labels_file, load_scalar_file, load_vectors_file,
                       model_feature)
from .scene import Style, ViewerModel

BUILTIN_MESHES = ("capsule", "torus", "sphere", "bumpy")

# Target pose of the built-in articulation (radians): raise the left arm and bend its
# elbow, swing the right leg forward and bend the knee, turn the head.
ARTICULATION_POSE = {
    "left_shoulder": np.array([0.0, 0.0, 0.9]),
    "left_elbow": 1.4,
    "right_hip": np.array([-0.8, 0.0, 0.0]),
    "right_knee": 1.1,
    "neck": np.array([0.0, 0.5, 0.0]),
}


@dataclass
class LoadedMesh:
    """A mesh to view: the io :class:`meshgdl.io.Mesh` (or built-in arrays) and,
    for the capsule figure, its part labels."""

    V: np.ndarray
    F: np.ndarray
    mesh: object | None = None  # meshgdl.io.Mesh when read from a file
    labels: np.ndarray | None = None
    name: str = ""

    @property
    def is_capsule(self) -> bool:
        return self.name == "builtin:capsule"


def load_view_mesh(spec: str | os.PathLike) -> LoadedMesh:
    """A mesh file (anything :func:`meshgdl.io.load_mesh` reads) or ``builtin:NAME``
    with NAME one of capsule (articulated figure, with part labels), torus, sphere, bumpy."""
    s = str(spec)
    if s.startswith("builtin:"):
        from meshgdl.data import synthetic

        name = s.split(":", 1)[1]
        if name == "capsule":
            V, F, labels = synthetic.capsule_figure()
            return LoadedMesh(V, F, None, labels, s)
        if name == "torus":
            return LoadedMesh(*synthetic.torus(), name=s)
        if name == "sphere":
            return LoadedMesh(*synthetic.icosphere(4), name=s)
        if name == "bumpy":
            return LoadedMesh(*synthetic.bumpy_sphere(), name=s)
        raise ViewerError(f"unknown built-in mesh {name!r}; choose one of "
                          + ", ".join(f"builtin:{b}" for b in BUILTIN_MESHES))
    from meshgdl.io import load_mesh

    m = load_mesh(s)
    return LoadedMesh(m.V, m.F, m, None, s)


def _as_mesh_like(lm: LoadedMesh):
    """Something with ``V``/``n_orig_vertices``/``new_to_orig`` for per-vertex files."""
    if lm.mesh is not None:
        return lm.mesh

    class _Plain:
        V = lm.V
        n_orig_vertices = len(lm.V)
        new_to_orig = np.arange(len(lm.V))

    return _Plain()


def articulation_frames(lm: LoadedMesh, T: int, pose: dict | None = None) -> np.ndarray:
    """``(T, n, 3)``: the capsule figure moving from rest to ``pose`` (default
    :data:`ARTICULATION_POSE`) by linear-blend skinning (rigid parts, blended joints)."""
    from meshgdl.data.synthetic import articulate

    if not lm.is_capsule:
        raise ViewerError("--deform articulate needs the built-in figure (MESH = builtin:capsule); "
                          "use twist, bend or a folder of meshes")
    pose = ARTICULATION_POSE if pose is None else pose
    fracs = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    out = []
    for f in fracs:
        if f == 0:
            out.append(lm.V.copy())
        else:
            out.append(articulate(lm.V, lm.labels, {k: np.asarray(v) * f for k, v in pose.items()}))
    return np.stack(out)


def make_frames(lm: LoadedMesh, deform: str | None, T: int | None) -> tuple[np.ndarray, str]:
    """Deformation frames ``(T, n, 3)`` and a short name for the caption."""
    if T is not None and T < 1:
        raise ViewerError(f"--frames must be >= 1, got {T}")
    if not deform:
        return lm.V[None].copy(), ""
    if deform in BUILTIN_DEFORMATIONS:
        return deformation_frames(lm.V, deform, T or 24), deform
    if deform == "articulate":
        return articulation_frames(lm, T or 24), "articulate"
    if Path(deform).is_dir():
        if lm.mesh is None:
            raise ViewerError("a folder of frames needs MESH to be a mesh file with the same connectivity")
        return load_frame_folder(deform, lm.mesh, T), Path(deform).name
    raise ViewerError(f"--deform {deform}: not twist, bend, articulate or an existing folder of meshes")


def make_features(lm: LoadedMesh, *, scalar=None, labels=None, class_names=None, feature=None, model=None, layer=0,
                  source: int = 0) -> list[Feature]:
    """The feature list: the requested one first, then the built-ins (HKS, geodesic,
    eigenfunctions, raw coordinates) so the window can cycle through them."""
    n = len(lm.V)
    if not 0 <= source < n:
        raise ViewerError(f"--source {source} out of range: the mesh has {n} vertices")
    chosen = [x for x in (scalar, labels, feature, model) if x is not None]
    if len(chosen) > 1:
        raise ViewerError("give only one of --scalar, --labels, --feature, --model")
    first: list[Feature] = []
    if scalar is not None:
        vals = load_scalar_file(scalar, _as_mesh_like(lm))
        first.append(array_feature(vals, Path(scalar).stem))
    elif labels is not None:
        first.append(labels_feature(load_labels_file(labels, _as_mesh_like(lm)), Path(labels).stem, class_names))
    elif model is not None:
        # every layer, so next/previous feature walks through the network
        from .features import num_model_layers

        n_layers = num_model_layers(model)
        if not -n_layers <= layer < n_layers:
            raise ViewerError(f"--layer {layer} out of range: the model has {n_layers} feature layers "
                              f"(0..{n_layers - 1})")
        start = layer % n_layers
        first.extend(model_feature(model, (start + i) % n_layers) for i in range(n_layers))
    elif lm.labels is not None and feature is None:
        first.append(labels_feature(lm.labels, "parts"))
    names = ["hks", "geodesic", "eigen", "x"]
    if feature is not None:
        if feature in names:
            names.remove(feature)
        first.insert(0, builtin_feature(feature, source=source))
    return first + [builtin_feature(nm, source=source) for nm in names]


def build_model(mesh: str, *, scalar=None, labels=None, class_names=None, feature=None, model=None, layer=0,
                channel=0,
                source=0, deform=None, frames=None, vectors=None, rho=1,
                style: Style | None = None) -> ViewerModel:
    """Everything ``meshgdl view`` needs, as a :class:`ViewerModel`.

    The first feature is evaluated on every frame here, so bad input (a wrong
    channel, a feature that fails) is reported before a window opens or a file is written.
    """
    lm = load_view_mesh(mesh)
    feats = make_features(lm, scalar=scalar, labels=labels, class_names=class_names, feature=feature,
                          model=model, layer=layer,
                          source=source)
    fr, dname = make_frames(lm, deform, frames)
    tangent = None
    if vectors is not None:
        tangent = array_tangent(load_vectors_file(vectors, _as_mesh_like(lm)), order=rho,
                                name=Path(vectors).stem)
    return ViewerModel(fr, lm.F, feats, style or Style(), tangent=tangent, channel=channel,
                       deform_name=dname)
