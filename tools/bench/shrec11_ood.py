#!/usr/bin/env python
"""Calibration, out-of-distribution scores and cross-collection accuracy of a SHREC'11
classifier (issue 21, classifier side), measured.

    python tools/bench/shrec11_ood.py                                   # the shipped shrec11
    python tools/bench/shrec11_ood.py --model WORK/run/best.safetensors --unknown centaur,dog1,glasses,lamp,octopus
    python tools/bench/shrec11_ood.py --json out.json --xmeshes /work/xmeshes

Every mesh goes the way ``meshgdl classify`` takes it (the working mesh of
:func:`meshgdl.classification.classify`, then the network: ``train_shrec11.classifier_outputs``);
a few meshes are also run through ``classify`` itself and must give the same
probabilities. Groups:

* ``val``: the split-16 validation meshes (``tools/splits/shrec11_split16/val.txt``, 2 per
  class the model knows) as they are and 4 augmented copies each
  (``train_shrec11.val_rows``): the temperature ``T`` and every score's threshold (at
  most 5 % of these rows flagged) are fitted here and nowhere else
  (``train_shrec11.calibration``: the calibrate step's own code);
* ``test``: the split-16 test meshes (4 per class) of the classes the model knows;
* ``unknown`` (``--unknown CLASSES``: classes the model was trained without, e.g.
  ``tools/train_shrec11.py --hold-out``): all 20 meshes (train/ and test/) of each; the
  AUROC of every score is ``unknown`` against ``test``, and against the intact ``val``
  meshes (the figure a choice of score may rest on: no test mesh in it);
* cross-collection (real meshes from other collections, never trained on; ``right``: the
  SHREC'11 classes that count as a right answer):

  - ``horse_gallop``: the 48 frames of ``animations/horse_gallop`` (Sumner & Popovic
    2004) -> horse;
  - ``crane``: the 88 frames of ``animations/crane`` (Vlasic et al. 2008, a captured man)
    -> man or woman (SHREC'11's two human-body classes: a body is right as either, as the
    classifier has no other class for a person; ``santa`` -- a clothed figure -- is not);
  - ``human_seg/<source>``: every mesh of ``human_seg`` by its source (FAUST, SCAPE, the
    MIT animations, Adobe Fuse characters, SHREC'07 humans) -> man or woman;
  - ``other/<file>`` under ``--xmeshes`` (skipped when absent; how to fetch them below):
    the Stanford bunny of the npm package ``bunny`` -> rabbit; from Debian's
    ``libcgal-demo`` data: ``armadillo`` -> armadillo, ``camel`` -> camel, ``hand`` -> hand,
    ``man``, ``homer`` -> man or woman, ``triceratops``, ``diplodocus`` -> dinosaur (SHREC's
    class is one dinosaur model; reported apart as ``related``);
  - ``animals``: CGAL's ``cow``, ``bull``, ``elk``, ``pig``, ``lion``, ``bear``,
    ``elephant``: animals with no SHREC'11 class, every answer wrong; only the warning can
    be right.

Per score (:mod:`meshgdl.ood`; higher = more unusual; ``max_prob``, ``energy``,
``entropy`` at ``T``; ``mahalanobis`` and ``knn`` of the pooled head features against the
model's intact training meshes, ``--no-features`` skips them): threshold, share flagged of
val / test / unknown / each cross-collection source, AUROC. Cross-collection table with
the shipped rule (``max_prob`` at ``T``, threshold from ``val``): right, wrong and
flagged, wrong and not flagged, right but flagged. Calibration: ECE (15 bins) and NLL at
``T = 1`` and ``T`` on val rows and test meshes, reliability bins of the test meshes.

Fetching the other meshes (outside the repository)::

    mkdir -p /work/xmeshes && cd /work/xmeshes
    npm pack bunny && tar xzf bunny-1.0.1.tgz                 # package/index.js: positions, cells
    apt-get download libcgal-demo && dpkg -x libcgal-demo_*.deb ex
    mkdir -p cgal && tar xzf ex/usr/share/doc/libcgal-dev/data.tar.gz -C cgal   # cgal/data/meshes/*.off

(``--xmeshes DIR`` reads ``DIR/package/index.js`` and ``DIR/cgal/data/meshes/``.)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402

HUMAN = ("man", "woman")
#: file under cgal/data/meshes/ -> (group, classes counted right)
CGAL = {"armadillo.off": ("other", ("armadillo",)), "camel.off": ("other", ("camel",)),
        "hand.off": ("other", ("hand",)), "man.off": ("other", HUMAN), "homer.off": ("other", HUMAN),
        "triceratops.off": ("related", ("dinosaur",)), "diplodocus.off": ("related", ("dinosaur",)),
        "cow.off": ("animals", ()), "bull.off": ("animals", ()), "elk.off": ("animals", ()),
        "pig.off": ("animals", ()), "lion.off": ("animals", ()), "bear.off": ("animals", ()),
        "elephant.off": ("animals", ())}
HUMAN_SEG_SOURCES = {"faust": "FAUST", "scape": "SCAPE", "MIT_animation": "MIT", "adobe": "Adobe",
                     "shrec": "SHREC07"}
SCORES = ("max_prob", "energy", "entropy", "mahalanobis", "knn")


def cross_collection(data_root: Path, xmeshes: Path | None, step: int = 1):
    """Yields ``(group, source, name, V, F, right classes)`` of every cross-collection mesh."""
    from meshgdl.io import load_mesh
    from meshgdl.io.animation import load_animation

    anim = data_root / "animations"
    for name, right in (("horse_gallop", ("horse",)), ("crane", HUMAN)):
        an = load_animation(anim / f"{name}.obj", anim / f"{name}.pc2")
        for t in range(0, an.n_frames, step):
            m = an.frame(t)
            yield "animation", name, f"{name}[{t}]", m.V, m.F, right
    hs = data_root / "human_seg" / "meshes"
    for p in sorted(hs.iterdir())[::step]:
        src = next((v for k, v in HUMAN_SEG_SOURCES.items() if p.name.startswith(k + "__")), "other")
        m = load_mesh(p)
        yield "human_seg", f"human_seg/{src}", p.stem, m.V, m.F, HUMAN
    if xmeshes is None:
        return
    js = xmeshes / "package" / "index.js"
    if js.is_file():
        s = js.read_text()
        V = np.array(json.loads(re.search(r"exports\.positions\s*=\s*(\[.*?\]\])", s, re.S).group(1)), np.float64)
        F = np.array(json.loads(re.search(r"exports\.cells\s*=\s*(\[.*?\]\])", s, re.S).group(1)), np.int64)
        from meshgdl.io import Mesh

        m = Mesh.from_arrays(V, F, name="bunny")
        yield "other", "other/bunny", "npm bunny", m.V, m.F, ("rabbit",)
    for fname, (group, right) in CGAL.items():
        p = xmeshes / "cgal" / "data" / "meshes" / fname
        if p.is_file():
            m = load_mesh(p)
            yield group, f"{group}/{p.stem}", p.stem, m.V, m.F, right


def shrec_meshes(classes: list[str], folders=("test",)):
    """``(class, entry, path)`` of the SHREC'11 meshes of ``classes`` in ``folders``."""
    from train_shrec11 import shrec_root

    root = shrec_root()
    for c in classes:
        for f in folders:
            for p in sorted((root / c / f).glob("*.obj")):
                yield c, f"{c}/{f}/{p.name}", p


def all_scores(z, f, T, ref) -> dict:
    from meshgdl.ood import logit_scores

    s = logit_scores(z, temperature=T)
    if ref is not None:
        s.update(ref.scores(f))
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="shrec11", help="shipped model name, checkpoint or run directory")
    ap.add_argument("--unknown", default="", help="comma-separated classes the model was trained without")
    ap.add_argument("--data-root", default=None, help="datasets folder (default: meshgdl's data root)")
    ap.add_argument("--xmeshes", default="/work/xmeshes", help="folder of the fetched other meshes (see above)")
    ap.add_argument("--no-features", action="store_true", help="skip the feature-distance scores")
    ap.add_argument("--step", type=int, default=1, help="every STEP-th frame / human_seg mesh (quick runs)")
    ap.add_argument("--json", help="write the per-mesh records and the tables here")
    ap.add_argument("--update-model", action="store_true",
                    help="write the cross-collection table (n, right, wrong flagged / not) into the model's JSON")
    a = ap.parse_args(argv)

    from meshgdl.classification import classify, load_classifier
    from meshgdl.data.datasets import default_data_root
    from meshgdl.io import Mesh, load_mesh
    from meshgdl.ood import fit_threshold
    from meshgdl.train.metrics import (calibration_bins, expected_calibration_error, roc_auc, softmax,
                                       temperature_nll)
    from meshgdl.ood import assess
    from train_shrec11 import calibration, classifier_outputs, train_reference, val_rows

    env0 = measure.environment()
    t_start = time.perf_counter()
    clf = load_classifier(a.model, device="cpu")
    names = list(clf.class_names)
    unknown = [c for c in a.unknown.split(",") if c]
    if set(unknown) & set(names):
        raise SystemExit(f"--unknown {sorted(set(unknown) & set(names))}: the model knows these classes")
    data_root = Path(a.data_root) if a.data_root else default_data_root()
    xm = Path(a.xmeshes) if a.xmeshes and Path(a.xmeshes).is_dir() else None

    # validation rows: temperature and thresholds
    (rows, t_val) = measure.timed(val_rows, clf)
    cal = calibration(rows)
    T = cal["temperature"]
    ref = None if a.no_features else train_reference(clf, unknown)

    records = []
    for r in rows:
        records.append({"group": "val", "source": "val" if r["copy"] == 0 else "val/copies", "name": r["name"],
                        "right": [r["class"]], "logits": r["logits"], "features": r["features"]})
    for c, e, p in shrec_meshes(names):
        m = load_mesh(p)
        z, f = classifier_outputs(clf, m.V, m.F)
        records.append({"group": "test", "source": "test", "name": e, "right": [c], "logits": z, "features": f})
    for c, e, p in shrec_meshes(unknown, ("train", "test")):
        m = load_mesh(p)
        z, f = classifier_outputs(clf, m.V, m.F)
        records.append({"group": "unknown", "source": f"unknown/{c}", "name": e, "right": [], "logits": z,
                        "features": f})
    t0 = time.perf_counter()
    n_xc = 0
    check = []
    for group, source, name, V, F, right in cross_collection(data_root, xm, a.step):
        z, f = classifier_outputs(clf, V, F)
        records.append({"group": group, "source": source, "name": name, "right": list(right), "logits": z,
                        "features": f})
        n_xc += 1
        if len(check) < 3 and group == "animation":  # the classify pipeline gives the same answer
            # classify applies the model's own temperature (1 without a calibration)
            pr = classify(Mesh.from_arrays(V, F), clf).probabilities
            check.append(float(np.abs(pr - softmax(z[None], clf.temperature)[0]).max()))
    t_xc = time.perf_counter() - t0
    if check and max(check) > 1e-6:
        raise SystemExit(f"classifier_outputs differs from classify by {max(check):.2e}")

    # per-mesh verdicts
    for r in records:
        p = softmax(r["logits"][None], T)[0]
        r["pred"] = names[int(np.argmax(p))]
        r["p_top"] = float(p.max())
        r["correct"] = r["pred"] in r["right"]
        r["scores"] = all_scores(r["logits"], r["features"], T, ref)
        # the verdict classify gives with the model's own calibration and rule (None: it has none)
        r["shipped_flagged"] = assess(softmax(r["logits"][None], clf.temperature)[0], rule=clf.ood_rule,
                                      features=r["features"])["in_distribution"] is False
    val_mask = [r["group"] == "val" for r in records]
    score_names = [s for s in SCORES if s in records[0]["scores"]]
    thresholds = {s: fit_threshold([r["scores"][s] for r, v in zip(records, val_mask) if v], 0.05)
                  for s in score_names}
    assert abs(thresholds["max_prob"] - cal["threshold"]) < 1e-12
    # the same rule with the threshold fitted on the intact validation meshes only (A)
    thr_a = fit_threshold([r["scores"]["max_prob"] for r in records if r["source"] == "val"], 0.05)
    for r in records:
        r["flagged"] = {s: bool(r["scores"][s] > thresholds[s]) for s in score_names}
        r["flagged_A"] = bool(r["scores"]["max_prob"] > thr_a)

    def of(pred):
        return [r for r in records if pred(r)]

    sources = list(dict.fromkeys(r["source"] for r in records))
    # OOD table
    ood = {}
    test_r, unk_r = of(lambda r: r["group"] == "test"), of(lambda r: r["group"] == "unknown")
    animals = of(lambda r: r["group"] == "animals")
    for s in score_names:
        row = {"threshold": thresholds[s]}
        if unk_r:
            row["auroc_unknown_vs_test"] = roc_auc([r["scores"][s] for r in test_r], [r["scores"][s] for r in unk_r])
            # the same against the intact validation meshes: the figure a choice may rest on
            row["auroc_unknown_vs_val"] = roc_auc([r["scores"][s] for r in records if r["source"] == "val"],
                                                  [r["scores"][s] for r in unk_r])
        if animals:
            row["auroc_animals_vs_test"] = roc_auc([r["scores"][s] for r in test_r], [r["scores"][s] for r in animals])
        row["flagged"] = {src: float(np.mean([r["flagged"][s] for r in records if r["source"] == src]))
                          for src in sources}
        ood[s] = row

    # every score at two thresholds: A from the intact val meshes, B from val + copies (the shipped kind)
    groups = {"test": "test", "unknown": "unknown/", "horse": "horse_gallop", "crane": "crane",
              "human_seg": "human_seg/", "other": ("other/", "related/"), "animals": "animals/"}
    rules = {}
    for sc in score_names:
        for tn, pool in (("A", ("val",)), ("B", ("val", "val/copies"))):
            t = fit_threshold([r["scores"][sc] for r in records if r["source"] in pool], 0.05)
            row = {"threshold": t}
            for g, pre in groups.items():
                rs = [r for r in records if r["source"] == pre or (pre[-1:] == "/" or isinstance(pre, tuple))
                      and r["source"].startswith(pre)]
                if not rs:
                    continue
                fl = np.array([r["scores"][sc] > t for r in rs])
                ok = np.array([r["correct"] for r in rs])
                row[g] = {"n": len(rs), "flagged": float(fl.mean()), "wrong_unflagged": int((~ok & ~fl).sum()),
                          "right_flagged": int((ok & fl).sum())}
            rules[f"{sc}@{tn}"] = row

    # cross-collection table with the model's own rule (what classify warns about)
    shipped_rule = (f"{clf.ood_rule.score} > {clf.ood_rule.threshold:.4f} (calibration T = {clf.temperature:.4f})"
                    if clf.ood_rule is not None else "none (the model has no ood entry)")
    xc = {}
    for src in sources:
        rs = of(lambda r: r["source"] == src)
        fl = np.array([r["shipped_flagged"] for r in rs])
        ok = np.array([r["correct"] for r in rs])
        preds: dict[str, int] = {}
        for r in rs:
            preds[r["pred"]] = preds.get(r["pred"], 0) + 1
        fa = np.array([r["flagged_A"] for r in rs])
        xc[src] = {"n": len(rs), "right": int(ok.sum()), "wrong_flagged": int((~ok & fl).sum()),
                   "wrong_unflagged": int((~ok & ~fl).sum()), "right_flagged": int((ok & fl).sum()),
                   "A_wrong_unflagged": int((~ok & ~fa).sum()), "A_right_flagged": int((ok & fa).sum()),
                   "predictions": dict(sorted(preds.items(), key=lambda kv: -kv[1]))}

    # calibration on test meshes (information only: T comes from val)
    yt = np.array([names.index(r["right"][0]) for r in test_r])
    Zt = np.stack([r["logits"] for r in test_r])
    calib_test = {}
    for tn, t in (("T=1", 1.0), ("T", T)):
        P = softmax(Zt, t)
        b = calibration_bins(P, yt, 15)
        calib_test[tn] = {"ece": expected_calibration_error(P, yt, 15), "nll": temperature_nll(Zt, yt, t),
                          "bins": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in b.items()}}

    horse = of(lambda r: r["source"] == "horse_gallop")
    res = {"model": str(clf.path), "class_names": names, "unknown_classes": unknown, "temperature": T,
           "threshold_A_intact_val": thr_a,
           "calibration_val": {k: v for k, v in cal.items() if k != "reliability"},
           "reliability_val": cal["reliability"], "calibration_test": calib_test, "ood": ood,
           "cross_collection": xc, "rules": rules,
           "horse_frames": [{"frame": r["name"], "pred": r["pred"], "p_top": r["p_top"],
                             "max_prob": r["scores"]["max_prob"], "flagged": r["shipped_flagged"]} for r in horse],
           "seconds": {"val_rows": t_val, "cross_collection": t_xc, "cross_collection_per_mesh": t_xc / max(n_xc, 1),
                       "total": time.perf_counter() - t_start},
           "classify_check_max_abs_diff": max(check) if check else None}

    # print
    print(f"model {clf.path} ({len(names)} classes); T = {T:.3f} (intact val only: "
          f"{cal['temperature_intact_only']:.3f}); val rows {cal['n_rows']}")
    print("\ncalibration (ECE %, NLL): val rows all / intact, test meshes")
    for tn, key in (("T=1", "before"), ("T", "after")):
        va, vi = cal[key]["all"], cal[key]["intact"]
        te = calib_test[tn]
        print(f"  {tn:4s} val all {100 * va['ece']:.2f} / {va['nll']:.3f}   val intact {100 * vi['ece']:.2f} / "
              f"{vi['nll']:.3f}   test {100 * te['ece']:.2f} / {te['nll']:.3f}")
    print("\nOOD scores: threshold (val, <= 5 % flagged), AUROC, % flagged per group")
    head = ["score", "thr", "AUROC unk (vs test)", "AUROC unk (vs val)", "AUROC animals"] + sources
    print("| " + " | ".join(head) + " |")
    for s in score_names:
        o = ood[s]
        cells = [s, f"{o['threshold']:.4g}", f"{o.get('auroc_unknown_vs_test', float('nan')):.3f}",
                 f"{o.get('auroc_unknown_vs_val', float('nan')):.3f}",
                 f"{o.get('auroc_animals_vs_test', float('nan')):.3f}"]
        cells += [f"{100 * o['flagged'][src]:.0f}" for src in sources]
        print("| " + " | ".join(cells) + " |")
    print(f"\ncross-collection (the model's rule: {shipped_rule}; A: max_prob > "
          f"{thr_a:.4f} from the intact val meshes): n, right, wrong+flagged, wrong unflagged, right+flagged, "
          f"A: wrong unflagged, right+flagged; predictions")
    for src, x in xc.items():
        top = ", ".join(f"{k} {v}" for k, v in list(x["predictions"].items())[:4])
        print(f"  {src:24s} {x['n']:4d} {x['right']:4d} {x['wrong_flagged']:4d} {x['wrong_unflagged']:4d} "
              f"{x['right_flagged']:4d}  A {x['A_wrong_unflagged']:4d} {x['A_right_flagged']:4d}   {top}")
    print("\nevery score at threshold A (intact val meshes, <= 5 % flagged) and B (val + copies): "
          "% flagged / wrong answers not flagged / right answers flagged")
    gs = [g for g in groups if g in next(iter(rules.values()))]
    print("| rule | thr | " + " | ".join(gs) + " |")
    for k, row in rules.items():
        cells = [f"{100 * row[g]['flagged']:.0f} / {row[g]['wrong_unflagged']} / {row[g]['right_flagged']}" for g in gs]
        print(f"| {k} | {row['threshold']:.4g} | " + " | ".join(cells) + " |")
    print(f"\n{res['seconds']['total']:.0f} s; {1000 * res['seconds']['cross_collection_per_mesh']:.0f} ms per "
          f"cross-collection mesh")
    if a.update_model:
        from meshgdl.pretrained import update_description

        keep = ("n", "right", "wrong_flagged", "wrong_unflagged", "right_flagged")
        update_description(clf.path, {"cross_collection": {
            "sources": {src: {k: x[k] for k in keep} for src, x in xc.items()
                        if not src.startswith(("val", "test", "unknown"))},
            "rule": shipped_rule,
            "right": "horse_gallop -> horse; crane, human_seg -> man or woman; other/related: the class named in "
                     "tools/bench/shrec11_ood.py; animals: no SHREC'11 class (every answer wrong)",
            "recipe": "python tools/bench/shrec11_ood.py --update-model (meshes of other collections: see its docstring)"}})
    if a.json:
        res["records"] = [{k: v for k, v in r.items() if k not in ("features",)} for r in records]
        measure.write_json(a.json, measure.record("tools/bench/shrec11_ood.py", res, a, env0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
