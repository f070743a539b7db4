"""Benchmark settings of the block eigen-solver (``meshgdl.geometry.spectral.eigenbasis``).

Times ``eigenbasis(L, M, k)`` for several settings on the same mesh in one process,
interleaved round by round so every setting sees the same machine load, and prints the
median time of each and its ratio to the default. Settings:

* ``default``: what ``eigenbasis`` does (one BLAS thread, default Krylov basis);
* ``blas-threads=all``: the process's BLAS threads (``blas_threads=None``);
* ``max-dim=N``: a Krylov basis of N vectors before a restart;
* ``dense`` / ``krylov``: that method forced (``method=``), to place the size below
  which ``eigenbasis`` uses dense LAPACK (``spectral.use_dense``).

    python tools/bench/eigen.py --sizes 15000,41000,100000 --settings default,blas-threads=all
    python tools/bench/eigen.py --mesh path/to/surface.off --settings default,blas-threads=all
    python tools/bench/eigen.py --sizes 10000,30000 --settings default,max-dim=352,max-dim=288,max-dim=224,max-dim=192
    python tools/bench/eigen.py --sizes 200,400,750,1200,2000 --k 64 --settings default,dense,krylov --repeats 7

Meshes: "bumpy spheres" (``tools/bench/operators.py``) of the given vertex counts, or
``--mesh`` files; the Laplacian is ``meshgdl.geometry.laplacian.laplacian`` ("auto").
Timing (``measure.time_calls``, interleaved, no warm-up call) and the ``--json`` record
come from ``tools/bench/measure.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure  # noqa: E402


def _kwargs(setting: str) -> dict:
    if setting == "default":
        return {}
    if setting == "blas-threads=all":
        return {"blas_threads": None}
    if setting in ("dense", "krylov"):
        return {"method": setting}
    if setting.startswith("max-dim="):
        return {"max_dim": int(setting.split("=", 1)[1])}
    raise SystemExit(f"eigen.py: unknown setting {setting!r} (default, blas-threads=all, max-dim=N, dense, krylov)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="15000,41000,100000", help="comma-separated vertex counts")
    ap.add_argument("--mesh", action="append", default=[], help="mesh file(s) instead of --sizes")
    ap.add_argument("--k", type=int, default=128, help="number of eigenpairs")
    ap.add_argument("--settings", default="default,blas-threads=all", help="comma-separated settings")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--json", metavar="FILE", help="also write every figure here, with the environment")
    args = ap.parse_args(argv)

    import numpy as np
    from threadpoolctl import threadpool_info

    from meshgdl.geometry import spectral
    from meshgdl.geometry.laplacian import laplacian
    from meshgdl.io import load_mesh
    from operators import bumpy_sphere

    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    kws = {s: _kwargs(s) for s in settings}
    if args.mesh:
        meshes = []
        for p in args.mesh:
            m = load_mesh(p)
            meshes.append((os.path.basename(p), m.V, m.F))
    else:
        meshes = [(f"bumpy sphere {n}", *bumpy_sphere(int(n))) for n in args.sizes.split(",")]
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    env = measure.environment()
    print(measure.environment_line(env))
    print(f"# eigenbasis k={args.k}, BLAS {blas}")
    print("| mesh | vertices | setting | median time (s) | default / this | max rel. eigenvalue diff |")
    print("|---|---:|---|---:|---:|---:|")
    rows = []
    for name, V, F in meshes:
        L, M = laplacian(V, F)
        evals = {}

        def solve(s):
            evals[s] = spectral.eigenbasis(L, M, args.k, **kws[s])[0]

        times = measure.time_calls({s: (lambda s=s: solve(s)) for s in settings}, args.repeats, warmup=0)
        base = times[settings[0]].median
        ref = evals[settings[0]]
        nz = ref > 1e-12 * ref.max()
        for s in settings:
            med = times[s].median
            diff = float(np.max(np.abs(evals[s][nz] - ref[nz]) / ref[nz])) if nz.any() else 0.0
            rows.append({"mesh": name, "vertices": len(V), "setting": s, "timing": times[s],
                         "default_over_this": base / med, "max_rel_eigenvalue_diff": diff})
            print(f"| {name} | {len(V)} | {s} | {med:.4g} | {base / med:.2f}x | {diff:.1e} |", flush=True)
    print(f"# load average {env['load_average']} -> {measure.load_average()}")
    if args.json:
        measure.write_json(args.json, measure.record("tools/bench/eigen.py", rows, args, env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
