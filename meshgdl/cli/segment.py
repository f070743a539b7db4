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
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from meshgdl.cli._common import UsageError, add_mesh_argument, output_path


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
    p.add_argument("--format", choices=["text", "json"], default="text", help="summary format on stdout")
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


def run(args) -> int:
    from meshgdl.api import segment
    from meshgdl.segmentation import default_output, output_paths, write_segmentation

    mesh_path = Path(args.mesh)
    out = output_path(args.output, (".ply",)) if args.output else default_output(mesh_path)
    if args.working_vertices is not None and args.working_vertices < 16:
        raise UsageError(f"--working-vertices must be at least 16, got {args.working_vertices}")
    if args.smooth is not None and args.smooth < 0:
        raise UsageError(f"--smooth must be >= 0, got {args.smooth}")
    paths = output_paths(out)
    if mesh_path.exists():
        for p in paths.values():
            if p.exists() and p.resolve() == mesh_path.resolve():
                raise UsageError(f"{p}: refusing to overwrite the input mesh; choose another -o")

    stages = _Stages(args.quiet)
    try:
        result = segment(mesh_path, model=args.model, device=args.device, working_vertices=args.working_vertices,
                         smooth=args.smooth, stage=stages)
        mesh, seg, seg_model = result.mesh, result.detail, result.model
        stages("write")
        written = write_segmentation(seg, mesh, out)
    finally:
        stages.close()
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
            "seconds": {k: round(v, 4) for k, v in stages.times.items()},
            "notes": list(mesh.warnings),
        }
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        width = max([len(r["name"]) for r in rows] + [5])
        lines = [f"{'label':>5}  {'name':<{width}}  {'vertices':>9}  {'area':>6}"]
        for r in rows:
            lines.append(f"{r['label']:>5}  {r['name']:<{width}}  {r['vertices']:>9}  {100 * r['area_share']:>5.1f}%")
        lines.append(f"wrote {written['ply']}, {written['vertex_labels'].name}, {written['face_labels'].name}")
        sys.stdout.write("\n".join(lines) + "\n")
    if not args.quiet:
        notes = list(mesh.warnings)
        if seg.working.n_dropped_components:
            notes.append(f"{seg.working.n_dropped_components} small component(s) labelled from the nearest "
                         "surface only")
        if notes:
            print(f"meshgdl: note: {mesh_path}: {'; '.join(notes)}", file=sys.stderr)
    return 0
