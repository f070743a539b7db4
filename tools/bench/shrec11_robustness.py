#!/usr/bin/env python
"""Does ``meshgdl classify`` hold up on meshes that do not look like the training files?

Every one of the 120 SHREC'11 split-16 test meshes (``shrec_16/<class>/test``) is
classified through :func:`meshgdl.classification.classify` (what ``meshgdl classify``
runs) twice:

* **as is** (the MeshCNN file, ~250 vertices / 500 faces);
* **remeshed and rotated**: midpoint-subdivided twice (16x the faces; the surface
  does not move), then re-triangulated by ``fast_simplification`` (quadric
  decimation, an implementation other than meshgdl's) down to 10x the original
  faces (~5000), then randomly rotated (uniform on SO(3)), scaled by a random factor
  in [0.01, 100] and translated; the classifier's working mesh then decimates it
  back to its own resolution with meshgdl's decimator. So the model sees the same
  shape through a triangulation it never saw.

    python tools/bench/shrec11_robustness.py [--model shrec11] [--seed 0] [--out result.json]
                                              [--update-model]

Prints both accuracies, the misclassified meshes and timings (``measure.timed``, the
classification of each mesh; the remeshing is not timed); ``--out`` writes the record of
``tools/bench/measure.py`` (results with machine, versions, commit, load);
``--update-model`` writes the result into the shipped model's JSON ``metrics``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402

SUBDIVISIONS = 2
FACE_FACTOR = 10


def remesh_rotate(V: np.ndarray, F: np.ndarray, rng: np.random.Generator):
    """(V, F) -> the same surface with ~``FACE_FACTOR`` x the faces in another
    triangulation, randomly rotated, scaled and moved (see the module docstring)."""
    import fast_simplification

    from meshgdl.data.transforms import random_rotation_matrix
    from meshgdl.io import Mesh
    from meshgdl.geometry.remesh import midpoint_subdivide

    Vs, Fs = V, F
    for _ in range(SUBDIVISIONS):
        Vs, Fs = midpoint_subdivide(Vs, Fs)
    target = FACE_FACTOR * len(F)
    V2, F2 = fast_simplification.simplify(Vs.astype(np.float64), Fs.astype(np.int64),
                                          target_reduction=1.0 - target / len(Fs))
    R = random_rotation_matrix(rng)
    s = float(np.exp(rng.uniform(np.log(0.01), np.log(100.0))))
    V2 = (np.asarray(V2, np.float64) @ R.T) * s + rng.uniform(-10, 10, 3)
    return Mesh.from_arrays(V2, np.asarray(F2, np.int64))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="shrec11", help="shipped name, checkpoint or run directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--working-vertices", type=int, default=None,
                   help="working resolution (default: the model's; give 250 for a training run directory)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", help="write the per-mesh results here (JSON)")
    p.add_argument("--update-model", action="store_true",
                   help="store the accuracies in the shipped model's JSON metrics")
    a = p.parse_args(argv)

    from meshgdl.classification import classify, load_classifier
    from meshgdl.data.datasets import default_data_root
    from meshgdl.io import load_mesh

    data = (Path(a.data_root) if a.data_root else default_data_root()) / "shrec_11_meshcnn_split16" / "shrec_16"
    tests = [(q, c.name) for c in sorted(x for x in data.iterdir() if x.is_dir())
             for q in sorted((c / "test").glob("*.obj"))]
    env = measure.environment()
    clf = load_classifier(a.model, device="cpu", working_vertices=a.working_vertices)
    rng = np.random.default_rng(a.seed)
    rows, t_plain, t_remeshed = [], 0.0, 0.0
    for i, (path, cls) in enumerate(tests):
        m = load_mesh(path)
        r0, dt0 = measure.timed(classify, m, clf)
        m2 = remesh_rotate(m.V, m.F, rng)
        r1, dt1 = measure.timed(classify, m2, clf)
        t_plain += dt0
        t_remeshed += dt1
        rows.append({"mesh": f"{cls}/test/{path.name}", "class": cls, "plain": r0.name, "remeshed": r1.name,
                     "remeshed_faces": int(len(m2.F)), "working_vertices": int(len(r1.working.V)),
                     "p_true_plain": float(r0.probabilities[clf.class_names.index(cls)]),
                     "p_true_remeshed": float(r1.probabilities[clf.class_names.index(cls)])})
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(tests)} meshes", file=sys.stderr, flush=True)
    n = len(rows)
    acc0 = sum(r["plain"] == r["class"] for r in rows) / n
    acc1 = sum(r["remeshed"] == r["class"] for r in rows) / n
    faces = np.array([r["remeshed_faces"] for r in rows])
    res = {
        "model": clf.path, "working_vertices": clf.working_vertices, "n_meshes": n, "seed": a.seed,
        "accuracy_as_is": acc0, "accuracy_remeshed_rotated": acc1,
        "remeshed_faces": {"min": int(faces.min()), "mean": float(faces.mean()), "max": int(faces.max())},
        "seconds_per_mesh_as_is": t_plain / n, "seconds_per_mesh_remeshed": t_remeshed / n,
        "misclassified_as_is": [f"{r['mesh']}: {r['class']} -> {r['plain']}" for r in rows
                                if r["plain"] != r["class"]],
        "misclassified_remeshed_rotated": [f"{r['mesh']}: {r['class']} -> {r['remeshed']}" for r in rows
                                           if r["remeshed"] != r["class"]],
        "per_mesh": rows,
    }
    print(f"as is: {100 * acc0:.2f} % ({sum(r['plain'] == r['class'] for r in rows)}/{n}), "
          f"{res['seconds_per_mesh_as_is']:.3f} s/mesh")
    print(f"remeshed to ~{FACE_FACTOR}x faces ({faces.min()}-{faces.max()}) + rotated + scaled: "
          f"{100 * acc1:.2f} % ({sum(r['remeshed'] == r['class'] for r in rows)}/{n}), "
          f"{res['seconds_per_mesh_remeshed']:.3f} s/mesh")
    for w in res["misclassified_remeshed_rotated"]:
        print(f"  remeshed wrong: {w}")
    for w in res["misclassified_as_is"]:
        print(f"  as-is wrong: {w}")
    print(measure.environment_line(env))
    if a.out:
        measure.write_json(a.out, measure.record("tools/bench/shrec11_robustness.py", res, a, env))
    if a.update_model:
        from meshgdl.pretrained import read_sidecar, update_description

        metrics = {**read_sidecar(clf.path).get("metrics", {}),
                   "robustness_accuracy_as_is": acc0, "robustness_accuracy_remeshed_rotated": acc1}
        robustness = {k: v for k, v in res.items() if k not in ("per_mesh", "model")}
        robustness["recipe"] = f"python tools/bench/shrec11_robustness.py --seed {a.seed} --update-model"
        update_description(clf.path, {"metrics": metrics, "robustness": robustness})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
