#!/usr/bin/env python
"""Time of the boundary refinement (:func:`meshgdl.data.labels.refine_labels`) against the
plain decision it replaces (:meth:`meshgdl.segmentation.Segmenter.decide`), on the
probabilities ``meshgdl segment`` transfers to the input: crane (a captured human, 10k
vertices) and a human_seg test mesh remeshed to ~200k faces
(``human_seg_robustness.remesh``). Interleaved rounds, median; the first refinement of a
face array (which builds its edge table) reported apart.

    python tools/bench/refine.py [--model human_parts] [--smoothness S] [--rounds 15]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="human_parts", help="shipped model name, checkpoint or run directory")
    ap.add_argument("--smoothness", type=float, help="default: the model's boundary_refinement")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--data-root", help="folder holding animations/ and human_seg/ (default $MESHGDL_DATA or "
                    "../shared/datasets)")
    a = ap.parse_args(argv)

    import torch

    from human_seg_robustness import remesh
    from animation_segment import data_root
    from meshgdl.data.labels import refine_labels
    from meshgdl.errors import CheckpointError, MeshError
    from meshgdl.io import Mesh, load_mesh
    from meshgdl.segmentation import load_segmenter, segment

    torch.set_num_threads(1)
    env = measure.environment()
    try:
        seg = load_segmenter(a.model)
    except (CheckpointError, MeshError) as e:
        raise SystemExit(f"refine.py: {e}") from None
    lam = seg.refinement[0] if a.smoothness is None else a.smoothness
    if lam <= 0:
        raise SystemExit(f"{a.model}: no boundary refinement to time; give --smoothness")
    root = data_root(a.data_root)
    crane = load_mesh(root / "animations" / "crane.obj")
    h = load_mesh(root / "human_seg" / "meshes" / "shrec__2.obj")
    big = Mesh.from_arrays(*remesh(h.V, h.F, 200_000))
    print(f"model {a.model}, smoothness {lam:g}")
    print(f"{'mesh':<22} {'vertices':>9} {'decide ms':>10} {'refine ms':>10} {'first refine ms':>16} {'labels changed':>15}")
    for name, m in (("crane", crane), ("shrec__2 remeshed", big)):
        P = segment(m, seg, refine=0).probabilities
        S = seg.decision_scores(P)
        t0 = time.perf_counter()
        refined = refine_labels(S, m.V, m.F, lam)
        first = time.perf_counter() - t0
        t_dec, t_ref = [], []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            plain = seg.decide(P)
            t_dec.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            refine_labels(S, m.V, m.F, lam)
            t_ref.append(time.perf_counter() - t0)
        print(f"{name:<22} {m.n_vertices:>9,} {1000 * np.median(t_dec):>10.2f} {1000 * np.median(t_ref):>10.1f} "
              f"{1000 * first:>16.1f} {100 * np.mean(refined != plain):>14.2f}%")
    print(measure.environment_line(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
