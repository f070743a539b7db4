"""The pipeline behind ``meshgdl segment``: part segmentation of any triangle mesh.

A user's mesh has whatever resolution, position, scale, orientation, vertex order
and small defects its author left in it; a model was trained at one working
resolution on clean meshes. :func:`segment` bridges the two:

1. **working mesh** (:func:`working_mesh`): components holding less than
   ``min_component_share`` of the surface area (specks, loose bits) are set aside;
   the rest is centred on its area-weighted centroid and scaled to total area
   ``area`` (default 1), then brought to about ``n_target`` vertices -- quadric
   decimation (:func:`meshgdl.geometry.remesh.decimate`, which decimates in a canonical,
   vertex-order independent order) when too fine, Loop subdivision (midpoint
   subdivision for non-manifold meshes) and then decimation when too coarse,
   untouched when already within ``[0.6, 1.25] * n_target``;
2. **predict**: the model's per-vertex class probabilities on the working mesh
   (:class:`Segmenter`; the model sees only intrinsic features -- HKS etc. -- through
   a gauge-equivariant network, so neither orientation nor vertex order matter);
3. **transfer** (:func:`meshgdl.geometry.proximity.project_to_surface`): every vertex of the input is
   projected to the closest point of the working surface (candidate triangles
   from KD-trees over working vertices and face centroids, exact point-triangle
   distances, triangles facing the other way penalised so a hand resting on a
   thigh does not borrow the thigh's label); its probabilities are the
   barycentric interpolation there; its label is their argmax, after the model's
   ``label_prior`` weights where it declares them (:meth:`Segmenter.decide`);
4. **smoothing** (:func:`meshgdl.data.labels.smooth_labels`): a few rounds of area-weighted majority
   vote over each vertex and its one-ring on the *input* mesh, which removes
   isolated specks without moving boundaries by more than an edge or two;
5. **back to the file** (:meth:`Segmentation.file_vertex_labels` etc.): labels in
   the input file's own vertex and face order; merged duplicate vertices share
   their vertex's label, unreferenced vertices take the label of the closest
   working-surface point, faces dropped while cleaning take the majority of their
   corners.

A mesh that moves with fixed connectivity (an animation) is planned once
(:func:`plan_segmentation` on its rest pose: the working mesh, each component's
hierarchy and the transfer tables, all tied to the surface) and each pose is then
segmented on its own positions through that plan (``segment(..., plan=plan)``): every
frame sees the same triangles, so labels change only where the geometry does.

All geometry is numpy/scipy; only :class:`Segmenter` touches torch.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from meshgdl.colors import label_colors
from meshgdl.data.labels import smooth_labels, vertex_to_face_labels
from meshgdl.errors import CheckpointError, MeshError
from meshgdl.data.working_mesh import (DEFAULT_WORKING_VERTICES, WorkingMesh, WorkingMeshReplay,
                                       attach_working_mesh, working_mesh)
from meshgdl.geometry.normals import face_areas, vertex_areas, vertex_normals
from meshgdl.geometry.proximity import interpolate, project_to_surface
from meshgdl.geometry.topology import vertex_components
from meshgdl.io import Mesh
from meshgdl.pretrained import LoadedModel
from meshgdl.threads import blas_threads

#: Working-mesh components with fewer vertices are labelled from the others (too small
#: for a U-Net's coarse levels; a model's own hierarchy may need more:
#: :attr:`Segmenter.min_component_vertices`).
MIN_MODEL_VERTICES = 64
#: Rounds of majority smoothing when the model description does not say.
DEFAULT_SMOOTH_ITERATIONS = 2
#: Stages reported to a progress callback, in order.
STAGES = ("load", "preprocess", "predict", "transfer", "write")


# ----------------------------------------------------------------------------- model


@dataclass
class Segmenter(LoadedModel):
    """A segmentation model ready to run (:class:`meshgdl.pretrained.LoadedModel`:
    ``predict(V, F)`` gives ``(k, C)`` probabilities on a working mesh), with what
    ``meshgdl segment`` needs to know: the ``working_vertices`` and total ``area`` of
    the working mesh. ``info`` is the checkpoint's sidecar JSON (``trained_on``,
    ``class_names``, ``working_vertices``, ``area``...), else ``{}``.
    """

    working_vertices: int = DEFAULT_WORKING_VERTICES
    area: float = 1.0

    @property
    def fill_holes(self) -> bool:
        """Close the working mesh's holes before predicting: the model description's
        ``fill_holes`` (measured per model), else False."""
        return bool(self.info.get("fill_holes", False))

    @property
    def min_component_vertices(self) -> int:
        """The fewest vertices a working-mesh component needs to go through the model:
        :data:`MIN_MODEL_VERTICES`, or more where the coarsest U-Net level would fall
        below the decimator's minimum (``ceil(ratio * n) >= MIN_COARSE_VERTICES``)."""
        from meshgdl.data.batching import GeometryConfig
        from meshgdl.geometry.remesh import MIN_COARSE_VERTICES

        g = GeometryConfig.of(self.config)
        if not g.uses_hierarchy or len(g.ratios) < 2:
            return MIN_MODEL_VERTICES
        return max(MIN_MODEL_VERTICES, int(math.floor((MIN_COARSE_VERTICES - 1) / min(g.ratios))) + 1)

    @property
    def label_values(self) -> np.ndarray | None:
        """``(C,) int64``: the value written to the output files for each class index
        (the description's ``label_values``, e.g. a dataset's own label numbers), or None
        (indices are written)."""
        lv = self.info.get("label_values")
        return None if lv is None else np.asarray(lv, dtype=np.int64)

    @property
    def label_weights(self) -> np.ndarray | None:
        """``(C,)``: what each class probability is multiplied by before the argmax that
        picks a label -- ``prior ** -tau`` from the description's ``label_prior`` (a logit
        adjustment, Menon et al. 2021: the parts' shares of the training surface and a
        ``tau`` chosen on validation meshes, so that a large part does not win every
        ambiguous boundary vertex) -- or None (plain argmax). The probabilities
        themselves stay the calibrated ones."""
        lp = self.info.get("label_prior")
        if lp is None:
            return None
        return np.asarray(lp["prior"], dtype=np.float64) ** -float(lp["tau"])

    def decision_scores(self, probs: np.ndarray) -> np.ndarray:
        """``(n, C)``: class probabilities ``probs (n, C)`` times :attr:`label_weights`
        (``probs`` itself without a ``label_prior``); their row argmax is the label."""
        w = self.label_weights
        return probs if w is None else probs * w

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """``(n,) int64``: the label of each row of class probabilities ``probs (n, C)``
        (the argmax of :meth:`decision_scores`)."""
        return np.argmax(self.decision_scores(probs), axis=1).astype(np.int64)

    @property
    def smooth_iterations(self) -> int:
        """Rounds of majority smoothing on the input mesh: the model description's
        ``smooth_iterations`` (measured per model), else 2."""
        return int(self.info.get("smooth_iterations", DEFAULT_SMOOTH_ITERATIONS))

    @property
    def refinement(self) -> tuple[float, float]:
        """``(smoothness, crease)`` of the boundary refinement on the input mesh
        (:func:`meshgdl.data.labels.refine_labels`): the model description's
        ``boundary_refinement`` (chosen on validation meshes), else ``(0, 0)`` (off)."""
        br = self.info.get("boundary_refinement")
        if br is None:
            return 0.0, 0.0
        return float(br["smoothness"]), float(br.get("crease", 0.0))

    def label_surface(self, probs: np.ndarray, V: np.ndarray, F: np.ndarray,
                      smooth_iterations: int | None = None, refine: float | None = None) -> np.ndarray:
        """``(n,) int64``: the labels of a mesh ``V (n, 3), F (m, 3)`` from its vertices'
        class probabilities ``probs (n, C)`` (transferred from the working mesh):
        :meth:`decide`'s labels, or with a boundary ``refine`` smoothness > 0 (None: the
        model's :attr:`refinement`) the graph cut of
        :func:`~meshgdl.data.labels.refine_labels` on the :meth:`decision_scores`, so
        part boundaries run along this mesh, not along the working mesh's triangles;
        then ``smooth_iterations`` rounds of majority vote (None: the model's)."""
        from meshgdl.data.labels import refine_labels

        smoothness, crease = self.refinement
        if refine is not None:
            smoothness = float(refine)
        if smoothness > 0:
            labels = refine_labels(self.decision_scores(probs), V, F, smoothness, crease)
        else:
            labels = self.decide(probs)
        it = self.smooth_iterations if smooth_iterations is None else int(smooth_iterations)
        return smooth_labels(labels, F, vertex_areas(V, F), self.n_classes, it) if it > 0 else labels


def load_segmenter(path: str | os.PathLike | None = None, device: str | None = "cpu",
                   working_vertices: int | None = None) -> Segmenter:
    """Load a segmentation model for :func:`segment`.

    ``path``: a shipped model name (:func:`meshgdl.pretrained.names`), a checkpoint
    written by ``meshgdl train`` (file or run directory) or ``None`` for the default
    shipped segmentation model. Loaded through :func:`meshgdl.pretrained.load_model`
    (safetensors, no pickle). Raises CheckpointError for anything that is not an
    intact meshgdl segmentation checkpoint.
    """
    from meshgdl.pretrained import load_model

    lm = load_model(path, task="segmentation", device=device)
    info = lm.info
    nw = int(working_vertices or info.get("working_vertices") or DEFAULT_WORKING_VERTICES)
    if nw < 16:
        raise MeshError(f"working resolution must be at least 16 vertices, got {nw}")
    if lm.ood_rule is not None and lm.ood_rule.needs_features:
        raise CheckpointError(f"{Path(lm.path).with_suffix('.json')}: the ood score {lm.ood_rule.score!r} is for "
                              "classifiers; a segmenter's must be one of max_prob, entropy")
    C = lm.n_classes
    _check_entry(lm, "label_values",
                 lambda lv: isinstance(lv, list) and len(lv) == C and all(isinstance(v, int) for v in lv)
                 and len(set(lv)) == len(lv),
                 f"label_values must be {C} distinct integers, one per class")

    def prior_ok(lp):
        prior, tau = np.asarray(lp["prior"], dtype=np.float64), float(lp["tau"])
        return prior.shape == (C,) and np.all(np.isfinite(prior)) and np.all(prior > 0) and np.isfinite(tau) \
            and tau >= 0

    _check_entry(lm, "label_prior", prior_ok, f"label_prior needs 'prior' ({C} positive numbers) and 'tau' (>= 0)")
    _check_entry(lm, "boundary_refinement",
                 lambda br: all(np.isfinite(v) and v >= 0
                                for v in (float(br["smoothness"]), float(br.get("crease", 0.0)))),
                 "boundary_refinement needs 'smoothness' (and optionally 'crease'), numbers >= 0")
    return Segmenter(**lm.loaded_fields(), working_vertices=nw, area=float(info.get("area", 1.0)))


def _check_entry(lm, key: str, valid: Callable[[object], bool], message: str) -> None:
    """A CheckpointError ``"<model>.json: <message>"`` when the model description has ``key``
    and ``valid(entry)`` is false or fails on it (a missing field, a wrong type)."""
    entry = lm.info.get(key)
    if entry is None:
        return
    try:
        ok = bool(valid(entry))
    except (TypeError, KeyError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{Path(lm.path).with_suffix('.json')}: {message}")


# ----------------------------------------------------------------------------- pipeline


def predict_by_component(segmenter: Segmenter, V: np.ndarray, F: np.ndarray,
                         min_vertices: int | None = None, calibrated: bool = True) -> np.ndarray:
    """Class probabilities ``(k, C) float64`` on a working mesh ``V (k, 3), F (l, 3)``,
    every connected component run through the model as a mesh of its own.

    A network normalises per mesh (instance norm, unit area, spectrum-relative HKS
    times), so surfaces that do not touch must not share those statistics: a loose
    sphere with 2 % of the area changed about 60 % of a human body's labels when both
    went through the model as one mesh. Components with fewer than ``min_vertices``
    (default :attr:`Segmenter.min_component_vertices`)
    vertices (too small for the model's hierarchy) take the probabilities of their
    closest point on the others. One component: exactly ``segmenter.predict(V, F)``.
    ``calibrated``: as in :meth:`meshgdl.pretrained.LoadedModel.predict`.
    """
    parts, small, Fb = model_components(F, len(V), min_vertices or segmenter.min_component_vertices)
    if len(parts) == 1 and not len(small):
        return segmenter.predict(V, F, calibrated=calibrated)
    probs = np.zeros((len(V), segmenter.n_classes), dtype=np.float64)
    for idx, Fc in parts:
        probs[idx] = segmenter.predict(V[idx], Fc, calibrated=calibrated)
    if len(small):
        face, bary, _ = project_to_surface(V[small], V, Fb)
        probs[small] = interpolate(probs, Fb, face, bary)
    return probs


def model_components(F: np.ndarray, n: int, min_vertices: int = MIN_MODEL_VERTICES):
    """How :func:`predict_by_component` splits a working mesh ``F (l, 3)`` of ``n``
    vertices: ``(parts, small, big_faces)`` -- ``parts`` the components that go through
    the model, ``(vertices (k_c,) int64, faces (l_c, 3) in local numbering)`` each (the
    largest always, others with at least ``min_vertices`` vertices); ``small (s,) int64``
    the vertices of the others; ``big_faces (b, 3)`` the faces of the parts."""
    n_comp, comp = vertex_components(F, n)
    if n_comp == 1:
        return [(np.arange(n, dtype=np.int64), F)], np.zeros(0, dtype=np.int64), F
    sizes = np.bincount(comp, minlength=n_comp)
    big = sizes >= min_vertices
    big[int(np.argmax(sizes))] = True
    fcomp = comp[F[:, 0]]
    parts = []
    for c in np.flatnonzero(big):
        idx = np.flatnonzero(comp == c)
        remap = np.full(n, -1, dtype=np.int64)
        remap[idx] = np.arange(len(idx))
        parts.append((idx, remap[F[fcomp == c]]))
    return parts, np.flatnonzero(~big[comp]), F[big[fcomp]]



@dataclass
class SegmentationPlan:
    """What segmenting a mesh derives from its connectivity and rest pose, for reuse on
    every pose of the same connectivity (:func:`plan_segmentation`).

    ``working``: the working mesh tied to the input surface; ``parts``: the working
    mesh's components that go through the model, ``(vertices (k_c,) int64, faces (l_c, 3)
    local, hierarchy replay or None)`` each; ``small (s,) int64``: working vertices of
    the other components, labelled from their closest point ``(small_face, small_bary)``
    of ``big_faces (b, 3)``; ``face (n,), bary (n, 3)``: each input vertex's point of the
    working surface; ``lost (r,)``: file vertices the cleaned mesh does not have, with
    their points ``(lost_face, lost_bary)``.
    """

    working: WorkingMeshReplay
    parts: list
    small: np.ndarray
    big_faces: np.ndarray
    small_face: np.ndarray
    small_bary: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    lost: np.ndarray
    lost_face: np.ndarray
    lost_bary: np.ndarray
    n_vertices: int

    def predict(self, segmenter: "Segmenter", wm: WorkingMesh, calibrated: bool = True) -> np.ndarray:
        """Class probabilities ``(k, C) float64`` on ``wm = self.working.apply(V)``, each
        component through the model with its replayed hierarchy (as
        :func:`predict_by_component` does with fresh ones)."""
        probs = np.zeros((len(wm.V), segmenter.n_classes), dtype=np.float64)
        for idx, Fc, replay in self.parts:
            probs[idx] = segmenter.predict(wm.V[idx], Fc, replay=replay, calibrated=calibrated)
        if len(self.small):
            probs[self.small] = interpolate(probs, self.big_faces, self.small_face, self.small_bary)
        return probs


def plan_segmentation(mesh: Mesh, segmenter: Segmenter, min_vertices: int | None = None) -> SegmentationPlan:
    """Plan the segmentation of every pose of ``mesh``'s connectivity from its rest pose
    ``mesh.V``: the working mesh (:func:`meshgdl.data.working_mesh.attach_working_mesh`),
    each component's coarse levels (:func:`meshgdl.data.batching.attach_sample`) and the
    transfer of labels back to the input's vertices, all tied to the surface so
    ``segment(pose, segmenter, plan=plan)`` only computes what depends on the pose's
    positions (normalisation, operators, the network)."""
    from meshgdl.data.batching import attach_sample

    with blas_threads(1):
        wm0 = working_mesh(mesh.V, mesh.F, segmenter.working_vertices, area=segmenter.area,
                           fill=segmenter.fill_holes)
        rep = attach_working_mesh(wm0, mesh.V, mesh.F, segmenter.area)
        wm = rep.apply(mesh.V)
        parts, small, Fb = model_components(wm.F, len(wm.V), min_vertices or segmenter.min_component_vertices)
        parts = [(idx, Fc, attach_sample(wm.V[idx], Fc, segmenter.config)) for idx, Fc in parts]
        sf, sb, _ = project_to_surface(wm.V[small], wm.V, Fb)
        face, bary, _ = project_to_surface(wm.normalize(mesh.V), wm.V, wm.F, normals=vertex_normals(mesh.V, mesh.F))
        lost = np.flatnonzero(mesh.orig_to_new < 0) if mesh.file_V is not None else np.zeros(0, dtype=np.int64)
        lf, lb, _ = project_to_surface(wm.normalize(mesh.file_V[lost]) if len(lost) else np.zeros((0, 3)), wm.V, wm.F)
    return SegmentationPlan(working=rep, parts=parts, small=small, big_faces=Fb, small_face=sf, small_bary=sb,
                            face=face, bary=bary, lost=lost, lost_face=lf, lost_bary=lb, n_vertices=mesh.n_vertices)


@dataclass
class Segmentation:
    """Result of :func:`segment` on a :class:`Mesh`.

    ``labels (n,)`` / ``face_labels (m,)``: on the cleaned mesh; ``probabilities (n, C)``:
    interpolated (calibrated) class probabilities before smoothing; ``file_vertex_labels
    (n_orig_vertices,)`` / ``file_face_labels (n_orig_faces,)``: in the input file's
    order (-1 only for polygons with fewer than 3 vertices); ``working``: the
    working mesh; ``timings``: seconds per stage; ``ood``: how unusual the mesh looks to
    the model (:func:`working_confidence`); ``label_values (C,)``: what the output files
    write for each class index (None: the index itself; :attr:`Segmenter.label_values`).
    """

    labels: np.ndarray
    face_labels: np.ndarray
    probabilities: np.ndarray
    file_vertex_labels: np.ndarray
    file_face_labels: np.ndarray
    class_names: list
    working: WorkingMesh
    working_labels: np.ndarray
    timings: dict = field(default_factory=dict)
    ood: dict = field(default_factory=dict)
    label_values: np.ndarray | None = None

    def written_labels(self, labels: np.ndarray) -> np.ndarray:
        """Class indices -> the values the output files hold (``label_values``; -1 stays -1)."""
        labels = np.asarray(labels, dtype=np.int64)
        if self.label_values is None:
            return labels
        return np.where(labels >= 0, self.label_values[np.clip(labels, 0, None)], -1)

    def summary(self, mesh: Mesh) -> list[dict]:
        """Per class: name, file vertices with that label, share of the surface area."""
        n_cls = len(self.class_names)
        fa = face_areas(mesh.V, mesh.F)
        total = float(fa.sum()) or 1.0
        area = np.bincount(self.face_labels, weights=fa, minlength=n_cls)
        fl = self.file_vertex_labels
        counts = np.bincount(fl[fl >= 0], minlength=n_cls)
        values = self.written_labels(np.arange(n_cls))
        rows = [{"label": int(values[i]), "name": self.class_names[i], "vertices": int(counts[i]),
                 "area_share": float(area[i] / total)} for i in range(n_cls)]
        if (fl < 0).any():
            rows.append({"label": -1, "name": "(unlabelled)", "vertices": int((fl < 0).sum()), "area_share": 0.0})
        return rows


def segment(
    mesh: Mesh,
    segmenter: Segmenter,
    *,
    smooth_iterations: int | None = None,
    stage: Callable[[str], None] | None = None,
    raw_faces: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
    plan: SegmentationPlan | None = None,
    refine: float | None = None,
) -> Segmentation:
    """Segment a loaded mesh (any resolution, pose, scale, vertex order).

    ``stage(name)`` is called as each of ``"preprocess"``, ``"predict"``,
    ``"transfer"`` begins. ``raw_faces()`` -> ``(T (t, 3) int64 file-vertex indices,
    origin (t,) int64 file face of each triangle)``: the file's triangles before
    cleaning (e.g. from ``load_mesh(path, process=False)``). It is called only when
    cleaning dropped whole faces (degenerate, repeated), which then get the
    majority label of their corners; without it they are labelled -1.
    ``plan``: from :func:`plan_segmentation` on another pose of this mesh's
    connectivity; the working mesh, hierarchies and transfer tables are then that plan's,
    moved to ``mesh.V``. ``smooth_iterations`` / ``refine``: rounds of majority vote and
    the boundary refinement's smoothness on the input mesh (None: the model's; 0: off;
    :meth:`Segmenter.label_surface`).
    """
    with blas_threads(1):
        return _segment(mesh, segmenter, smooth_iterations, stage, raw_faces, plan, refine)


def _segment(mesh, segmenter, smooth_iterations, stage, raw_faces, plan=None, refine=None) -> Segmentation:
    say = stage or (lambda name: None)
    times: dict[str, float] = {}
    if plan is not None and plan.n_vertices != mesh.n_vertices:
        raise MeshError(f"{mesh.path or 'the mesh'}: {mesh.n_vertices} vertices, but the segmentation plan is "
                        f"for {plan.n_vertices}")

    say("preprocess")
    t0 = time.perf_counter()
    if plan is not None:
        wm = plan.working.apply(mesh.V)
    else:
        wm = working_mesh(mesh.V, mesh.F, segmenter.working_vertices, area=segmenter.area,
                          fill=segmenter.fill_holes)
    times["preprocess"] = time.perf_counter() - t0

    say("predict")
    t0 = time.perf_counter()
    probs_w = plan.predict(segmenter, wm) if plan is not None else predict_by_component(segmenter, wm.V, wm.F)
    ood = working_confidence(segmenter, wm, probs_w, small=None if plan is None else plan.small)
    times["predict"] = time.perf_counter() - t0

    say("transfer")
    t0 = time.perf_counter()
    if plan is not None:
        face, bary = plan.face, plan.bary
    else:
        Vn = wm.normalize(mesh.V)
        nrm = vertex_normals(mesh.V, mesh.F)
        face, bary, _ = project_to_surface(Vn, wm.V, wm.F, normals=nrm)
    probs = interpolate(probs_w, wm.F, face, bary)
    labels = segmenter.label_surface(probs, mesh.V, mesh.F, smooth_iterations, refine)
    flab = vertex_to_face_labels(mesh.F, labels, scores=segmenter.decision_scores(probs))

    file_v = mesh.to_original_vertices(labels, fill=-1)
    if plan is not None:
        if len(plan.lost):
            file_v[plan.lost] = segmenter.decide(interpolate(probs_w, wm.F, plan.lost_face, plan.lost_bary))
    elif (file_v < 0).any() and mesh.file_V is not None:
        lost = file_v < 0
        f2, b2, _ = project_to_surface(wm.normalize(mesh.file_V[lost]), wm.V, wm.F)
        file_v[lost] = segmenter.decide(interpolate(probs_w, wm.F, f2, b2))
    file_f = file_face_labels(mesh, flab, file_v, raw_faces)
    times["transfer"] = time.perf_counter() - t0
    return Segmentation(labels=labels, face_labels=flab, probabilities=probs, file_vertex_labels=file_v,
                        file_face_labels=file_f, class_names=list(segmenter.class_names), working=wm,
                        working_labels=segmenter.decide(probs_w), timings=times, ood=ood,
                        label_values=segmenter.label_values)


def working_confidence(segmenter: Segmenter, wm: WorkingMesh, probs_w: np.ndarray,
                       small: np.ndarray | None = None) -> dict:
    """The model's out-of-distribution verdict on a working mesh (:func:`meshgdl.ood.assess`
    with the model's :class:`~meshgdl.ood.OODRule`, per mesh and per part) from its
    calibrated probabilities ``probs_w (k, C)``, over the vertices that went through the
    model (``small``: the others, as :func:`model_components` finds them when None),
    weighted by their vertex areas -- what ``tools/bench/ood.py`` fits the thresholds on."""
    from meshgdl.ood import assess

    if small is None:
        _, small, _ = model_components(wm.F, len(wm.V), segmenter.min_component_vertices)
    keep = np.ones(len(wm.V), dtype=bool)
    keep[small] = False
    w = vertex_areas(wm.V, wm.F)[keep]
    return assess(probs_w[keep], w if w.sum() > 0 else None, segmenter.ood_rule, segmenter.class_names,
                  parts=True)


def file_face_labels(mesh: Mesh, face_labels: np.ndarray, file_vertex_labels: np.ndarray,
                     raw_faces: Callable[[], tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
    """Per-triangle labels ``(m,)`` of the cleaned mesh -> ``(n_orig_faces,)`` in the file's
    face order; faces cleaning dropped take the majority of their corners'
    ``file_vertex_labels`` when ``raw_faces`` (see :func:`segment`) is given, else -1."""
    file_f = mesh.to_original_faces(face_labels, fill=-1)
    missing = file_f < 0
    if missing.any() and raw_faces is not None:
        T, origin = raw_faces()
        sel = missing[origin]
        if sel.any():
            tl = vertex_to_face_labels(T[sel], file_vertex_labels)
            order = np.flatnonzero(sel)[::-1]  # first triangle of a polygon wins
            file_f[origin[order]] = tl[::-1]
    return file_f


def output_paths(out_ply: str | os.PathLike, frames: bool = False) -> dict[str, Path]:
    """``OUT.ply`` -> its companions ``OUT.vertex_labels.txt`` and ``OUT.face_labels.txt``
    (and ``OUT.frame_labels.npy`` with ``frames``)."""
    p = Path(out_ply)
    stem = p.with_suffix("")
    out = {"ply": p, "vertex_labels": Path(f"{stem}.vertex_labels.txt"),
           "face_labels": Path(f"{stem}.face_labels.txt")}
    if frames:
        out["frame_labels"] = Path(f"{stem}.frame_labels.npy")
    return out


def default_output(mesh_path: str | os.PathLike) -> Path:
    """``dir/name.ext`` -> ``dir/name.segmented.ply``."""
    p = Path(mesh_path)
    return p.with_name(p.stem + ".segmented.ply")


def write_segmentation(seg: Segmentation, mesh: Mesh, out_ply: str | os.PathLike,
                       frame_labels: np.ndarray | None = None) -> dict[str, Path]:
    """Write the coloured PLY and the two label files, all or nothing.

    The PLY holds the file's vertices in file order (unreferenced ones included),
    per-vertex colours and a ``label`` property, and the cleaned triangles in file
    vertex numbering. ``frame_labels (T, n_file_vertices)`` (an animation's per-frame
    labels) go to ``OUT.frame_labels.npy`` as int64. The files hold
    :meth:`Segmentation.written_labels` (the model's own label values where it has them);
    the colours follow the class indices. Every file is first written to a
    temporary file next to its target; the targets are replaced only after all are
    complete, so a failure leaves existing outputs untouched.
    """
    from meshgdl.atomic import atomic_path
    from meshgdl.io import save_mesh

    paths = output_paths(out_ply, frames=frame_labels is not None)
    fileV = mesh.file_V if mesh.file_V is not None else mesh.V
    tris = mesh.file_triangles() if mesh.file_V is not None else mesh.F
    lab = seg.file_vertex_labels
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(p)) for k, p in paths.items()}
        save_mesh(tmp["ply"], fileV, tris, vertex_colors=label_colors(lab),
                  vertex_scalars={"label": seg.written_labels(lab).astype(np.int32)})
        tmp["vertex_labels"].write_text(_lines(seg.written_labels(lab)))
        tmp["face_labels"].write_text(_lines(seg.written_labels(seg.file_face_labels)))
        if frame_labels is not None:
            with open(tmp["frame_labels"], "wb") as fh:
                np.save(fh, seg.written_labels(frame_labels))
    return paths


def _lines(a: np.ndarray) -> str:
    return "".join(f"{v}\n" for v in np.asarray(a, dtype=np.int64).tolist())


__all__ = [
    "STAGES",
    "Segmenter",
    "Segmentation",
    "WorkingMesh",
    "load_segmenter",
    "segment",
    "working_mesh",
    "predict_by_component",
    "model_components",
    "working_confidence",
    "write_segmentation",
    "output_paths",
    "default_output",
]
