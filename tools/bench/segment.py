#!/usr/bin/env python
"""Benchmark ``meshgdl segment`` end to end: wall time and peak memory vs mesh size.

    python tools/bench/segment.py                       # 10k, 100k, 200k, 500k faces, CPU
    python tools/bench/segment.py --faces 10000 200000 --repeat 3 --threads 2

Test meshes: a posed capsule figure (resolution 0.025, ~15k faces), Loop-subdivided
until it is finer than the largest size asked for, then quadric-decimated to each
size (smooth, irregular, like a scan or a sculpt), written as binary PLY into a
temporary folder. Each run is a fresh process -- ``python -m meshgdl segment MESH
-o OUT.ply --format json --quiet`` -- so the time includes interpreter start-up,
imports, model loading and writing the three output files; peak memory is the
child's own resident-set high-water mark (``measure.run_process``; its ``ru_maxrss``
would start at this script's resident set, which holds the big test meshes). Stage
times come from the command's JSON; ``--json`` writes the record of
``tools/bench/measure.py`` (environment, commit, load).
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


def make_meshes(sizes: list[int], folder: Path) -> dict[int, Path]:
    import fast_simplification
    import trimesh

    from meshgdl.data.synthetic import capsule_figure, random_pose
    from meshgdl.io import save_mesh

    V, F, _ = capsule_figure(random_pose(np.random.default_rng(7)), resolution=0.025, seed=3)
    while len(F) < 1.2 * max(sizes):
        V, F = trimesh.remesh.subdivide_loop(V, F, iterations=1)
    out = {}
    for n in sizes:
        if n < len(F):
            Vd, Fd = fast_simplification.simplify(V, F, target_count=int(n))
        else:
            Vd, Fd = V, F
        p = folder / f"figure_{n}.ply"
        save_mesh(p, np.asarray(Vd, np.float64), np.asarray(Fd, np.int64))
        out[n] = p
    return out


def run_once(mesh: Path, out: Path, device: str, threads: int, model: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    # Spinning OpenMP threads stall whenever the other core is busy (shared machine).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cmd = measure.python_command(["-m", "meshgdl", "segment", str(mesh), "-o", str(out), "--format", "json",
                                  "--quiet", "--device", device] + (["--model", model] if model else []))
    r = measure.run_process(cmd, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"segment failed on {mesh}: {r.stderr.strip()[-500:]}")
    doc = json.loads(r.stdout)
    return {"wall_s": r.wall_s, "peak_rss_mb": r.peak_rss_mib, "stages": doc["seconds"],
            "vertices": doc["n_vertices"], "faces": doc["n_faces"], "working": doc["working_mesh"],
            "load_average": measure.load_average()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=int, nargs="+", default=[10_000, 100_000, 200_000, 500_000])
    p.add_argument("--repeat", type=int, default=2, help="runs per size (median reported)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", help="shipped model name, checkpoint or run folder (default: segment's default)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = p.parse_args(argv)
    env = measure.environment()
    with tempfile.TemporaryDirectory(prefix="meshgdl-bench-segment-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        meshes = make_meshes(sorted(a.faces), tmp)
        print(f"# test meshes made in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rows = []
        for n, mesh in meshes.items():
            runs = [run_once(mesh, tmp / f"out_{n}.ply", a.device, a.threads, a.model) for _ in range(a.repeat)]
            wall = statistics.median(r["wall_s"] for r in runs)
            stages = {k: statistics.median(r["stages"].get(k, 0.0) for r in runs) for k in runs[0]["stages"]}
            rows.append({"faces": runs[0]["faces"], "vertices": runs[0]["vertices"], "wall_s": wall,
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "stages": stages,
                         "working_vertices": runs[0]["working"]["vertices"], "runs": [r["wall_s"] for r in runs],
                         "peak_rss_runs_mb": [r["peak_rss_mb"] for r in runs],
                         "load_average": [r["load_average"] for r in runs]})
            print(f"{rows[-1]['faces']:>8} faces  {wall:6.2f} s  {rows[-1]['peak_rss_mb']:7.0f} MiB  "
                  + "  ".join(f"{k} {v:.2f}" for k, v in stages.items()), file=sys.stderr)
    print()
    print(measure.environment_line(env))
    print(f"# children: OMP_NUM_THREADS={a.threads}, device {a.device}, model {a.model or 'default'}; load average at the end "
          f"{measure.load_average()}")
    print("| faces | vertices | end-to-end (s) | peak RSS (MiB) | load | preprocess | predict | transfer | write |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["stages"]
        print(f"| {r['faces']:,} | {r['vertices']:,} | {r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} | "
              + " | ".join(f"{s.get(k, float('nan')):.2f}" for k in ("load", "preprocess", "predict", "transfer", "write"))
              + " |")
    if a.json:
        measure.write_json(a.json, measure.record("tools/bench/segment.py", rows, a, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
