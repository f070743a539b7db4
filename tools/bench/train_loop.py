"""Time the real ``meshgdl train`` command's epochs against the bare training step, for the
RNA GEM U-Net and DiffusionNet 4x128.

    python tools/bench/train_loop.py                                  # 8 meshes, 3 epochs, batch 1
    python tools/bench/train_loop.py --meshes 8 --epochs 3 --batch-sizes 1 2 --rounds 2 --json out.json
    python tools/bench/train_loop.py --extra="--in-memory --nondeterministic"   # tools/bench/rna.sh's runtime flags

What runs: for each model and batch size, ``meshgdl train`` as a child process
(``measure.run_process(measure.python_command(["-m", "meshgdl", "train", ...]))``) on the
first ``--meshes`` RNA train meshes, with the README's RNA options (the model options of
``tools/bench/rna.sh``: ``--model gem --model-option n_levels=4 --model-option
"hidden_irreps=32x0 + 32x1 + 32x2" --model-option n_layers=2 --model-option dropout=0.1``,
resp. ``--model diffusion --model-option width=128 --model-option n_layers=4
--model-option dropout=0.5``; ``--lr 1e-3 --warmup-epochs 2 --grad-clip 1
--augment-rotate none --seed 0``), plus ``--max-meshes N --val-fraction 0 --epochs E
--batch-size B --device cpu --no-progress`` so that it trains on exactly the meshes the
bare step uses, and ``--extra`` options. Its per-epoch ``meshes_per_second`` (training
time of the epoch: loading, collation, steps, bookkeeping; no validation) comes from the
run's ``metrics.jsonl``.

The bare step: ``tools/bench/train_step.py``'s :class:`Trainer` and :func:`time_steps`
(imported, the same code) in this process, on the same meshes from the same cache, each
model alone (``measure``'s ``alone`` mode: ``--step-rounds`` rounds of N/B steps after one
untimed step). Each model's bare step is timed right before and right after its command
(median over both), models in alternating order over ``--rounds`` rounds, so a model's
two figures see about the same machine load; the load average is printed with each.

Reported, per model and batch size: the command's meshes/s (median over the epochs after
the first, which also pays thread-pool start-up and first allocations, and over rounds; the
first epoch separately), the bare step's (median over rounds), the **loop overhead** =
bare-step meshes/s / command meshes/s - 1 (the extra time per mesh of the real loop), and,
each model at its best batch size, the **GEM / DiffusionNet time ratio** in the command and
in the bare step. OpenMP runs with its own wait policy (what ``meshgdl train`` gets) unless
``OMP_WAIT_POLICY`` is set, for the command and the bare step alike. Preprocessing (into
``--cache-dir``, default a temporary folder) is done once first and excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time

# before train_step is imported: it maps "default" to OpenMP's own policy (and would set
# PASSIVE otherwise); the meshgdl train children inherit the resulting environment
os.environ.setdefault("OMP_WAIT_POLICY", "default")

import measure  # noqa: E402
import train_step  # noqa: E402  (imports torch, after settling OMP_WAIT_POLICY)
import torch  # noqa: E402

from meshgdl.errors import DatasetError  # noqa: E402

MODELS = {"gem": train_step.GEM_OPTIONS, "dif": train_step.DIF_OPTIONS}
LABEL = {"gem": "GEM U-Net", "dif": "DiffusionNet"}


def model_flags(options: dict) -> list[str]:
    """``meshgdl train`` flags for a ModelConfig option dict (``kind`` -> ``--model``)."""
    out = ["--model", options["kind"]]
    for k, v in options.items():
        if k != "kind":
            out += ["--model-option", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    return out


def train_command(kind: str, n_meshes: int, epochs: int, batch_size: int, out: str, cache_dir: str,
                  data_root: str | None, workers: int, extra: list[str]) -> list[str]:
    args = ["-m", "meshgdl", "train", "--dataset", "rna", *model_flags(MODELS[kind]),
            "--lr", "1e-3", "--warmup-epochs", "2", "--grad-clip", "1", "--augment-rotate", "none", "--seed", "0",
            "--max-meshes", str(n_meshes), "--val-fraction", "0", "--epochs", str(epochs),
            "--batch-size", str(batch_size), "--device", "cpu", "--no-progress", "--cache-dir", cache_dir,
            "--workers", str(workers), "--out", out, *extra]
    if data_root:
        args += ["--data-root", data_root]
    return measure.python_command(args)


def run_command(cmd: list[str], out: str) -> dict:
    """Run one ``meshgdl train`` child; its epochs from ``metrics.jsonl``, wall time, peak RSS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([train_step.ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    load = measure.load_average()
    res = measure.run_process(cmd, env=env, cwd=train_step.ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"meshgdl train failed (exit {res.returncode}):\n{(res.stderr or '')[-3000:]}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    return {"wall_s": res.wall_s, "peak_rss_mib": res.peak_rss_mib, "load_before": load,
            "load_after": measure.load_average(),
            "epochs": [{k: e.get(k) for k in ("epoch", "train_seconds", "meshes_per_second", "train_cpu_seconds",
                                              "train_page_faults", "train")} for e in epochs]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meshes", type=int, default=8, help="first N RNA train meshes (default 8)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each meshgdl train run (default 3)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--rounds", type=int, default=1, help="command + bare-step pairs per model and batch size")
    ap.add_argument("--step-rounds", type=int, default=2, help="bare-step rounds (of N/B steps) per pair")
    ap.add_argument("--extra", default="", help="more meshgdl train options, one string (e.g. '--in-memory')")
    ap.add_argument("--data-root", default=None, help="folder holding rna_surface_segmentation/")
    ap.add_argument("--cache-dir", default=None, help="preprocessing cache (default: a temporary folder)")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="preprocessing processes")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = ap.parse_args(argv)
    if min(args.meshes, args.epochs, args.rounds, args.step_rounds, *args.batch_sizes) < 1:
        print("train_loop.py: --meshes, --epochs, --rounds, --step-rounds, --batch-sizes must be >= 1", file=sys.stderr)
        return 2
    extra = shlex.split(args.extra)

    tmp = tempfile.TemporaryDirectory(prefix="meshgdl_train_loop_")
    cache_dir = args.cache_dir or os.path.join(tmp.name, "cache")
    try:
        cfgs, gem_s, dif_s, targets, names, prep_s = train_step.load_samples(
            args.meshes, args.data_root, cache_dir, args.workers)
    except DatasetError as exc:
        print(f"train_loop.py: RNA data not available ({exc})", file=sys.stderr)
        return 1
    n = len(names)
    device = torch.device("cpu")
    data = {"gem": gem_s, "dif": dif_s}
    print(f"{n} RNA train meshes ({', '.join(names)}); preprocessing {prep_s:.1f} s (excluded); "
          f"{args.epochs} epochs per command; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}; "
          f"extra options: {extra or 'none'}", flush=True)
    env = measure.environment()
    print(measure.environment_line(env), flush=True)

    pairs: dict = {}  # (kind, B) -> {"command": [runs], "step": [rows]}
    t_start = time.perf_counter()
    for r in range(args.rounds):
        order = args.models[::-1] if r % 2 else args.models
        for k in order:
            trainer = train_step.Trainer(cfgs[k], device)
            for B in args.batch_sizes:
                # the bare step right before and right after the command: both see about its load
                before = train_step.time_steps({k: trainer}, {k: data[k]}, targets, B, args.step_rounds, "alone",
                                               device)
                out = os.path.join(tmp.name, f"run_{k}_b{B}_r{r}")
                run = run_command(train_command(k, n, args.epochs, B, out, cache_dir, args.data_root,
                                                args.workers, extra), out)
                after = train_step.time_steps({k: trainer}, {k: data[k]}, targets, B, args.step_rounds, "alone",
                                              device)
                p = pairs.setdefault((k, B), {"command": [], "step": []})
                p["command"].append(run)
                p["step"] += [before, after]
                mps = [e["meshes_per_second"] for e in run["epochs"]]
                print(f"round {r + 1}, {LABEL[k]}, batch {B}: bare step {before[f'{k}_meshes_per_s']:.3f} / "
                      f"{after[f'{k}_meshes_per_s']:.3f} meshes/s before / after (load {before['load_average']} / "
                      f"{after['load_average']}); meshgdl train epochs {', '.join(f'{x:.3f}' for x in mps)} meshes/s, "
                      f"{run['wall_s']:.0f} s wall, {run['peak_rss_mib']:.0f} MiB peak RSS (load "
                      f"{run['load_after'][0] if run['load_after'] else '?'})", flush=True)
            del trainer

    summary = []
    for (k, B), p in pairs.items():
        epochs = [e for run in p["command"] for e in (run["epochs"][1:] or run["epochs"])]
        first = [run["epochs"][0]["meshes_per_second"] for run in p["command"]]
        loop = statistics.median(e["meshes_per_second"] for e in epochs)
        bare = statistics.median(x for row in p["step"] for x in row["per_round"][k])
        row = {"model": k, "batch_size": B, "command_meshes_per_s": loop,
               "command_first_epoch_meshes_per_s": statistics.median(first),
               "step_meshes_per_s": bare, "loop_overhead": bare / loop - 1}
        if all(e.get("train_cpu_seconds") is not None for e in epochs):
            # CPU seconds per mesh (all threads): what the work costs, whatever else runs alongside
            row["command_cpu_s_per_mesh"] = statistics.median(e["train_cpu_seconds"] / n for e in epochs)
            row["command_page_faults_per_mesh"] = statistics.median(e["train_page_faults"] / n for e in epochs)
            row["step_cpu_s_per_mesh"] = statistics.median(
                r[f"{k}_per_mesh"]["user_s"] + r[f"{k}_per_mesh"]["sys_s"] for r in p["step"])
            row["step_page_faults_per_mesh"] = statistics.median(r[f"{k}_per_mesh"]["minor_faults"] for r in p["step"])
            row["loop_cpu_overhead"] = row["command_cpu_s_per_mesh"] / row["step_cpu_s_per_mesh"] - 1
        summary.append(row)
    print(f"\n{'model':14s} {'batch':>5s} {'meshgdl train':>14s} {'(epoch 1)':>10s} {'bare step':>10s} "
          f"{'loop overhead':>14s} | CPU s/mesh: {'command':>8s} {'bare':>6s} {'overhead':>9s} | page faults/mesh")
    for s in summary:
        line = (f"{LABEL[s['model']]:14s} {s['batch_size']:5d} {s['command_meshes_per_s']:14.3f} "
                f"{s['command_first_epoch_meshes_per_s']:10.3f} {s['step_meshes_per_s']:10.3f} "
                f"{100 * s['loop_overhead']:13.1f}%")
        if "loop_cpu_overhead" in s:
            line += (f" | {'':12s}{s['command_cpu_s_per_mesh']:8.3f} {s['step_cpu_s_per_mesh']:6.3f} "
                     f"{100 * s['loop_cpu_overhead']:8.1f}% | {s['command_page_faults_per_mesh']:.0f} / "
                     f"{s['step_page_faults_per_mesh']:.0f}")
        print(line)
    print("(meshes/s: wall clock, epochs after the first, median; CPU: user + system seconds of all threads)")
    ratio = None
    if {"gem", "dif"} <= set(args.models):
        best = {k: max((s for s in summary if s["model"] == k), key=lambda s: s["command_meshes_per_s"])
                for k in ("gem", "dif")}
        best_step = {k: max(s["step_meshes_per_s"] for s in summary if s["model"] == k) for k in ("gem", "dif")}
        ratio = {"command": best["dif"]["command_meshes_per_s"] / best["gem"]["command_meshes_per_s"],
                 "step": best_step["dif"] / best_step["gem"],
                 "best_batch": {k: best[k]["batch_size"] for k in best}}
        line = (f"GEM / DiffusionNet time, each at its best batch size: meshgdl train {ratio['command']:.2f}x "
                f"(batch {ratio['best_batch']['gem']} / {ratio['best_batch']['dif']}), bare step {ratio['step']:.2f}x")
        if all("command_cpu_s_per_mesh" in best[k] for k in best):
            ratio["command_cpu"] = best["gem"]["command_cpu_s_per_mesh"] / best["dif"]["command_cpu_s_per_mesh"]
            line += f"; CPU seconds per mesh in meshgdl train {ratio['command_cpu']:.2f}x"
        print(line)
    print(f"# {time.perf_counter() - t_start:.0f} s; load average at the end "
          f"{'/'.join(map(str, measure.load_average() or []))}", flush=True)

    if args.json:
        out = {"meshes": names, "epochs": args.epochs, "preprocessing_seconds": prep_s, "extra": extra,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "summary": summary,
               "gem_over_dif_time": ratio,
               "runs": [{"model": k, "batch_size": B, **p} for (k, B), p in pairs.items()]}
        measure.write_json(args.json, measure.record("tools/bench/train_loop.py", out, args, env))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
