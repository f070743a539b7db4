"""``meshgdl info MESH [--json]``: counts, size and defects of a mesh file."""

from __future__ import annotations

import json
import sys

from meshgdl.cli._common import add_mesh_argument, load_mesh_arg, status


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="counts, bounding box, area, components and defects of a mesh",
        description="Load a mesh, clean it as every meshgdl command does, and report its "
        "size, topology (components, boundary loops, Euler characteristic, genus) and defects "
        "(non-manifold edges/vertices, degenerate or duplicate faces, orientation flips).",
    )
    add_mesh_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    mesh = load_mesh_arg(args.mesh)
    with status("checking the mesh"):
        rep = mesh.report()
    if args.json:
        d = rep.as_dict()
        d = {
            "path": args.mesh,
            "file_vertices": mesh.n_orig_vertices,
            "file_faces": mesh.n_orig_faces,
            **d,
        }
        json.dump(d, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    lo, hi = rep.bbox_min, rep.bbox_max
    size = [b - a for a, b in zip(lo, hi)]
    fmt = lambda xs: "(" + ", ".join(f"{x:.6g}" for x in xs) + ")"  # noqa: E731
    sizes = ", ".join(map(str, rep.component_sizes[:8])) + (" ..." if len(rep.component_sizes) > 8 else "")
    rows = [
        ("mesh", args.mesh),
        ("vertices", f"{rep.n_vertices}  (file: {mesh.n_orig_vertices})"),
        ("faces", f"{rep.n_faces}  (file: {mesh.n_orig_faces})"),
        ("edges", rep.n_edges),
        ("bounding box", f"{fmt(lo)} .. {fmt(hi)}  size {fmt(size)}"),
        ("surface area", f"{rep.surface_area:.6g}"),
        ("components", f"{rep.n_components}  (vertices: {sizes})"),
        ("boundary loops", f"{rep.n_boundary_loops}  ({rep.n_boundary_edges} boundary edges)"),
        ("non-manifold edges", rep.n_nonmanifold_edges),
        ("non-manifold vertices", rep.n_nonmanifold_vertices),
        ("degenerate faces", rep.n_degenerate_faces),
        ("duplicate faces", rep.n_duplicate_faces),
        ("orientation flips", f"{rep.n_inconsistent_edges} edges"),
        ("Euler characteristic", rep.euler_characteristic),
        ("genus", rep.genus if rep.genus is not None else "n/a (not a clean oriented manifold)"),
        ("watertight", "yes" if rep.is_watertight else "no"),
    ]
    lines = [f"{k + ':':<23}{v}" for k, v in rows]
    if rep.warnings:
        lines.append("warnings:")
        lines += [f"  - {w}" for w in rep.warnings]
    else:
        lines.append(f"{'warnings:':<23}none")
    print("\n".join(lines))
    return 0
