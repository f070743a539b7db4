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
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

# The project machine's two cores are shared: with the default active spin-waiting, a
# 2-thread parallel region stalls whenever another process holds the other core, which
# measures the neighbours, not the code. Passive waiting (set before torch starts
# OpenMP) applies to the dense reference matmul in the same run too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

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


def peak_memory(fn, device: torch.device) -> int:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated before it.

    CUDA: the caching allocator's peak statistic. CPU: replay the profiler's allocation
    and free events in time order (op-attributed allocations counted at the op's start).
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    timeline = []
    for e in prof.events():
        m = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if m:
            timeline.append((e.time_range.start, m))
    cur = peak = 0
    for _, m in sorted(timeline):
        cur += m
        peak = max(peak, cur)
    return peak


def interleaved_times(fns: dict, device, rounds: int, warmup: int = 2) -> dict:
    """Time every function once per round, round after round, so that all of them see the
    same machine load (the project machine is shared); returns the per-round times."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t)
    return times


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
    times = interleaved_times(
        {"fwd": fwd, "fwdbwd": fwdbwd, "mm": lambda: torch.mm(a, b), "sq": lambda: torch.mm(A, B)}, device, args.repeats
    )
    med = {k: statistics.median(v) for k, v in times.items()}

    def ratio(key, flops, ref_key, ref_flops):  # median over rounds of (rate / reference rate)
        return statistics.median(flops / t / (ref_flops / r) for t, r in zip(times[key], times[ref_key]))

    t_mm, t_sq = med["mm"], med["sq"]
    mm_rate, sq_rate = fl_mm / t_mm, fl_sq / t_sq
    mem_f, mem_fb = peak_memory(fwd, device), peak_memory(fwdbwd, device)

    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
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
    rows = [("forward", "fwd", fl["fwd"], mem_f), ("forward+backward", "fwdbwd", fl["fwdbwd"], mem_fb)]
    for label, key, f, m in rows:
        t = med[key]
        print(f"| {label} | {t * 1e3:.2f} | {f / 1e9:.3f} | {f / t / 1e9:.2f} | {100 * ratio(key, f, 'mm', fl_mm):.0f}% | "
              f"{100 * ratio(key, f, 'sq', fl_sq):.0f}% | {m / 2**20:.1f} |")
    print("# times and dense rates: medians over interleaved rounds; percentages: median over rounds of the ratio")
    return rows


if __name__ == "__main__":
    main()
