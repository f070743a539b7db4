"""``meshgdl view``: show per-vertex features on a (deforming) mesh.

Without ``--export`` an interactive Open3D window opens; with it the view is
rendered headless (EGL) to PNG / GIF / MP4 / a folder of PNG frames and the command
exits. All the work is in the ``viewer`` package.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from meshgdl.errors import UsageError


def register(subparsers) -> None:
    from meshgdl_viewer.app import KEY_HELP

    p = subparsers.add_parser(
        "view",
        help="show features on a mesh (window, or headless export to png/gif/mp4)",
        description=textwrap.fill(
            "Show a per-vertex feature on a mesh, optionally on every frame of a deformation "
            "-- a real animation (--animation) or a synthetic one (--deform) -- recomputed per "
            "frame: intrinsic features stay attached, raw coordinates swim (--compare x shows "
            "both side by side). MESH is a mesh file or builtin:capsule|torus|sphere|bumpy. "
            "Without --export a window opens; with it the view is rendered headless.", 78),
        epilog="window keys:\n" + "\n".join(f"  {k:32s} {v}" for k, v in KEY_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("mesh", metavar="MESH")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scalar", metavar="FILE", help="per-vertex values (.npy, .txt, .csv), (n,) or (n, C)")
    src.add_argument("--labels", metavar="FILE", help="per-vertex integer labels (.txt one per line, or .npy); "
                                                       "with --animation also a (T, n) .npy, one labelling per frame")
    p.add_argument("--class-names", metavar="NAMES",
                   help="with --labels: names of the label values for the legend -- a shipped model "
                        "(e.g. human_parts), a file with one name per line (classes.txt), or a,b,c")
    src.add_argument("--feature", choices=["hks", "geodesic", "eigen", "x"],
                     help="built-in feature: heat kernel signature, geodesic distance from --source, "
                          "Laplacian eigenfunctions, raw coordinates (not invariant)")
    src.add_argument("--model", metavar="NAME|CKPT",
                     help="activations of a trained model: a shipped model (meshgdl models, e.g. human_parts), "
                          "or a checkpoint or run folder from meshgdl train (see --layer/--channel); a mesh "
                          "finer than the model's working resolution is run, like meshgdl segment does, on a "
                          "working mesh decimated once and carried along by the frames")
    p.add_argument("--layer", type=int, default=0,
                   help="model layer to show first (with --model; negative counts from the end)")
    p.add_argument("--channel", type=int, default=0, help="feature channel to show first (default 0)")
    p.add_argument("--source", type=int, default=0, help="source vertex of the geodesic distance (default 0)")
    p.add_argument("--deform", metavar="twist|bend|articulate|FOLDER",
                   help="built-in near-isometric deformation, articulate (builtin:capsule only), "
                        "or a folder of meshes sharing MESH's connectivity")
    p.add_argument("--animation", metavar="CACHE",
                   help="play MESH's animation: a point cache of its vertex positions (.pc2, .mdd) or a "
                        "folder of frame meshes; the feature is recomputed on every frame")
    p.add_argument("--frames", type=int, default=None,
                   help="number of frames: --animation and a --deform folder are subsampled evenly "
                        "(default: all), built-in deformations get this many (default 24)")
    p.add_argument("--compare", choices=["hks", "geodesic", "eigen", "x"],
                   help="side by side: a second panel with this built-in feature on the same frames and "
                        "camera (e.g. a model layer next to raw coordinates x)")
    p.add_argument("--compare-channel", metavar="C", type=int, default=0,
                   help="channel of the --compare feature (default 0)")
    p.add_argument("--arrows", action="store_true",
                   help="draw tangent arrows (the feature's intrinsic gradient, or --vectors)")
    p.add_argument("--vectors", metavar="FILE", help="(n, 2) tangent feature in gauge coordinates (.npy/.txt)")
    p.add_argument("--rho", type=int, default=1, help="order n of the --vectors feature (rho_n, default 1)")
    p.add_argument("--frames-gauge", dest="gauge_frames", action="store_true",
                   help="draw each vertex's gauge frame (e1 red, e2 green)")
    p.add_argument("--glyphs", type=int, default=None,
                   help="at most this many arrows / gauge frames, spread evenly (default: by image size)")
    p.add_argument("--wireframe", action="store_true", help="draw mesh edges")
    p.add_argument("--isolines", type=int, default=None,
                   help="number of isoline bands (default 12 for geodesic distance, else none)")
    p.add_argument("--cmap", choices=["viridis", "coolwarm", "gray"], help="colour map")
    p.add_argument("--flat", action="store_true", help="no lighting: exact feature colours")
    p.add_argument("--export", metavar="PATH",
                   help="render headless to out.png (a deformation: 4 frames side by side), out.gif, "
                        "out.mp4 (ffmpeg from the imageio-ffmpeg wheel or PATH) or frames_dir/ and exit")
    p.add_argument("--size", default="800x600", help="image / window size WxH (default 800x600)")
    p.add_argument("--fps", type=float, default=12.0, help="animation frames per second (default 12)")
    p.set_defaults(func=run)


def run(args) -> int:
    from meshgdl_viewer.features import ViewerError
    from meshgdl_viewer.render import RenderUnavailable

    try:
        return _run(args)
    except (ViewerError, RenderUnavailable) as exc:
        print(f"meshgdl: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from meshgdl_viewer.features import ViewerError

    if args.class_names is not None and args.labels is None:
        raise UsageError("--class-names goes with --labels")
    if args.animation is not None and args.deform is not None:
        raise UsageError("give either --animation (a real sequence) or --deform (a synthetic one), not both")
    from meshgdl.cli._common import status
    from meshgdl_viewer.scene import Style, parse_size
    from meshgdl_viewer.session import build_model, compare_model

    w, h = parse_size(args.size)
    if args.fps <= 0:
        raise ViewerError(f"--fps must be positive, got {args.fps}")
    if args.rho < 1:
        raise ViewerError(f"--rho must be >= 1, got {args.rho}")
    if args.glyphs is not None and args.glyphs < 1:
        raise ViewerError(f"--glyphs must be >= 1, got {args.glyphs}")
    if args.isolines is not None and args.isolines < 0:
        raise ViewerError(f"--isolines must be >= 0, got {args.isolines}")
    if args.export:
        from meshgdl_viewer.render import export_kind

        export_kind(args.export)  # reject a bad extension before any computation
    elif sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ViewerError("no display for a window (DISPLAY is not set); use --export out.png to render headless")
    class_names = _class_names(args.class_names)
    from meshgdl_viewer.colormaps import labels_legend_width

    style = Style(width=w, height=h, shading="flat" if args.flat else "lit", wireframe=args.wireframe,
                  arrows=args.arrows or args.vectors is not None, gauge_frames=args.gauge_frames,
                  isolines=args.isolines, cmap=args.cmap, max_glyphs=args.glyphs,
                  legend_width=labels_legend_width(w, h, class_names) if class_names else None)
    with status("computing the feature on every frame"):
        model = build_model(
            args.mesh, scalar=args.scalar, labels=args.labels, class_names=class_names,
            feature=args.feature, model=args.model,
            layer=args.layer, channel=args.channel, source=args.source, deform=args.deform,
            animation=args.animation, frames=args.frames, vectors=args.vectors, rho=args.rho, style=style,
        )
        other = (None if args.compare is None else
                 compare_model(model, args.compare, channel=args.compare_channel, source=args.source))
    if args.export:
        from meshgdl_viewer.render import export

        with status(f"rendering {model.num_frames} frame(s) to {args.export}"):
            written = export(model, args.export, fps=args.fps, compare=other)
        where = written[0] if len(written) == 1 else f"{len(written)} frames in {args.export}"
        print(f"wrote {where}")
        return 0
    from meshgdl_viewer.app import show

    show(model, fps=args.fps, compare=other)
    return 0


def _class_names(spec: str | None) -> list[str] | None:
    """``--class-names``: a shipped model's classes, a file (one name per line) or ``a,b,c``."""
    if spec is None:
        return None
    from meshgdl import pretrained

    if spec in pretrained.names():
        return list(pretrained.describe(spec)["class_names"])
    p = Path(spec)
    if p.is_file():
        from meshgdl.data.datasets import read_list_file

        return read_list_file(p)
    if "," in spec:
        return [t.strip() for t in spec.split(",")]
    raise UsageError(f"--class-names {spec}: not a shipped model, a file or a comma-separated list")

