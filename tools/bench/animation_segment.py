#!/usr/bin/env python
"""Benchmark ``meshgdl segment --animation`` on a real deforming mesh: time per frame and
temporal consistency of the per-frame labels, against the reference run side by side.

    python tools/bench/animation_segment.py                      # crane, 88 frames, human_parts
    python tools/bench/animation_segment.py --animation horse_gallop --model human_parts --rounds 2

Runs, in the order of ``measure.schedule`` (interleaved rounds):

* ``reference``: what a user had before -- the Python API with the model loaded once and
  every frame segmented on its own by ``meshgdl.segmentation.segment`` (a new working
  mesh, hierarchy and label transfer per frame), in this process, one after the other;
* ``api``: ``meshgdl.animation_segmentation.segment_animation`` (one plan of the rest pose
  replayed on every frame, frames in worker processes), model loaded once, in this process;
* ``cli``: the whole command ``meshgdl segment MESH --animation CACHE -o OUT.ply --format
  json -q`` in a fresh process (start-up, imports, model and cache loading, writing the
  four outputs included), its own peak resident memory measured.

With ``--ground-truth`` (crane only): the 18 crane frames of the human_seg benchmark
(``MIT_animation__meshes_crane__meshes__mesh_0000`` ... ``_0170``, capture frames 0-170
step 10 = frames 0-85 step 5 of the 88-frame cache, decimated to ~750 vertices each
with their own triangles) are aligned to those frames (centred, unit area, the best
axis permutation, then rigid ICP) and their labels carried to the 10k vertices by closest
surface point; the script then reports the temporal consistency of that ground truth
and the per-frame accuracy of the ``api`` run's labels against it.

With ``--hold-hks`` (a diagnostic, ``api`` run only): the network's HKS input on every
frame is replaced by the rest pose's on the same working vertices (its gradient is still
taken on the frame), so what flickers then comes from the rest of the network's
geometry (log maps, transport, gradients, normalisation), not from the descriptor. The
header also prints how far from isometric the motion is: each edge's length over all
the frames, its standard deviation relative to its mean.

Seconds per frame are wall time over frames. Consistency (per-frame labels): share of
(vertex, frame) labels equal to the vertex's majority and share of vertices that never
change label (:func:`meshgdl.train.metrics.temporal_consistency`). Data: the animations
under the data root (``--data-root``, ``$MESHGDL_DATA`` or ``../shared/datasets``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402


def data_root(arg: str | None) -> Path:
    from meshgdl.data.datasets import default_data_root

    return Path(arg) if arg else Path(default_data_root())


def _normalised(V, F):
    from meshgdl.geometry.normals import face_areas

    fa = face_areas(V, F)
    c = (fa[:, None] * V[F].mean(axis=1)).sum(0) / fa.sum()
    return (V - c) / np.sqrt(fa.sum())


def _align(P: np.ndarray, Q: np.ndarray, R0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Q (k, 3) rigidly moved onto P (n, 3): the best signed axis permutation (unless R0
    is given), then 10 ICP steps. Returns (moved Q, the permutation used)."""
    import itertools

    from scipy.spatial import cKDTree

    if R0 is None:
        best = None
        for perm in itertools.permutations(range(3)):
            for sg in itertools.product([1, -1], repeat=3):
                R = np.zeros((3, 3))
                R[range(3), perm] = sg
                if np.linalg.det(R) > 0:
                    d = cKDTree(Q @ R.T).query(P)[0].mean()
                    if best is None or d < best[0]:
                        best = (d, R)
        R0 = best[1]
    Q = Q @ R0.T
    for _ in range(10):
        match = Q[cKDTree(Q).query(P)[1]]
        H = (match - match.mean(0)).T @ (P - P.mean(0))
        U, _, Wt = np.linalg.svd(H)
        if np.linalg.det(Wt.T @ U.T) < 0:
            Wt[-1] *= -1
        Q = (Q - match.mean(0)) @ (Wt.T @ U.T).T + P.mean(0)
    return Q, R0


def edge_strain(anim, T: int) -> np.ndarray:
    """``(e,)``: every edge's length over the first ``T`` frames, its standard deviation relative to
    its mean (:func:`meshgdl.train.metrics.edge_length_variation`; 0 = isometric)."""
    from meshgdl.geometry.topology import face_sides
    from meshgdl.train.metrics import edge_length_variation

    E = np.unique(face_sides(anim.rest.F), axis=0)
    lengths = []
    for t in range(T):
        V = anim.frame_V(t)
        lengths.append(np.linalg.norm(V[E[:, 0]] - V[E[:, 1]], axis=1))
    return edge_length_variation(lengths)


def hold_hks(anim, seg):
    """Make every call of ``meshgdl.data.batching.prepare`` on one of the rest pose's
    working components return the rest pose's HKS (``--hold-hks``), for the rest of this
    process; forked workers inherit the change."""
    import dataclasses

    import meshgdl.data.batching as batching
    from meshgdl.segmentation import plan_segmentation

    plan = plan_segmentation(anim.rest, seg)
    wm = plan.working.apply(anim.rest.V)
    orig = batching.prepare
    rest = {(len(idx), len(Fc)): orig(wm.V[idx], Fc, seg.config, replay=replay).ops.hks
            for idx, Fc, replay in plan.parts}

    def prepare(V, F, config, cache_dir=None, replay=None):
        sample = orig(V, F, config, cache_dir=cache_dir, replay=replay)
        key = (len(V), len(F))
        if key in rest:
            sample.ops = dataclasses.replace(sample.ops, hks=rest[key])
        return sample

    batching.prepare = prepare


def changing_by_boundary(frame_labels: np.ndarray) -> dict:
    """Vertices whose label changes over the frames of ``frame_labels (T, n)``, by the
    pair of labels they switch between: ``{(a, b): count}`` (a < b; unlabelled frames
    ignored), vertices taking three or more labels under ``"3+"``."""
    out: dict = {}
    for i in np.flatnonzero((frame_labels != frame_labels[:1]).any(axis=0)):
        u = [int(x) for x in np.unique(frame_labels[:, i]) if x >= 0]
        key = tuple(u) if len(u) == 2 else "3+" if len(u) > 2 else None
        if key is not None:
            out[key] = out.get(key, 0) + 1
    return out


def crane_ground_truth(anim, human_seg: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (18, n_file) int64, frames (18,))``: human_seg's labelled crane frames
    carried onto the cache's frames 0, 5, ..., 85 (see the module docstring)."""
    from meshgdl.data.labels import nearest_surface_labels
    from meshgdl.io import load_mesh

    out, frames, R0 = [], [], None
    for k in range(18):
        name = f"MIT_animation__meshes_crane__meshes__mesh_{10 * k:04d}"
        g = load_mesh(human_seg / "meshes" / f"{name}.obj")
        y = np.loadtxt(human_seg / "labels" / f"{name}.txt", dtype=np.int64)
        V = _normalised(anim.frame_V(5 * k), anim.rest.F)
        Vg, R0 = _align(V, _normalised(g.V, g.F), R0)
        out.append(anim.rest.to_original_vertices(nearest_surface_labels(V, Vg, g.F, y), fill=-1))
        frames.append(5 * k)
    return np.stack(out), np.asarray(frames)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--animation", default="crane", help="NAME: NAME.obj + NAME.pc2 under DATA/animations")
    p.add_argument("--data-root", help="folder holding animations/ (default $MESHGDL_DATA or ../shared/datasets)")
    p.add_argument("--model", default="human_parts", help="shipped name, checkpoint or run folder")
    p.add_argument("--working-vertices", type=int, default=None,
                   help="working resolution (default: the model's; a run folder of tools/train_human_parts.py "
                        "needs 750)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--frames", type=int, default=None, help="only the first N frames")
    p.add_argument("--workers", type=int, default=None, help="worker processes of api/cli (default: per core)")
    p.add_argument("--skip", nargs="*", default=[], choices=["reference", "api", "cli"])
    p.add_argument("--refine", type=float, default=None, metavar="SMOOTHNESS",
                   help="boundary refinement of every run (default: the model's, as meshgdl segment does; "
                        "0 = off)")
    p.add_argument("--ground-truth", action="store_true",
                   help="crane: score per-frame labels against human_seg's 18 labelled crane frames")
    p.add_argument("--hold-hks", action="store_true",
                   help="diagnostic: every frame's HKS input replaced by the rest pose's (api run only)")
    p.add_argument("--json", metavar="OUT.json", help="write the measure.py record here")
    a = p.parse_args(argv)

    import torch

    from meshgdl.animation_segmentation import segment_animation
    from meshgdl.data.labels import frame_majority
    from meshgdl.io import load_animation
    from meshgdl.segmentation import load_segmenter, segment
    from meshgdl.train.metrics import temporal_consistency

    torch.set_num_threads(1)
    env0 = measure.environment()
    print(measure.environment_line(env0))
    folder = data_root(a.data_root) / "animations"
    mesh_path, cache_path = folder / f"{a.animation}.obj", folder / f"{a.animation}.pc2"
    anim = load_animation(mesh_path, cache_path)
    T = anim.n_frames if a.frames is None else min(a.frames, anim.n_frames)
    seg = load_segmenter(a.model, working_vertices=a.working_vertices)
    print(f"{a.animation}: {T} frames, {anim.rest.n_orig_vertices} vertices, model {a.model}, "
          f"{os.cpu_count()} cores")
    strain = edge_strain(anim, T)
    print(f"strain of the motion (an edge's length over the frames, std / mean): mean {100 * strain.mean():.1f} %, "
          f"90th percentile {100 * np.percentile(strain, 90):.1f} %, 99th {100 * np.percentile(strain, 99):.1f} %")
    if a.hold_hks:
        if set(a.skip) != {"reference", "cli"}:
            raise SystemExit("--hold-hks changes this process's pipeline: use it with --skip reference cli")
        hold_hks(anim, seg)
        print("diagnostic: every frame's HKS input held at the rest pose's")

    results: dict[str, list[dict]] = {"reference": [], "api": [], "cli": []}

    def reference():
        labels = np.zeros((T, anim.rest.n_orig_vertices), dtype=np.int64)
        t0 = time.perf_counter()
        for t in range(T):
            labels[t] = segment(anim.frame(t), seg, refine=a.refine).file_vertex_labels
        wall = time.perf_counter() - t0
        results["reference"].append({"seconds": wall, "per_frame": wall / T, **temporal_consistency(labels)})

    api_labels = []

    def api():
        t0 = time.perf_counter()
        res = segment_animation(anim, seg, frames=range(T), workers=a.workers, refine=a.refine)
        wall = time.perf_counter() - t0
        api_labels[:] = [res.frame_labels]
        results["api"].append({"seconds": wall, "per_frame": wall / T, "workers": res.workers,
                               "plan_seconds": res.seconds["plan"],
                               "frame_median_in_worker": float(np.median(res.frame_seconds)),
                               **res.consistency})

    def cli():
        with tempfile.TemporaryDirectory(prefix="meshgdl-anim-") as td:
            cmd = ["-m", "meshgdl", "segment", str(mesh_path), "--animation", str(cache_path), "-o",
                   str(Path(td) / "out.ply"), "--format", "json", "-q", "--model", a.model, "--frames", f"0:{T}"]
            if a.workers:
                cmd += ["--workers", str(a.workers)]
            if a.working_vertices:
                cmd += ["--working-vertices", str(a.working_vertices)]
            if a.refine is not None:
                cmd += ["--refine", str(a.refine)]
            r = measure.run_process(measure.python_command(cmd), cwd=ROOT)
            if r.returncode != 0:
                raise SystemExit(f"cli failed: {r.stderr.strip()[-500:]}")
            doc = json.loads(r.stdout)
        results["cli"].append({"seconds": r.wall_s, "per_frame": r.wall_s / T, "peak_rss_mib": r.peak_rss_mib,
                               "workers": doc["workers"], **doc["temporal_consistency"]})

    fns = {k: f for k, f in (("reference", reference), ("api", api), ("cli", cli)) if k not in a.skip}
    measure.time_calls(fns, a.rounds, warmup=0, alternate=True)

    ref = statistics.median(r["per_frame"] for r in results["reference"]) if results["reference"] else None
    print(f"\n{'run':<10} {'s/frame':>8} {'vs ref':>7} {'majority agr.':>14} {'never change':>13} {'flips/frame':>12}"
          f"  notes")
    summary = {}
    for k in fns:
        rows = results[k]
        per = statistics.median(r["per_frame"] for r in rows)
        r0 = rows[0]
        note = ""
        if "workers" in r0:
            note += f"{r0['workers']} workers"
        if k == "cli" and r0.get("peak_rss_mib"):
            note += f", peak RSS {max(r['peak_rss_mib'] for r in rows):.0f} MiB (command, all workers: parent)"
        if k == "api":
            note += f", plan {r0['plan_seconds']:.2f} s, frame in worker {r0['frame_median_in_worker']:.3f} s"
        speed = f"{ref / per:6.2f}x" if ref else "    -  "
        print(f"{k:<10} {per:8.3f} {speed:>7} {100 * r0['majority_agreement']:13.2f}% {100 * r0['never_changing']:12.2f}%"
              f" {100 * r0['flips_per_frame']:11.2f}%  {note}")
        summary[k] = {"per_frame_median": per, "speedup_vs_reference": (ref / per) if ref else None, "runs": rows}
    print(f"load average after: {measure.load_average()}")
    if a.ground_truth and api_labels:
        gt, frames = crane_ground_truth(anim, data_root(a.data_root) / "human_seg")
        keep = frames < T
        gt, frames = gt[keep], frames[keep]
        pred = api_labels[0][frames]
        c_gt, c_pred = temporal_consistency(gt), temporal_consistency(pred)
        acc = (pred == gt).mean(axis=1)
        print(f"\nhuman_seg's labels of {len(frames)} crane frames (frames {frames[0]}..{frames[-1]} step 5), "
              f"carried to the 10k vertices:")
        print(f"  ground truth: {100 * c_gt['majority_agreement']:.2f} % of (vertex, frame) labels equal the "
              f"majority, {100 * c_gt['never_changing']:.2f} % of vertices never change")
        print(f"  per-frame labels on the same frames: {100 * c_pred['majority_agreement']:.2f} % / "
              f"{100 * c_pred['never_changing']:.2f} %")
        print(f"  per-frame accuracy against it: mean {100 * acc.mean():.2f} % (min {100 * acc.min():.2f} %, "
              f"max {100 * acc.max():.2f} %)")
        # one label per vertex for the whole sequence: its majority over all the per-frame labels
        steady = frame_majority(api_labels[0])
        acc_steady = (steady[None] == gt).mean(axis=1)
        print(f"  each vertex's majority per-frame label, held on every frame: {100 * acc_steady.mean():.2f} % "
              f"(the ground truth's own majority: {100 * (frame_majority(gt)[None] == gt).mean():.2f} %)")
        by_gt, by_pred = changing_by_boundary(gt), changing_by_boundary(pred)
        names = list(seg.class_names)
        print("  vertices changing label on those frames, by boundary (ground truth / per-frame labels):")
        for key in sorted(set(by_gt) | set(by_pred), key=lambda k: -(by_gt.get(k, 0) + by_pred.get(k, 0))):
            name = key if key == "3+" else f"{names[key[0]]}/{names[key[1]]}"
            print(f"    {name:<24} {by_gt.get(key, 0):6d} / {by_pred.get(key, 0):6d}")
        summary["ground_truth"] = {"frames": frames.tolist(), "consistency": c_gt, "prediction_consistency": c_pred,
                                   "changing_by_boundary": {str(k): [by_gt.get(k, 0), by_pred.get(k, 0)]
                                                            for k in set(by_gt) | set(by_pred)},
                                   "accuracy_per_frame": acc.tolist(),
                                   "majority_label_accuracy_per_frame": acc_steady.tolist()}
    if a.json:
        measure.write_json(a.json, measure.record("animation_segment.py", summary, vars(a), env0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
