"""Time full training steps of the RNA GEM U-Net and DiffusionNet 4x128 in one process, interleaved and each alone.

    python tools/bench/train_step.py                                # CPU, 4 meshes, batch 1 and 8
    python tools/bench/train_step.py --modes alone                  # each model's steps back to back only
    python tools/bench/train_step.py --threads 1 2 --json out.json
    python tools/bench/train_step.py --device cuda --meshes 8 --rounds 5
    OMP_WAIT_POLICY=default python tools/bench/train_step.py    # OpenMP's own wait policy

OpenMP wait policy: ``PASSIVE`` unless ``OMP_WAIT_POLICY`` is set (robust on a shared
machine: idle threads sleep instead of spinning, but every parallel operation then pays
to wake them); ``OMP_WAIT_POLICY=default`` leaves OpenMP's own policy (spin a while, then
sleep), which is what ``meshgdl train`` runs with.

What a step is: exactly what ``meshgdl train`` does per batch (``meshgdl.train.loop``):
``collate_samples(samples, device)``, the loop's targets, ``model(batch)``, the loop's
``mesh_losses`` (mean over meshes), the non-finite-loss check, ``zero_grad``,
``backward``, ``clip_grad_norm_(1.0)`` and ``AdamW.step`` (lr 1e-3, weight decay 1e-4),
in training mode (dropout on). The per-step metrics bookkeeping (confusion matrix) is
left out. Models: the README's RNA U-Net (``kind=gem, n_levels=4, hidden_irreps="32x0 +
32x1 + 32x2", n_layers=2, dropout=0.1``, HKS input, as in ``tools/bench/rna.sh``) and
DiffusionNet (``kind=diffusion, width=128, n_layers=4, dropout=0.5``, HKS input).

Data: the first ``--meshes`` meshes of the RNA train split; preprocessing (operators,
eigenbasis, HKS, the U-Net's hierarchy; level 0 also serves DiffusionNet) is done once
before any timing, into ``--cache-dir`` (default: a temporary folder), and excluded.
A batch of B meshes takes meshes ``i, i+1, ...`` cyclically, so ``--batch-sizes 8`` with
4 meshes collates every mesh twice (a real batch of 8).

Timing: for every thread count, batch size and ``--modes`` entry, ``--rounds`` rounds; a
round runs ``max(1, meshes // B)`` steps of each model. ``interleaved`` (``measure``'s
mode): GEM and DiffusionNet alternate step by step (which model goes first alternates
between rounds), so both see the same machine load; ``alone``: all rounds of GEM, then
all rounds of DiffusionNet, each after one untimed warm-up step of its own, as when each
model trains in its own ``meshgdl train`` process (no cache and page sharing with the
other model's step; the load may differ between the two). Reported: median over rounds
of meshes/s and of the per-round GEM/DiffusionNet time ratio, plus page faults and
user/system CPU time per mesh (``getrusage``) of each model's timed steps. Untimed
warm-up: one step of each model before the first setting, and at every setting the
profiled GEM step below. The timing (``measure.time_calls``), the CUDA peak and the
``--json`` record (environment, commit, load) come from ``tools/bench/measure.py``;
:func:`time_steps` is also what ``tools/bench/train_loop.py`` times the bare step with.

Per-stage profile of the GEM step (a separate, extra step per setting, not part of the
throughput figures): wall-clock timers (``time.perf_counter``; with CUDA,
``torch.cuda.synchronize()`` at every timer boundary, so each stage includes its own
kernels) around module calls via forward pre-/post-hooks (GEMConv, GaugePool,
GaugeUnpool, non-linearities, norms, dropout, head MLP), wrappers around
``input_features``, the per-level ``GEMGeometry`` build (``GEMNet._geometry``), the
lazily built per-batch GEMConv coefficient tables (``GEMGeometry.memo`` builds) and
``invariant_features``, and around the step's phases (collation on the host, host->device
copy of the batch and targets, loss, the finite-loss check (device->host), backward,
clipping, optimizer). Times are exclusive (a nested timer's time is taken off its
parent); "other forward" is the forward's remainder (residual and skip additions, glue).
The backward is also split by module with full backward pre-/post-hooks (the gradient
computation between them; on CPU autograd runs one node at a time, so this is close to
exact; the hooks themselves add a little time, reported as the backward's remainder).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

# Same reason as tools/bench/conv.py: on a shared 2-core machine, active OpenMP spinning
# measures the neighbours, not the code. Must be set before torch starts OpenMP.
# OMP_WAIT_POLICY=default runs with OpenMP's own policy (spin a while, then sleep), which
# is what `meshgdl train` gets; it favours models made of many short parallel operations.
if os.environ.get("OMP_WAIT_POLICY", "").lower() == "default":
    del os.environ["OMP_WAIT_POLICY"]
else:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import measure  # noqa: E402

from meshgdl.errors import DatasetError  # noqa: E402
from meshgdl.nn import gem_conv as gem_conv_mod  # noqa: E402
from meshgdl.nn.models import gem as models_mod  # noqa: E402
from meshgdl.data.batching import collate_samples, prepare  # noqa: E402
from meshgdl.nn.models import ModelConfig, build_model  # noqa: E402
from meshgdl.train.loop import _targets, mesh_losses  # noqa: E402

GEM_OPTIONS = dict(kind="gem", n_levels=4, hidden_irreps="32x0 + 32x1 + 32x2", n_layers=2, dropout=0.1)
DIF_OPTIONS = dict(kind="diffusion", width=128, n_layers=4, dropout=0.5)
LR, WEIGHT_DECAY, GRAD_CLIP = 1e-3, 1e-4, 1.0


# --------------------------------------------------------------------------- data


def load_samples(n_meshes: int, data_root, cache_dir: str, workers: int):
    """(GEM samples, DiffusionNet samples, targets, names, vertex counts) of the first n RNA train meshes."""
    import warnings

    from meshgdl.data.datasets import DatasetWarning, get_dataset
    from meshgdl.data.preprocess import PreparedDataset, preprocess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # "N of 547 meshes not present" is expected
        ds = get_dataset("rna", "train", data_root)
    idx = list(range(min(n_meshes, len(ds))))
    cfgs = {k: ModelConfig(task="segmentation", n_classes=ds.n_classes, **o)
            for k, o in (("gem", GEM_OPTIONS), ("dif", DIF_OPTIONS))}
    t0 = time.perf_counter()
    # the U-Net's hierarchy includes level 0 with the same operators, so DiffusionNet's
    # prepare() below reads them from the same cache (see tools/bench/rna_prepare.py)
    preprocess(ds, prepare, cfgs["gem"], cache_dir, workers=workers, indices=idx, progress=False)
    out = {}
    for k, cfg in cfgs.items():
        pd = PreparedDataset(ds, prepare, cfg, cache_dir, idx)
        out[k] = [pd.get(j) for j in range(len(idx))]
    prep_s = time.perf_counter() - t0
    targets = [y for _, y, _ in out["gem"]]
    names = [ds.records[i].name for i in idx]
    return cfgs, [s for s, _, _ in out["gem"]], [s for s, _, _ in out["dif"]], targets, names, prep_s


# --------------------------------------------------------------------------- one training step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """A model, its optimizer, and one training step exactly as in ``meshgdl.train.loop``."""

    def __init__(self, cfg: ModelConfig, device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        self.model = build_model(cfg).to(device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=LR, weight_decay=WEIGHT_DECAY)
        self.device = device
        self.n_params = sum(p.numel() for p in self.params)

    def step(self, samples, targets, prof: "StageTimer | None" = None) -> float:
        T = prof or _NULL
        dev = self.device
        if prof is None:
            batch = collate_samples(samples, device=dev)  # as the training loop does
            target, mesh_id = _targets(targets, "segmentation", dev)
        else:  # the same, split into host-side collation and the copy to the device
            with T("collation (host)"):
                batch = collate_samples(samples)
                target, mesh_id = _targets(targets, "segmentation", None)
            with T("host->device copy"):
                if dev.type != "cpu":
                    batch = batch.to(device=dev)
                    target, mesh_id = target.to(dev), mesh_id.to(dev)
        with T("forward (other)"):
            logits = self.model(batch)
        with T("loss"):
            per, lab = mesh_losses(logits, target, mesh_id, len(samples))
            loss = per.sum() / lab.sum().clamp_min(1)
        with T("finite-loss check (device->host)"):
            if not torch.isfinite(loss):
                raise RuntimeError("non-finite loss")
        with T("optimizer (zero_grad)"):
            self.opt.zero_grad(set_to_none=True)
        with T("backward (other)"):
            loss.backward()
        with T("grad clip"):
            torch.nn.utils.clip_grad_norm_(self.params, GRAD_CLIP)
        with T("optimizer (AdamW step)"):
            self.opt.step()
        sync(dev)
        return float(loss.detach())


class _Null:
    def __call__(self, name):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


_NULL = _Null()


class StageTimer:
    """Exclusive wall-clock time per named stage (nested timers are taken off their parent)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = defaultdict(float)
        self.calls = defaultdict(int)
        self.stack: list = []  # [name, start, child_seconds]

    def push(self, name: str) -> None:
        sync(self.device)
        self.stack.append([name, time.perf_counter(), 0.0])

    def pop(self) -> None:
        sync(self.device)
        name, t0, child = self.stack.pop()
        dt = time.perf_counter() - t0
        self.total[name] += dt - child
        self.calls[name] += 1
        if self.stack:
            self.stack[-1][2] += dt

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                timer.push(name)

            def __exit__(self, *a):
                timer.pop()
                return False

        return _Ctx()


def _stage_of(module) -> str | None:
    from meshgdl.nn.nonlinearities import GatedNonlinearity, NormNonlinearity, RegularNonlinearity
    from meshgdl.nn.pooling import GaugePool, GaugeUnpool

    if isinstance(module, gem_conv_mod.GEMConv):
        return "GEMConv"
    if isinstance(module, (GaugePool, GaugeUnpool)):
        return "pooling/unpooling"
    if isinstance(module, (RegularNonlinearity, NormNonlinearity, GatedNonlinearity, models_mod._GateFromScalars)):
        return "non-linearity"
    if isinstance(module, models_mod._Norm):
        return "norm"
    if isinstance(module, models_mod.IrrepDropout):
        return "dropout"
    return None


def profile_gem_step(trainer: Trainer, samples, targets) -> dict:
    """Exclusive seconds per stage of one GEM training step (hooks and wrappers; removed after)."""
    model = trainer.model
    T = StageTimer(trainer.device)
    handles = []
    # forward and backward hooks on the modules of each stage (not nested in one another)
    hooked = [(m, _stage_of(m)) for m in model.modules()]
    hooked = [(m, s) for m, s in hooked if s is not None] + [(model.head, "head (MLP)")]
    for m, s in hooked:
        handles.append(m.register_forward_pre_hook(lambda mod, inp, s=s: T.push(s)))
        handles.append(m.register_forward_hook(lambda mod, inp, out: T.pop()))
        handles.append(m.register_full_backward_pre_hook(lambda mod, go, s=s: T.push(f"backward: {s}")))
        handles.append(m.register_full_backward_hook(lambda mod, gi, go: T.pop()))

    def timed(name, fn):
        def wrapper(*a, **k):
            with T(name):
                return fn(*a, **k)
        return wrapper

    saved = {
        "input_features": models_mod.input_features,
        "invariant_features": models_mod.invariant_features,
        "memo": gem_conv_mod.GEMGeometry.memo,
    }
    orig_memo = saved["memo"]

    def memo(self, key, build):
        if key in self._memo:
            return self._memo[key]
        with T("GEMConv tables (per-batch build)"):
            return orig_memo(self, key, build)

    models_mod.input_features = timed("input features (HKS)", saved["input_features"])
    models_mod.invariant_features = timed("head (invariant summary)", saved["invariant_features"])
    gem_conv_mod.GEMGeometry.memo = memo
    model._geometry = timed("geometry (GEMGeometry layout build)", model._geometry)
    try:
        import warnings

        sync(trainer.device)
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # conv_in's input needs no gradient: its hook sees outputs only
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            trainer.step(samples, targets, prof=T)
        total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
        models_mod.input_features = saved["input_features"]
        models_mod.invariant_features = saved["invariant_features"]
        gem_conv_mod.GEMGeometry.memo = saved["memo"]
        del model._geometry
    stages = dict(sorted(T.total.items(), key=lambda kv: -kv[1]))
    return {"step_seconds": total, "stages": stages, "calls": dict(T.calls)}


# --------------------------------------------------------------------------- timing


def time_steps(trainers: dict, data: dict, targets, B: int, rounds: int, mode: str = "interleaved",
               device: torch.device = torch.device("cpu")) -> dict:
    """Time training steps of every model in ``trainers`` (name -> :class:`Trainer`, samples
    in ``data[name]``): ``rounds`` rounds of ``max(1, n // B)`` steps each, batches of B
    meshes taken cyclically, in ``measure``'s ``mode`` (``interleaved``: step by step,
    order alternating between rounds; ``alone``: each model's rounds back to back after one
    untimed step of its own). Returns a row: per model meshes/s (median over rounds), per
    mesh page faults and CPU seconds, the timings; with two models their time ratio."""
    n = len(targets)
    names = list(trainers)
    steps = max(1, n // B)

    def step(k, start):
        sel = [(start + i) % n for i in range(B)]
        trainers[k].step([data[k][i] for i in sel], [targets[i] for i in sel])

    # a round: step s of each model, s = 0 .. steps-1 (batches s*B, s*B+1, ...)
    starts = {k: itertools.cycle([s * B for s in range(steps)]) for k in names}
    timings = measure.time_calls(
        {k: (lambda k=k: step(k, next(starts[k]))) for k in names}, rounds,
        warmup=1 if mode == "alone" else 0, number=steps, mode=mode, alternate=mode == "interleaved",
        sync=measure.device_sync(device))
    per_round = {k: [steps * B / sec for sec in timings[k].seconds] for k in names}
    row = {"mode": mode, "batch_size": B, "rounds": rounds, "steps_per_round": steps, "per_round": per_round,
           "load_average": timings[names[0]].load_after[0] if timings[names[0]].load_after else None,
           "timings": timings}
    for k in names:
        row[f"{k}_meshes_per_s"] = statistics.median(per_round[k])
        t = timings[k]
        meshes = t.calls * B  # per mesh, over the timed steps
        row[f"{k}_per_mesh"] = {"minor_faults": t.minor_faults / meshes, "user_s": t.user_s / meshes,
                                "sys_s": t.sys_s / meshes}
    if names == ["gem", "dif"]:
        per_round["ratio"] = measure.round_ratios(timings["gem"], timings["dif"])
        row["gem_over_dif_time"] = statistics.median(per_round["ratio"])
    return row


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meshes", type=int, default=4, help="first N RNA train meshes (default 4)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch CPU threads, one or more settings (default: torch's current)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per setting (median)")
    ap.add_argument("--modes", nargs="+", choices=measure.MODES, default=list(measure.MODES),
                    help="interleaved (GEM and DiffusionNet step by step) and/or alone (each model's "
                    "rounds back to back); default both")
    ap.add_argument("--data-root", default=None, help="folder holding rna_surface_segmentation/ "
                    "(default: $MESHGDL_DATA or ../shared/datasets)")
    ap.add_argument("--cache-dir", default=None, help="preprocessing cache (default: a temporary folder)")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="preprocessing processes")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-stage GEM profile")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("train_step.py: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.meshes < 1 or args.rounds < 1 or min(args.batch_sizes) < 1:
        print("train_step.py: --meshes, --rounds and --batch-sizes must be >= 1", file=sys.stderr)
        return 2
    threads = args.threads or [torch.get_num_threads()]

    tmp = None
    if args.cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="meshgdl_train_step_")
        cache_dir = tmp.name
    else:
        cache_dir = args.cache_dir
    try:
        cfgs, gem_s, dif_s, targets, names, prep_s = load_samples(args.meshes, args.data_root, cache_dir, args.workers)
    except DatasetError as exc:
        print(f"train_step.py: RNA data not available ({exc})", file=sys.stderr)
        return 1
    n = len(names)
    nv = [s.num_vertices for s in gem_s]
    print(f"{n} RNA train meshes ({', '.join(names)}), {min(nv)}-{max(nv)} vertices (mean {np.mean(nv):.0f}); "
          f"preprocessing {prep_s:.1f} s (excluded); device {device}; torch {torch.__version__}", flush=True)

    tr = {"gem": Trainer(cfgs["gem"], device), "dif": Trainer(cfgs["dif"], device)}
    print(f"parameters: GEM U-Net {tr['gem'].n_params:,}, DiffusionNet {tr['dif'].n_params:,}", flush=True)
    data = {"gem": gem_s, "dif": dif_s}

    def step(k, B, start):
        sel = [(start + i) % n for i in range(B)]
        tr[k].step([data[k][i] for i in sel], [targets[i] for i in sel])

    wait_for_device = measure.device_sync(device)
    env = measure.environment()
    print(measure.environment_line(env), flush=True)

    results = []
    for nt in threads:
        torch.set_num_threads(nt)
        for B in args.batch_sizes:
            cuda_mem = measure.cuda_memory(device) if device.type == "cuda" else None
            if cuda_mem is not None:
                cuda_mem.__enter__()
            t_setting = time.perf_counter()
            if not results:  # first setting: warm-up steps (lru caches, allocator), not timed
                step("gem", 1, 0)
                step("dif", 1, 0)
            if not args.no_profile:  # the profiled GEM step doubles as its warm-up at this batch size
                sel = [i % n for i in range(B)]
                prof = profile_gem_step(tr["gem"], [gem_s[i] for i in sel], [targets[i] for i in sel])
            else:
                step("gem", B, 0)
            rows = []
            for mode in args.modes:
                row = time_steps(tr, data, targets, B, args.rounds, mode, device)
                row["threads"] = nt
                rows.append(row)
                print(f"threads {nt}, batch {B}, {mode}: GEM U-Net {row['gem_meshes_per_s']:.3f} meshes/s, "
                      f"DiffusionNet {row['dif_meshes_per_s']:.3f} meshes/s, GEM/DiffusionNet time "
                      f"{row['gem_over_dif_time']:.2f}x (median of {args.rounds} rounds, load "
                      f"{row['load_average']:.2f})", flush=True)
                print("  per mesh: " + "; ".join(
                    f"{'GEM' if k == 'gem' else 'DiffusionNet'} {u['minor_faults']:.0f} page faults, "
                    f"{u['user_s']:.2f} s user + {u['sys_s']:.2f} s system CPU"
                    for k, u in ((k, row[f"{k}_per_mesh"]) for k in ("gem", "dif"))), flush=True)
            wall = time.perf_counter() - t_setting
            if cuda_mem is not None:
                cuda_mem.__exit__(None, None, None)
            for row in rows:
                row["setting_wall_s"] = wall
                if cuda_mem is not None:
                    row["peak_memory_mib"] = cuda_mem.result.peak_mib  # of all modes of the setting
            if not args.no_profile:
                p = rows[0]["gem_profile"] = prof
                tot = p["step_seconds"]
                print(f"  GEM step profile (one step, {tot:.2f} s with timers; exclusive times):")
                for name, sec in p["stages"].items():
                    print(f"    {name:40s} {sec * 1e3:9.1f} ms  {100 * sec / tot:5.1f} %  ({p['calls'][name]} calls)")
                print(f"    {'(timer overhead / untimed)':40s} {(tot - sum(p['stages'].values())) * 1e3:9.1f} ms",
                      flush=True)
            results += rows

    if args.json:
        out = {"device": str(device), "torch": torch.__version__, "meshes": names, "vertices": nv,
               "preprocessing_seconds": prep_s, "parameters": {k: t.n_params for k, t in tr.items()},
               "model_configs": {k: c.to_dict() for k, c in cfgs.items()},
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "results": results}
        measure.write_json(args.json, measure.record("tools/bench/train_step.py", out, args, env))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
