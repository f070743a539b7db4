#!/usr/bin/env python
"""Stability to deformation, measured: how much per-layer features of segmentation
networks, and intrinsic / extrinsic descriptors, move while a real mesh deforms.

    python tools/bench/deformation_stability.py                        # crane + horse_gallop
    python tools/bench/deformation_stability.py --animations crane --frames 6   # a quick look
    python tools/bench/deformation_stability.py --runs /work/hp --json out.json

Models (``--model NAME=CHECKPOINT``, repeatable; default the three below, a missing
checkpoint is skipped with a note): the shipped ``human_parts`` (GEM-CNN U-Net, HKS +
HKS-gradient input), ``diffusion`` (DiffusionNet 4x128 on HKS, trained by the same recipe:
``tools/train_human_parts.py RUNS --steps train --model diffusion --seeds 0``) and
``gem_xyz`` (the same GEM U-Net on centred xyz positions, trained with random rotations:
``--model gem_xyz``), the last two from ``RUNS/<model>_seed0/best.safetensors``
(``--runs``, default ``../hp`` next to the checkout). The models are for human bodies;
on the horse their features are measured as features only.

Every frame is seen the way ``meshgdl segment --animation`` sees it: one plan of the rest
pose (:func:`meshgdl.segmentation.plan_segmentation`: working mesh tied to the surface,
the U-Net's coarse levels) replayed on each frame, so working vertex ``i`` is the same
surface point in every frame. All models use ``human_parts``' working-mesh settings
(750 vertices, unit area, holes filled), so they see the same working mesh. Per frame and
model, the geometry is prepared once and every feature layer (``model.features(batch,
layer)``) read from it: for the GEM U-Nets the gauge-invariant summary of each layer's
output (the rho_0 scalars and the norm of every rho_n 2-vector; the raw rho_n components
depend on the gauges), coarse levels copied to their fine vertices; for DiffusionNet its
hidden channels (all scalars). Row ``input`` is the same summary of the network's input
features (HKS and the norms of the HKS gradients for ``human_parts``, centred positions
for ``gem_xyz``). References on the same working mesh and frames, scaled to unit area as
the models scale it: ``x`` -- the centred positions (what an extrinsic feature sees); ``HKS, own times`` -- 16 scales
from 64 Laplacian eigenpairs at each frame's own spectrum-relative times, as the models
compute it (:func:`meshgdl.operators.operator_hks`); ``HKS, rest times`` -- the same with
the times fixed on the rest pose; ``eigen`` -- the squares of the first ``--n-eigen``
non-constant eigenfunctions (a signed eigenfunction is defined up to sign and, within a
near-degenerate pair, up to rotation; its square only up to the latter).

Drift (:func:`meshgdl.train.metrics.feature_drift`), per channel c over the T frames and
the working vertices i, with ``qbar_i`` the vertex's mean over the frames, ``mu_t`` the
frame's mean over the vertices and ``S_c = mean (q_ti - mu_t)^2`` the spread over the
surface:

    drift = sqrt(mean_c [mean_(t,i) (q_ti - qbar_i)^2 / S_c])
    step  = sqrt(mean_c [mean_(t>=1,i) (q_ti - q_(t-1)i)^2 / (2 S_c)])

0: the feature rides on the surface; ~1: no more related to the surface point than a
random vertex's value (values redrawn every frame give drift sqrt(1 - 1/T), step 1).
Constant channels are left out. Label flips per frame: the per-frame labels of
:func:`meshgdl.animation_segmentation.segment_animation` (file vertices, no smoothing)
through :func:`meshgdl.train.metrics.temporal_consistency`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402

DEFAULT_MODELS = ("human_parts", "diffusion", "gem_xyz")


def data_root(arg: str | None) -> Path:
    from meshgdl.data.datasets import default_data_root

    return Path(arg) if arg else Path(default_data_root())


def model_paths(a) -> dict[str, str]:
    """name -> checkpoint (shipped name, file or run folder)."""
    if a.model:
        out = {}
        for spec in a.model:
            name, sep, path = spec.partition("=")
            out[name] = path if sep else name
        return out
    runs = Path(a.runs)
    return {"human_parts": "human_parts", "diffusion": str(runs / "diffusion_seed0" / "best.safetensors"),
            "gem_xyz": str(runs / "gem_xyz_seed0" / "best.safetensors")}


def test_accuracy(seg, path: str) -> dict | None:
    """Per-face / per-vertex test accuracy and mIoU on human_seg's 18 test meshes: the model
    description's metrics, else the run's ``test.json`` (``meshgdl eval``)."""
    m = (seg.info or {}).get("metrics")
    if m:
        return {"face_accuracy": m["test_face_accuracy"], "vertex_accuracy": m["test_vertex_accuracy"],
                "mean_iou": m["test_mean_iou"]}
    p = Path(path)
    for f in (p / "test.json", p.parent / "test.json"):
        if f.is_file():
            t = json.loads(f.read_text())
            return {"face_accuracy": t["face_accuracy"], "vertex_accuracy": t["accuracy"], "mean_iou": t["mean_iou"]}
    return None


def layer_names(config, n: int) -> list[str]:
    """Names of ``model.features`` layers, in the order the models record them
    (GEMNet._run: conv_in, the down blocks level by level, the up blocks, the head's input)."""
    if config.kind == "gem":
        L, b = config.n_levels, config.n_layers
        names = ["conv_in, level 0"]
        names += [f"down, level {l}, block {i + 1}" for l in range(L) for i in range(b)]
        names += [f"up, level {l}, block {i + 1}" for l in reversed(range(L - 1)) for i in range(b)]
        names += ["head input, level 0"]
    elif config.kind == "diffusion":
        names = ["input linear"] + [f"block {i + 1}" for i in range(n - 1)]
    else:
        names = [f"layer {i}" for i in range(n)]
    if len(names) != n:  # a model kind whose layout changed: fall back to numbers
        names = [f"layer {i}" for i in range(n)]
    return names


def model_frames(anim, seg, plan, frames) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict]:
    """The invariant summary of ``seg``'s input features, then every feature layer of its
    network, on every frame: ``([(T, k, C_l)] per layer, mask (k,) of the working vertices
    the network saw, seconds per frame (T,), {"level_vertices": vertices of each part's
    levels, "edge_length_variation": per level of the first part, the mean relative
    standard deviation of an edge's length over the frames})``."""
    import torch

    from meshgdl.data.batching import collate_samples, prepare
    from meshgdl.nn.features import input_features
    from meshgdl.nn.pooling import invariant_features
    from meshgdl.operators import unit_area
    from meshgdl.train.metrics import edge_length_variation

    model = seg.model
    n_layers = int(model.num_feature_layers)
    k = plan.working.n_vertices
    out: list[np.ndarray | None] = [None] * (1 + n_layers)
    seen = np.zeros(k, dtype=bool)
    secs = np.zeros(len(frames))
    levels: list[list[int]] = []
    edges: list[list[np.ndarray]] = []  # per level: edge lengths of every frame (first part)

    def layer(batch, l):
        if l == 0:  # the network's input, as it computes it (unit area: a scale, no drift)
            x, irreps = input_features(unit_area(batch.ops), seg.config.in_features)
            return invariant_features(x, irreps)
        return model.features(batch, l - 1)

    for j, t in enumerate(frames):
        t0 = time.perf_counter()
        wm = plan.working.apply(anim.frame_V(t))
        for idx, Fc, replay in plan.parts:
            sample = prepare(wm.V[idx], Fc, seg.config, replay=replay)
            if j == 0:
                levels.append([lv.num_vertices for lv in sample.levels])
            if idx is plan.parts[0][0]:
                if not edges:
                    edges = [[] for _ in sample.levels]
                for l, lv in enumerate(sample.levels):
                    edges[l].append(np.asarray(lv.r, dtype=np.float64))
            batch = collate_samples([sample], dtype=torch.float32)
            for l in range(1 + n_layers):
                h = layer(batch, l).double().numpy()
                if out[l] is None:
                    out[l] = np.zeros((len(frames), k, h.shape[1]))
                out[l][j, idx] = h
            seen[idx] = True
        secs[j] = time.perf_counter() - t0
    # how far from isometric the motion is at each level: the mean over edges of the
    # relative standard deviation of the edge's length over the frames
    stretch = [float(np.mean(edge_length_variation(np.stack(R)))) for R in edges]
    return out, seen, secs, {"level_vertices": levels, "edge_length_variation": stretch}


def reference_frames(anim, plan, frames, k_eig: int, n_eigen: int, n_hks: int) -> tuple[dict, dict]:
    """``{"x", "HKS", "eigen"}: (T, k, C)`` on the working mesh of every frame, and notes
    (rest eigenvalues, which eigenfunctions, seconds per frame)."""
    from meshgdl.geometry.laplacian import choose_laplacian_method, laplacian
    from meshgdl.geometry.normals import face_areas
    from meshgdl.geometry.spectral import default_hks_times, eigenbasis, hks
    from meshgdl.operators import operator_hks

    def working(t):
        # scaled to unit area like the models' inputs (unit_area): the replayed working
        # mesh has the *input's* area, its own differs by ~1 % from frame to frame
        wm = plan.working.apply(anim.frame_V(t))
        return wm.V / np.sqrt(face_areas(wm.V, wm.F).sum()), wm.F

    V0, F0 = working(frames[0])
    method = choose_laplacian_method(V0, F0)
    L, M = laplacian(V0, F0, method=method)
    ev0, _ = eigenbasis(L, M, k_eig + 1)
    times = default_hks_times(ev0[:k_eig], n_hks)
    # the first n_eigen non-constant eigenfunctions whose rest eigenvalue is at least
    # 2 % from both neighbours' (inside a near-degenerate pair even phi^2 depends on
    # the solver's basis); counted from index 1 (index 0: the constant)
    gap = np.minimum(np.abs(np.diff(ev0, prepend=-np.inf)), np.abs(np.diff(ev0, append=np.inf)))
    eig_idx = [i for i in range(1, len(ev0) - 1) if gap[i] > 0.02 * ev0[i]][:n_eigen]
    out = {"x": [], "HKS, rest times": [], "HKS, own times": [], "eigen": []}
    secs = []
    for t in frames:
        t0 = time.perf_counter()
        V, F = working(t)
        L, M = laplacian(V, F, method=method)
        evals, evecs = eigenbasis(L, M, k_eig + 1)
        out["x"].append(V)
        out["HKS, rest times"].append(hks(evals[:k_eig], evecs[:, :k_eig], times=times))
        out["HKS, own times"].append(operator_hks(evals[:k_eig], evecs[:, :k_eig], n_hks))
        out["eigen"].append(evecs[:, eig_idx] ** 2)
        secs.append(time.perf_counter() - t0)
    notes = {"laplacian": method, "rest_eigenvalues": ev0, "eigen_indices": eig_idx, "hks_times": times,
             "seconds_per_frame": float(np.median(secs))}
    return {k: np.stack(v) for k, v in out.items()}, notes


def run_animation(name: str, a, models: dict) -> dict:
    from meshgdl.animation_segmentation import segment_animation
    from meshgdl.io import load_animation
    from meshgdl.segmentation import plan_segmentation
    from meshgdl.train.metrics import feature_drift

    folder = data_root(a.data_root) / "animations"
    anim = load_animation(folder / f"{name}.obj", folder / f"{name}.pc2")
    T = anim.n_frames if a.frames is None else min(a.frames, anim.n_frames)
    frames = list(range(T))
    print(f"\n## {name}: {T} frames, {anim.rest.n_vertices} vertices", flush=True)
    res: dict = {"frames": T, "vertices": anim.rest.n_vertices, "models": {}}
    plans = {}
    for mname, (seg, path) in models.items():
        plan, dt = measure.timed(plan_segmentation, anim.rest, seg)
        plans[mname] = plan
        print(f"{mname}: plan {dt:.2f} s, working mesh {plan.working.n_vertices} vertices, "
              f"{len(plan.parts)} part(s)", flush=True)
    first = next(iter(plans.values()))
    F0 = first.working.apply(anim.rest.V).F
    same = all(np.array_equal(p.working.apply(anim.rest.V).F, F0) for p in plans.values())
    res["same_working_mesh"] = same

    ref, notes = reference_frames(anim, first, frames, a.k_eig, a.n_eigen, a.n_hks)
    res["references"] = {k: feature_drift(v) for k, v in ref.items()}
    res["reference_notes"] = notes
    for k, d in res["references"].items():
        print(f"  {k:<16} channels {d['channels']:3d}  drift {d['drift']:.3f}  step {d['step']:.3f}", flush=True)

    for mname, (seg, path) in models.items():
        feats, seen, secs, levels = model_frames(anim, seg, plans[mname], frames)
        print(f"  {mname:<12} vertices per level: {levels['level_vertices']}, edge length variation over the "
              f"frames per level: {', '.join(f'{100 * x:.1f} %' for x in levels['edge_length_variation'])}",
              flush=True)
        names = ["input: " + " + ".join(seg.config.in_features)] + layer_names(seg.config, len(feats) - 1)
        layers = []
        for nm, Q in zip(names, feats):
            d = feature_drift(Q[:, seen])
            layers.append({"layer": nm, **d})
            print(f"  {mname:<12} {nm:<28} channels {d['channels']:3d}  drift {d['drift']:.3f}  "
                  f"step {d['step']:.3f}", flush=True)
        entry = {"checkpoint": path, "kind": seg.config.kind, "in_features": list(seg.config.in_features),
                 "test": test_accuracy(seg, path), "layers": layers, "working_vertices_seen": int(seen.sum()),
                 **levels,
                 "seconds_per_frame": float(np.median(secs))}
        if not a.no_labels:
            r, dt = measure.timed(segment_animation, anim, seg, frames=frames, workers=a.workers,
                                  smooth_iterations=0)
            entry["labels"] = dict(r.consistency, seconds=dt, workers=r.workers)
            print(f"  {mname:<12} labels: flips/frame {100 * r.consistency['flips_per_frame']:.2f} %, majority "
                  f"agreement {100 * r.consistency['majority_agreement']:.2f} %, never changing "
                  f"{100 * r.consistency['never_changing']:.2f} % ({dt:.0f} s)", flush=True)
        res["models"][mname] = entry
    return res


def print_tables(results: dict) -> None:
    for name, r in results.items():
        print(f"\n### {name} ({r['frames']} frames)\n")
        print("| quantity | layer | channels | drift | step | median channel's drift | flips / frame |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for k, d in r["references"].items():
            print(f"| {k} | | {d['channels']} | {d['drift']:.3f} | {d['step']:.3f} | {d['drift_median']:.3f} | |")
        for m, e in r["models"].items():
            flips = f"{100 * e['labels']['flips_per_frame']:.2f} %" if "labels" in e else ""
            for i, d in enumerate(e["layers"]):
                print(f"| {m} | {i}: {d['layer']} | {d['channels']} | {d['drift']:.3f} | {d['step']:.3f} | "
                      f"{d['drift_median']:.3f} | {flips if i == len(e['layers']) - 1 else ''} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--animations", nargs="+", default=["crane", "horse_gallop"],
                   help="NAME: NAME.obj + NAME.pc2 under DATA/animations")
    p.add_argument("--data-root", help="folder holding animations/ (default $MESHGDL_DATA or ../shared/datasets)")
    p.add_argument("--runs", default=str(ROOT.parent / "hp"),
                   help="tools/train_human_parts.py's WORK folder (default ../hp next to the checkout)")
    p.add_argument("--model", action="append", metavar="NAME=CHECKPOINT",
                   help="a model to measure (repeatable; default human_parts, RUNS' diffusion and gem_xyz)")
    p.add_argument("--frames", type=int, default=None, help="only the first N frames")
    p.add_argument("--k-eig", type=int, default=64, help="eigenpairs of the HKS reference")
    p.add_argument("--n-hks", type=int, default=16)
    p.add_argument("--n-eigen", type=int, default=6, help="eigenfunctions of the eigen reference")
    p.add_argument("--workers", type=int, default=2, help="worker processes of segment_animation")
    p.add_argument("--no-labels", action="store_true", help="skip the per-frame labels (flips)")
    p.add_argument("--json", metavar="OUT.json", help="write the measure.py record here")
    a = p.parse_args(argv)

    import torch

    from meshgdl.errors import CheckpointError
    from meshgdl.segmentation import load_segmenter

    torch.set_num_threads(1)
    env0 = measure.environment()
    print(measure.environment_line(env0))
    paths = model_paths(a)
    ref = load_segmenter("human_parts")
    models = {}
    for name, path in paths.items():
        try:
            seg = ref if path == "human_parts" else load_segmenter(path, working_vertices=ref.working_vertices)
        except (CheckpointError, OSError) as exc:
            print(f"# {name}: skipped ({exc}; train it with tools/train_human_parts.py)")
            continue
        # every model sees human_parts' working mesh (resolution, area, holes filled)
        seg.area = ref.area
        seg.info = dict(seg.info or {}, fill_holes=ref.fill_holes)
        models[name] = (seg, path)
    results = {name: run_animation(name, a, models) for name in a.animations}
    print_tables(results)
    print(f"load average after: {measure.load_average()}")
    if a.json:
        measure.write_json(a.json, measure.record("deformation_stability.py", results, vars(a), env0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
