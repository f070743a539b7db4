#!/usr/bin/env python
"""The exact recipe behind the shipped classifier ``meshgdl/pretrained/shrec11.safetensors``.

What it is trained on: the meshes of the ``train/`` folders of SHREC'11 as simplified
by MeshCNN (``shrec_11_meshcnn_split16/shrec_16``, split 16: 16 per class, 30 classes,
~250 vertices each) and copies of them, nothing else. With ``--val-split`` (the shipped
recipe) 2 of the 16 per class (``tools/splits/shrec11_split16/val.txt``) are held out
for choosing the epoch and for the calibrate step. The test folders (4 per class) are
only used to measure it. The shipped model::

    python tools/train_shrec11.py WORK --variants 5 --augment --val-split --seed 0 --epochs 20
    python tools/train_shrec11.py WORK --steps calibrate          # temperature + OOD threshold
    python tools/train_shrec11.py WORK --steps evaluate

Steps (each skipped when its output exists, so an interrupted run continues):

1. ``data``: ``WORK/data/<class>/{train,val,test}/`` -- every train mesh as it is, plus
   ``--variants`` copies of it (:func:`augmented_copy`). The first copy is re-triangulated
   the way ``meshgdl classify`` sees a user's mesh: midpoint-subdivided once or twice
   (the surface does not move), re-triangulated by ``fast_simplification`` to 0.9-6x
   the original faces, then :func:`meshgdl.data.working_mesh.working_mesh` at 250 +- 15 %
   vertices (meshgdl's own decimation when finer). Without such copies the model knew
   only MeshCNN's triangulations: a model trained on the files alone classified 119/120
   test files but only 103/120 of the remeshed-and-rotated copies of
   ``tools/bench/shrec11_robustness.py``. With ``--augment`` the other copies also stand
   for the differences between collections (issue 21: the shipped model called a
   galloping horse from another collection a camel, a captured man a dinosaur), each
   drawn independently (:data:`AUGMENT`): anisotropic scaling along random axes (up to
   1.6x between two axes; :func:`meshgdl.data.transforms.anisotropic_scaling`), a smooth
   deformation field (strain 0.05-0.25; ``smooth_deformation``), a twist and bend about a
   random axis (up to 60 degrees each; ``bend_twist``) -- all applied to the finer copy
   before it is re-triangulated -- and 1-2 holes of 1-2 working-mesh edges
   (``cut_holes``), at a working resolution of 150-325 vertices (what ``classify`` uses
   untouched, and a little beyond). ``--hold-out CLASSES`` leaves classes out entirely
   (the out-of-distribution benchmark ``tools/bench/shrec11_ood.py``). Validation and test
   meshes are written unchanged, never used for training.
2. ``train``: ``python -m meshgdl train --dataset WORK/data`` with the GEM-CNN
   configuration of the benchmark (``tools/bench/shrec11.py``, run ``s16_gem``); with
   ``--val-split`` validated on the ``val/`` meshes and the epoch of lowest validation
   loss kept (validation accuracy saturates), else the last epoch.
3. ``export``: weights + config only (:func:`train_pretrained.export_pretrained`) ->
   ``--export`` ``.safetensors`` + ``.json`` (class names, training data, validation
   split, augmentations, licence, working resolution, recipe).
4. ``evaluate``: the 120 test meshes through ``meshgdl eval`` (the training
   pipeline) and through :func:`meshgdl.classification.classify` (what ``meshgdl
   classify`` does: working mesh, unit area); both accuracies go into the JSON's
   ``metrics``. ``tools/bench/shrec11_robustness.py --update-model`` adds the
   remeshed-and-rotated accuracy.
5. ``calibrate``: the validation meshes as they are and 4 augmented copies each
   (:func:`val_rows`, 300 rows) through the classify pipeline: the temperature that
   minimises their NLL and the ``max_prob`` threshold (on the calibrated probabilities)
   that flags at most 5 % of them go into the JSON as ``"calibration"`` and ``"ood"``
   (:func:`calibrate`; ``--auroc`` records the held-out-class AUROC measured by
   ``tools/bench/shrec11_ood.py``).

Input scale: ``classify`` scales every mesh to unit area (working mesh) while
training sees the files' own scale (areas 0.4 to 5.3); the model has
``unit_area=true``, so it scales every mesh to unit area itself and both see the
same features. The files' resolution (250-252 vertices) is the working resolution
(``working_vertices=250``), so SHREC meshes are used as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tools" / "bench"))

from meshgdl.atomic import write_text_atomic  # noqa: E402

WORKING_VERTICES = 250
SPLIT16 = ROOT / "tools" / "splits" / "shrec11_split16"
TRAINED_ON = ("SHREC'11 non-rigid shapes (Lian et al. 2011) as simplified by MeshCNN to ~250 vertices: "
              "the 480 meshes of the shrec_16 train/ folders (split 16, 16 per class, 30 classes); "
              "the 120 test/ meshes were used only to measure it")
TRAINED_ON_VAL = ("SHREC'11 non-rigid shapes (Lian et al. 2011) as simplified by MeshCNN to ~250 vertices: "
                  "420 meshes of the shrec_16 train/ folders (split 16, 14 per class, 30 classes) and augmented "
                  "copies of them (re-triangulated at 150-325 vertices, anisotropically scaled, deformed, bent and "
                  "twisted, holed); 60 more train/ meshes (2 per class, tools/splits/shrec11_split16/val.txt) chose "
                  "the epoch and fit the calibration; the 120 test/ meshes were used only to measure it")
LICENCE = ("trained on the SHREC 2011 non-rigid shape collection (MeshCNN's shrec_16 download): research use "
           "of the SHREC'11 data -- cite Lian et al., SHREC'11 track: shape retrieval on non-rigid 3D watertight "
           "meshes, 3DOR 2011, and MeshCNN (Hanocka et al. 2019); the weights are under the project licence (MIT)")


def shrec_root() -> Path:
    from meshgdl.data.datasets import default_data_root

    return default_data_root() / "shrec_11_meshcnn_split16" / "shrec_16"


def retriangulate(V: np.ndarray, F: np.ndarray, rng: np.random.Generator, deform=None, holes: int = 0,
                  n_range: tuple[float, float] = (0.85, 1.15)):
    """Another triangulation of the surface (V, F) at about the working resolution
    (see step 1 of the module docstring) -> :class:`meshgdl.data.working_mesh.WorkingMesh`.
    ``deform``: a field ``X -> X'`` applied to the subdivided copy (smooth, since the
    copy is finer); ``holes``: that many holes of radius 1-2 working-mesh edges cut
    into the re-triangulated copy before it is brought to the working resolution;
    ``n_range``: the working resolution drawn from ``n_range * WORKING_VERTICES``."""
    import fast_simplification

    from meshgdl.data.transforms import cut_holes
    from meshgdl.data.working_mesh import working_mesh
    from meshgdl.geometry.remesh import midpoint_subdivide
    from meshgdl.io import Mesh

    ratio = rng.uniform(0.9, 6.0)
    Vs, Fs = V, F
    for _ in range(1 if ratio < 3.0 else 2):  # 4x or 16x the faces
        Vs, Fs = midpoint_subdivide(Vs, Fs)
    if deform is not None:
        Vs = deform(Vs)
    keep = ratio * len(F)
    V2, F2 = fast_simplification.simplify(Vs, Fs, target_reduction=1.0 - keep / len(Fs))
    V2, F2 = np.asarray(V2, np.float64), np.asarray(F2, np.int64)
    n_target = int(round(WORKING_VERTICES * rng.uniform(*n_range)))
    if holes:
        # radius in working-mesh edges: the copy has ~len(F2)/2 vertices, the working mesh n_target
        r = rng.uniform(1.0, 2.0) * np.sqrt(len(F2) / (2.0 * n_target))
        V2, F2 = cut_holes(V2, F2, rng, holes, r)
        m = Mesh.from_arrays(V2, F2)
        V2, F2 = m.V, m.F
    return working_mesh(V2, F2, n_target)


#: The copies' augmentations beyond re-triangulation (``--augment``): probability that a
#: copy (other than the first of each mesh, always plain) gets each, and its size.
AUGMENT = {
    "aniso": (0.6, 1.6),     # anisotropic scaling, largest ratio of two axes' factors
    "deform": (0.5, 0.25),   # smooth deformation field, strain up to this (uniform from 0.05)
    "bend": (0.5, np.pi / 3),  # twist and bend, each up to this many radians
    "holes": (0.3, 2),       # 1..2 holes
}
#: Working resolutions of the augmented copies (times WORKING_VERTICES): what classify
#: uses untouched ([0.6, 1.25] x) and a little beyond.
AUGMENT_N_RANGE = (0.6, 1.3)


def augmented_copy(V: np.ndarray, F: np.ndarray, rng: np.random.Generator, plain: bool = False):
    """One training copy of (V, F) -> ``(WorkingMesh, names of the augmentations used)``:
    ``plain``: re-triangulated only (the shipped recipe's copies); otherwise each of
    :data:`AUGMENT` is drawn with its probability (anisotropic scaling, smooth
    deformation, twist/bend compose into one field in that order), then re-triangulated at a
    working resolution in :data:`AUGMENT_N_RANGE`, holes cut if drawn."""
    from meshgdl.data.transforms import anisotropic_scaling, bend_twist, smooth_deformation

    if plain:
        return retriangulate(V, F, rng), []
    used, fields = [], []
    if rng.uniform() < AUGMENT["aniso"][0]:
        fields.append(anisotropic_scaling(V, rng, AUGMENT["aniso"][1]))
        used.append("aniso")
    if rng.uniform() < AUGMENT["deform"][0]:
        fields.append(smooth_deformation(V, rng, rng.uniform(0.05, AUGMENT["deform"][1])))
        used.append("deform")
    if rng.uniform() < AUGMENT["bend"][0]:
        fields.append(bend_twist(V, rng, AUGMENT["bend"][1], AUGMENT["bend"][1]))
        used.append("bend")
    holes = int(rng.integers(1, AUGMENT["holes"][1] + 1)) if rng.uniform() < AUGMENT["holes"][0] else 0
    if holes:
        used.append("holes")

    def field(X):
        for f in fields:
            X = f(X)
        return X
    return retriangulate(V, F, rng, field if fields else None, holes, AUGMENT_N_RANGE), used


def split_files(val_split: bool) -> dict[str, set[str]]:
    """``{"train": ..., "val": ...}``: entries ``class/train/file.obj`` of the training
    meshes and of the validation meshes (``tools/splits/shrec11_split16``; empty
    without ``val_split``)."""
    from meshgdl.data.datasets import read_list_file

    if not val_split:
        return {"train": None, "val": set()}
    return {s: set(read_list_file(SPLIT16 / f"{s}.txt")) for s in ("train", "val")}


def make_data(work: Path, variants: int, seed: int, augment: bool = False, val_split: bool = False,
              hold_out: list[str] = ()) -> dict:
    from meshgdl.io import load_mesh, save_mesh

    src = shrec_root()
    out = work / "data"
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    methods: dict[str, int] = {}
    used_counts: dict[str, int] = {}
    nv = []
    n_train = 0
    splits = split_files(val_split)
    classes = sorted(x for x in src.iterdir() if x.is_dir())
    unknown = set(hold_out) - {c.name for c in classes}
    if unknown:
        raise SystemExit(f"--hold-out: no such class {sorted(unknown)}")
    for c in classes:
        if c.name in hold_out:
            continue
        for split in ("train", "test"):
            (out / c.name / split).mkdir(parents=True, exist_ok=True)
            for p in sorted((c / split).glob("*.obj")):
                m = load_mesh(p)
                entry = f"{c.name}/{split}/{p.name}"
                dest = split
                if split == "train" and entry in splits["val"]:
                    dest = "val"
                    (out / c.name / "val").mkdir(parents=True, exist_ok=True)
                save_mesh(out / c.name / dest / p.name, m.V, m.F)
                if dest != "train":
                    continue
                n_train += 1
                for k in range(variants):
                    wm, used = augmented_copy(m.V, m.F, rng, plain=not augment or k == 0)
                    save_mesh(out / c.name / split / f"{p.stem}_r{k}.obj", wm.V, wm.F)
                    methods[wm.method] = methods.get(wm.method, 0) + 1
                    for u in used:
                        used_counts[u] = used_counts.get(u, 0) + 1
                    nv.append(len(wm.V))
        print(f"data: {c.name} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    nv = np.asarray(nv)
    info = {"source": str(src), "n_train_meshes": n_train, "variants_per_mesh": variants, "seed": seed,
            "val_split": str(SPLIT16.relative_to(ROOT) / "val.txt") if val_split else None,
            "n_val_meshes": len(splits["val"] - {v for v in splits["val"] if v.split("/")[0] in hold_out}),
            "held_out_classes": sorted(hold_out),
            "augment": ({"first_copy": "plain re-triangulation", "others": {k: list(v) for k, v in AUGMENT.items()},
                         "working_vertices_range": list(AUGMENT_N_RANGE), "copies_with": used_counts}
                        if augment else None),
            "methods": methods, "variant_vertices": {"min": int(nv.min()), "mean": float(nv.mean()),
                                                     "max": int(nv.max())} if len(nv) else None,
            "seconds": time.perf_counter() - t0}
    write_text_atomic(out / "recipe.json", json.dumps(info, indent=1))
    return info


def train_options(data: Path, epochs: int, val_split: bool = False) -> list[str]:
    """The benchmark's GEM options on ``data``: with ``val_split``, validation on the
    ``val/`` folders (the split-16 validation meshes) and the epoch of lowest validation
    loss kept (validation accuracy saturates); else all train meshes, no validation."""
    import shrec11

    common = list(shrec11.COMMON)
    for opt in ("--val-split", "--select-metric", "--epochs", "--dataset"):
        i = common.index(opt)
        del common[i:i + 2]
    val = ["--val-split", "val", "--select-metric", "loss"] if val_split else ["--val-fraction", "0"]
    return (["--dataset", str(data), "--epochs", str(epochs)] + common + shrec11.FEATURES + shrec11.GEM["gem"]
            + val)


def run_training(work: Path, cache: str, epochs: int, val_split: bool = False) -> None:
    from meshgdl.train.loop import run_finished

    rd = work / "run"
    if run_finished(rd):
        return
    cmd = [sys.executable, "-m", "meshgdl", "train", "--out", str(rd), "--cache-dir", cache]
    cmd += ["--resume"] if (rd / "last.safetensors").exists() else train_options(work / "data", epochs, val_split)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    print("train: OMP_NUM_THREADS=1 " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def recipe_command(data: dict, epochs: int) -> str:
    """The ``tools/train_shrec11.py`` command line that made ``WORK`` (from its recipe.json)."""
    cmd = f"python tools/train_shrec11.py WORK --variants {data['variants_per_mesh']} --seed {data['seed']} --epochs {epochs}"
    if data.get("augment"):
        cmd += " --augment"
    if data.get("val_split"):
        cmd += " --val-split"
    if data.get("held_out_classes"):
        cmd += " --hold-out " + ",".join(data["held_out_classes"])
    return cmd


def export(work: Path, out: str, epochs: int) -> Path:
    from train_pretrained import export_pretrained

    cfg = json.loads((work / "run" / "config.json").read_text())
    names = json.loads((work / "run" / "dataset.json").read_text()).get("class_names")
    data = json.loads((work / "data" / "recipe.json").read_text())
    val_split = bool(data.get("val_split"))
    ck = work / "run" / ("best.safetensors" if val_split else "last.safetensors")
    if not names:
        from meshgdl.train.checkpoint import load_checkpoint

        names = load_checkpoint(ck).extra["class_names"]
    training = {
        "recipe": recipe_command(data, epochs),
        "command": "OMP_NUM_THREADS=1 python -m meshgdl train --out WORK/run " + " ".join(
            repr(x) if " " in x or "[" in x else x for x in train_options(Path("WORK/data"), epochs, val_split)),
        "selection": ("the epoch of lowest loss on the 60 split-16 validation meshes (2 per class, "
                      "tools/splits/shrec11_split16/val.txt), intact" if val_split else "the last epoch"),
        "train_config": cfg.get("train"),
        "data": data,
    }
    trained_on = TRAINED_ON_VAL if val_split else TRAINED_ON
    if data.get("held_out_classes"):
        trained_on += "; classes held out (not trained on): " + ", ".join(data["held_out_classes"])
    return export_pretrained(
        ck, out, name="shrec11", task="classification",
        description="Shape classification into the 30 SHREC'11 non-rigid shape classes (whole mesh).",
        trained_on=trained_on, licence=LICENCE, class_names=list(names), working_vertices=WORKING_VERTICES,
        area=1.0, training=training)


def test_meshes() -> list[tuple[Path, str]]:
    d = shrec_root()
    return [(p, c.name) for c in sorted(x for x in d.iterdir() if x.is_dir())
            for p in sorted((c / "test").glob("*.obj"))]


def evaluate(work: Path, model: Path, cache: str) -> dict:
    from meshgdl.classification import classify, load_classifier
    from meshgdl.io import load_mesh

    ev = work / "test_eval.json"
    cmd = [sys.executable, "-m", "meshgdl", "eval", str(model), "--dataset", "shrec11", "--split", "test",
           "--device", "cpu", "--no-progress", "--cache-dir", cache, "--out", str(ev)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    pipe = json.loads(ev.read_text())
    clf = load_classifier(model, device="cpu")
    ok, wrong, t0 = 0, [], time.perf_counter()
    for p, cls in test_meshes():
        r = classify(load_mesh(p), clf)
        ok += r.name == cls
        if r.name != cls:
            wrong.append(f"{cls}/test/{p.name}: {cls} -> {r.name}")
    n = len(test_meshes())
    return {"test_accuracy": pipe["accuracy"], "test_accuracy_classify": ok / n, "n_test": n,
            "misclassified_classify": wrong, "classify_meshes_per_second": n / (time.perf_counter() - t0)}


#: Validation copies for the calibrate step: per validation mesh, the mesh as it is and
#: this many augmented copies (:func:`augmented_copy`, its own seed), so that the
#: temperature and the threshold also see the differences between collections the
#: copies stand for (a temperature fitted on intact validation meshes alone did not carry
#: to another collection in the human_parts analysis, docs/benchmarks.md).
CALIB_COPIES = 4
#: The classes of the out-of-distribution benchmark (5 of 30 drawn with
#: ``numpy.random.default_rng(21).choice``: two with a near relative that stays, dog1/dog2
#: and centaur/horse+man, and three unlike any other class).
HOLD_OUT_BENCH = ("centaur", "dog1", "glasses", "lamp", "octopus")
CALIB_SEED = 1021
OOD_RATE = 0.05


def classifier_outputs(clf, V: np.ndarray, F: np.ndarray):
    """One mesh the way ``meshgdl classify`` takes it (the same working mesh call as
    :func:`meshgdl.classification.classify`) through the network -> ``(logits (C,),
    pooled features (2 D,))`` (:func:`meshgdl.ood.pooled_features` of the summary the
    head sees)."""
    from meshgdl.data.working_mesh import working_mesh
    from meshgdl.ood import network_outputs, pooled_features
    from meshgdl.threads import blas_threads

    n_target = clf.working_vertices if clf.working_vertices is not None else max(len(V), 16)
    with blas_threads(1):
        wm = working_mesh(np.asarray(V, np.float64), np.asarray(F, np.int64), n_target, area=clf.area)
        z, f, mass = network_outputs(clf, wm.V, wm.F)
    return z[0], pooled_features(f, mass)


def val_rows(clf, copies: int = CALIB_COPIES, seed: int = CALIB_SEED) -> list[dict]:
    """The split-16 validation meshes of the classes ``clf`` knows, each as it is
    (``copy`` 0) and ``copies`` augmented copies (``copy`` 1..): ``{"name", "class",
    "label", "copy", "logits", "features"}``. Never a test mesh."""
    from meshgdl.data.datasets import read_list_file
    from meshgdl.io import load_mesh

    rng = np.random.default_rng(seed)
    names = list(clf.class_names)
    rows = []
    for entry in read_list_file(SPLIT16 / "val.txt"):
        cls = entry.split("/")[0]
        if cls not in names:
            continue
        m = load_mesh(shrec_root() / entry)
        meshes = [(m.V, m.F)] + [(wm.V, wm.F) for wm in
                                 (augmented_copy(m.V, m.F, rng)[0] for _ in range(copies))]
        for k, (V, F) in enumerate(meshes):
            z, f = classifier_outputs(clf, V, F)
            rows.append({"name": entry, "class": cls, "label": names.index(cls), "copy": k, "logits": z,
                         "features": f})
    return rows


def calibration(rows: list[dict], n_bins: int = 15) -> dict:
    """Temperature and OOD threshold from validation ``rows`` (:func:`val_rows`): ``T``
    fitted on all rows (intact and copies; ``T_intact`` on the intact ones only, for the
    record), ECE/NLL before and after, the reliability bins, and the ``max_prob``
    threshold on the calibrated probabilities that flags at most 5 % of the rows."""
    from meshgdl.ood import fit_threshold, logit_scores
    from meshgdl.train.metrics import (calibration_bins, expected_calibration_error, fit_temperature, softmax,
                                       temperature_nll)

    Z = np.stack([r["logits"] for r in rows])
    y = np.array([r["label"] for r in rows])
    intact = np.array([r["copy"] == 0 for r in rows])
    T = fit_temperature(Z, y)
    T_intact = fit_temperature(Z[intact], y[intact])
    scores = np.array([logit_scores(z, temperature=T)["max_prob"] for z in Z])
    thr = fit_threshold(scores, OOD_RATE)

    def stats(mask, t):
        P = softmax(Z[mask], t)
        return {"ece": expected_calibration_error(P, y[mask], n_bins), "nll": temperature_nll(Z[mask], y[mask], t),
                "accuracy": float((P.argmax(1) == y[mask]).mean()), "n": int(mask.sum())}

    everything = np.ones(len(rows), dtype=bool)
    bins = {}
    for t_name, t in (("T=1", 1.0), ("T", T)):
        b = calibration_bins(softmax(Z, t), y, n_bins)
        bins[t_name] = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in b.items()}
    return {"temperature": T, "temperature_intact_only": T_intact, "threshold": thr,
            "val_flagged": float((scores > thr).mean()), "n_rows": len(rows), "n_intact": int(intact.sum()),
            "before": {"all": stats(everything, 1.0), "intact": stats(intact, 1.0)},
            "after": {"all": stats(everything, T), "intact": stats(intact, T)},
            "reliability": bins}


def train_reference(clf, hold_out=(), digits: int = 7):
    """Pooled features (:func:`classifier_outputs`) of the intact split-16 training meshes
    (``train.txt``, validation meshes excluded) of the classes ``clf`` knows, rounded to
    ``digits`` significant digits (as the description stores them) -> a
    :class:`meshgdl.ood.FeatureReference` (k = 5, shrinkage 0.1): the reference of the
    feature-distance scores."""
    from meshgdl.data.datasets import read_list_file
    from meshgdl.io import load_mesh
    from meshgdl.ood import FeatureReference

    X = []
    for e in read_list_file(SPLIT16 / "train.txt"):
        if e.split("/")[0] in clf.class_names and e.split("/")[0] not in set(hold_out):
            m = load_mesh(shrec_root() / e)
            X.append(classifier_outputs(clf, m.V, m.F)[1])
    X = np.array([[float(f"{v:.{digits}g}") for v in row] for row in X])
    return FeatureReference.fit(X)


def calibrate(model: Path, auroc: float | None = None, score: str = "knn") -> dict:
    """The calibrate step: :func:`calibration` of ``model`` on its validation rows, written
    into its description as ``"calibration"`` and ``"ood"``. ``score``: ``knn`` (distance
    of the pooled head features to the intact training meshes', threshold fitted on the
    intact validation meshes: the score tools/bench/shrec11_ood.py chose) or ``max_prob``
    (threshold fitted on the validation meshes and their copies)."""
    from meshgdl.classification import load_classifier
    from meshgdl.ood import fit_threshold
    from meshgdl.pretrained import update_description

    clf = load_classifier(model, device="cpu")
    t0 = time.perf_counter()
    rows = val_rows(clf)
    c = calibration(rows)
    fitted_on = (f"the {c['n_intact']} split-16 validation meshes (tools/splits/shrec11_split16/val.txt, "
                 f"2 per class, not trained on) as they are and {CALIB_COPIES} augmented copies of each "
                 f"(tools/train_shrec11.py augmented_copy, seed {CALIB_SEED}): {c['n_rows']} rows")
    shipped = Path(model).resolve() == (ROOT / "meshgdl" / "pretrained" / "shrec11.safetensors").resolve()
    command = "python tools/train_shrec11.py WORK --steps calibrate" + ("" if shipped else f" --export {model}")
    if score != "knn":
        command += f" --ood-score {score}"
    if auroc is not None:
        command += f" --auroc {auroc:.4f}"
    if score == "knn":
        ref = train_reference(clf)
        intact = [ref.scores(r["features"])["knn"] for r in rows if r["copy"] == 0]
        thr = fit_threshold(intact, OOD_RATE)
        c.update(threshold=thr, val_flagged=float(np.mean(np.array(intact) > thr)), ood_score="knn")
        ood_fitted = (f"the {len(intact)} intact split-16 validation meshes (tools/splits/shrec11_split16/val.txt): "
                      "the copies' augmentations move the features as far as another class does")
        reference = {**ref.to_dict(), "layer": -1,
                     "meshes": f"the {len(ref.X)} intact split-16 training meshes the model was trained on (train.txt)",
                     "features": "meshgdl.ood.pooled_features (area-weighted mean and standard deviation per channel) "
                                 "of the invariant summary the head sees, on the classify pipeline's working mesh"}
    else:
        c["ood_score"] = "max_prob"
        ood_fitted, reference = fitted_on, None
    upd = {
        "calibration": {"temperature": c["temperature"], "fitted_on": fitted_on, "n": c["n_rows"],
                        "ece_before": c["before"]["all"]["ece"], "ece_after": c["after"]["all"]["ece"],
                        "nll_before": c["before"]["all"]["nll"], "nll_after": c["after"]["all"]["nll"],
                        "temperature_intact_only": c["temperature_intact_only"],
                        "intact": {"ece_before": c["before"]["intact"]["ece"], "ece_after": c["after"]["intact"]["ece"],
                                   "nll_before": c["before"]["intact"]["nll"], "nll_after": c["after"]["intact"]["nll"]},
                        "command": command},
        "ood": {"score": score, "threshold": c["threshold"], "rate": OOD_RATE, "fitted_on": ood_fitted,
                "val_flagged": c["val_flagged"], "auroc": auroc,
                "auroc_note": ("of the held-out classes' meshes against the test meshes, for a model of the same "
                               "recipe trained without them (tools/train_shrec11.py --hold-out "
                               f"{','.join(HOLD_OUT_BENCH)}; tools/bench/shrec11_ood.py --unknown ...)"),
                "command": command},
    }
    if reference is not None:
        upd["ood"]["reference"] = reference
    update_description(model, upd)
    c["seconds"] = time.perf_counter() - t0
    return c


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", help="work folder (run directory, evaluation)")
    p.add_argument("--steps", nargs="+", default=["data", "train", "export", "evaluate"],
                   choices=["data", "train", "export", "evaluate", "calibrate"])
    p.add_argument("--variants", type=int, default=3, help="re-triangulated copies per train mesh")
    p.add_argument("--augment", action="store_true",
                   help="copies after the first also scaled anisotropically, deformed, bent/twisted, holed, "
                        "at 150-325 working vertices (AUGMENT)")
    p.add_argument("--val-split", action="store_true",
                   help="hold tools/splits/shrec11_split16/val.txt out (2 per class) for epoch selection by "
                        "validation loss and for the calibrate step")
    p.add_argument("--hold-out", default="", metavar="CLASSES",
                   help="comma-separated classes left out of the data entirely (out-of-distribution benchmark)")
    p.add_argument("--seed", type=int, default=0, help="seed of the re-triangulations")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--cache-dir", default=os.environ.get("MESHGDL_CACHE", str(Path.home() / ".cache" / "meshgdl")))
    p.add_argument("--export", default=str(ROOT / "meshgdl" / "pretrained" / "shrec11.safetensors"))
    p.add_argument("--ood-score", choices=["knn", "max_prob"], default="knn",
                   help="calibrate: the out-of-distribution score shipped (tools/bench/shrec11_ood.py measures both)")
    p.add_argument("--auroc", type=float, default=None,
                   help="calibrate: the held-out-class AUROC measured by tools/bench/shrec11_ood.py, recorded")
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    hold_out = [c for c in a.hold_out.split(",") if c]
    if "data" in a.steps and not (work / "data" / "recipe.json").exists():
        make_data(work, a.variants, a.seed, a.augment, a.val_split, hold_out)
    if "train" in a.steps:
        rec = json.loads((work / "data" / "recipe.json").read_text())
        run_training(work, a.cache_dir, a.epochs, bool(rec.get("val_split")))
    model = Path(a.export).with_suffix(".safetensors")
    if "export" in a.steps:
        model = export(work, a.export, a.epochs)
    if "evaluate" in a.steps:
        res = evaluate(work, model, a.cache_dir)
        from meshgdl.pretrained import read_sidecar, update_description

        metrics = {**read_sidecar(model).get("metrics", {}),
                   **{k: v for k, v in res.items() if not isinstance(v, list)}}
        update_description(model, {"metrics": metrics, "misclassified_test": res["misclassified_classify"]})
        print(f"evaluate: test accuracy {100 * res['test_accuracy']:.2f} % (meshgdl eval), "
              f"{100 * res['test_accuracy_classify']:.2f} % (classify pipeline)", file=sys.stderr)
    if "calibrate" in a.steps:
        auroc = a.auroc
        c = calibrate(model, auroc, a.ood_score)
        write_text_atomic(work / "calibration.json", json.dumps(c, indent=1) + "\n")
        print(f"calibrate: T = {c['temperature']:.3f} (intact only {c['temperature_intact_only']:.3f}), "
              f"ECE {100 * c['before']['all']['ece']:.2f} -> {100 * c['after']['all']['ece']:.2f} % on "
              f"{c['n_rows']} validation rows; {c['ood_score']} threshold {c['threshold']:.4f} "
              f"({100 * c['val_flagged']:.1f} % flagged)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
