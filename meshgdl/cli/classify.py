"""``meshgdl classify MESH [MESH ...] [--model NAME|CKPT|RUN_DIR] [--top K] [--format text|json]``.

Shape classification of any triangle meshes with the shipped classifier
(``shrec11``: the 30 SHREC'11 classes, see ``meshgdl models``) or any classification
checkpoint written by ``meshgdl train``. Prints, per mesh, the ``K`` most probable
classes with their probabilities: one line per mesh (``text``) or one JSON document
(``json``: a list with one object per MESH, in argument order).

The probabilities are calibrated (the model's fitted temperature). A mesh the model's
out-of-distribution threshold flags (``max_prob`` score: one minus the top class
probability, above a threshold fixed on validation meshes) gets a one-line
``meshgdl: warning: ...`` on stderr; the JSON carries ``in_distribution``,
``ood_score`` and ``ood_threshold`` for every mesh. ``--reject-ood``: exit code 3 when
any mesh is flagged.

Many meshes: a progress bar on stderr (not with ``--quiet`` or a single mesh). A
mesh that cannot be read or classified gives its own one-line
``meshgdl: error: ...`` on stderr (in JSON: an object with ``"error"``) and the
other meshes are still classified and printed; the exit code is then 2. A bad
model or option stops before any mesh is read (one line, exit 2).
"""

from __future__ import annotations

import json
import sys

from meshgdl.cli._common import EXIT_OOD, UsageError, add_ood_argument, ood_json, ood_warning
from meshgdl.errors import CheckpointError, DatasetError, MeshError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "classify",
        help="classify meshes with a pretrained model (top-K classes with probabilities)",
        description="Classify each MESH. By default uses the shipped shrec11 model (30 SHREC'11 "
        "non-rigid shape classes); --model takes a shipped model name, or any classification "
        "checkpoint or run directory from 'meshgdl train'. Works at any resolution, position, scale, "
        "orientation and vertex order: each mesh is centred, scaled to unit area and brought to the "
        "model's working resolution first. A mesh that fails gives a one-line error; the others are "
        "still printed, and the exit code is 2.",
    )
    p.add_argument("meshes", metavar="MESH", nargs="+", help="input meshes (.obj .ply .off .stl .glb .gltf)")
    p.add_argument("--model", metavar="NAME|CKPT|RUN_DIR",
                   help="shipped model name (see 'meshgdl models'), checkpoint file or run directory "
                   "(default: the shipped shrec11 model)")
    p.add_argument("--top", type=int, default=3, metavar="K", help="classes shown per mesh (default 3)")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format on stdout")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--working-vertices", type=int, metavar="N",
                   help="working resolution in vertices (default: the model's, else the mesh's own)")
    add_ood_argument(p, " (the results are still printed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no notes on stderr")
    p.set_defaults(func=run)


def _text_line(path: str, result, k: int) -> str:
    return f"{path}: " + ", ".join(f"{c} {p:.3f}" for c, p in result.top(k))


def run(args) -> int:
    from meshgdl.classification import classify, load_classifier
    from meshgdl.io import load_mesh

    if args.top < 1:
        raise UsageError(f"--top must be >= 1, got {args.top}")
    if args.working_vertices is not None and args.working_vertices < 16:
        raise UsageError(f"--working-vertices must be at least 16, got {args.working_vertices}")
    clf = load_classifier(args.model, device=args.device, working_vertices=args.working_vertices)
    k = min(args.top, clf.n_classes)
    bar = None
    if not args.quiet and len(args.meshes) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(args.meshes), file=sys.stderr, leave=False, dynamic_ncols=True, unit="mesh",
                   desc="meshgdl classify")
    docs, failed, flagged, notes = [], 0, 0, []
    try:
        for path in args.meshes:
            try:
                mesh = load_mesh(path)
                res = classify(mesh, clf)
            except (MeshError, DatasetError, CheckpointError) as exc:
                msg = str(exc)
            except FileNotFoundError as exc:
                msg = f"file not found: {exc.filename or path}"
            else:
                msg = None
            if msg is not None:
                failed += 1
                if bar is not None:
                    bar.clear()
                print(f"meshgdl: error: {msg}", file=sys.stderr, flush=True)
                docs.append({"input": str(path), "error": msg})
            else:
                doc = {"input": str(path), **res.to_dict(k), **ood_json(res.ood),
                       "n_vertices": mesh.n_orig_vertices, "n_faces": mesh.n_orig_faces,
                       "working_mesh": {"vertices": int(len(res.working.V)), "faces": int(len(res.working.F)),
                                        "method": res.working.method},
                       "seconds": {s: round(t, 4) for s, t in res.timings.items()}}
                docs.append(doc)
                warn = ood_warning(path, res.ood, clf)
                if warn is not None:
                    flagged += 1
                    if bar is not None:
                        bar.clear()
                    print(warn, file=sys.stderr, flush=True)
                if mesh.warnings:
                    notes.append(f"meshgdl: note: {path}: {'; '.join(mesh.warnings)}")
                if args.format == "text":
                    if bar is not None:
                        bar.clear()
                    sys.stdout.write(_text_line(str(path), res, k) + "\n")
                    sys.stdout.flush()
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if args.format == "json":
        out = {"model": {"path": clf.path, "trained_on": clf.info.get("trained_on"),
                         "working_vertices": clf.working_vertices, "n_classes": clf.n_classes,
                         "temperature": clf.temperature},
               "results": docs}
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    if not args.quiet:
        for n in notes:
            print(n, file=sys.stderr)
    return 2 if failed else EXIT_OOD if flagged and args.reject_ood else 0
