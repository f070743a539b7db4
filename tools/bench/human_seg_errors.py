#!/usr/bin/env python
"""Where a human-body segmenter goes wrong (issue 19's error analysis): per-face accuracy
near and away from the ground-truth part boundaries, the confusion between parts, and
the meshes that fail.

    python tools/bench/human_seg_errors.py [--model human_parts] [--splits val test] [--json out.json]

Every mesh of the split (MeshCNN's simplified human_seg; ``val`` = the 33 meshes held out
by subject, ``tools/splits/human_seg/val.txt``) goes through the same Python pipeline as
``meshgdl segment`` (:func:`meshgdl.segmentation.segment`). A face's label, true or
predicted, is the majority of its three corners (the benchmark's per-face metric).

* **Boundary bands**: a ground-truth boundary vertex has a neighbour of another true
  label; band ``k`` = the faces with a corner within ``k`` rings of one
  (:func:`meshgdl.geometry.topology.ring_distance`), so band 0 holds every face that
  touches a boundary vertex. Per band: its share of the faces, the accuracy inside and
  outside it, and its share of all errors. MeshCNN's per-edge labels turned into vertex
  labels leave the boundary itself ambiguous by about a ring; errors inside band 0-1 are
  mostly that ambiguity, errors outside band 2 are real mistakes.
* **Confusion** (faces, rows = true part, normalised per row) and per-part IoU.
* Per mesh: accuracy, its errors outside band 1; the worst meshes listed.
* ``--prior-tau``: the same labels after a *logit adjustment* (Menon et al., ICLR 2021):
  each vertex's class probabilities divided by ``prior_c ** tau`` before the argmax,
  ``prior_c`` = part ``c``'s share of the training meshes' surface area
  (``tools/splits/human_seg/train.txt``). A network trained on imbalanced parts moves
  the boundary between a large and a small part into the small one; ``tau`` is chosen
  on the validation split only. ``--update-model`` writes the best ``tau`` on validation
  (and the prior) into the shipped model's JSON as ``label_prior``, which
  ``meshgdl segment`` applies (:meth:`meshgdl.segmentation.Segmenter.decide`).

    python tools/bench/human_seg_errors.py --prior-tau 0.25 0.5 0.75 1 1.5 2 --update-model

* ``--tta-working N1 N2 ...``: test-time augmentation over triangulations -- the input's
  probabilities averaged over working meshes of these vertex counts (each its own
  decimation), scored with every ``tau`` as well.
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

BANDS = (0, 1, 2, 3)


def boundary_band(F: np.ndarray, y: np.ndarray, max_rings: int) -> np.ndarray:
    """``(m,) int64``: each face's ring distance (its nearest corner's) to a vertex whose
    one-ring holds another ground-truth label than its own (``y (n,)``);
    ``max_rings + 1`` when farther."""
    from meshgdl.geometry.topology import ring_distance

    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    cut = e[y[e[:, 0]] != y[e[:, 1]]]
    seeds = np.zeros(len(y), dtype=bool)
    seeds[cut.ravel()] = True
    return ring_distance(F, len(y), seeds, max_rings)[F].min(axis=1)


def split_report(name, recs, class_names) -> dict:
    """The figures of one split from its meshes' records (module docstring)."""
    from meshgdl.train.metrics import confusion_matrix, task_metrics

    n_cls = len(class_names)
    yt = np.concatenate([r["true_f"] for r in recs])
    yp = np.concatenate([r["pred_f"] for r in recs])
    band = np.concatenate([r["band"] for r in recs])
    ok = yt >= 0
    right = (yt == yp) & ok
    cm = confusion_matrix(yp[ok], yt[ok], n_cls)
    met = task_metrics("segmentation", cm)
    n_err = int((~right & ok).sum())
    out = {"meshes": len(recs), "faces": int(ok.sum()), "face_accuracy": float(right.sum() / ok.sum()),
           "mean_iou": met["mean_iou"], "bands": {}, "confusion": cm.tolist()}
    print(f"\n{name}: {len(recs)} meshes, {ok.sum()} faces, per-face accuracy {100 * out['face_accuracy']:.2f} %, "
          f"mIoU {met['mean_iou']:.3f}")
    print(f"  {'band':>4} {'faces in band':>13} {'acc in band':>11} {'acc outside':>11} {'errors in band':>14}")
    for k in BANDS:
        inb = (band <= k) & ok
        row = {"share": float(inb.sum() / ok.sum()), "accuracy_in": float(right[inb].sum() / max(inb.sum(), 1)),
               "accuracy_out": float(right[~inb & ok].sum() / max((~inb & ok).sum(), 1)),
               "error_share": float((~right & inb).sum() / max(n_err, 1))}
        out["bands"][k] = row
        print(f"  {k:>4} {100 * row['share']:12.1f}% {100 * row['accuracy_in']:10.2f}% "
              f"{100 * row['accuracy_out']:10.2f}% {100 * row['error_share']:13.1f}%")
    ct = cm.astype(np.float64)
    ct /= np.maximum(ct.sum(axis=1, keepdims=True), 1)
    w = max(len(c) for c in class_names)
    print("  confusion (faces; rows = true part, % of the row):")
    print("  " + " " * w + " " + " ".join(f"{c[:7]:>7}" for c in class_names) + "     IoU")
    iou = [np.nan if x is None else x for x in met["per_class_iou"]]
    for i, c in enumerate(class_names):
        print(f"  {c:>{w}} " + " ".join(f"{100 * v:7.1f}" for v in ct[i]) + f"   {iou[i]:.3f}")
    out["per_class_iou"] = [float(x) for x in iou]
    per_mesh = sorted(({"name": r["name"], "face_accuracy": r["acc"], "errors_outside_band1": r["far_err"]}
                       for r in recs), key=lambda d: d["face_accuracy"])
    out["per_mesh"] = per_mesh
    print("  worst meshes: " + ", ".join(f"{d['name']} {100 * d['face_accuracy']:.1f} % "
                                         f"({100 * d['errors_outside_band1']:.1f} % of faces wrong beyond band 1)"
                                         for d in per_mesh[:5]))
    return out


def part_prior(data_root, n_cls: int) -> np.ndarray:
    """``(C,)``: each part's share of the training meshes' total vertex area."""
    from meshgdl.data.datasets import get_dataset
    from meshgdl.geometry.normals import vertex_areas

    ds = get_dataset("human_seg", "train", data_root, ROOT / "tools" / "splits" / "human_seg")
    area = np.zeros(n_cls)
    for i in range(len(ds)):
        it = ds[i]
        y = np.asarray(it.y)
        ok = y >= 0
        area += np.bincount(y[ok], weights=vertex_areas(it.V, it.F)[ok], minlength=n_cls)
    return area / area.sum()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="human_parts", help="shipped model name, checkpoint or run directory")
    ap.add_argument("--data-root", help="folder holding human_seg/ (default $MESHGDL_DATA or ../shared/datasets)")
    ap.add_argument("--splits", nargs="+", default=["val", "test"], choices=["val", "test"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prior-tau", type=float, nargs="*", default=[],
                    help="also score the labels after dividing the probabilities by prior ** tau")
    ap.add_argument("--tta-working", type=int, nargs="*", default=[], metavar="N",
                    help="also average the probabilities of working meshes with these vertex counts")
    ap.add_argument("--update-model", action="store_true",
                    help="write the prior and the tau best on validation into meshgdl/pretrained/MODEL.json")
    ap.add_argument("--json", help="write all figures here")
    a = ap.parse_args(argv)
    if a.update_model and (not a.prior_tau or "val" not in a.splits):
        ap.error("--update-model needs --prior-tau values and the val split")

    import torch

    from meshgdl.data.datasets import get_dataset
    from meshgdl.data.labels import vertex_to_face_labels
    from meshgdl.io import Mesh
    from meshgdl.segmentation import load_segmenter, segment

    torch.set_num_threads(a.threads)
    env = measure.environment()
    seg = load_segmenter(a.model, device="cpu")
    tta = [load_segmenter(a.model, device="cpu", working_vertices=n) for n in a.tta_working]
    out = {"model": seg.path, "splits": {}}
    n_cls = seg.n_classes
    taus = [0.0] + [t for t in a.prior_tau if t != 0.0]
    prior = part_prior(a.data_root, n_cls) if a.prior_tau else np.ones(n_cls)
    if a.prior_tau:
        out["prior"] = prior.tolist()
        print("part prior (share of the training area): " + ", ".join(
            f"{c} {100 * p:.1f} %" for c, p in zip(seg.class_names, prior)))
    for split in a.splits:
        ds = get_dataset("human_seg", split, a.data_root,
                         ROOT / "tools" / "splits" / "human_seg" if split == "val" else None)
        recs = []
        for i in range(len(ds)):
            it = ds[i]
            m = Mesh.from_arrays(it.V, it.F)
            res = segment(m, seg)
            y = np.asarray(it.y)
            if m.n_vertices != len(y):
                raise SystemExit(f"{it.name}: cleaning changed the vertex count; the labels no longer match")
            true_f = vertex_to_face_labels(m.F, y)
            pred_f = vertex_to_face_labels(m.F, res.labels)
            band = boundary_band(m.F, y, max(BANDS))
            ok = true_f >= 0
            by_tau = {}
            p_tta = np.mean([segment(m, s_).probabilities for s_ in tta], axis=0) if tta else None
            for t in taus:
                for key, p in ((t, res.probabilities), (f"tta {t}", p_tta)):
                    if p is not None:
                        lab = np.argmax(p / prior ** t, axis=1)
                        by_tau[key] = ((vertex_to_face_labels(m.F, lab) == true_f) & ok).sum()
            wrong = (true_f != pred_f) & ok
            recs.append({"name": it.name, "true_f": true_f, "pred_f": pred_f, "band": band,
                         "acc": float(1 - wrong.sum() / ok.sum()), "far_err": float((wrong & (band > 1)).sum() / ok.sum()),
                         "right_by_tau": by_tau, "n_faces": int(ok.sum())})
            print(f"{split} {i + 1}/{len(ds)} {it.name}: per-face {100 * recs[-1]['acc']:.1f} %", file=sys.stderr)
        out["splits"][split] = split_report(f"{split} ({seg.path})", recs, list(seg.class_names))
        n_f = sum(r["n_faces"] for r in recs)
        acc = {t: float(sum(r["right_by_tau"][t] for r in recs) / n_f) for t in recs[0]["right_by_tau"]}
        out["splits"][split]["accuracy_by_tau"] = {str(t): v for t, v in acc.items() if not isinstance(t, str)}
        out["splits"][split]["tta_accuracy_by_tau"] = {t[4:]: v for t, v in acc.items() if isinstance(t, str)}
        if a.prior_tau:
            print(f"  {split}: per-face accuracy after the logit adjustment, by tau: "
                  + ", ".join(f"{t:g}: {100 * v:.2f} %" for t, v in acc.items() if not isinstance(t, str)))
        if tta:
            print(f"  {split}: with the probabilities averaged over working meshes of {a.tta_working} vertices, "
                  "by tau: " + ", ".join(f"{t[4:]}: {100 * v:.2f} %" for t, v in acc.items() if isinstance(t, str)))
    if a.update_model:
        from meshgdl.pretrained import PRETRAINED_DIR, update_description

        by_tau = out["splits"]["val"]["accuracy_by_tau"]
        best = max(by_tau, key=lambda t: (by_tau[t], -float(t)))  # ties: the smaller adjustment
        js = update_description(PRETRAINED_DIR / f"{a.model}.safetensors", {"label_prior": {
            "prior": prior.tolist(), "tau": float(best),
            "prior_from": "area share of each part over the training meshes (tools/splits/human_seg/train.txt)",
            "fitted_on": f"per-face accuracy of the {out['splits']['val']['meshes']} validation meshes "
                         "(tools/splits/human_seg/val.txt)",
            "val_accuracy_by_tau": by_tau,
            "command": measure.recipe_command("tools/bench/human_seg_errors.py", argv)}})
        print(f"wrote label_prior (tau {float(best):g}) into {js}")
    print(measure.environment_line(env))
    if a.json:
        measure.write_json(a.json, measure.record("tools/bench/human_seg_errors.py", out, a, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
