"""Segmentation of a mesh animation (fixed connectivity, moving vertices): what
``meshgdl segment MESH --animation CACHE`` runs.

Every frame is segmented on its own geometry: nothing one frame's network sees or
predicts reaches another frame. What depends only on the connectivity and the rest pose
is computed once (:func:`meshgdl.segmentation.plan_segmentation`: cleaning and index
maps, the working mesh and its hierarchy tied to the surface, the label-transfer
tables) and replayed on each frame's positions, so every frame is seen through the
same triangles. Frames are independent, so they run in parallel worker processes.

Outputs: per-frame labels ``(T, n_file_vertices)`` in the file's vertex order, and one
*sequence labelling* -- the argmax of each vertex's class probabilities averaged over
all frames -- written like a single-mesh segmentation (coloured PLY of the rest pose,
per-vertex and per-face label files), plus the temporal consistency of the per-frame
labels (:func:`meshgdl.train.metrics.temporal_consistency`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from meshgdl.io import Animation
from meshgdl.segmentation import (Segmentation, SegmentationPlan, Segmenter, file_face_labels, plan_segmentation,
                                  segment)
from meshgdl.threads import blas_threads


@dataclass
class AnimationSegmentation:
    """Result of :func:`segment_animation`.

    ``frame_labels (T, n_file) int64``: each frame's labels in the file's vertex order;
    ``frames (T,) int64``: which frames of the animation they are; ``sequence``: the
    sequence labelling (probabilities averaged over the frames) on the rest pose, as a
    :class:`~meshgdl.segmentation.Segmentation`; ``frame_seconds (T,)``: wall time of
    each frame in its worker; ``seconds``: ``plan`` (rest pose) and ``frames`` (all
    frames, wall clock); ``workers``: processes used; ``consistency``: see
    :func:`meshgdl.train.metrics.temporal_consistency`; ``frame_ood_scores (T,)``: each
    frame's out-of-distribution score (``Segmentation.ood``); ``sequence.ood``: the
    sequence's verdict -- the median frame score against the model's threshold, with
    ``frames_flagged``, the share of frames above it.
    """

    frame_labels: np.ndarray
    frames: np.ndarray
    sequence: Segmentation
    frame_seconds: np.ndarray
    seconds: dict = field(default_factory=dict)
    workers: int = 1
    consistency: dict = field(default_factory=dict)
    frame_ood_scores: np.ndarray | None = None


def _frame(anim: Animation, segmenter: Segmenter, plan: SegmentationPlan, t: int, smooth: int,
           refine: float | None = None):
    """One frame through the plan: ``(file labels (n_file,) int64, probabilities on the
    cleaned mesh (n, C) float32, OOD score, seconds)``."""
    t0 = time.perf_counter()
    seg = segment(anim.frame(t), segmenter, smooth_iterations=smooth, plan=plan, refine=refine)
    return seg.file_vertex_labels, seg.probabilities.astype(np.float32), seg.ood["ood_score"], \
        time.perf_counter() - t0


# Set in the parent before the worker processes fork, so they share it without pickling.
_JOB: dict = {}


def _worker_init() -> None:
    import torch

    # One thread each: the workers are the parallelism, and a forked child must not
    # start an OpenMP team its parent may already have.
    torch.set_num_threads(1)


def _worker(t: int):
    j = _JOB
    with blas_threads(1):
        return (t, *_frame(j["anim"], j["segmenter"], j["plan"], t, j["smooth"], j["refine"]))


def default_workers(n_frames: int) -> int:
    """Worker processes for ``n_frames`` frames: one per core (at most 8), never more
    than frames/4 (starting a worker costs about a frame), 1 where processes cannot fork."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(max(1, min(cores, 8, n_frames // 4)))


def segment_animation(
    anim: Animation,
    segmenter: Segmenter,
    *,
    frames: Sequence[int] | None = None,
    smooth_iterations: int | None = None,
    refine: float | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    raw_faces: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
) -> AnimationSegmentation:
    """Segment every frame of ``anim`` (or the ``frames`` given) on its own geometry.

    ``smooth_iterations`` / ``refine``: as for :func:`meshgdl.segmentation.segment` (None:
    the model's), for every frame and for the sequence labelling: each frame's labels are
    exactly what ``segment(frame, segmenter, plan=plan)`` gives.
    ``workers``: processes (None: :func:`default_workers`; 1: in this process).
    ``progress(done, total)`` is called as frames finish. ``raw_faces``: as for
    :func:`meshgdl.segmentation.segment` (face labels of faces dropped in cleaning).
    Raises MeshError for a frame that cannot be segmented (non-finite positions, no
    area), naming the file and frame.
    """
    from meshgdl.train.metrics import temporal_consistency

    T = anim.n_frames
    idx = np.arange(T, dtype=np.int64) if frames is None else np.asarray(list(frames), dtype=np.int64)
    if idx.ndim != 1 or len(idx) == 0:
        raise ValueError("no frames to segment")
    if idx.min() < -T or idx.max() >= T:
        raise ValueError(f"frame index out of range for {T} frames")
    idx = np.where(idx < 0, idx + T, idx)
    if len(np.unique(idx)) != len(idx):
        raise ValueError("frames must not repeat")
    smooth = segmenter.smooth_iterations if smooth_iterations is None else int(smooth_iterations)
    n_workers = default_workers(len(idx)) if workers is None else max(1, int(workers))
    n_workers = min(n_workers, len(idx))
    if str(getattr(segmenter, "device", "cpu")).startswith("cuda"):
        n_workers = 1  # a forked child cannot use its parent's CUDA context

    t0 = time.perf_counter()
    plan = plan_segmentation(anim.rest, segmenter)
    t_plan = time.perf_counter() - t0

    n_file = anim.rest.n_orig_vertices
    labels = np.zeros((len(idx), n_file), dtype=np.int64)
    secs = np.zeros(len(idx))
    scores = np.zeros(len(idx))
    prob_sum = np.zeros((anim.rest.n_vertices, segmenter.n_classes), dtype=np.float64)
    pos = {int(t): i for i, t in enumerate(idx)}
    done = 0

    def take(t, lab, prob, score, s):
        nonlocal done
        labels[pos[t]] = lab
        scores[pos[t]] = score
        secs[pos[t]] = s
        prob_sum[:] += prob
        done += 1
        if progress is not None:
            progress(done, len(idx))

    t0 = time.perf_counter()
    if n_workers == 1:
        for t in idx:
            with blas_threads(1):
                take(int(t), *_frame(anim, segmenter, plan, int(t), smooth, refine))
    else:
        import multiprocessing as mp

        _JOB.update(anim=anim, segmenter=segmenter, plan=plan, smooth=smooth, refine=refine)
        try:
            with mp.get_context("fork").Pool(n_workers, initializer=_worker_init) as pool:
                for res in pool.imap_unordered(_worker, [int(t) for t in idx]):
                    take(*res)
        finally:
            _JOB.clear()
    t_frames = time.perf_counter() - t0

    sequence = _sequence_labelling(anim, segmenter, plan, prob_sum / len(idx), smooth, refine, raw_faces)
    rule = segmenter.ood_rule
    med = float(np.median(scores))
    sequence.ood = {"score": rule.score if rule is not None else "max_prob", "ood_score": med,
                    "threshold": None if rule is None else rule.threshold,
                    "in_distribution": None if rule is None else bool(med <= rule.threshold),
                    "frames_flagged": None if rule is None else float((scores > rule.threshold).mean())}
    return AnimationSegmentation(frame_labels=labels, frames=idx, sequence=sequence, frame_seconds=secs,
                                 seconds={"plan": t_plan, "frames": t_frames}, workers=n_workers,
                                 consistency=temporal_consistency(labels), frame_ood_scores=scores)


def _sequence_labelling(anim, segmenter, plan, probs, smooth, refine, raw_faces) -> Segmentation:
    """The rest pose labelled by the frame-averaged probabilities ``probs (n, C)``."""
    from meshgdl.data.labels import vertex_to_face_labels
    from meshgdl.geometry.proximity import interpolate

    mesh = anim.rest
    wm = plan.working.apply(mesh.V)
    # the working vertices sit on the input surface: their averaged probabilities are
    # the input's, interpolated there
    probs_w = plan.working.W @ probs
    labels = segmenter.label_surface(probs, mesh.V, mesh.F, smooth, refine)
    flab = vertex_to_face_labels(mesh.F, labels, scores=segmenter.decision_scores(probs))
    file_v = mesh.to_original_vertices(labels, fill=-1)
    if len(plan.lost):
        file_v[plan.lost] = segmenter.decide(interpolate(probs_w, wm.F, plan.lost_face, plan.lost_bary))
    file_f = file_face_labels(mesh, flab, file_v, raw_faces)
    return Segmentation(labels=labels, face_labels=flab, probabilities=probs, file_vertex_labels=file_v,
                        file_face_labels=file_f, class_names=list(segmenter.class_names), working=wm,
                        working_labels=segmenter.decide(probs_w), timings={},
                        label_values=segmenter.label_values)
