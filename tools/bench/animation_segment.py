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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--animation", default="crane", help="NAME: NAME.obj + NAME.pc2 under DATA/animations")
    p.add_argument("--data-root", help="folder holding animations/ (default $MESHGDL_DATA or ../shared/datasets)")
    p.add_argument("--model", default="human_parts")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--frames", type=int, default=None, help="only the first N frames")
    p.add_argument("--workers", type=int, default=None, help="worker processes of api/cli (default: per core)")
    p.add_argument("--skip", nargs="*", default=[], choices=["reference", "api", "cli"])
    p.add_argument("--json", metavar="OUT.json", help="write the measure.py record here")
    a = p.parse_args(argv)

    import torch

    from meshgdl.animation_segmentation import segment_animation
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
    seg = load_segmenter(a.model)
    print(f"{a.animation}: {T} frames, {anim.rest.n_orig_vertices} vertices, model {a.model}, "
          f"{os.cpu_count()} cores")

    results: dict[str, list[dict]] = {"reference": [], "api": [], "cli": []}

    def reference():
        labels = np.zeros((T, anim.rest.n_orig_vertices), dtype=np.int64)
        t0 = time.perf_counter()
        for t in range(T):
            labels[t] = segment(anim.frame(t), seg).file_vertex_labels
        wall = time.perf_counter() - t0
        results["reference"].append({"seconds": wall, "per_frame": wall / T, **temporal_consistency(labels)})

    def api():
        t0 = time.perf_counter()
        res = segment_animation(anim, seg, frames=range(T), workers=a.workers)
        wall = time.perf_counter() - t0
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
    if a.json:
        measure.write_json(a.json, measure.record("animation_segment.py", summary, vars(a), env0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
