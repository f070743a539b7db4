"""Benchmark per-mesh operator preprocessing against the DiffusionNet reference.

    python tools/bench/operators.py                          # sizes 10000,100000, k=128, 1 thread
    python tools/bench/operators.py --sizes 10000 --k 64 --threads 2 --repeats 3

Pipelines, each run in a fresh subprocess so that its peak memory belongs to it alone
(the resident set, which also sees C/Fortran allocations that torch's and Python's
allocators do not):

* ``reference``: DiffusionNet's preprocessing, ``robust_laplacian.mesh_laplacian(V, F)``
  then ``scipy.sparse.linalg.eigsh(L, k, M=M, sigma=1e-8)`` (ARPACK, SuperLU/COLAMD).
* ``ours``: ``meshgdl.geometry.laplacian.laplacian(V, F)`` (auto method) and
  ``meshgdl.geometry.spectral.eigenbasis(L, M, k)``; ``ours-superlu`` (opt-in) forces
  the SuperLU factorisation, i.e. what an install without ``cholespy`` gets.
* ``bundle``: ``meshgdl.operators.compute_operators(V, F, k_eig=k)`` (mass,
  Laplacian, eigenbasis, HKS, gauges, log map, transport, gradient), if importable.

Meshes: a "bumpy sphere" with the requested vertex count: jittered Fibonacci points on
the sphere, triangulated by their convex hull (irregular valences and angles, some
obtuse), then displaced radially by smooth bumps plus noise. Times are wall-clock
seconds of the pipeline only (mesh generation and imports excluded), best of
``--repeats`` rounds; rounds interleave the pipelines and the speed-up is the median
over rounds of (reference time / this time), which is robust to a shared machine's
changing load. "peak MiB" is the subprocess's highest resident set during the timed
section (``measure.rss_peak``: the high-water mark reset just before it); "+MiB" is that
peak minus the resident set just before the timed section. The eigenvalues of every
pipeline are compared with the reference's (max relative difference over the non-zero
ones). Timing, memory and the ``--json`` record come from ``tools/bench/measure.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import measure  # noqa: E402  (no torch: the workers' resident sets stay their own)

PIPELINES = ("reference", "ours", "ours-superlu", "bundle")
LABELS = {"reference": "reference (robust_laplacian + eigsh)", "ours": "ours (laplacian + eigenbasis)",
          "ours-superlu": "ours, SuperLU instead of cholespy", "bundle": "ours (compute_operators bundle)"}
DEFAULT_PIPELINES = ("reference", "ours", "bundle")


def bumpy_sphere(n: int, seed: int = 0):
    """(V (n,3) float64, F int64) closed genus-0 mesh with ~n vertices (exactly n)."""
    import numpy as np
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(seed)
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    P = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    P += rng.normal(scale=0.35 * np.sqrt(4 * np.pi / n), size=P.shape)  # ~1/3 spacing jitter
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    F = ConvexHull(P).simplices.astype(np.int64)
    c = np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]])
    flip = np.einsum("ij,ij->i", c, P[F].mean(axis=1)) < 0
    F[flip] = F[flip][:, ::-1]
    bumps = 0.08 * np.sin(5 * P[:, 0] + 1) * np.cos(4 * P[:, 1]) + 0.05 * np.sin(7 * P[:, 2])
    r = 1 + bumps + rng.normal(scale=0.05 * np.sqrt(4 * np.pi / n), size=n)
    return P * r[:, None], F


def worker(pipeline: str, n: int, k: int, seed: int, out: str) -> None:
    import numpy as np

    sys.path.insert(0, ROOT)
    V, F = bumpy_sphere(n, seed)
    if pipeline == "reference":
        import robust_laplacian
        import scipy.sparse.linalg as sla

        def run():
            L, M = robust_laplacian.mesh_laplacian(V, F)
            return sla.eigsh(L, k=k, M=M, sigma=1e-8)[0]
    elif pipeline in ("ours", "ours-superlu"):
        from meshgdl.geometry.laplacian import laplacian
        from meshgdl.geometry.spectral import eigenbasis

        fact = "superlu" if pipeline == "ours-superlu" else "auto"

        def run():
            L, M = laplacian(V, F)
            return eigenbasis(L, M, k, factorization=fact)[0]
    else:
        try:
            from meshgdl.operators import compute_operators
        except ImportError:
            json.dump({"skipped": "meshgdl.operators.compute_operators not importable"}, open(out, "w"))
            return

        def run():
            return compute_operators(V, F, k_eig=k).evals

    # imports are one-off per process: keep them out of the timed section
    import robust_laplacian  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401

    if _has_cholespy():
        import cholespy  # noqa: F401

    result = {}
    timing, rss = measure.rss_peak(
        lambda: measure.time_calls({pipeline: lambda: result.update(evals=run())}, 1, warmup=0)[pipeline])
    extra = {}
    if pipeline == "ours":
        extra["cholespy"] = _has_cholespy()
    json.dump({"time": timing.seconds[0], "peak_mib": rss.peak_bytes / measure.MiB,
               "base_mib": rss.base_bytes / measure.MiB, "rss_reset": rss.reset, "timing": timing.to_dict(),
               "evals": np.sort(result["evals"]).tolist(), "n": len(V), "m": len(F), **extra}, open(out, "w"))


def _has_cholespy() -> bool:
    import importlib.util

    return importlib.util.find_spec("cholespy") is not None


def run_one(pipeline: str, n: int, k: int, seed: int, threads: int, timeout: float) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "result.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", pipeline, str(n), str(k), str(seed), out]
        r = measure.run_process(cmd, env=env, timeout=timeout, capture=False)
        if r.timed_out:
            return {"error": f"timed out after {timeout:.0f}s"}
        if r.returncode != 0:
            return {"error": f"exit code {r.returncode}"}
        return json.load(open(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated vertex counts")
    ap.add_argument("--k", type=int, default=128, help="number of eigenpairs")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads per run")
    ap.add_argument("--repeats", type=int, default=1, help="runs per pipeline and size (best time kept)")
    ap.add_argument("--pipelines", default=",".join(DEFAULT_PIPELINES), help=f"comma-separated subset of {PIPELINES}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    ap.add_argument("--json", metavar="FILE", help="also write every figure here, with the environment")
    ap.add_argument("--worker", nargs=5, metavar=("PIPELINE", "N", "K", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        p, n, k, seed, out = args.worker
        worker(p, int(n), int(k), int(seed), out)
        return 0

    import numpy as np

    sizes = [int(s) for s in args.sizes.split(",") if s]
    pipelines = [p for p in args.pipelines.split(",") if p]
    for p in pipelines:
        if p not in PIPELINES:
            ap.error(f"unknown pipeline {p!r}")
    env = measure.environment()
    print(measure.environment_line(env))
    print(f"# threads={args.threads} per run, k={args.k}, cholespy={_has_cholespy()}", flush=True)
    rows = []
    for n in sizes:
        # Rounds interleave the pipelines (ref, ours, ..., ref, ours, ...) so that each
        # round's runs see about the same background load; per pipeline the fastest run
        # is kept, and the speed-up is the median over rounds of reference/this.
        runs = {p: [] for p in pipelines}
        for rnd, p in measure.schedule(pipelines, args.repeats):
            r = run_one(p, n, args.k, args.seed, args.threads, args.timeout)
            r["load_average"] = measure.load_average()
            runs[p].append(r)
            msg = f"{r['time']:.2f}s" if "time" in r else r.get("error", r.get("skipped"))
            print(f"  n={n} round {rnd + 1} {p}: {msg}", flush=True)
        ref_runs = runs.get("reference", [])
        for p in pipelines:
            ok = [r for r in runs[p] if "time" in r]
            row = {"n": n, "pipeline": LABELS[p]}
            if ok:
                r = min(ok, key=lambda x: x["time"])
                row.update(n=r["n"], time=r["time"], peak=max(x["peak_mib"] for x in ok),
                           extra=max(x["peak_mib"] - x["base_mib"] for x in ok))
                both = [(a["time"], b["time"]) for a, b in zip(ref_runs, runs[p]) if "time" in a and "time" in b]
                if both:
                    row["speedup"] = measure.median_ratio(measure.Timing("reference", [a for a, _ in both]),
                                                          measure.Timing(p, [b for _, b in both]))
                    a = np.asarray(next(x for x in ref_runs if "time" in x)["evals"])
                    b = np.asarray(r["evals"])
                    kk = min(len(a), len(b))
                    nz = a[:kk] > 1e-8 * a[:kk].max()
                    row["err"] = float(np.max(np.abs(a[:kk][nz] - b[:kk][nz]) / a[:kk][nz]))
            else:
                bad = runs[p][0]
                row["note"] = bad.get("error") or bad.get("skipped")
            row["runs"] = [{k: v for k, v in r.items() if k != "evals"} for r in runs[p]]
            rows.append(row)

    print()
    print("| vertices | pipeline | best time (s) | peak MiB | +MiB | reference / this (median) | max rel. eigenvalue diff |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "time" not in r:
            print(f"| {r['n']} | {r['pipeline']} | – | – | – | – | {r['note']} |")
            continue
        sp = f"{r['speedup']:.2f}×" if "speedup" in r else "–"
        err = f"{r['err']:.1e}" if "err" in r else "–"
        print(f"| {r['n']} | {r['pipeline']} | {r['time']:.2f} | {r['peak']:.0f} | {r['extra']:.0f} | {sp} | {err} |")
    print(f"# load average {env['load_average']} -> {measure.load_average()}")
    if args.json:
        measure.write_json(args.json, measure.record("tools/bench/operators.py", rows, args, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
