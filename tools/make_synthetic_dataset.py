#!/usr/bin/env python
"""Write a procedural mesh dataset in meshgdl's custom-folder format (no downloads).

Segmentation (default): capsule figures (``meshgdl.data.synthetic.capsule_figure``)
in random poses, body proportions and resolutions, each randomly rotated (SO(3)),
scaled and translated, with per-vertex part labels (10 classes, ``classes.txt`` =
``PART_NAMES``)::

    OUT/meshes/fig_0000.ply   OUT/labels/fig_0000.txt   (or .face_labels.txt with --face-labels)
    OUT/train.txt  OUT/test.txt  OUT/classes.txt

Classification (``--task classification``): one folder per class
(sphere, torus, bumpy_sphere, figure) with ``train/`` and ``test/`` sub-folders.

Usage::

    python tools/make_synthetic_dataset.py OUT [--n-train 24] [--n-test 8] [--seed 0]
        [--resolution 0.12 0.08] [--task segmentation|classification] [--format ply|obj|off]
        [--face-labels]

The same arguments always give the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _random_rigid(V: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from meshgdl.data.transforms import random_rotation_matrix

    R = random_rotation_matrix(rng)
    s = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    t = rng.uniform(-1.0, 1.0, 3)
    return (V @ R.T) * s + t


def make_segmentation(out, n_train: int = 24, n_test: int = 8, seed: int = 0,
                      resolutions=(0.12, 0.09), fmt: str = "ply", face_labels: bool = False,
                      n_bodies: int = 3) -> Path:
    """Capsule-figure part segmentation in the custom-folder format; returns ``out``."""
    from meshgdl.data.datasets import write_mesh_folder
    from meshgdl.data.labels import vertex_to_face_labels
    from meshgdl.data.synthetic import PART_NAMES, capsule_figure, random_pose

    rng = np.random.default_rng(seed)
    items, names = [], []
    for k in range(n_train + n_test):
        body = int(rng.integers(n_bodies))  # few proportion seeds: the rest meshes are cached
        res = float(rng.choice(np.asarray(resolutions, dtype=np.float64)))
        V, F, lab = capsule_figure(random_pose(rng), resolution=res, seed=body)
        V = _random_rigid(V, rng)
        if face_labels:
            lab = vertex_to_face_labels(F, lab)
        name = f"fig_{k:04d}"
        items.append((name, V, F, lab))
        names.append(name)
    return write_mesh_folder(out, items, splits={"train": names[:n_train], "test": names[n_train:]},
                             class_names=list(PART_NAMES), fmt=fmt, face_labels=face_labels)


CLASSES = ("sphere", "torus", "bumpy_sphere", "figure")


def make_classification(out, n_train: int = 24, n_test: int = 8, seed: int = 0,
                        resolutions=(0.12, 0.09), fmt: str = "ply") -> Path:
    """Four shape classes, ModelNet-style ``OUT/<class>/{train,test}/*.<fmt>``; returns ``out``."""
    from meshgdl.data.synthetic import bumpy_sphere, capsule_figure, icosphere, random_pose, torus
    from meshgdl.io import save_mesh

    rng = np.random.default_rng(seed)
    out = Path(out)
    for k in range(n_train + n_test):
        split = "train" if k < n_train else "test"
        c = CLASSES[k % len(CLASSES)]
        if c == "sphere":
            V, F = icosphere(int(rng.integers(2, 4)))
        elif c == "torus":
            V, F = torus(int(rng.integers(16, 32)), int(rng.integers(8, 14)), 1.0, float(rng.uniform(0.25, 0.45)))
        elif c == "bumpy_sphere":
            V, F = bumpy_sphere(int(rng.integers(2, 4)), seed=int(rng.integers(1 << 30)))
        else:
            res = float(rng.choice(np.asarray(resolutions, dtype=np.float64)))
            V, F, _ = capsule_figure(random_pose(rng), resolution=res, seed=int(rng.integers(3)))
        d = out / c / split
        d.mkdir(parents=True, exist_ok=True)
        save_mesh(d / f"{c}_{k:04d}.{fmt}", _random_rigid(V, rng), F)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--task", choices=["segmentation", "classification"], default="segmentation")
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-test", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=float, nargs="+", default=[0.12, 0.09],
                   help="target edge lengths (m) to choose from; 0.025 gives ~5k vertices")
    p.add_argument("--format", choices=["ply", "obj", "off"], default="ply")
    p.add_argument("--face-labels", action="store_true", help="write per-face labels (segmentation)")
    a = p.parse_args(argv)
    if a.n_train < 1 or a.n_test < 0:
        p.error("--n-train must be >= 1 and --n-test >= 0")
    if a.task == "segmentation":
        out = make_segmentation(a.out, a.n_train, a.n_test, a.seed, a.resolution, a.format, a.face_labels)
    else:
        out = make_classification(a.out, a.n_train, a.n_test, a.seed, a.resolution, a.format)
    print(f"wrote {a.n_train} train + {a.n_test} test meshes to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
