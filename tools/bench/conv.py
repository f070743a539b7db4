"""Benchmark GEMConv: forward / forward+backward time, peak memory and achieved FLOP rate
as a fraction of dense-matmul throughput measured in the same run.

    python tools/bench/conv.py                      # CPU, 2 threads, icosphere(5), real gauges
    python tools/bench/conv.py --device cuda --threads 16

FLOP counting (a multiply-add is 2 FLOPs) follows what the implementation executes
(:meth:`GEMConv.flops`): the batched neighbour contraction, ``2 * rows * slots * table_rows
* d_n * copies`` per input frequency (padding slots included), plus the per-output-
frequency GEMMs ``2 * N * K * C`` (self and neighbour-sum blocks; every weight entry is a
parameter, so there are no structural zeros to discount). The backward pass executes the
contraction once more (features only: its other operand is constant geometry) and every
GEMM twice (input and weight gradients): fwd+bwd = 2 * fwd + GEMM FLOPs. The dense
reference is ``torch.mm`` of the same total size, ``(N x K) @ (K x d_out)`` with ``K`` the
layer's total GEMM depth, and a 2048^3 square product, timed in the same run.

Timing and memory come from ``tools/bench/measure.py``: interleaved rounds after 2
warm-up rounds; peak memory is :func:`measure.peak_memory` (CPU: torch's allocation
records replayed at their own timestamps; CUDA: the allocator's peak), in bytes above
what existed before the pass. ``--json FILE`` writes every figure with the environment.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

# The project machine's two cores are shared: with the default active spin-waiting, a
# 2-thread parallel region stalls whenever another process holds the other core, which
# measures the neighbours, not the code. Passive waiting (set before torch starts
# OpenMP) applies to the dense reference matmul in the same run too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

import measure  # noqa: E402

from meshgdl.nn.gem_conv import GEMConv  # noqa: E402
from meshgdl.nn.irreps import Irreps  # noqa: E402


def mesh_geometry(subdiv: int, random_geometry: bool, seed: int = 0):
    from meshes import icosphere

    V, F = icosphere(subdiv)
    if not random_geometry:
        from meshgdl.geometry.gauges import compute_gauges

        G = compute_gauges(V, F)
        return len(V), [torch.as_tensor(a) for a in (G.edge_index, G.theta, G.transport, G.r)], "real gauges"
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)
    g = torch.Generator().manual_seed(seed)
    E = len(e)
    theta = torch.rand(E, generator=g, dtype=torch.float64) * 2 * math.pi
    tr = (torch.rand(E, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    r = torch.rand(E, generator=g, dtype=torch.float64) * 0.02
    return len(V), [torch.as_tensor(e.T.copy()), theta, tr, r], "random theta/g/r"


def flop_counts(conv: GEMConv, geom) -> dict:
    """Forward FLOPs as executed (:meth:`GEMConv.flops`); the backward pass executes every
    GEMM twice (gradients w.r.t. both operands) and the neighbour contraction once (only
    w.r.t. the features: its other operand is constant geometry)."""
    fwd = conv.flops(geom)
    contraction = sum(
        2 * geom.num_rows * conv._rows[f] * geom.width * Irreps.irrep_dim(f) * conv._in_copies[f] for f in conv.in_freqs
    )
    gemm = fwd - contraction
    z_dim = sum(conv._rows[f] * conv._in_copies[f] for f in conv.in_freqs)
    return dict(fwd=fwd, fwdbwd=2 * fwd + gemm, gemm=gemm, contraction=contraction, K=conv.irreps_in.dim + z_dim)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subdiv", type=int, default=5)
    ap.add_argument("--irreps-in", default="16x0 + 16x1 + 8x2")
    ap.add_argument("--irreps-out", default="16x0 + 16x1 + 8x2")
    ap.add_argument("--radial", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--random-geometry", action="store_true", help="random theta/g/r instead of compute_gauges")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--json", metavar="FILE", help="also write every figure here, with the environment")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)

    n, (ei, theta, tr, r), kind = mesh_geometry(args.subdiv, args.random_geometry)
    ei, theta, tr, r = ei.to(device), theta.to(device, dtype), tr.to(device, dtype), r.to(device, dtype)
    conv = GEMConv(args.irreps_in, args.irreps_out, radial=args.radial, radial_cutoff=float(r.max())).to(device, dtype)
    x = conv.irreps_in.randn(n, dtype=dtype).to(device)

    t0 = time.perf_counter()
    geom = conv.precompute(ei, theta, tr, r if args.radial else None, n)
    conv(x, geom)  # builds the angular/transport tables
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_pre = time.perf_counter() - t0

    def fwd():
        with torch.no_grad():
            return conv(x, geom)

    xg = x.clone().requires_grad_(True)

    def fwdbwd():
        out = conv(xg, geom)
        out.backward(torch.ones_like(out))
        conv.zero_grad(set_to_none=True)
        xg.grad = None

    fl = flop_counts(conv, geom)
    # dense matmul of comparable size: the layer's whole linear map as one dense GEMM
    # (N x K) @ (K x d_out), K = d_in + neighbour-sum width; and a large square one
    K, d_out = fl["K"], conv.irreps_out.dim
    a = torch.randn(n, K, dtype=dtype, device=device)
    b = torch.randn(K, d_out, dtype=dtype, device=device)
    s = 2048
    A, B = torch.randn(s, s, dtype=dtype, device=device), torch.randn(s, s, dtype=dtype, device=device)
    fl_mm, fl_sq = 2 * n * K * d_out, 2 * s**3
    env = measure.environment()
    timings = measure.time_calls(
        {"fwd": fwd, "fwdbwd": fwdbwd, "mm": lambda: torch.mm(a, b), "sq": lambda: torch.mm(A, B)},
        args.repeats, warmup=2, sync=measure.device_sync(device),
    )
    med = {k: t.median for k, t in timings.items()}

    def ratio(key, flops, ref_key, ref_flops):  # median over rounds of (rate / reference rate)
        return (flops / ref_flops) * measure.median_ratio(timings[ref_key], timings[key])

    t_mm, t_sq = med["mm"], med["sq"]
    mm_rate, sq_rate = fl_mm / t_mm, fl_sq / t_sq
    mem = {"fwd": measure.peak_memory(fwd, device), "fwdbwd": measure.peak_memory(fwdbwd, device)}

    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(measure.environment_line(env))
    print(f"# GEMConv {conv.irreps_in} -> {conv.irreps_out} (dim {conv.irreps_in.dim} -> {d_out}), "
          f"radial={args.radial}, {args.dtype}, {name}")
    print(f"# mesh: icosphere({args.subdiv}), N={n} vertices, E={ei.shape[1]} directed edges, {kind}; "
          f"neighbour table {geom.num_rows} rows x {geom.width} slots")
    print(f"# precompute (layout + tables, first call): {t_pre * 1e3:.1f} ms")
    print(f"# forward FLOPs: {fl['fwd'] / 1e6:.0f} M = GEMMs {fl['gemm'] / 1e6:.0f} M + neighbour contraction "
          f"{fl['contraction'] / 1e6:.0f} M; dense-equivalent GEMM K = {K}")
    print(f"# dense torch.mm ({n}x{K} @ {K}x{d_out}): {t_mm * 1e3:.2f} ms = {mm_rate / 1e9:.1f} GFLOP/s; "
          f"{s}x{s} square: {sq_rate / 1e9:.1f} GFLOP/s")
    print("| pass | time (ms) | GFLOP | GFLOP/s | % of comparable mm | % of square mm | peak mem (MiB) |")
    print("|---|---|---|---|---|---|---|")
    rows = [("forward", "fwd", fl["fwd"]), ("forward+backward", "fwdbwd", fl["fwdbwd"])]
    table = []
    for label, key, f in rows:
        t = med[key]
        table.append({"pass": label, "median_s": t, "gflop": f / 1e9, "gflop_per_s": f / t / 1e9,
                      "fraction_of_comparable_mm": ratio(key, f, "mm", fl_mm),
                      "fraction_of_square_mm": ratio(key, f, "sq", fl_sq), "peak_memory": mem[key]})
        r = table[-1]
        print(f"| {label} | {t * 1e3:.2f} | {f / 1e9:.3f} | {f / t / 1e9:.2f} | "
              f"{100 * r['fraction_of_comparable_mm']:.0f}% | {100 * r['fraction_of_square_mm']:.0f}% | "
              f"{mem[key].peak_mib:.1f} |")
    print(f"# times and dense rates: medians over {args.repeats} interleaved rounds; percentages: median over "
          f"rounds of the ratio; load average {timings['fwd'].load_before} -> {timings['fwd'].load_after}")
    if args.json:
        measure.write_json(args.json, measure.record("tools/bench/conv.py", {
            "layer": {"irreps_in": str(conv.irreps_in), "irreps_out": str(conv.irreps_out), "radial": args.radial,
                      "dtype": args.dtype, "device": str(device), "mesh": f"icosphere({args.subdiv})",
                      "vertices": n, "directed_edges": int(ei.shape[1]), "geometry": kind},
            "precompute_s": t_pre, "flops": fl, "dense_mm_flops": {"comparable": fl_mm, "square": fl_sq},
            "passes": table, "timings": timings}, args, env))
    return table


if __name__ == "__main__":
    main()
