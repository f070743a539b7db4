#!/usr/bin/env python
"""Symmetry priors, measured: how much the segmentation networks' outputs and per-layer
features change under a change of gauges, a rigid motion and a renumbering of the
vertices of the same mesh.

    python tools/bench/invariance.py                       # human_seg's 18 test meshes
    python tools/bench/invariance.py --meshes 4 --json out.json

Models as in ``tools/bench/deformation_stability.py`` (``--model NAME=CHECKPOINT``,
default ``human_parts`` and ``RUNS``' ``diffusion`` and ``gem_xyz``, skipped when
missing). Each test mesh goes through the model as it is (``meshgdl.data.batching.prepare``
+ the network, no working mesh), in float64 (the architecture's own error) and in
float32 (as the models run), and again after

* **gauges**: every level's gauges rebuilt with another reference neighbour per vertex
  and a random extra rotation (``compute_gauges(reference=..., offsets=...)``), the
  gradients and pooling angles recomputed from them -- the same mesh and geometry;
* **rigid motion**: a random rotation, a translation and a scale by 10^U(-2, 2), the
  geometry recomputed from the moved mesh;
* **vertex order**: a random permutation of the vertices and of the faces, the outputs
  permuted back.

Error: ``max |logits' - logits| / max |logits|`` over vertices and classes, the largest
over the meshes; for gauges also the largest such error of any feature layer's
invariant summary (``model.features``); labels: the share of vertices whose argmax
label is unchanged (all meshes pooled). Last, the equivariant non-linearity: the gauge
error (float64, first test mesh) of ``human_parts``' network with hidden type
``8x0 + 8x1 + 8x2``, untrained, with its gated non-linearity and with the GEM-CNN
paper's regular one at ``--aliasing`` sample counts
(equivariant only up to aliasing).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402
from deformation_stability import data_root, model_paths  # noqa: E402

from meshgdl.testing import regauged_sample  # noqa: E402

TRANSFORMS = ("gauges", "rigid motion", "vertex order")


def outputs(model, sample, dtype, layers: bool):
    """``(logits (n, C), [invariant features (n, C_l)] or None)`` as float64 numpy."""
    import torch

    from meshgdl.data.batching import collate_samples

    batch = collate_samples([sample], dtype=dtype)
    with torch.no_grad():
        out = model(batch).double().numpy()
        feats = [model.features(batch, l).double().numpy() for l in range(model.num_feature_layers)] if layers else None
    return out, feats


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", help="folder holding human_seg/ (default $MESHGDL_DATA or ../shared/datasets)")
    p.add_argument("--runs", default=str(ROOT.parent / "hp"), help="tools/train_human_parts.py's WORK folder")
    p.add_argument("--model", action="append", metavar="NAME=CHECKPOINT")
    p.add_argument("--meshes", type=int, default=None, help="only the first N test meshes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aliasing", type=int, nargs="*", default=[5, 9, 17, 33], metavar="N",
                   help="sample counts of the regular non-linearity to measure (none: skip)")
    p.add_argument("--json", metavar="OUT.json")
    a = p.parse_args(argv)

    import copy

    import torch
    from scipy.spatial.transform import Rotation

    from meshgdl.data.batching import prepare
    from meshgdl.errors import CheckpointError
    from meshgdl.io import load_mesh
    from meshgdl.pretrained import load_model

    torch.set_num_threads(1)
    env0 = measure.environment()
    print(measure.environment_line(env0))
    folder = data_root(a.data_root) / "human_seg"
    names = (folder / "test.txt").read_text().split()[: a.meshes]
    meshes = [load_mesh(folder / "meshes" / f"{n}.obj") for n in names]
    results = {}
    for mname, path in model_paths(a).items():
        try:
            lm = load_model(path, task="segmentation")
        except (CheckpointError, OSError) as exc:
            print(f"# {mname}: skipped ({exc})")
            continue
        cfg = lm.config
        nets = {"float64": (copy.deepcopy(lm.model).double().eval(), torch.float64),
                "float32": (lm.model.float().eval(), torch.float32)}
        err = {d: {t: 0.0 for t in TRANSFORMS} for d in nets}
        layer_err = {d: 0.0 for d in nets}
        same = {d: {t: 0 for t in TRANSFORMS} for d in nets}
        total = 0
        rng = np.random.default_rng(a.seed)
        for mesh in meshes:
            V, F = mesh.V, mesh.F
            s = prepare(V, F, cfg)
            R = Rotation.random(random_state=rng.integers(2**31)).as_matrix()
            moved = prepare(10 ** rng.uniform(-2, 2) * V @ R.T + rng.normal(size=3), F, cfg)
            perm = rng.permutation(len(V))
            inv = np.argsort(perm)
            permuted = prepare(V[perm], inv[F][rng.permutation(len(F))], cfg)
            gauged = regauged_sample(s, rng) if cfg.kind == "gem" else None
            total += len(V)
            for d, (net, dtype) in nets.items():
                out, feats = outputs(net, s, dtype, layers=gauged is not None)
                cases = {"rigid motion": (outputs(net, moved, dtype, False)[0], None),
                         "vertex order": (outputs(net, permuted, dtype, False)[0][inv], None)}
                if gauged is not None:
                    cases["gauges"] = outputs(net, gauged, dtype, True)
                else:  # DiffusionNet's inputs and operators contain no gauge-dependent quantity
                    cases["gauges"] = (out, None)
                for t, (o, f) in cases.items():
                    err[d][t] = max(err[d][t], rel(o, out))
                    same[d][t] += int((o.argmax(1) == out.argmax(1)).sum())
                    if f is not None:
                        layer_err[d] = max(layer_err[d], max(rel(x, y) for x, y in zip(f, feats)))
        results[mname] = {"kind": cfg.kind, "in_features": list(cfg.in_features), "meshes": len(meshes),
                          "vertices": total, "error": err, "layer_error_gauges": layer_err,
                          "labels_unchanged": {d: {t: same[d][t] / total for t in TRANSFORMS} for d in nets}}
        print(f"{mname} ({cfg.kind}, {' + '.join(cfg.in_features)}), {len(meshes)} meshes:", flush=True)
        for d in nets:
            print(f"  {d}: " + ", ".join(f"{t} {err[d][t]:.1e} (labels {100 * same[d][t] / total:.2f} %)"
                                         for t in TRANSFORMS)
                  + (f"; any layer, gauges {layer_err[d]:.1e}" if cfg.kind == "gem" else ""), flush=True)
    if a.aliasing and "human_parts" in results:
        # the regular non-linearity (sample the band-limited signal, ReLU, project back) is
        # equivariant only up to aliasing: human_parts' network (8x0 + 8x1 + 8x2),
        # untrained, with it instead of the gated one, on the first test mesh
        from meshgdl.nn.models import build_model

        base = load_model("human_parts").config
        s = prepare(meshes[0].V, meshes[0].F, base)
        g = regauged_sample(s, np.random.default_rng(a.seed))
        alias = {}
        for nl, n in [("gated", None)] + [("regular", n) for n in a.aliasing]:
            # the regular non-linearity needs equal multiplicities of every frequency
            cfg = dataclasses.replace(base, nonlinearity=nl, hidden_irreps="8x0 + 8x1 + 8x2",
                                      **({"n_samples": n} if n else {}))
            torch.manual_seed(a.seed)
            net = build_model(cfg).double().eval()
            alias[f"{nl}" + (f", {n} samples" if n else "")] = rel(outputs(net, g, torch.float64, False)[0],
                                                                   outputs(net, s, torch.float64, False)[0])
        results["nonlinearity_gauge_error"] = alias
        print("gauge error of an untrained human_parts network (float64) by non-linearity: "
              + ", ".join(f"{k} {v:.1e}" for k, v in alias.items()))
    print("\n| model | dtype | gauges | rigid motion | vertex order | any layer, gauges |")
    print("|---|---|---:|---:|---:|---:|")
    for m, r in results.items():
        if m == "nonlinearity_gauge_error":
            continue
        for d in r["error"]:
            e, u = r["error"][d], r["labels_unchanged"][d]
            cells = " | ".join(f"{e[t]:.1e} ({100 * u[t]:.2f} %)" for t in TRANSFORMS)
            le = f"{r['layer_error_gauges'][d]:.1e}" if r["kind"] == "gem" else "n/a"
            print(f"| {m} | {d} | {cells} | {le} |")
    if a.json:
        measure.write_json(a.json, measure.record("invariance.py", results, vars(a), env0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
