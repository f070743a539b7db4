#!/usr/bin/env python
"""Several human-body segmenters (training seeds, architectures, ensembles) scored the way
``meshgdl segment`` would run them with the shipped model's settings (issue 19).

    python tools/bench/human_seg_seeds.py human_parts WORK/export/seed1.safetensors WORK/gem_seed2 \\
        [--splits val test] [--ensemble] [--json out.json]

Each model (a shipped name, a checkpoint or a run directory from ``meshgdl train``) gets
the decision settings of the shipped ``--settings-from`` model (default ``human_parts``):
its working resolution, hole filling, label smoothing, ``label_prior`` and
``boundary_refinement``. Its own temperature stays (a run directory has none, which
changes no argmax). Every mesh of the split (MeshCNN's simplified human_seg; ``val`` = the
33 meshes of ``tools/splits/human_seg/val.txt``) goes through
:func:`meshgdl.segmentation.segment` once per model; the per-face accuracy (a face's label,
true or predicted, is the majority of its corners) is reported for three decisions on the
same probabilities -- the plain argmax, the argmax after the label prior, and the prior
plus the boundary refinement (:meth:`meshgdl.segmentation.Segmenter.label_surface`) --
then mean ± sample std over the models. ``--ensemble``: the same for the models'
probabilities averaged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402

DECISIONS = ("argmax", "prior", "prior+refine")
#: What a model takes over from the shipped model's description.
SETTINGS = ("working_vertices", "fill_holes", "smooth_iterations", "label_prior", "boundary_refinement")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="shipped model names, checkpoints or run directories")
    ap.add_argument("--settings-from", default="human_parts", help="shipped model whose decision settings all use")
    ap.add_argument("--data-root", help="folder holding human_seg/ (default $MESHGDL_DATA or ../shared/datasets)")
    ap.add_argument("--splits", nargs="+", default=["val"], choices=["val", "test"])
    ap.add_argument("--ensemble", action="store_true", help="also score the models' averaged probabilities")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write all figures here")
    a = ap.parse_args(argv)

    import torch

    from meshgdl.data.datasets import get_dataset
    from meshgdl.data.labels import vertex_to_face_labels
    from meshgdl.errors import CheckpointError, MeshError
    from meshgdl.io import Mesh
    from meshgdl.segmentation import load_segmenter, segment

    torch.set_num_threads(a.threads)
    env = measure.environment()
    try:
        ref = load_segmenter(a.settings_from)
        segs = [load_segmenter(name, working_vertices=ref.working_vertices) for name in a.models]
    except (CheckpointError, MeshError) as e:
        raise SystemExit(f"human_seg_seeds.py: {e}") from None
    settings = {k: ref.info[k] for k in SETTINGS if k in ref.info}
    for s in segs:
        s.info = dict(s.info, **settings)
    names = list(a.models) + (["ensemble"] if a.ensemble else [])
    out = {"models": a.models, "settings_from": a.settings_from, "splits": {}}
    for split in a.splits:
        ds = get_dataset("human_seg", split, a.data_root,
                         ROOT / "tools" / "splits" / "human_seg" if split == "val" else None)
        right = np.zeros((len(names), len(DECISIONS)))
        n_faces = 0
        for i in range(len(ds)):
            it = ds[i]
            m = Mesh.from_arrays(it.V, it.F)
            true_f = vertex_to_face_labels(m.F, np.asarray(it.y))
            ok = true_f >= 0
            n_faces += int(ok.sum())
            probs = [segment(m, s, refine=0).probabilities for s in segs]
            runs = list(zip(segs, probs)) + ([(ref, np.mean(probs, axis=0))] if a.ensemble else [])
            for k, (s, p) in enumerate(runs):
                for d, lab in enumerate((np.argmax(p, axis=1), s.decide(p), s.label_surface(p, m.V, m.F))):
                    right[k, d] += ((vertex_to_face_labels(m.F, lab) == true_f) & ok).sum()
            print(f"{split} {i + 1}/{len(ds)} {it.name}", file=sys.stderr)
        acc = 100 * right / n_faces
        rows = {nm: dict(zip(DECISIONS, acc[k].tolist())) for k, nm in enumerate(names)}
        single = acc[: len(segs)]
        mean, std = single.mean(axis=0), single.std(axis=0, ddof=1) if len(segs) > 1 else np.zeros(len(DECISIONS))
        out["splits"][split] = {"per_model": rows, "mean": mean.tolist(), "std": std.tolist(), "faces": n_faces}
        print(f"\n{split}: per-face accuracy, {len(ds)} meshes ({n_faces} faces); settings of {a.settings_from}")
        w = max(len(nm) for nm in names + ["mean ± std"])
        print(f"  {'model':<{w}} " + " ".join(f"{d:>14}" for d in DECISIONS))
        for nm in names:
            print(f"  {nm:<{w}} " + " ".join(f"{rows[nm][d]:13.2f}%" for d in DECISIONS))
        print(f"  {'mean ± std':<{w}} " + " ".join(f"{m_:7.2f} ± {s_:4.2f}" for m_, s_ in zip(mean, std)))
    print(measure.environment_line(env))
    if a.json:
        measure.write_json(a.json, measure.record("tools/bench/human_seg_seeds.py", out, a, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
