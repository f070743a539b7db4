"""``meshgdl geodesic MESH --source I [--source J ...] -o OUT [--exact]``.

Geodesic distance from the source vertices to every vertex, written in the
*file's* vertex order (vertex ``i`` of the output is vertex ``i`` of MESH):

* ``.npy``: ``(n_file_vertices,) float64``;
* ``.ply``: the file's vertices and its triangles with a ``distance`` vertex
  property and colours (dark = near, yellow = far, grey = unreachable).

Vertices that no path reaches (other connected components, or vertices used by
no face) get ``inf``.
"""

from __future__ import annotations

import numpy as np

from meshgdl.api import geodesic_distance, input_vertices
from meshgdl.atomic import atomic_path
from meshgdl.cli._common import UsageError, add_mesh_argument, colormap, load_mesh_arg, output_path, print_notes, status

OUTPUTS = (".ply", ".npy")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "geodesic",
        help="geodesic distance from source vertices (heat method or exact)",
        description="Geodesic distance on the surface from one or more source vertices. "
        "Source indices and the output use the file's vertex numbering (0-based). "
        "The default is the heat method (fast, smooth, slightly approximate); "
        "--exact computes exact polyhedral distances (MMP, slower).",
    )
    add_mesh_argument(p)
    p.add_argument("-s", "--source", type=int, action="append", required=True, metavar="I",
                   help="source vertex index, 0-based in the file's order (repeat for several)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file: .npy (distances) or .ply (mesh with a 'distance' property)")
    p.add_argument("--exact", action="store_true", help="exact polyhedral geodesics instead of the heat method")
    p.add_argument("--t-coef", type=float, default=1.0, metavar="C",
                   help="heat method time step, in units of the squared mean edge length (default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    out = output_path(args.output, OUTPUTS)
    if not (np.isfinite(args.t_coef) and args.t_coef > 0):
        raise UsageError(f"--t-coef must be a positive number, got {args.t_coef}")
    mesh = load_mesh_arg(args.mesh)
    try:
        input_vertices(mesh, args.source, what="--source")
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    with status("computing exact geodesics" if args.exact else "computing heat-method geodesics"):
        d_file = geodesic_distance(mesh, args.source, exact=args.exact, t_coef=args.t_coef)

    if out.suffix.lower() == ".npy":
        with atomic_path(out) as tmp:
            np.save(tmp, d_file)
    else:
        from meshgdl.io import save_mesh

        save_mesh(out, mesh.file_V, mesh.file_triangles(),
                  vertex_colors=colormap(d_file), vertex_scalars={"distance": d_file})
    print_notes(mesh)
    return 0
