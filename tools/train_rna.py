#!/usr/bin/env python
"""The recipe behind the RNA surface benchmark at full scale and the shipped ``rna_surface`` model.

Data: the RNA molecular-surface segmentation dataset of Poulenard et al. (3DV 2019),
``rna_surface_segmentation`` under the data root (``../shared/datasets`` by default;
MIT licence, see its SOURCE.md): 547 train / 136 test meshes of ~15k vertices, 260
per-vertex classes (class ``c`` = file label ``c - 1``; the file's -1 is class 0, a
class like the others). The data is read from there and never copied into the
repository or the package.

Steps (each skipped when its output exists, so an interrupted run continues)::

    python tools/train_rna.py WORK                       # data, train, evaluate, export
    python tools/train_rna.py WORK --steps evaluate --split val --smooth 2   # choose --smooth
    python tools/train_rna.py WORK --steps evaluate --checkpoint meshgdl/pretrained/rna_surface.safetensors

1. ``data``: ``WORK/data`` in the custom-folder format. Every *training* mesh brought to
   about ``--working-vertices`` by :func:`meshgdl.data.working_mesh.working_mesh` (the
   decimation ``meshgdl segment`` applies to a user's mesh), its labels carried by
   closest surface point (:func:`meshgdl.data.labels.nearest_surface_labels`), then split
   the way :func:`meshgdl.segmentation.predict_by_component` runs a working mesh through
   the model (:func:`meshgdl.segmentation.model_components`: each component big enough
   for the U-Net's coarsest level is a mesh of its own, the smaller ones are left out):
   training sees what inference sees. Validation: ``--val-fraction`` of the training
   meshes (seed ``--seed``; names in ``WORK/val_list.txt``, all components of a mesh on
   the same side); the test split is not touched. ``--workers`` processes; every mesh's
   files are written as it is done, so an interrupted data step continues.
2. ``train``: ``python -m meshgdl train --config WORK/gem_config.json --dataset WORK/data
   --val-split val --out WORK/gem --cache-dir WORK/cache`` (one thread, a checkpoint
   after every epoch, ``--resume`` when ``WORK/gem/last.safetensors`` exists; the best
   epoch on ``val`` is ``best.safetensors``).
3. ``evaluate``: the checkpoint (``--checkpoint``, default ``WORK/gem/best.safetensors``)
   through :func:`meshgdl.api.segment` -- exactly ``meshgdl segment``'s path: working
   mesh, per-component prediction, probabilities carried to every original vertex,
   ``--smooth`` rounds of majority smoothing -- on the **original** test OFF files, scored
   per vertex against ``labels/NAME.txt``: accuracy, mean IoU (over the classes present
   in the targets or predictions). Predictions are kept per mesh under
   ``WORK/eval/<tag>/`` (resumable, ``--workers`` processes); metrics in
   ``WORK/eval/<tag>.json``. ``--split val`` scores the held-out training meshes the
   same way (original files); ``--smooth`` is chosen there (shipped: 0 -- per-vertex
   accuracy 81.0 % with 0 rounds, 78.1 % with 2, epoch 12 of the shipped run).
4. ``export``: the evaluated checkpoint -> ``meshgdl/pretrained/rna_surface.{safetensors,json}``
   (class names "-1".."258" and ``label_values``: the file label of each class index).
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
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from meshgdl.atomic import write_text_atomic  # noqa: E402

N_CLASSES = 260
#: file label of each class index (class c <-> file value c - 1)
LABEL_VALUES = list(range(-1, N_CLASSES - 1))

from train_human_parts import MODELS as HUMAN_MODELS, TRAIN as HUMAN_TRAIN  # noqa: E402
from train_pretrained import MODEL as FIGURE_MODEL  # noqa: E402

MODELS = {
    # figure_parts' U-Net (levels of ratio 1/4, gated, HKS + HKS gradients: intrinsic, so
    # the arbitrary orientation of the molecules does not matter), wider for 260 classes
    # and one level deeper (8000 -> 2000 -> 500 -> 125 vertices), every mesh scaled to
    # unit area
    "gem": dict(FIGURE_MODEL, unit_area=True, n_levels=4, hidden_irreps="32x0 + 16x1 + 16x2"),
    # the DiffusionNet baseline of the human_seg benchmark (4 x 128, HKS input) with the
    # authors' RNA dropout (0.5; tools/bench/rna.sh); run with --lr 1e-3 as there
    "diffusion": dict(HUMAN_MODELS["diffusion"], dropout=0.5),
}

#: human_seg's schedule (AdamW 2e-3, cosine, 1 warm-up epoch, label smoothing 0.05, best
#: epoch by validation accuracy), 12 epochs of batch 2: what fitted a session at 8000 vertices
TRAIN = dict(HUMAN_TRAIN, epochs=12, batch_size=2)


def _env() -> dict:
    # One thread: a shared 2-core machine thrashes with more. glibc: at 8000 working
    # vertices the training process's RSS reached 14.4 GB after 2 epochs with glibc's
    # defaults; with blocks > 4 MiB mmapped and the heap trimmed above 32 MiB it fell back
    # to ~9 GB between epochs, but still peaked at 12.6-13.6 GB within each epoch (cause
    # not found; metrics.jsonl's peak_memory_mb).
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                MALLOC_MMAP_THRESHOLD_=os.environ.get("MALLOC_MMAP_THRESHOLD_", "4194304"),
                MALLOC_TRIM_THRESHOLD_=os.environ.get("MALLOC_TRIM_THRESHOLD_", "33554432"))


def model_config(a):
    from meshgdl.nn.models import ModelConfig

    return ModelConfig.from_dict(dict(MODELS[a.model], task="segmentation", n_classes=N_CLASSES))


def min_component_vertices(a) -> int:
    """What :attr:`meshgdl.segmentation.Segmenter.min_component_vertices` gives for this model."""
    from meshgdl.segmentation import Segmenter

    return Segmenter.min_component_vertices.fget(SimpleNamespace(config=model_config(a)))


def val_names(names: list[str], fraction: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    k = max(1, int(round(fraction * len(names))))
    return sorted(names[i] for i in rng.permutation(len(names))[:k])


def _data_one(job) -> dict:
    """One training mesh -> its working-mesh components in WORK/data (skipped when done)."""
    root, name, n_target, min_vertices = job
    from meshgdl.threads import blas_threads

    done = Path(root) / "done" / f"{name}.json"
    if done.is_file():
        return json.loads(done.read_text())
    from meshgdl.data.datasets import RNASegmentation, write_mesh_folder
    from meshgdl.data.labels import nearest_surface_labels
    from meshgdl.data.working_mesh import working_mesh
    from meshgdl.segmentation import model_components

    t0 = time.perf_counter()
    with blas_threads(1):
        ds = RNASegmentation(os.environ.get("RNA_ROOT") or None, "train")
        it = ds[ds.names.index(name)]
        wm = working_mesh(it.V, it.F, n_target)
        y = nearest_surface_labels(wm.V, wm.normalize(it.V), it.F, it.y)
        parts, small, _ = model_components(wm.F, len(wm.V), min_vertices)
    items = [(f"{name}__c{k}", wm.V[idx], Fc, y[idx]) for k, (idx, Fc) in enumerate(parts)]
    write_mesh_folder(root, items, fmt="ply")
    info = {"name": name, "stems": [s for s, *_ in items], "vertices": int(len(it.V)),
            "working_vertices": int(len(wm.V)), "method": wm.method, "components": wm.n_components,
            "dropped_components": wm.n_dropped_components, "parts": [int(len(i)) for i, _ in parts],
            "small_vertices": int(len(small)), "seconds": time.perf_counter() - t0}
    done.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(done, json.dumps(info))
    return info


def ceiling(a) -> dict:
    """The accuracy a working resolution allows: the true labels of the first ``--limit``
    (default 8) training meshes carried to working meshes of each ``--ceiling`` size (closest
    surface point, as the data step does) and back to every original vertex exactly as
    ``meshgdl segment`` carries its probabilities (projection with normals, barycentric
    interpolation of one-hot rows, argmax), scored per original vertex."""
    from meshgdl.data.datasets import RNASegmentation
    from meshgdl.data.labels import nearest_surface_labels
    from meshgdl.data.working_mesh import working_mesh
    from meshgdl.geometry.normals import vertex_normals
    from meshgdl.geometry.proximity import interpolate, project_to_surface
    from meshgdl.threads import blas_threads

    ds = RNASegmentation(a.data_root, "train")
    items = [ds[i] for i in range(min(a.limit or 8, len(ds)))]
    out = {}
    with blas_threads(1):
        for n_target in a.ceiling:
            right = total = 0
            for it in items:
                wm = working_mesh(it.V, it.F, n_target)
                y = nearest_surface_labels(wm.V, wm.normalize(it.V), it.F, it.y)
                face, bary, _ = project_to_surface(wm.normalize(it.V), wm.V, wm.F, normals=vertex_normals(it.V, it.F))
                onehot = np.eye(ds.n_classes)[np.clip(y, 0, None)] * (y >= 0)[:, None]
                back = np.argmax(interpolate(onehot, wm.F, face, bary), axis=1)
                keep = it.y >= 0
                right += int((back[keep] == it.y[keep]).sum())
                total += int(keep.sum())
            out[n_target] = right / total
            print(f"ceiling: {n_target} working vertices -> {100 * out[n_target]:.1f} % of the original vertices "
                  f"({len(items)} training meshes)", file=sys.stderr)
    return out


def make_data(work: Path, a) -> dict:
    from meshgdl.data.datasets import RNASegmentation

    ds = RNASegmentation(a.data_root, "train")
    names = list(ds.names)[: a.limit]
    val = val_names(names, a.val_fraction, a.seed)
    write_text_atomic(work / "val_list.txt", "".join(f"{n}\n" for n in val))
    root = work / "data"
    root.mkdir(parents=True, exist_ok=True)
    mv = min_component_vertices(a)
    jobs = [(str(root), n, a.working_vertices, mv) for n in names]
    os.environ["RNA_ROOT"] = str(ds.root)
    t0 = time.perf_counter()
    infos = []
    if a.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(a.workers) as pool:
            for k, info in enumerate(pool.imap(_data_one, jobs)):
                infos.append(info)
                if (k + 1) % 25 == 0:
                    print(f"data: {k + 1}/{len(jobs)} meshes, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    else:
        for k, j in enumerate(jobs):
            infos.append(_data_one(j))
            if (k + 1) % 25 == 0:
                print(f"data: {k + 1}/{len(jobs)} meshes, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    vset = set(val)
    splits = {"train": [s for i in infos if i["name"] not in vset for s in i["stems"]],
              "val": [s for i in infos if i["name"] in vset for s in i["stems"]]}
    for s, stems in splits.items():
        write_text_atomic(root / f"{s}.txt", "".join(f"{n}\n" for n in stems))
    write_text_atomic(root / "classes.txt", "".join(f"{c}\n" for c in LABEL_VALUES))
    wv = np.array([i["working_vertices"] for i in infos])
    methods: dict[str, int] = {}
    for i in infos:
        methods[i["method"]] = methods.get(i["method"], 0) + 1
    info = {"source": "rna_surface_segmentation (Poulenard et al. 3DV 2019), train.txt",
            "meshes": len(infos), "train_meshes": len(infos) - len(val), "val_meshes": len(val),
            "components": {k: len(v) for k, v in splits.items()},
            "working_vertices_target": a.working_vertices,
            "working_vertices": {"min": int(wv.min()), "mean": float(wv.mean()), "max": int(wv.max())},
            "min_component_vertices": mv, "methods": methods,
            "meshes_with_left_out_components": sum(1 for i in infos if i["small_vertices"] or i["dropped_components"]),
            "val_fraction": a.val_fraction, "seed": a.seed, "val_list": "WORK/val_list.txt",
            "seconds_per_mesh": float(np.mean([i["seconds"] for i in infos])),
            "wall_seconds": time.perf_counter() - t0, "workers": a.workers}
    write_text_atomic(root / "recipe.json", json.dumps(info, indent=1))
    print(f"data: {json.dumps(info)}", file=sys.stderr)
    return info


def train_config(a) -> dict:
    return dict(TRAIN, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, model=MODELS[a.model])


def train_command(work: Path, a) -> list[str]:
    return [sys.executable, "-m", "meshgdl", "train", "--config", str(work / f"{a.model}_config.json"),
            "--dataset", str(work / "data"), "--out", str(work / a.model), "--cache-dir", str(work / "cache"),
            "--seed", str(a.seed), "--no-progress"]


def run_training(work: Path, a) -> Path:
    from meshgdl.train.loop import run_finished

    out = work / a.model
    if run_finished(out):
        return out
    cfg_path = work / f"{a.model}_config.json"
    write_text_atomic(cfg_path, json.dumps(train_config(a), indent=1))
    cmd = train_command(work, a)
    if (out / "last.safetensors").exists():
        cmd.append("--resume")
    print("train: OMP_NUM_THREADS=1 " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=ROOT, env=_env())
    return out


def _eval_one(job) -> dict:
    ckpt, ck_sha, wv, smooth, root, name, out = job
    out = Path(out)
    if out.is_file():  # resumable, but only with the same weights (tags repeat across runs)
        prev = json.loads(out.read_text())
        if prev.get("checkpoint_sha256") == ck_sha and out.with_suffix(".npy").is_file():
            return prev
    from meshgdl.api import segment
    from meshgdl.data.datasets import read_label_file
    from meshgdl.segmentation import load_segmenter
    from meshgdl.threads import blas_threads

    global _SEG
    if "_SEG" not in globals() or _SEG[0] != ckpt:
        _SEG = (ckpt, load_segmenter(ckpt, device="cpu", working_vertices=wv))
    t0 = time.perf_counter()
    with blas_threads(1):
        r = segment(str(Path(root) / "off" / f"{name}.off"), model=_SEG[1], smooth=smooth)
    pred = np.asarray(r.vertex_labels, dtype=np.int64)
    true = np.asarray(read_label_file(Path(root) / "labels" / f"{name}.txt"), dtype=np.int64) + 1
    if len(pred) != len(true):
        raise RuntimeError(f"{name}: {len(pred)} predicted labels, {len(true)} in the label file")
    info = {"name": name, "vertices": int(len(true)), "accuracy": float(np.mean(pred == true)),
            "working_vertices": int(len(r.detail.working.V)), "timings": r.detail.timings,
            "seconds": time.perf_counter() - t0, "checkpoint_sha256": ck_sha}
    np.save(out.with_suffix(".npy"), pred.astype(np.int16))
    write_text_atomic(out, json.dumps(info))
    return info


def evaluate(work: Path, a, checkpoint: Path, tag: str) -> dict:
    """Per-vertex scores of ``checkpoint`` on the original meshes of ``a.split``."""
    from meshgdl.data.datasets import RNASegmentation, read_label_file
    from meshgdl.train.metrics import confusion_matrix, mean_iou, accuracy

    if a.split == "test":
        ds = RNASegmentation(a.data_root, "test")
        names = list(ds.names)
    else:  # the held-out training meshes
        ds = RNASegmentation(a.data_root, "train")
        names = [n for n in (work / "val_list.txt").read_text().split() if n]
    names = names[: a.eval_limit]
    d = work / "eval" / tag
    d.mkdir(parents=True, exist_ok=True)
    ck_sha = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    jobs = [(str(checkpoint), ck_sha, a.working_vertices, a.smooth, str(ds.root), n, str(d / f"{n}.json"))
            for n in names]
    t0 = time.perf_counter()
    if a.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(a.workers) as pool:
            per = list(pool.imap(_eval_one, jobs))
    else:
        per = []
        for k, j in enumerate(jobs):
            per.append(_eval_one(j))
            if (k + 1) % 20 == 0:
                print(f"evaluate: {k + 1}/{len(jobs)} meshes, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    for n in names:
        pred = np.load(d / f"{n}.npy").astype(np.int64)
        true = np.asarray(read_label_file(ds.root / "labels" / f"{n}.txt"), dtype=np.int64) + 1
        cm += confusion_matrix(pred, true, N_CLASSES)
    from meshgdl.train.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    res = {"what": f"meshgdl.api.segment (meshgdl segment's path) on the original {a.split} OFF files, scored "
                   "per original vertex against labels/NAME.txt (+1)",
           "checkpoint": str(checkpoint), "epoch": ck.epoch, "split": a.split, "n_meshes": len(names),
           "vertices": int(cm.sum()), "accuracy": accuracy(cm), "mean_iou": mean_iou(cm),
           "mean_mesh_accuracy": float(np.mean([p["accuracy"] for p in per])),
           "working_vertices": a.working_vertices, "smooth_iterations": a.smooth,
           "seconds_per_mesh": float(np.mean([p["seconds"] for p in per])),
           "wall_seconds_this_call": time.perf_counter() - t0, "workers": a.workers}
    write_text_atomic(work / "eval" / f"{tag}.json", json.dumps(res, indent=1))
    print(f"evaluate {tag}: {json.dumps(res)}", file=sys.stderr)
    return res


def export(work: Path, a, checkpoint: Path, test: dict) -> Path:
    from train_pretrained import export_pretrained

    recipe = json.loads((work / "data" / "recipe.json").read_text())
    val_eval = work / "eval" / f"{a.eval_tag.replace('test', 'val')}.json"
    metrics = {"test_vertex_accuracy": test["accuracy"], "test_mean_iou": test["mean_iou"],
               "test_meshes": test["n_meshes"], "test_epoch": test["epoch"],
               "test_what": test["what"], "test_smooth_iterations": test["smooth_iterations"]}
    if val_eval.is_file():
        v = json.loads(val_eval.read_text())
        metrics.update(val_original_vertex_accuracy=v["accuracy"], val_original_mean_iou=v["mean_iou"])
    # --smooth is chosen on the held-out training meshes (original files), never on test
    by_smooth = {}
    for f in sorted((work / "eval").glob(f"val_e{test['epoch']}_s*.json")):
        v = json.loads(f.read_text())
        by_smooth[str(v["smooth_iterations"])] = {"accuracy": v["accuracy"], "mean_iou": v["mean_iou"]}
    if by_smooth:
        metrics["val_original_by_smooth_iterations"] = by_smooth
    hist = [json.loads(ln) for ln in (work / a.model / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    hist = [h for h in hist if h["epoch"] <= test["epoch"]]
    trained_on = ("the RNA molecular-surface segmentation dataset of Poulenard, Rakotosaona, Ponty and Ovsjanikov "
                  "('Effective Rotation-invariant Point CNN with Spherical Harmonics Kernels', 3DV 2019; "
                  "github.com/nmwsharp/RNA-Surface-Segmentation-Dataset, commit 1667b9f): "
                  f"{recipe['train_meshes']} of its 547 training meshes ({recipe['val_meshes']} held out for "
                  "validation), each decimated from ~15k to about "
                  f"{a.working_vertices} vertices by meshgdl's working mesh; not the 136 test meshes")
    return export_pretrained(
        checkpoint, a.export, name="rna_surface", task="segmentation",
        description="RNA molecular-surface segmentation into 260 classes (nucleotide labels -1..258 of the "
                    "Poulenard et al. 2019 dataset), per vertex.",
        trained_on=trained_on,
        licence="trained on the RNA surface segmentation dataset (MIT licence, Poulenard et al. 2019, see "
                "shared/datasets/rna_surface_segmentation/SOURCE.md and its LICENSE); the data is not shipped; "
                "weights under the project licence (MIT)",
        class_names=[str(v) for v in LABEL_VALUES], working_vertices=a.working_vertices, area=1.0,
        smooth_iterations=a.smooth, label_values=LABEL_VALUES,
        training={"recipe": f"tools/train_rna.py WORK --working-vertices {a.working_vertices} --epochs {a.epochs} "
                            f"--batch-size {a.batch_size} --lr {a.lr} --seed {a.seed} --smooth {a.smooth}",
                  "command": "OMP_NUM_THREADS=1 " + " ".join(
                      ["python" if c == sys.executable else c for c in train_command(Path("WORK"), a)]),
                  "train_config": train_config(a), "data": recipe,
                  "minutes": sum(h["train_seconds"] for h in hist) / 60,
                  "meshes_per_second_median": float(np.median([h["meshes_per_second"] for h in hist])),
                  "peak_memory_mb": max(h["peak_memory_mb"] for h in hist)},
        metrics=metrics)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", help="work folder (data, cache, run, evaluation); outside the repository")
    p.add_argument("--steps", nargs="+", default=["data", "train", "evaluate", "export"],
                   choices=["ceiling", "data", "train", "evaluate", "export"])
    p.add_argument("--model", choices=sorted(MODELS), default="gem")
    p.add_argument("--working-vertices", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    p.add_argument("--batch-size", type=int, default=TRAIN["batch_size"])
    p.add_argument("--lr", type=float, default=TRAIN["lr"])
    p.add_argument("--seed", type=int, default=0, help="validation split and training seed")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=1, help="processes of the data and evaluate steps")
    p.add_argument("--limit", type=int, default=None, help="data: only the first N training meshes (probes)")
    p.add_argument("--checkpoint", help="evaluate/export this checkpoint (default WORK/<model>/best.safetensors)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="evaluate: original meshes of")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate: only the first N meshes")
    p.add_argument("--smooth", type=int, default=0, help="majority-smoothing rounds of segment (shipped value)")
    p.add_argument("--eval-tag", default=None, help="evaluate: name of the results (default <split>_e<epoch>_s<smooth>)")
    p.add_argument("--data-root", help="the dataset folder or a folder holding rna_surface_segmentation/")
    p.add_argument("--export", default=str(ROOT / "meshgdl" / "pretrained" / "rna_surface.safetensors"))
    p.add_argument("--ceiling", type=int, nargs="+", default=[2000, 3000, 5000, 6000, 8000, 10000],
                   help="ceiling step: working resolutions whose label round trip is scored")
    a = p.parse_args(argv)
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if "ceiling" in a.steps:
        write_text_atomic(work / "ceiling.json", json.dumps(ceiling(a), indent=1))
    if "data" in a.steps and not (work / "data" / "recipe.json").exists():
        make_data(work, a)
    if "train" in a.steps:
        run_training(work, a)
    ckpt = Path(a.checkpoint) if a.checkpoint else work / a.model / "best.safetensors"
    if "evaluate" in a.steps or "export" in a.steps:
        from meshgdl.train.checkpoint import load_checkpoint

        epoch = load_checkpoint(ckpt).epoch
        a.eval_tag = a.eval_tag or ("" if a.model == "gem" else f"{a.model}_") + f"{a.split}_e{epoch}_s{a.smooth}"
    if "evaluate" in a.steps:
        evaluate(work, a, ckpt, a.eval_tag)
    if "export" in a.steps:
        test = json.loads((work / "eval" / f"{a.eval_tag}.json").read_text())
        if test["split"] != "test" or test["n_meshes"] != 136 or test["epoch"] != load_checkpoint(ckpt).epoch:
            raise SystemExit(f"export: {a.eval_tag} is not the full test evaluation of {ckpt}")
        export(work, a, ckpt, test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
