#!/usr/bin/env python
"""The exact recipe behind the shipped model ``meshgdl/pretrained/figure_parts.safetensors``.

What it is trained on: the project's own **procedural capsule figures**
(:func:`meshgdl.data.synthetic.capsule_figure`) -- smooth unions of capsules in
random poses and body proportions, labelled with the ten parts of
:data:`meshgdl.data.synthetic.PART_NAMES`. Not real human scans: no human-body
segmentation data is available to this project.

Steps (each skipped when its output exists, so an interrupted run continues)::

    python tools/train_pretrained.py WORK            # data + train + export + evaluate
    python tools/train_pretrained.py WORK --steps data train

1. ``data``: figures of ``--train-bodies`` proportion seeds (train) and
   ``--test-bodies`` unseen seeds (held out), posed by :func:`random_pose`, meshed at
   a random source resolution (coarse ~700 to fine ~7.4k vertices), a quarter of them
   re-triangulated by ``fast_simplification`` (30-90 % of the faces), randomly rotated,
   scaled and moved, then passed through **the same** :func:`meshgdl.data.working_mesh.working_mesh`
   that ``meshgdl segment`` uses (normalisation, decimation / subdivision to about
   ``--working-vertices``, varied by +-15 % so the model sees several resolutions).
   Labels are carried to the working mesh by nearest-surface transfer. Written as a
   custom-folder dataset ``WORK/data`` (train/test lists, ``classes.txt``); the
   held-out figures' source meshes go to ``WORK/heldout`` for end-to-end evaluation.
2. ``train``: ``python -m meshgdl train --config WORK/train_config.json --dataset
   WORK/data --out WORK/run`` -- the project's own training loop, a checkpoint
   after every epoch (resumed automatically if ``WORK/run`` holds one).
3. ``export``: ``WORK/run/best.safetensors`` (weights + config only, no optimizer
   state) -> ``--export`` ``.safetensors`` + ``.json`` (class names, ``trained_on``,
   working resolution, the recipe, metrics).
4. ``evaluate``: ``meshgdl.segmentation`` end to end on the held-out source meshes (every
   source vertex scored against its true label), on rotated copies and on remeshed
   copies (other resolution); accuracy, mean IoU, left/right-merged accuracy and
   agreement between copies are written into the exported JSON.

The same arguments give the same data; training is deterministic on CPU (seeded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meshgdl.atomic import write_text_atomic  # noqa: E402

#: Source mesh resolutions (capsule-figure target edge length, m) and their probabilities:
#: ~7.4k, ~5k (decimated), ~2.3k (kept as is), ~1.3k and ~700 vertices (Loop-subdivided,
#: then decimated; at 0.08 the thin limbs are only 3-4 edges round).
SOURCE_RESOLUTIONS = (0.025, 0.03, 0.045, 0.06, 0.08)
SOURCE_PROBS = (0.25, 0.25, 0.25, 0.15, 0.10)

MODEL = {
    "kind": "gem",
    "in_features": ["hks", "hks_grad"],
    "n_hks": 16,
    "k_eig": 64,
    "laplacian": "auto",
    "n_levels": 3,
    "level_ratio": 0.25,
    "coarse_k_eig": 16,
    "hidden_irreps": "16x0 + 8x1 + 8x2",
    "n_layers": 2,
    # exactly gauge-equivariant (the regular non-linearity is only up to aliasing), so
    # predictions do not depend on the gauge choice, hence not on vertex order
    "nonlinearity": "gated",
    "norm": "instance",
    "radial": 0,
    "aggr": "mean",
    "head_hidden": 64,
    "dropout": 0.0,
}

TRAIN = {
    "epochs": 16,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "batch_size": 2,
    "scheduler": "cosine",
    "warmup_epochs": 1,
    "label_smoothing": 0.05,
    "seed": 0,
    "val_fraction": 0.1,
    "select_metric": "mean_iou",
    # the model sees intrinsic features only and the data is already normalised
    "augment_rotate": None,
    "workers": 1,
}


def _random_rigid(V, rng):
    from meshgdl.data.transforms import random_rotation_matrix

    R = random_rotation_matrix(rng)
    s = np.exp(rng.uniform(np.log(0.01), np.log(100.0)))  # millimetres to hectometres
    return (V @ R.T) * s + rng.uniform(-10.0, 10.0, 3)


def _foreign_remesh(V, F, lab, keep):
    import fast_simplification

    from meshgdl.io import Mesh
    from meshgdl.data.labels import nearest_surface_labels

    V2, F2 = fast_simplification.simplify(V, F, target_reduction=1.0 - keep)
    m = Mesh.from_arrays(np.asarray(V2, np.float64), np.asarray(F2, np.int64))
    return m.V, m.F, nearest_surface_labels(m.V, V, F, lab)


def make_data(work: Path, a) -> dict:
    """Write ``WORK/data`` (working meshes) and ``WORK/heldout`` (source meshes)."""
    from meshgdl.data.datasets import write_mesh_folder
    from meshgdl.data.synthetic import PART_NAMES, capsule_figure, random_pose
    from meshgdl.io import save_mesh
    from meshgdl.data.labels import nearest_surface_labels
    from meshgdl.data.working_mesh import working_mesh

    rng = np.random.default_rng(a.seed)
    train_bodies = list(range(a.train_bodies))
    test_bodies = list(range(100, 100 + a.test_bodies))
    items, train_names, test_names = [], [], []
    held = work / "heldout"
    held.mkdir(parents=True, exist_ok=True)
    stats = {"methods": {}, "working_vertices": []}
    plan = [("train", b, a.n_train // len(train_bodies) + (i < a.n_train % len(train_bodies)))
            for i, b in enumerate(train_bodies)]
    plan += [("test", b, a.n_test // len(test_bodies) + (i < a.n_test % len(test_bodies)))
             for i, b in enumerate(test_bodies)]
    t0 = time.perf_counter()
    k = 0
    for split, body, count in plan:  # body by body: the rest meshes stay in capsule_figure's cache
        for _ in range(count):
            res = float(rng.choice(SOURCE_RESOLUTIONS, p=SOURCE_PROBS))
            amount = float(rng.uniform(0.4, 1.2))
            V, F, lab = capsule_figure(random_pose(rng, amount), resolution=res, seed=body)
            V = _random_rigid(V, rng)
            if rng.uniform() < a.foreign_remesh:
                # another triangulation, as a user's tool would make it (file order, no
                # canonical ordering; may leave small defects such as non-manifold edges)
                V, F, lab = _foreign_remesh(V, F, lab, float(rng.uniform(0.3, 0.9)))
            n_target = int(round(a.working_vertices * rng.uniform(0.85, 1.15)))
            wm = working_mesh(V, F, n_target)
            y = nearest_surface_labels(wm.V, wm.normalize(V), F, lab)
            name = f"fig_{k:04d}"
            items.append((name, wm.V, wm.F, y))
            (train_names if split == "train" else test_names).append(name)
            stats["methods"][wm.method] = stats["methods"].get(wm.method, 0) + 1
            stats["working_vertices"].append(len(wm.V))
            if split == "test":
                save_mesh(held / f"{name}.ply", V, F)
                write_text_atomic(held / f"{name}.vertex_labels.txt", "".join(f"{int(v)}\n" for v in lab))
            k += 1
        print(f"data: body {body} ({split}) done, {k} figures, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    write_mesh_folder(work / "data", items, splits={"train": train_names, "test": test_names},
                      class_names=list(PART_NAMES))
    wv = np.asarray(stats["working_vertices"])
    info = {"n_train": len(train_names), "n_test": len(test_names), "train_bodies": train_bodies,
            "test_bodies": test_bodies, "foreign_remesh": a.foreign_remesh,
            "source_resolutions": list(SOURCE_RESOLUTIONS),
            "source_probabilities": list(SOURCE_PROBS), "methods": stats["methods"],
            "working_vertices": {"min": int(wv.min()), "mean": float(wv.mean()), "max": int(wv.max())},
            "seed": a.seed, "seconds": time.perf_counter() - t0}
    write_text_atomic(work / "data" / "recipe.json", json.dumps(info, indent=1))
    return info


def train_command(work: Path) -> list[str]:
    return [sys.executable, "-m", "meshgdl", "train", "--config", str(work / "train_config.json"),
            "--dataset", str(work / "data"), "--out", str(work / "run"), "--cache-dir", str(work / "cache")]


def run_training(work: Path, a) -> None:
    cfg = dict(TRAIN, epochs=a.epochs, model=MODEL)
    write_text_atomic(work / "train_config.json", json.dumps(cfg, indent=1))
    cmd = train_command(work)
    if (work / "run" / "last.safetensors").exists():
        cmd.append("--resume")
    # One thread: the shipped run used it, and more threads thrash on a shared 2-core machine.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    print("train: OMP_NUM_THREADS=1 " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def export_pretrained(checkpoint: str | os.PathLike, out: str | os.PathLike, *, name: str, task: str,
                      description: str, trained_on: str, licence: str, class_names: list,
                      working_vertices: int | None, area: float = 1.0, training: dict | None = None,
                      **fields) -> Path:
    """Write a shipped model: ``out.safetensors`` (weights + model config of ``checkpoint``,
    no optimizer state) and ``out.json`` (what ``meshgdl models`` / ``load_model`` read:
    task, description, training data, licence, class names, working resolution,
    selected epoch and its validation metrics, the training recipe, ``fields``, sha256).
    Shared by every ``tools/`` script that ships a model."""
    from meshgdl.train.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(checkpoint)
    out = Path(out).with_suffix(".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    hist = ck.extra.get("history", [])
    best_row = next((r for r in hist if r.get("epoch") == ck.epoch), {})
    extra = {"class_names": list(class_names), "trained_on": trained_on, "best": ck.extra.get("best")}
    save_checkpoint(out, model_state=ck.model_state, model_config=ck.model_config, epoch=ck.epoch, extra=extra)
    doc = {
        "format": "meshgdl-pretrained",
        "version": 1,
        "name": name,
        "task": task,
        "description": description,
        "trained_on": trained_on,
        "licence": licence,
        "class_names": list(class_names),
        "working_vertices": working_vertices,
        "area": area,
        "model_config": ck.model_config,
        "epoch": ck.epoch,
        "validation": best_row.get("val"),
        **fields,
        "training": {**(training or {}), "history": hist},
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    write_text_atomic(out.with_suffix(".json"), json.dumps(doc, indent=1) + "\n")
    print(f"export: {out} ({out.stat().st_size} bytes), epoch {ck.epoch}", file=sys.stderr)
    return out


def export(work: Path, a) -> Path:
    from meshgdl.data.synthetic import PART_NAMES

    trained_on = ("procedural capsule figures generated by meshgdl (meshgdl.data.synthetic.capsule_figure: "
                  "smooth unions of capsules in random poses and body proportions, not real human scans); "
                  f"{a.n_train} training figures of {a.train_bodies} body-proportion seeds, "
                  "brought to the working resolution by meshgdl.data.working_mesh.working_mesh")
    training = {
        "recipe": "tools/train_pretrained.py " + " ".join(_recipe_args(a)),
        "command": "OMP_NUM_THREADS=1 python -m meshgdl train --config WORK/train_config.json --dataset WORK/data "
                   "--out WORK/run --cache-dir WORK/cache",
        "train_config": dict(TRAIN, epochs=a.epochs, model=MODEL),
        "data": json.loads((work / "data" / "recipe.json").read_text()),
    }
    return export_pretrained(
        work / "run" / "best.safetensors", a.export, name="figure_parts", task="segmentation",
        description="Part segmentation of humanoid figures into 10 parts (per vertex).",
        trained_on=trained_on,
        licence="procedural data generated by meshgdl itself (no third-party data); weights under the "
                "project licence (MIT)",
        class_names=list(PART_NAMES), working_vertices=a.working_vertices, area=1.0, training=training)


def _recipe_args(a) -> list[str]:
    return [f"--seed {a.seed}", f"--n-train {a.n_train}", f"--n-test {a.n_test}",
            f"--train-bodies {a.train_bodies}", f"--test-bodies {a.test_bodies}",
            f"--working-vertices {a.working_vertices}", f"--epochs {a.epochs}",
            f"--foreign-remesh {a.foreign_remesh}"]


def _scores(pred, true, n_cls):
    from meshgdl.train.metrics import confusion_matrix, task_metrics

    m = task_metrics("segmentation", confusion_matrix(pred, true, n_cls))
    return float(m["accuracy"]), float(m["mean_iou"])


def merge_sides(labels):
    """Left/right-agnostic parts: 0 head, 1 torso, 2 upper arm, 3 lower arm, 4 upper leg, 5 lower leg."""
    lut = np.array([0, 1, 2, 3, 2, 3, 4, 5, 4, 5])
    labels = np.asarray(labels)
    return np.where(labels >= 0, lut[np.clip(labels, 0, 9)], -1)


def evaluate(work: Path, a, model_path: Path, limit: int | None = None) -> dict:
    """End-to-end held-out evaluation of the exported model (see module docstring)."""
    from meshgdl.data.synthetic import capsule_figure, random_pose  # noqa: F401
    from meshgdl.data.transforms import random_rotation_matrix
    from meshgdl.io import Mesh, load_mesh
    from meshgdl.data.labels import nearest_surface_labels
    from meshgdl.segmentation import load_segmenter, segment

    seg = load_segmenter(model_path, device="cpu")
    names = sorted(p.name[: -len(".ply")] for p in (work / "heldout").glob("*.ply"))[:limit]
    rng = np.random.default_rng(12345)
    pred_all, true_all = [], []
    rot_agree, rem_agree, rem_acc, per_mesh = [], [], [], []
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        m = load_mesh(work / "heldout" / f"{name}.ply")
        true = np.loadtxt(work / "heldout" / f"{name}.vertex_labels.txt", dtype=np.int64)
        s = segment(m, seg)
        pred = s.file_vertex_labels
        pred_all.append(pred)
        true_all.append(true)
        acc, _ = _scores(pred, true, 10)
        entry = {"name": name, "vertices": int(len(true)), "working": s.working.method, "accuracy": acc}
        if i < a.n_agreement:
            # rotated copy: same vertices, so labels compare one to one
            R = random_rotation_matrix(rng)
            sr = segment(Mesh.from_arrays(m.V @ R.T, m.F), seg)
            rot_agree.append(float(np.mean(sr.labels == s.labels)))
            # remeshed copy at another resolution: the source decimated to 45 % of its faces
            import fast_simplification

            V2, F2 = fast_simplification.simplify(m.V @ R.T, m.F, target_reduction=0.55)
            m2 = Mesh.from_arrays(V2, F2)
            s2 = segment(m2, seg)
            true2 = nearest_surface_labels(m2.V, m.V @ R.T, m.F, true)
            rem_acc.append(_scores(s2.labels, true2, 10)[0])
            # agreement on the source's vertices: the copy's labels carried back by nearest surface
            back = nearest_surface_labels(m.V @ R.T, m2.V, m2.F, s2.labels)
            rem_agree.append(float(np.mean(back == s.labels)))
            entry.update(rotation_agreement=rot_agree[-1], remesh_agreement=rem_agree[-1],
                         remesh_accuracy=rem_acc[-1])
        per_mesh.append(entry)
        print(f"evaluate: {name} acc {acc:.4f}", file=sys.stderr)
    P, T = np.concatenate(pred_all), np.concatenate(true_all)
    acc, miou = _scores(P, T, 10)
    acc6, miou6 = _scores(merge_sides(P), merge_sides(T), 6)
    res = {
        "what": "meshgdl.segmentation end to end on held-out figures (unseen body-proportion seeds and poses), "
                "scored on every source vertex; agreement = share of vertices with equal labels",
        "n_meshes": len(names),
        "accuracy": acc,
        "mean_iou": miou,
        "accuracy_left_right_merged": acc6,
        "mean_iou_left_right_merged": miou6,
        "mean_mesh_accuracy": float(np.mean([e["accuracy"] for e in per_mesh])),
        # by how the source reached the working resolution (i.e. by source resolution)
        "accuracy_by_working_method": {
            w: {"n": sum(e["working"] == w for e in per_mesh),
                "mean_mesh_accuracy": float(np.mean([e["accuracy"] for e in per_mesh if e["working"] == w]))}
            for w in sorted({e["working"] for e in per_mesh})},
        "rotation_agreement": {"mean": float(np.mean(rot_agree)), "min": float(np.min(rot_agree)),
                               "n": len(rot_agree)} if rot_agree else None,
        "remesh_agreement": {"mean": float(np.mean(rem_agree)), "min": float(np.min(rem_agree)),
                             "n": len(rem_agree)} if rem_agree else None,
        "remesh_accuracy": float(np.mean(rem_acc)) if rem_acc else None,
        "seconds": time.perf_counter() - t0,
        "per_mesh": per_mesh,
    }
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", help="work folder (data, cache, run)")
    p.add_argument("--steps", nargs="+", default=["data", "train", "export", "evaluate"],
                   choices=["data", "train", "export", "evaluate"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=240)
    p.add_argument("--n-test", type=int, default=40)
    p.add_argument("--train-bodies", type=int, default=12)
    p.add_argument("--test-bodies", type=int, default=4)
    p.add_argument("--working-vertices", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    p.add_argument("--foreign-remesh", type=float, default=0.25,
                   help="share of figures first decimated to 30-90 %% of their faces by fast_simplification")
    p.add_argument("--n-agreement", type=int, default=10, help="held-out figures also checked rotated/remeshed")
    p.add_argument("--export", default=str(ROOT / "meshgdl" / "pretrained" / "figure_parts.safetensors"))
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if "data" in a.steps and not (work / "data" / "recipe.json").exists():
        make_data(work, a)
    if "train" in a.steps:
        run_training(work, a)
    model_path = Path(a.export).with_suffix(".safetensors")
    if "export" in a.steps:
        model_path = export(work, a)
    if "evaluate" in a.steps:
        res = evaluate(work, a, model_path)
        from meshgdl.pretrained import update_description

        update_description(model_path, {"evaluation": {k: v for k, v in res.items() if k != "per_mesh"}})
        write_text_atomic(work / "evaluation.json", json.dumps(res, indent=1) + "\n")
        print(f"evaluate: accuracy {res['accuracy']:.4f}, mIoU {res['mean_iou']:.4f}, "
              f"left/right merged {res['accuracy_left_right_merged']:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
