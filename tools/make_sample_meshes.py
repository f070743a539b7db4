"""Write the small sample meshes in ``sample_meshes/`` (deterministic, no downloads).

    python tools/make_sample_meshes.py [--out sample_meshes]

Files:
  icosphere.obj             unit icosphere, 2562 vertices (genus 0, exact sphere vertices)
  torus.off                 48 x 24 torus, R = 1, r = 0.35 (genus 1)
  bumpy_sphere.stl          icosphere with Gaussian bumps (binary STL: a triangle soup)
  figure.ply                capsule figure in a random pose (binary PLY, one closed surface)
  figure.vertex_labels.txt  part label per vertex of figure.ply (see the header line)
  defects.obj               a 4x4 grid with known defects, listed in the file's comments
  pointcloud.ply            vertices only (error path: no faces)
  nan.obj                   a NaN coordinate (error path)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from meshgdl.atomic import write_text_atomic
from meshgdl.data import synthetic
from meshgdl.io import save_mesh

# Known contents of defects.obj, checked by tests/test_io.py.
DEFECTS_OBJ = """\
# meshgdl sample: a 4x4 vertex grid (z = 0) with deliberate defects
#  - vertex 17 duplicates vertex 6 exactly (merged on load)
#  - face "3 2 1" is degenerate: vertices 1, 2, 3 are collinear (zero area)
#  - a fin triangle (apex vertex 19) on the interior edge 6-7 makes that edge non-manifold (3 faces)
#  - a separate tetrahedron (vertices 20-23) is a second connected component
#  - vertex 18 is used by no face (dropped on load)
v 0 0 0
v 1 0 0
v 2 0 0
v 3 0 0
v 0 1 0
v 1 1 0
v 2 1 0
v 3 1 0
v 0 2 0
v 1 2 0
v 2 2 0
v 3 2 0
v 0 3 0
v 1 3 0
v 2 3 0
v 3 3 0
v 1 1 0
v 9 9 9
v 1.5 1 1
v 6 0 0
v 7 0 0
v 6 1 0
v 6 0 1
f 1 2 6
f 1 6 5
f 2 3 7
f 2 7 17
f 3 4 8
f 3 8 7
f 5 6 10
f 5 10 9
f 6 7 11
f 6 11 10
f 7 8 12
f 7 12 11
f 9 10 14
f 9 14 13
f 10 11 15
f 10 15 14
f 11 12 16
f 11 16 15
f 3 2 1
f 6 7 19
f 20 22 21
f 20 21 23
f 20 23 22
f 21 22 23
"""

NAN_OBJ = """\
# meshgdl sample: vertex 2 has a NaN coordinate
v 0 0 0
v nan 0 0
v 0 1 0
f 1 2 3
"""


def make_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []

    V, F = synthetic.icosphere(4)
    save_mesh(out / "icosphere.obj", V, F)
    written.append(out / "icosphere.obj")

    V, F = synthetic.torus(48, 24, 1.0, 0.35)
    save_mesh(out / "torus.off", V, F)
    written.append(out / "torus.off")

    V, F = synthetic.bumpy_sphere(3, amplitude=0.15, n_bumps=10, seed=3)
    save_mesh(out / "bumpy_sphere.stl", V, F)
    written.append(out / "bumpy_sphere.stl")

    pose = synthetic.random_pose(np.random.default_rng(7), amount=0.6)
    V, F, labels = synthetic.capsule_figure(pose, resolution=0.03, seed=None)
    save_mesh(out / "figure.ply", V, F)
    header = "# part label per vertex of figure.ply: " + " ".join(
        f"{i}={n}" for i, n in enumerate(synthetic.PART_NAMES)
    )
    write_text_atomic(out / "figure.vertex_labels.txt", header + "\n" + "\n".join(map(str, labels)) + "\n")
    written += [out / "figure.ply", out / "figure.vertex_labels.txt"]

    write_text_atomic(out / "defects.obj", DEFECTS_OBJ)
    written.append(out / "defects.obj")

    rng = np.random.default_rng(0)
    P = rng.normal(size=(200, 3))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    lines = ["ply", "format ascii 1.0", "comment meshgdl sample: points only, no faces",
             f"element vertex {len(P)}", "property float x", "property float y", "property float z", "end_header"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in P]
    write_text_atomic(out / "pointcloud.ply", "\n".join(lines) + "\n")
    written.append(out / "pointcloud.ply")

    write_text_atomic(out / "nan.obj", NAN_OBJ)
    written.append(out / "nan.obj")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "sample_meshes")
    args = ap.parse_args(argv)
    for p in make_all(args.out):
        print(f"{p}  {p.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
