"""From user inputs (mesh, feature choice, deformation) to a :class:`ViewerModel`.

Shared by ``meshgdl view`` (headless export and the window) and by Python callers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .deform import (BUILTIN_DEFORMATIONS, cleaned_frames, deformation_frames, folder_animation, frame_indices,
                     load_frame_folder)
from .features import (Feature, ModelOnMesh, ViewerError, array_feature, array_tangent, builtin_feature,
                       frame_labels_feature, labels_feature, load_labels_file, load_scalar_file,
                       load_vectors_file, model_feature)
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


@dataclass
class Sequence:
    """Frames of a real animation (:func:`meshgdl.io.load_animation`) picked for viewing."""

    frames: np.ndarray  # (T, n, 3) float64 cleaned-mesh positions
    indices: np.ndarray  # (T,) frame numbers in the file (0-based)
    n_frames: int  # frames in the file
    name: str


def load_sequence(mesh: str, animation: str, T: int | None = None) -> tuple[LoadedMesh, Sequence]:
    """MESH and its animation: a point cache (.pc2 / .mdd) of MESH's vertices, or a folder
    of frame meshes sharing MESH's connectivity (both read by
    :func:`meshgdl.io.load_animation`); ``T`` evenly subsamples the frames."""
    if T is not None and T < 1:
        raise ViewerError(f"--frames must be >= 1, got {T}")
    if str(mesh).startswith("builtin:"):
        raise ViewerError("--animation needs MESH to be the animated mesh's file (its rest shape), "
                          "not a built-in mesh")
    if Path(animation).is_dir():
        lm = load_view_mesh(mesh)
        anim = folder_animation(animation, lm.mesh)
        idx = frame_indices(anim.n_frames, T)
        frames = cleaned_frames(anim.positions, lm.mesh, idx)
    else:
        from meshgdl.io import load_animation

        anim = load_animation(mesh, animation)
        idx = frame_indices(anim.n_frames, T)
        frames = np.stack([anim.frame_V(int(t)) for t in idx])
        rest = anim.rest
        lm = LoadedMesh(rest.V, rest.F, rest, None, str(mesh))
    return lm, Sequence(frames, idx, int(anim.n_frames), Path(animation).name.rsplit(".", 1)[0])


def make_features(lm: LoadedMesh, *, scalar=None, labels=None, class_names=None, feature=None, model=None, layer=0,
                  source: int = 0, sequence: Sequence | None = None) -> list[Feature]:
    """The feature list: the requested one first, then the built-ins (HKS, geodesic,
    eigenfunctions, raw coordinates) so the window can cycle through them.

    With a ``sequence``, ``labels`` may be a ``(T, n)`` file of per-frame labels (T the
    file's frame count; rows picked like the frames)."""
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
        lab = load_labels_file(labels, _as_mesh_like(lm), n_frames=sequence.n_frames if sequence else None)
        if lab.ndim == 2:
            first.append(frame_labels_feature(lab[sequence.indices], Path(labels).stem, class_names))
        else:
            first.append(labels_feature(lab, Path(labels).stem, class_names))
    elif model is not None:
        # every layer, so next/previous feature walks through the network
        from .features import num_model_layers

        n_layers = num_model_layers(model)
        if not -n_layers <= layer < n_layers:
            raise ViewerError(f"--layer {layer} out of range: the model has {n_layers} feature layers "
                              f"(0..{n_layers - 1})")
        start = layer % n_layers
        run = ModelOnMesh(model)  # one working mesh for all layers
        first.extend(model_feature(model, (start + i) % n_layers, run) for i in range(n_layers))
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
                source=0, deform=None, animation=None, frames=None, vectors=None, rho=1,
                style: Style | None = None) -> ViewerModel:
    """Everything ``meshgdl view`` needs, as a :class:`ViewerModel`.

    ``animation``: a point cache of MESH (``--animation``; not with ``deform``), its
    frames evenly subsampled to ``frames`` when given.

    The first feature is evaluated on every frame here, so bad input (a wrong
    channel, a feature that fails) is reported before a window opens or a file is written.
    """
    if animation is not None and deform:
        raise ViewerError("give either --animation (a real sequence) or --deform (a synthetic one), not both")
    sequence = None
    if animation is not None:
        lm, sequence = load_sequence(mesh, animation, frames)
    else:
        lm = load_view_mesh(mesh)
    feats = make_features(lm, scalar=scalar, labels=labels, class_names=class_names, feature=feature,
                          model=model, layer=layer, source=source, sequence=sequence)
    if sequence is not None:
        fr, dname = sequence.frames, sequence.name
        numbering = dict(frame_numbers=sequence.indices, total_frames=sequence.n_frames)
    else:
        fr, dname = make_frames(lm, deform, frames)
        numbering = {}
    tangent = None
    if vectors is not None:
        tangent = array_tangent(load_vectors_file(vectors, _as_mesh_like(lm)), order=rho,
                                name=Path(vectors).stem)
    return ViewerModel(fr, lm.F, feats, style or Style(), tangent=tangent, channel=channel,
                       deform_name=dname, **numbering)


def compare_model(main: ViewerModel, feature: str, channel: int = 0, source: int = 0) -> ViewerModel:
    """A second panel for ``main``: built-in ``feature`` (hks, geodesic, eigen, x) on the
    same frames, in the same style, to show side by side (``--compare``)."""
    return ViewerModel(main.frames, main.F, [builtin_feature(feature, source=source)], replace(main.style),
                       channel=channel, deform_name=main.deform_name, frame_numbers=main.frame_numbers,
                       total_frames=main.total_frames)
