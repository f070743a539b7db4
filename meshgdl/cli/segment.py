"""``meshgdl segment MESH [-o OUT.ply] [--model CKPT] [--format text|json]``.

Part segmentation of any triangle mesh with the shipped model (human-body parts,
trained on the project's procedural capsule figures -- see
``meshgdl/pretrained/figure_parts.json``) or any segmentation checkpoint written
by ``meshgdl train``. Writes, all or nothing:

* ``OUT.ply`` (default ``<mesh stem>.segmented.ply`` next to MESH): the file's
  vertices in file order with per-vertex colours and a ``label`` property;
* ``OUT.vertex_labels.txt``: one integer per line per vertex of MESH, file order;
* ``OUT.face_labels.txt``: one integer per line per face (polygon) of MESH.

Prints a per-label summary (vertex count, area share) on stdout, ``--format json``
for scripts; progress (load, preprocess, predict, transfer, write) on stderr.

With ``--animation CACHE`` (a ``.pc2`` / ``.mdd`` point cache of MESH's vertices, or
MESH a folder of frame meshes with one connectivity) every frame is segmented on its
own geometry (:func:`meshgdl.animation_segmentation.segment_animation`):
``OUT.frame_labels.npy`` holds the ``(T, n)`` per-frame labels, and ``OUT.ply`` and the
label files the sequence labelling (probabilities averaged over the frames) on MESH;
the summary adds the temporal consistency and the time per frame.

The probabilities are calibrated (the model's fitted temperature). The summary gives how
unusual the mesh looks to the model (``max_prob`` score: one minus the area-weighted mean
of the working vertices' top class probability) against the model's threshold, fixed on
validation meshes; a flagged mesh gets a one-line ``meshgdl: warning: ...`` on stderr,
and the JSON carries ``in_distribution``, ``ood_score``, ``ood_threshold`` and the same
per predicted part (``ood_parts``). ``--reject-ood``: a flagged mesh's outputs are not
written and the exit code is 3. An animation is flagged when its median frame is.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from meshgdl.cli._common import (EXIT_OOD, UsageError, add_mesh_argument, add_ood_argument, ood_json, ood_line,
                                 ood_warning, output_path)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment a mesh into parts with a pretrained model (coloured PLY + label files)",
        description="Segment MESH into parts. By default uses the shipped human-body part model "
        "(trained on procedural capsule figures); --model takes any segmentation checkpoint from "
        "'meshgdl train'. Works at any resolution, position, scale and orientation: the mesh is "
        "brought to the model's working resolution, predicted, and the labels are transferred back "
        "to every vertex and face of the file. Writes OUT.ply, OUT.vertex_labels.txt and "
        "OUT.face_labels.txt (file order).",
    )
    add_mesh_argument(p)
    p.add_argument("-o", "--output", metavar="OUT.ply",
                   help="coloured output mesh (default: <MESH stem>.segmented.ply next to MESH); "
                   "the label files are written beside it")
    p.add_argument("--model", metavar="NAME|CKPT|RUN_DIR",
                   help="shipped model name (see 'meshgdl models'), checkpoint file or run directory "
                   "(default: the shipped human_parts model, else figure_parts)")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--working-vertices", type=int, metavar="N",
                   help="working resolution in vertices (default: the model's, else 2500)")
    p.add_argument("--smooth", type=int, default=None, metavar="ITERS",
                   help="rounds of neighbour majority vote on the input mesh (default: the model's, else 2; 0 = off)")
    p.add_argument("--refine", type=float, default=None, metavar="SMOOTHNESS",
                   help="boundary refinement on the input mesh: a graph cut that makes part boundaries follow "
                   "its surface; the weight of boundary length in units of sqrt(area) (default: the model's; "
                   "0 = off)")
    p.add_argument("--animation", metavar="CACHE", nargs="?", const="",
                   help="segment every frame of an animation: a .pc2 or .mdd point cache of MESH's vertices "
                   "(or give no CACHE when MESH is a folder of frame meshes); writes OUT.frame_labels.npy "
                   "(T x n per-frame labels) and labels MESH by the frame-averaged probabilities")
    p.add_argument("--frames", metavar="START:STOP[:STEP]",
                   help="with --animation: only these frames (Python slice, e.g. 0:40 or ::2)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --animation: frames in N processes (default: one per core, at most 8)")
    p.add_argument("--format", choices=["text", "json"], default="text", help="summary format on stdout")
    add_ood_argument(p, ", writing no output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no notes on stderr")
    p.set_defaults(func=run)


class _Stages:
    """A tqdm bar over the pipeline stages (stderr), or nothing when quiet.

    The bar appears only once loading succeeded, so a bad input or checkpoint
    prints its one error line and nothing else.
    """

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.times: dict[str, float] = {}
        self.current: str | None = None
        self.t_stage = time.perf_counter()

    def __call__(self, name: str) -> None:
        from meshgdl.segmentation import STAGES

        now = time.perf_counter()
        if self.current is not None:
            self.times[self.current] = now - self.t_stage
        if self.bar is None and not self.quiet and name != "load" and name in STAGES:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(STAGES), initial=STAGES.index(name), file=sys.stderr, leave=False,
                            dynamic_ncols=True, desc=name,
                            bar_format="meshgdl segment: {desc:<10} |{bar}| {n_fmt}/{total_fmt} [{elapsed}]")
        elif self.bar is not None:
            self.bar.update(1)
        self.current, self.t_stage = name, now
        if self.bar is not None:
            self.bar.set_description_str(name)

    def close(self) -> None:
        self("done")
        self.times.pop("done", None)
        if self.bar is not None:
            self.bar.close()


def _frame_slice(spec: str, n_frames: int) -> range:
    parts = spec.split(":")
    try:
        if len(parts) == 1:
            k = int(parts[0])
            return range(n_frames)[k:k + 1] if k != -1 else range(n_frames)[-1:]
        if len(parts) > 3:
            raise ValueError
        sl = slice(*[int(x) if x.strip() else None for x in parts])
        frames = range(n_frames)[sl]
    except ValueError:
        raise UsageError(f"--frames {spec!r}: expected START:STOP[:STEP] (integers)") from None
    if len(frames) == 0:
        raise UsageError(f"--frames {spec!r} selects none of the {n_frames} frames")
    return frames


def _check_label_options(args) -> None:
    if args.smooth is not None and args.smooth < 0:
        raise UsageError(f"--smooth must be >= 0, got {args.smooth}")
    if args.refine is not None and not (math.isfinite(args.refine) and args.refine >= 0):
        raise UsageError(f"--refine must be a number >= 0, got {args.refine}")


def run(args) -> int:
    if args.animation is not None:
        return _run_animation(args)
    if args.frames is not None or args.workers is not None:
        raise UsageError("--frames and --workers go with --animation")
    from meshgdl.api import segment
    from meshgdl.segmentation import default_output, output_paths, write_segmentation

    mesh_path = Path(args.mesh)
    out = output_path(args.output, (".ply",)) if args.output else default_output(mesh_path)
    if args.working_vertices is not None and args.working_vertices < 16:
        raise UsageError(f"--working-vertices must be at least 16, got {args.working_vertices}")
    _check_label_options(args)
    paths = output_paths(out)
    if mesh_path.exists():
        for p in paths.values():
            if p.exists() and p.resolve() == mesh_path.resolve():
                raise UsageError(f"{p}: refusing to overwrite the input mesh; choose another -o")

    stages = _Stages(args.quiet)
    try:
        result = segment(mesh_path, model=args.model, device=args.device, working_vertices=args.working_vertices,
                         smooth=args.smooth, refine=args.refine, stage=stages)
        mesh, seg, seg_model = result.mesh, result.detail, result.model
        rejected = args.reject_ood and seg.ood.get("in_distribution") is False
        if not rejected:
            stages("write")
            written = write_segmentation(seg, mesh, out)
    finally:
        stages.close()
    warn = ood_warning(mesh_path, seg.ood, seg_model)
    if warn is not None:
        print(warn + (" (--reject-ood: no output written)" if rejected else ""), file=sys.stderr)
    if rejected:
        written = {}
    rows = seg.summary(mesh)
    if args.format == "json":
        doc = {
            "input": str(mesh_path),
            "outputs": {k: str(v) for k, v in written.items()},
            "n_vertices": mesh.n_orig_vertices,
            "n_faces": mesh.n_orig_faces,
            "model": {"path": seg_model.path, "trained_on": seg_model.info.get("trained_on"),
                      "class_names": seg_model.class_names},
            "working_mesh": {"vertices": int(len(seg.working.V)), "faces": int(len(seg.working.F)),
                             "method": seg.working.method, "components": seg.working.n_components,
                             "dropped_components": seg.working.n_dropped_components},
            "labels": rows,
            **ood_json(seg.ood),
            "seconds": {k: round(v, 4) for k, v in stages.times.items()},
            "notes": list(mesh.warnings),
        }
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        width = max([len(r["name"]) for r in rows] + [5])
        lines = [f"{'label':>5}  {'name':<{width}}  {'vertices':>9}  {'area':>6}"]
        for r in rows:
            lines.append(f"{r['label']:>5}  {r['name']:<{width}}  {r['vertices']:>9}  {100 * r['area_share']:>5.1f}%")
        lines.append(ood_line(seg.ood))
        if written:
            lines.append(f"wrote {written['ply']}, {written['vertex_labels'].name}, {written['face_labels'].name}")
        sys.stdout.write("\n".join(lines) + "\n")
    if not args.quiet:
        notes = list(mesh.warnings)
        if seg.working.n_dropped_components:
            notes.append(f"{seg.working.n_dropped_components} small component(s) labelled from the nearest "
                         "surface only")
        if notes:
            print(f"meshgdl: note: {mesh_path}: {'; '.join(notes)}", file=sys.stderr)
    return EXIT_OOD if rejected else 0


def _run_animation(args) -> int:
    import numpy as np

    from meshgdl.animation_segmentation import segment_animation
    from meshgdl.api import _raw_faces
    from meshgdl.cli._common import status
    from meshgdl.io import load_animation
    from meshgdl.segmentation import default_output, load_segmenter, output_paths, write_segmentation

    mesh_path = Path(args.mesh)
    if args.working_vertices is not None and args.working_vertices < 16:
        raise UsageError(f"--working-vertices must be at least 16, got {args.working_vertices}")
    _check_label_options(args)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if not args.animation and not mesh_path.is_dir():
        raise UsageError("--animation needs a point cache (.pc2 or .mdd) unless MESH is a folder of frame meshes")
    # a folder of frames gets its outputs beside it, not among its frames
    out = output_path(args.output, (".ply",)) if args.output else default_output(mesh_path)
    paths = output_paths(out, frames=True)
    for p in paths.values():
        for src in (mesh_path, Path(args.animation or mesh_path)):
            if src.exists() and p.exists() and p.resolve() == src.resolve():
                raise UsageError(f"{p}: refusing to overwrite an input; choose another -o")

    t_start = time.perf_counter()
    with status(f"loading {args.mesh}"):
        anim = load_animation(mesh_path, args.animation or None)
    frames = _frame_slice(args.frames, anim.n_frames) if args.frames else None
    segmenter = load_segmenter(args.model, device=args.device, working_vertices=args.working_vertices)
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(frames) if frames is not None else anim.n_frames, file=sys.stderr, leave=False,
                   dynamic_ncols=True, desc="meshgdl segment: frames", unit="frame")
    try:
        res = segment_animation(anim, segmenter, frames=frames, smooth_iterations=args.smooth, refine=args.refine,
                                workers=args.workers,
                                progress=(lambda d, n: bar.update(1)) if bar is not None else None,
                                raw_faces=_raw_faces(anim.rest))
    finally:
        if bar is not None:
            bar.close()
    seg, mesh = res.sequence, anim.rest
    rejected = args.reject_ood and seg.ood.get("in_distribution") is False
    written = {} if rejected else write_segmentation(seg, mesh, out, frame_labels=res.frame_labels)
    wall = time.perf_counter() - t_start
    warn = ood_warning(mesh_path, seg.ood, segmenter)
    if warn is not None:
        print(warn + f" -- {100 * seg.ood['frames_flagged']:.0f} % of the frames flagged"
              + (" (--reject-ood: no output written)" if rejected else ""), file=sys.stderr)
    rows = seg.summary(mesh)
    c = res.consistency
    n_fr = len(res.frames)
    if args.format == "json":
        doc = {
            "input": str(mesh_path),
            "animation": str(args.animation) if args.animation else str(mesh_path),
            "outputs": {k: str(v) for k, v in written.items()},
            "n_vertices": mesh.n_orig_vertices,
            "n_faces": mesh.n_orig_faces,
            "frames": n_fr,
            "model": {"path": segmenter.path, "trained_on": segmenter.info.get("trained_on"),
                      "class_names": segmenter.class_names},
            "working_mesh": {"vertices": res.sequence.working.V.shape[0], "faces": int(len(seg.working.F)),
                             "method": seg.working.method},
            "labels": rows,
            "temporal_consistency": c,
            **ood_json(seg.ood),
            "frame_ood_scores": [round(float(x), 5) for x in res.frame_ood_scores],
            "seconds": {"total": round(wall, 4), "per_frame": round(wall / n_fr, 4),
                        "frames": round(res.seconds["frames"], 4), "plan": round(res.seconds["plan"], 4),
                        "frame_median_in_worker": round(float(np.median(res.frame_seconds)), 4)},
            "workers": res.workers,
            "notes": list(mesh.warnings) + list(getattr(anim, "warnings", [])),
        }
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        width = max([len(r["name"]) for r in rows] + [5])
        lines = [f"{'label':>5}  {'name':<{width}}  {'vertices':>9}  {'area':>6}   (sequence labelling: "
                 f"probabilities averaged over {n_fr} frames)"]
        for r in rows:
            lines.append(f"{r['label']:>5}  {r['name']:<{width}}  {r['vertices']:>9}  {100 * r['area_share']:>5.1f}%")
        lines.append(f"per-frame labels: {100 * c['majority_agreement']:.2f} % of (vertex, frame) labels equal the "
                     f"vertex's majority, {100 * c['never_changing']:.2f} % of vertices never change")
        lines.append(f"{n_fr} frames in {wall:.1f} s ({wall / n_fr:.3f} s per frame, {res.workers} worker"
                     f"{'s' if res.workers != 1 else ''})")
        lines.append("median frame: " + ood_line(seg.ood))
        if written:
            lines.append(f"wrote {written['ply']}, {written['vertex_labels'].name}, {written['face_labels'].name}, "
                         f"{written['frame_labels'].name}")
        sys.stdout.write("\n".join(lines) + "\n")
    if not args.quiet:
        notes = list(mesh.warnings) + list(getattr(anim, "warnings", []))
        if notes:
            print(f"meshgdl: note: {mesh_path}: {'; '.join(notes)}", file=sys.stderr)
    return EXIT_OOD if rejected else 0
