#!/usr/bin/env python
"""Calibration and out-of-distribution scores of a segmentation model (issue 21, parts 1
and 3), measured: which per-mesh score tells human bodies from other shapes.

    python tools/bench/ood.py                       # human_parts, all groups (~4 min, 1 core)
    python tools/bench/ood.py --json ood.json
    python tools/bench/ood.py --model figure_parts --update-model     # fit and ship its setting
    python tools/bench/ood.py --model rna_surface --sets original --test-step 8 --ood-per-class 2 \
        --horse-step 8 --max-reference 4 --update-model

In-distribution meshes per model: ``human_parts`` as below; ``figure_parts``: capsule
figures of body-proportion seeds it never saw (validation 200-210, test 100-103), the
human_seg test bodies reported apart; ``rna_surface``: the 55 training molecules
``tools/train_rna.py`` held out (validation) and every ``--test-step``-th test molecule,
every SHREC'11 class out of distribution. ``--update-model`` writes the shipped setting
(``--score`` at the temperature fitted on the validation meshes and their copies, mesh and
part thresholds) into ``meshgdl/pretrained/MODEL.json``.

Every mesh goes the way ``meshgdl segment`` takes it to the network: the working mesh
(:func:`meshgdl.data.working_mesh.working_mesh` with the model's ``working_vertices``,
``area`` and ``fill_holes``), then the network on each of its components as
``meshgdl segment`` runs it (:func:`meshgdl.ood.mesh_outputs`: per-vertex logits,
invariant features, vertex areas; components under 64 vertices left out).

Groups (data under ``--data-root``):

* ``reference``: human_seg training meshes (``tools/splits/human_seg/train.txt``, 348):
  the pooled features the distance scores measure against;
* ``val``: the 33 validation meshes (``tools/splits/human_seg/val.txt``, held out by
  subject), and ``val/<set>`` their copies transformed as the test meshes are: the
  temperature (``val`` only) and every score's threshold (at most 5 % flagged: A of
  ``val``, B of ``val`` and its copies) are fixed here, nowhere else;
* ``test/<set>``: in-distribution test meshes: the 18 human_seg test meshes, as they are
  and transformed by ``tools/bench/human_seg_robustness.py``'s ``transformed`` (rotated +
  scaled + moved, vertex noise, remeshed to 5k and 50k faces by another decimator, 12
  holes cut);
* out of distribution: ``shrec/<class>``: every mesh (train and test folders, 20 each) of
  the SHREC'11 classes that are not human bodies; ``horse``: the 48 frames of
  ``animations/horse_gallop``; ``procedural``: spheres, ellipsoids, tori, bumpy spheres
  (:mod:`meshgdl.data.synthetic`) and the non-human ``sample_meshes/``;
* reported apart, in neither side of the AUROC: ``shrec_human`` (``man``, ``woman``,
  ``santa``: human bodies from another collection) and ``shrec_humanoid`` (``alien``,
  ``armadillo``, ``gorilla``, ``centaur``: two-legged or half-human bodies).

Per score (:mod:`meshgdl.ood`; higher = more unusual; ``_T``: at the fitted temperature
``T``; ``@L``: pooled features of layer ``L`` against the training meshes'): AUROC of all
in-distribution test meshes against all out-of-distribution ones
(:func:`meshgdl.train.metrics.roc_auc`; also without the ``holes`` copies), the share of
test and out-of-distribution meshes flagged at thresholds A and B, and of each group.
``a+b``: two scores together, each centred on its median and divided by its interquartile
range over the validation meshes and their copies, summed.

The shipped score once more without the working vertices within ``K`` rings of a filled
hole's centre (:data:`FILL_RINGS`; the unsure rim of a closed hole left out): does the
flag rate of holed meshes come from their rims or from the whole body?

Calibration (per vertex, on the working mesh; ground truth carried to the working
vertices, and to the copies' new vertices, by closest surface point): the temperature
fitted on the validation meshes' logits (``T``; :func:`meshgdl.train.metrics.fit_temperature`)
and on them and their copies (``T_copies``), and the expected calibration error (15 bins)
and NLL at ``T = 1``, ``T`` and ``T_copies`` on validation and test meshes, with and
without their copies; the reliability bins of the 18 test meshes at ``T = 1`` and ``T``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tools"))

import measure  # noqa: E402
from human_seg_robustness import transformed  # noqa: E402

SPLITS = ROOT / "tools" / "splits" / "human_seg"
TEST_SETS = ("original", "rotated", "noise", "remesh_5k", "remesh_50k", "holes")
SHREC_HUMAN = ("man", "woman", "santa")
SHREC_HUMANOID = ("alien", "armadillo", "gorilla", "centaur")
#: The network's layers whose pooled features are scored: -1 = the invariant summary the
#: head sees; 6 = the end of the U-Net's coarsest level (human_parts: 3 levels x 2 blocks).
FEATURE_LAYERS = (-1, 6)
#: Pairs of scores also tried together (robust z-scores summed; see below).
COMBINED = (("max_prob", "mahalanobis@-1"), ("entropy", "mahalanobis@-1"))
#: Rings around filled holes' centres left out of the probability scores, tried (-1: none).
FILL_RINGS = (-1, 0, 1, 2, 3, 4, 6)


def procedural_meshes():
    """``[(name, V, F)]``: non-human shapes made here (and the non-human sample meshes)."""
    from meshgdl.data.synthetic import bumpy_sphere, icosphere, torus
    from meshgdl.io import load_mesh

    out = [("sphere", *icosphere(4))]
    for a, b in ((1.0, 0.5), (1.0, 0.25), (0.6, 0.3)):
        V, F = icosphere(4)
        out.append((f"ellipsoid_{a}_{b}", V * np.array([1.0, a, b]), F))
    for R, r in ((1.0, 0.35), (1.0, 0.15), (1.0, 0.6), (2.0, 0.2)):
        out.append((f"torus_{R}_{r}", *torus(64, 32, R, r)))
    for seed in range(6):
        out.append((f"bumpy_{seed}", *bumpy_sphere(4, 0.15 + 0.05 * (seed % 3), 8 + 4 * seed, seed)))
    for nm in ("bumpy_sphere.stl", "icosphere.obj", "torus.off"):
        m = load_mesh(ROOT / "sample_meshes" / nm)
        out.append((nm, m.V, m.F))
    return out


def shipped_setting(groups, T, rate, val_groups, test_groups, ood_groups, shown, score="max_prob",
                    fill_rings=None, quiet=False) -> dict:
    """What the pipeline ships (``score`` at the temperature ``T`` fitted on the
    validation meshes and their copies, per mesh and per part; ``fill_rings``: the
    vertices within that many rings of a filled hole's centre left out) measured on every
    group."""
    from meshgdl.ood import MIN_PART_SHARE, fit_threshold, logit_scores, part_scores
    from meshgdl.train.metrics import roc_auc, softmax

    def w(r):
        if fill_rings is None:
            return r["mass"]
        m = r["mass"] * (r["fill_ring"] > fill_rings)
        return m if m.sum() > 0 else r["mass"]

    def mesh_scores(gs):
        return np.array([logit_scores(r["logits"], w(r), T)[score] for g in gs for r in groups[g]])

    def parts(gs):
        return [sc for g in gs for r in groups[g]
                for _, share, sc in part_scores(softmax(r["logits"], T), w(r), score) if share >= MIN_PART_SHARE]

    thr = fit_threshold(mesh_scores(val_groups), rate)
    pthr = fit_threshold(parts(val_groups), rate)
    s_in, s_out = mesh_scores(test_groups), mesh_scores(ood_groups)
    out = {"score": score, "fill_rings": fill_rings, "temperature": T, "threshold": thr, "part_threshold": pthr,
           "val_flagged": float((mesh_scores(val_groups) > thr).mean()),
           "test_flagged": float((s_in > thr).mean()), "ood_flagged": float((s_out > thr).mean()),
           "auroc": roc_auc(s_in, s_out),
           "test_flagged_per_set": {g: float((mesh_scores([g]) > thr).mean()) for g in test_groups},
           "flagged_per_group": {k: float((mesh_scores(gs) > thr).mean()) for k, gs in shown.items()
                                 if all(g in groups for g in gs) and gs},
           "test_parts_flagged": float((np.array(parts(test_groups)) > pthr).mean()),
           "test_original_parts_flagged": float((np.array(parts(["test/original"])) > pthr).mean()),
           "ood_parts_flagged": float((np.array(parts(ood_groups)) > pthr).mean())}
    if quiet:
        return out
    print(f"\nshipped setting: {score} at T = {T:.3f}, threshold {thr:.4f} (parts: {pthr:.4f}): AUROC "
          f"{out['auroc']:.3f}; flagged: validation + copies {100 * out['val_flagged']:.1f} %, test + copies "
          f"{100 * out['test_flagged']:.1f} % (" + ", ".join(f"{g[5:]} {100 * v:.0f} %" for g, v in
                                                       out["test_flagged_per_set"].items())
          + f"), out of distribution {100 * out['ood_flagged']:.1f} % ("
          + ", ".join(f"{k} {100 * v:.0f} %" for k, v in out["flagged_per_group"].items())
          + f"); parts flagged: test {100 * out['test_original_parts_flagged']:.1f} % (with copies "
          f"{100 * out['test_parts_flagged']:.1f} %), out of distribution {100 * out['ood_parts_flagged']:.1f} %")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="human_parts")
    p.add_argument("--data-root", help="default $MESHGDL_DATA or ../shared/datasets")
    p.add_argument("--rate", type=float, default=0.05, help="share of validation meshes a threshold may flag")
    p.add_argument("--seed", type=int, default=0, help="of the transformed test copies")
    p.add_argument("--max-reference", type=int, help="only the first N training meshes as reference")
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--sets", nargs="+", default=list(TEST_SETS), choices=TEST_SETS,
                   help="the transformed copies of the validation and test meshes (original first)")
    p.add_argument("--test-step", type=int, default=1, help="every K-th test mesh (rna_surface: 15k-vertex meshes)")
    p.add_argument("--ood-per-class", type=int, default=None, help="only the first N meshes of each SHREC'11 class")
    p.add_argument("--horse-step", type=int, default=1, help="every K-th frame of the horse")
    p.add_argument("--score", default="max_prob", choices=["max_prob", "max_prob_median", "entropy"],
                   help="the score of the shipped setting (and of --update-model)")
    p.add_argument("--update-model", action="store_true",
                   help="write the calibration (T fitted on the validation meshes and their copies) and the "
                   "--score thresholds (mesh and part) into meshgdl/pretrained/MODEL.json")
    a = p.parse_args(argv)

    import torch

    from meshgdl.data.datasets import default_data_root, get_dataset
    from meshgdl.data.labels import nearest_surface_labels
    from meshgdl.data.working_mesh import working_mesh
    from meshgdl.geometry.topology import ring_distance
    from meshgdl.io import Mesh, load_animation, load_mesh
    from meshgdl.ood import FeatureReference, fit_threshold, logit_scores, mesh_outputs, pooled_features
    from meshgdl.segmentation import load_segmenter
    from meshgdl.train.metrics import (calibration_bins, expected_calibration_error, fit_temperature, roc_auc,
                                       softmax, temperature_nll)

    torch.set_num_threads(1)
    env0 = measure.environment()
    print(measure.environment_line(env0))
    root = Path(a.data_root) if a.data_root else Path(default_data_root())
    seg = load_segmenter(a.model)
    t_start = time.perf_counter()

    def run(V, F, y=None):
        m = Mesh.from_arrays(np.asarray(V, np.float64), np.asarray(F, np.int64))
        wm = working_mesh(m.V, m.F, seg.working_vertices, area=seg.area, fill=seg.fill_holes)
        z, feats, mass, idx = mesh_outputs(seg, wm.V, wm.F, layer=list(FEATURE_LAYERS))
        filled = np.arange(len(wm.V) - wm.n_filled, len(wm.V))
        rec = {"logits": z, "mass": mass, "pooled": [pooled_features(f, mass) for f in feats],
               "fill_ring": ring_distance(wm.F, len(wm.V), filled, max(FILL_RINGS) + 1)[idx]}
        if y is not None:  # ground truth on the working vertices: closest surface point of the input
            rec["y"] = nearest_surface_labels(wm.V[idx], wm.normalize(m.V), m.F, np.asarray(y))
        return rec

    groups: dict[str, list[dict]] = {}

    def copy_labels(s, Vt, it):
        """The ground truth on a transformed copy's vertices (closest surface point of the
        original where the vertices are new)."""
        return it.y if s in ("original", "rotated", "noise") else nearest_surface_labels(Vt, it.V, it.F, it.y)

    def add(group, name, V, F, y=None):
        r = run(V, F, y)
        r["name"] = name
        groups.setdefault(group, []).append(r)

    if a.model == "rna_surface":
        # the 55 training meshes tools/train_rna.py held out for validation (same seeded
        # draw), and the test meshes; every other training mesh may be a reference
        from meshgdl.data.datasets import RNASegmentation
        from train_rna import val_names

        rtrain, rtest = RNASegmentation(a.data_root, "train"), RNASegmentation(a.data_root, "test")
        vn = set(val_names(list(rtrain.names), 0.1, 0))
        ref_items = [rtrain[i] for i, n in enumerate(rtrain.names) if n not in vn][: a.max_reference or 10]
        val_items = [rtrain[rtrain.names.index(n)] for n in sorted(vn)]
        test_items = [rtest[i] for i in range(0, len(rtest), a.test_step)]
    elif a.model == "figure_parts":
        # capsule figures of body-proportion seeds the model never saw (training: 0-11,
        # its own held-out test: 100-103), posed as its training figures are
        from meshgdl.data.synthetic import capsule_figure, random_pose

        frng = np.random.default_rng(1000 + a.seed)

        def figures(bodies, per_body):
            for b in bodies:
                for j in range(per_body):
                    V, F, lab = capsule_figure(random_pose(frng, float(frng.uniform(0.4, 1.2))), resolution=0.025,
                                               seed=b)
                    yield SimpleNamespace(name=f"body{b}_{j}", V=V, F=F, y=lab)

        ref_items = list(figures(range(12), 4))[: a.max_reference]
        val_items = list(figures(range(200, 211), 3))  # 33, as many as human_seg's validation meshes
        test_items = list(figures(range(100, 104), 5))
    else:
        split = dict(split_dir=SPLITS)
        ref = get_dataset("human_seg", "train", a.data_root, **split)
        val = get_dataset("human_seg", "val", a.data_root, **split)
        test = get_dataset("human_seg", "test", a.data_root)
        ref_items = [ref[i] for i in range(len(ref) if a.max_reference is None else min(a.max_reference, len(ref)))]
        val_items = [val[i] for i in range(len(val))]
        test_items = [test[i] for i in range(len(test))]
    for it in ref_items:
        add("reference", it.name, it.V, it.F)
    print(f"reference: {len(ref_items)} meshes ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)
    rng = np.random.default_rng(a.seed)
    for it in val_items:
        for s in a.sets:
            Vt, Ft, _ = transformed(s, it.V, it.F, rng)
            add("val" if s == "original" else f"val/{s}", it.name, Vt, Ft, copy_labels(s, Vt, it))
    for it in test_items:
        for s in a.sets:
            Vt, Ft, _ = transformed(s, it.V, it.F, rng)
            add(f"test/{s}", it.name, Vt, Ft, copy_labels(s, Vt, it))
    if a.model == "figure_parts":  # real human bodies: what the model is for, reported apart
        test = get_dataset("human_seg", "test", a.data_root)
        for i in range(len(test)):
            it = test[i]
            add("human_seg", it.name, it.V, it.F)
    print(f"val + test ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)
    shrec = root / "shrec_11_meshcnn_split16" / "shrec_16"
    for cdir in sorted(d for d in shrec.iterdir() if d.is_dir()):
        g = ("shrec_human" if cdir.name in SHREC_HUMAN else "shrec_humanoid" if cdir.name in SHREC_HUMANOID
             else f"shrec/{cdir.name}") if a.model != "rna_surface" else f"shrec/{cdir.name}"
        for f in sorted(cdir.glob("*/*.obj"))[: a.ood_per_class]:
            m = load_mesh(f)
            add(g, f"{cdir.name}/{f.stem}", m.V, m.F)
    anim = load_animation(root / "animations" / "horse_gallop.obj", root / "animations" / "horse_gallop.pc2")
    for t in range(0, anim.n_frames, a.horse_step):
        fr = anim.frame(t)
        add("horse", f"frame_{t}", fr.V, fr.F)
    for nm, V, F in procedural_meshes():
        add("procedural", nm, V, F)
    print(f"all groups ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)

    # ---- calibration: T on the validation meshes' vertices only
    def stack(gs, key):
        return np.concatenate([r[key] for g in gs for r in groups[g]])

    val_all = ["val"] + [g for g in groups if g.startswith("val/")]
    test_all = [g for g in groups if g.startswith("test/")]
    zv, yv = stack(["val"], "logits"), stack(["val"], "y")
    zt, yt = stack(["test/original"], "logits"), stack(["test/original"], "y")
    T = fit_temperature(zv, yv)  # the validation meshes as they are
    T_copies = fit_temperature(stack(val_all, "logits"), stack(val_all, "y"))  # and their copies
    calib = {"temperature": T, "temperature_with_copies": T_copies, "n_val_vertices": int((yv >= 0).sum()),
             "n_test_vertices": int((yt >= 0).sum()), "rows": {}}
    print(f"\ntemperature fitted on the {len(groups['val'])} validation meshes' {calib['n_val_vertices']} vertices: "
          f"T = {T:.3f}; on them and their transformed copies: T = {T_copies:.3f}")
    print(f"{'meshes':<22} {'vertices':>8} {'acc':>6} {'ECE T=1':>8} {'ECE T':>7} {'ECE T_copies':>12} "
          f"{'NLL T=1':>8} {'NLL T':>6} {'NLL T_copies':>12}")
    for nm, gs in (("val", ["val"]), ("val + copies", val_all), ("test", ["test/original"]),
                   ("test + copies", test_all)):
        z, y = stack(gs, "logits"), stack(gs, "y")
        row = {"vertices": int((y >= 0).sum()), "accuracy": float((z.argmax(1) == y)[y >= 0].mean())}
        for tag, tt in (("1", 1.0), ("T", T), ("T_copies", T_copies)):
            row[f"ece_{tag}"] = expected_calibration_error(softmax(z, tt), y)
            row[f"nll_{tag}"] = temperature_nll(z, y, tt)
        calib["rows"][nm] = row
        print(f"{nm:<22} {row['vertices']:8d} {100 * row['accuracy']:5.1f}% {100 * row['ece_1']:7.2f}% "
              f"{100 * row['ece_T']:6.2f}% {100 * row['ece_T_copies']:11.2f}% {row['nll_1']:8.3f} {row['nll_T']:6.3f} "
              f"{row['nll_T_copies']:12.3f}")
    bins = {tag: calibration_bins(softmax(zt, tt), yt) for tag, tt in (("before", 1.0), ("after", T))}
    print(f"\nreliability, {len(groups['test/original'])} test meshes (per vertex): bin, count, "
          "confidence / accuracy with T = 1 | T")
    for b in range(len(bins["before"]["count"])):
        cb, ca = bins["before"], bins["after"]
        if cb["count"][b] or ca["count"][b]:
            print(f"  ({cb['edges'][b]:.2f}, {cb['edges'][b + 1]:.2f}]  {cb['count'][b]:6d} "
                  f"{cb['confidence'][b]:.3f} / {cb['accuracy'][b]:.3f}  |  {ca['count'][b]:6d} "
                  f"{ca['confidence'][b]:.3f} / {ca['accuracy'][b]:.3f}")

    # ---- per-mesh scores
    refs = [FeatureReference.fit(np.stack([r["pooled"][j] for r in groups["reference"]]))
            for j in range(len(FEATURE_LAYERS))]
    for g, rs in groups.items():
        for r in rs:
            sc = {}
            for tag, tt in (("", 1.0), ("_T", T)):
                for k, v in logit_scores(r["logits"], r["mass"], tt).items():
                    sc[k + tag] = v
            for j, l in enumerate(FEATURE_LAYERS):
                for k, v in refs[j].scores(r["pooled"][j]).items():
                    sc[f"{k}@{l}"] = v
            r["scores"] = sc
    # a pair: the sum of both scores, each centred and scaled by its median and
    # interquartile range over the validation meshes and their copies
    val_recs = [r for g in groups if g == "val" or g.startswith("val/") for r in groups[g]]
    for a_, b_ in COMBINED:
        st = []
        for k in (a_, b_):
            x = np.array([r["scores"][k] for r in val_recs])
            q1, q2, q3 = np.quantile(x, [0.25, 0.5, 0.75])
            st.append((k, q2, q3 - q1))
        for rs in groups.values():
            for r in rs:
                r["scores"][f"{a_}+{b_}"] = sum((r["scores"][k] - m) / iqr for k, m, iqr in st)
    names = list(groups["val"][0]["scores"])
    test_groups = [g for g in groups if g.startswith("test/")]
    ood_groups = [g for g in groups if g.startswith("shrec/")] + ["horse", "procedural"]
    shown = ["shrec (non-human)", "horse", "procedural", "shrec_human", "shrec_humanoid"] + \
        (["human_seg"] if "human_seg" in groups else [])
    shown_groups = [[g for g in groups if g.startswith("shrec/")], ["horse"], ["procedural"], ["shrec_human"],
                    ["shrec_humanoid"], ["human_seg"]]

    def vals(gs, nm):
        return np.array([r["scores"][nm] for g in gs if g in groups for r in groups[g]])

    val_groups = ["val"] + [g for g in groups if g.startswith("val/")]
    table = {}
    for nm in names:
        thr0 = fit_threshold(vals(["val"], nm), a.rate)  # the 33 validation meshes as they are
        thr = fit_threshold(vals(val_groups, nm), a.rate)  # and their transformed copies
        s_in, s_out = vals(test_groups, nm), vals(ood_groups, nm)
        row = {"threshold": thr, "auroc": roc_auc(s_in, s_out),
               "auroc_per_set": {g: roc_auc(vals([g], nm), s_out) for g in test_groups},
               "threshold_val_originals": thr0, "test_flagged_val_originals": float((s_in > thr0).mean()),
               "ood_flagged_val_originals": float((s_out > thr0).mean()),
               "val_flagged": float((vals(val_groups, nm) > thr).mean()),
               "test_flagged": float((s_in > thr).mean()),
               "test_flagged_per_set": {g: float((vals([g], nm) > thr).mean()) for g in test_groups},
               "ood_flagged": float((s_out > thr).mean())}
        for label, gs in zip(shown, shown_groups):
            row["flagged/" + label] = float((vals(gs, nm) > thr).mean())
        row["per_class_flagged"] = {g: float((vals([g], nm) > thr).mean()) for g in ood_groups}
        table[nm] = row

    n_in, n_out = len(vals(test_groups, names[0])), len(vals(ood_groups, names[0]))
    n_val = len(vals(val_groups, names[0]))
    print(f"\nper-mesh scores: thresholds flag <= {100 * a.rate:.0f} % of {len(groups['val'])} validation meshes "
          f"(A) or of them and their copies, {n_val} (B); {n_in} in-distribution test meshes ({', '.join(a.sets)}), "
          f"{n_out} out-of-distribution meshes; T = {T:.3f} for the _T scores")
    print(f"{'score':<27} {'AUROC':>6} {'AUROC-holes':>11} {'A: test':>7} {'A: OOD':>6} {'B: val':>6} {'B: test':>7} "
          f"{'B: OOD':>6}  " + " ".join(f"{s[:14]:>14}" for s in shown))
    for nm in names:
        r = table[nm]
        s_in = vals([g for g in test_groups if g != "test/holes"], nm)
        r["auroc_without_holes"] = roc_auc(s_in, vals(ood_groups, nm))
        print(f"{nm:<27} {r['auroc']:6.3f} {r['auroc_without_holes']:11.3f} {100 * r['test_flagged_val_originals']:6.1f}% "
              f"{100 * r['ood_flagged_val_originals']:5.1f}% {100 * r['val_flagged']:5.1f}% {100 * r['test_flagged']:6.1f}% "
              f"{100 * r['ood_flagged']:5.1f}%  " + " ".join(f"{100 * r['flagged/' + s]:13.1f}%" for s in shown))
    print("\ntest meshes flagged per set (threshold B): " + "; ".join(
        f"{nm}: " + ", ".join(f"{g[5:]} {100 * v:.0f}%" for g, v in table[nm]["test_flagged_per_set"].items())
        for nm in names))
    print("\nout-of-distribution meshes flagged per group:")
    for g in ood_groups:
        print(f"  {g:<22} n={len(groups[g]):3d}  " + " ".join(
            f"{nm} {100 * table[nm]['per_class_flagged'][g]:.0f}%" for nm in names))
    print(f"\n{a.score} at T = {T_copies:.3f} without the vertices within K rings of a filled hole's centre "
          "(threshold B): K, AUROC, flagged: validation + copies, test + copies (per set), out of distribution")
    ring_rows = {}
    for K in FILL_RINGS:
        r = shipped_setting(groups, T_copies, a.rate, val_groups, test_groups, ood_groups,
                            dict(zip(shown, shown_groups)), a.score, None if K < 0 else K, quiet=True)
        ring_rows[str(K)] = r
        print(f"  {'none' if K < 0 else K:>4}  {r['auroc']:.3f}  {100 * r['val_flagged']:5.1f} %  "
              f"{100 * r['test_flagged']:5.1f} % (" + ", ".join(f"{g[5:]} {100 * v:.0f}" for g, v in
                                                     r["test_flagged_per_set"].items())
              + f")  {100 * r['ood_flagged']:5.1f} % (" + ", ".join(f"{k} {100 * v:.0f}" for k, v in
                                                          r["flagged_per_group"].items()) + ")")
    shipped = shipped_setting(groups, T_copies, a.rate, val_groups, test_groups, ood_groups,
                              dict(zip(shown, shown_groups)), a.score)
    print(f"\n{time.perf_counter() - t_start:.0f} s; load average {measure.load_average()}")
    if a.update_model:
        from meshgdl.pretrained import PRETRAINED_DIR, update_description

        cmd = measure.recipe_command("tools/bench/ood.py", argv)
        val_text = (f"the {len(groups['val'])} validation meshes and their {len(val_recs) - len(groups['val'])} "
                    f"transformed copies ({', '.join(a.sets[1:])}; tools/bench/ood.py)" if len(a.sets) > 1 else
                    f"the {len(groups['val'])} validation meshes (tools/bench/ood.py --sets original)")
        if a.model == "rna_surface":
            val_text += ("; RNA: the 55 training meshes tools/train_rna.py held out (a random 10 % of the same "
                         "collection as the test meshes)")
        rows = calib["rows"]
        js = update_description(PRETRAINED_DIR / f"{a.model}.safetensors", {
            "calibration": {"temperature": T_copies, "method": "temperature scaling (per vertex, working mesh)",
                            "fitted_on": val_text, "n": int(rows["val + copies"]["vertices"]),
                            "ece_before": rows["val + copies"]["ece_1"], "ece_after": rows["val + copies"]["ece_T_copies"],
                            "nll_before": rows["val + copies"]["nll_1"], "nll_after": rows["val + copies"]["nll_T_copies"],
                            "test_ece_before": rows["test + copies"]["ece_1"],
                            "test_ece_after": rows["test + copies"]["ece_T_copies"], "command": cmd},
            "ood": {"score": a.score, "threshold": shipped["threshold"], "part_threshold": shipped["part_threshold"],
                    "rate": a.rate, "fitted_on": val_text, "val_flagged": shipped["val_flagged"],
                    "test_flagged": shipped["test_flagged"], "auroc": shipped["auroc"],
                    "ood_flagged": shipped["ood_flagged"], "command": cmd},
        })
        print(f"wrote calibration (T = {T_copies:.3f}) and OOD threshold {shipped['threshold']:.4f} "
              f"(parts {shipped['part_threshold']:.4f}) into {js}")
    if a.json:
        per_mesh = {g: [{"name": r["name"], **r["scores"]} for r in rs] for g, rs in groups.items()}
        out = {"calibration": calib, "reliability_test": bins, "scores": table, "shipped": shipped,
               "fill_rings": ring_rows,
               "per_mesh": per_mesh,
               "groups": {g: len(rs) for g, rs in groups.items()}}
        measure.write_json(a.json, measure.record("ood.py", out, vars(a), env0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
