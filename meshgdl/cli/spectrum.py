"""``meshgdl spectrum MESH -k K -o OUT.npz [--laplacian auto|cotan|robust]``.

The ``K`` smallest eigenpairs of the generalised problem ``L phi = lambda M phi``.
The ``.npz`` holds, in the *file's* vertex order (row ``i`` = vertex ``i`` of MESH):

* ``evals``: ``(K,) float64``, ascending;
* ``evecs``: ``(n_file_vertices, K) float64``; vertices used by no face get zero rows,
  merged duplicate vertices repeat their shared vertex's row;
* ``mass``: ``(n_file_vertices,) float64`` lumped vertex areas, given to the *first*
  file copy of each merged vertex and 0 to the other copies and to unused vertices,
  so ``evecs.T @ (mass[:, None] * evecs)`` is the identity in file order too;
* ``orig_to_new``: ``(n_file_vertices,) int64`` file vertex -> cleaned-mesh vertex (-1: unused);
* ``laplacian``: the Laplacian actually used (``cotan`` or ``robust``).
"""

from __future__ import annotations

import numpy as np

from meshgdl.atomic import atomic_path
from meshgdl.cli._common import UsageError, add_mesh_argument, load_mesh_arg, output_path, print_notes, status

METHODS = ("auto", "cotan", "robust")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "spectrum",
        help="Laplace-Beltrami eigenvalues and eigenvectors (.npz)",
        description="Smallest Laplace-Beltrami eigenpairs of a mesh, saved as .npz with "
        "arrays evals, evecs (rows in the file's vertex order), mass, orig_to_new, laplacian.",
    )
    add_mesh_argument(p)
    p.add_argument("-k", type=int, default=20, metavar="K", help="number of eigenpairs (default 20)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="output .npz file")
    p.add_argument("--laplacian", choices=METHODS, default="auto",
                   help="cotan (intrinsic cotangent), robust (tufted intrinsic Delaunay; "
                   "handles non-manifold and degenerate meshes), or auto (robust only when needed)")
    p.set_defaults(func=run)


def run(args) -> int:
    out = output_path(args.output, (".npz",))
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    mesh = load_mesh_arg(args.mesh)
    n = mesh.n_vertices
    if args.k >= n:
        raise UsageError(f"-k {args.k} is too large: the mesh has {n} vertices (use -k {n - 1} or less)")

    from meshgdl.api import spectrum

    with status(f"computing {args.k} eigenpairs of a {n}-vertex mesh"):
        spec = spectrum(mesh, args.k, laplacian=args.laplacian)
    with atomic_path(out) as tmp:
        np.savez(
            tmp,
            evals=spec.evals,
            evecs=spec.evecs,
            mass=spec.mass,
            orig_to_new=mesh.orig_to_new,
            laplacian=np.array(spec.laplacian),
        )
    print_notes(mesh)
    return 0
