"""Cache the RNA benchmark's model inputs (tools/bench/rna.sh prepare SPLIT).

The GEM U-Net's hierarchy contains level 0, which is all the DiffusionNet baseline
needs, so one pass serves both models. Usage: ``rna_prepare.py SPLIT WORKERS [JSON]
[--max-meshes N] [--cache-dir DIR]``; JSON, if given, receives the record of
``tools/bench/measure.py`` (wall time, the preprocessing's own figures, cache size,
machine, versions, commit, load).

Parallel (WORKERS processes) and resumable: every cache entry is written atomically
under a key of its inputs, so a run that is interrupted and started again computes only
the meshes whose entries are missing. Reported: wall time (and per mesh asked for; meshes
already cached cost only their check), the cache folder's files and size before and after
(what this run added), and the meshes that failed.
"""

import argparse

import measure
from meshgdl.cache import folder_size
from meshgdl.data.batching import prepare
from meshgdl.data.datasets import get_dataset
from meshgdl.data.preprocess import default_cache_dir, preprocess
from meshgdl.nn.models import ModelConfig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("split")
    ap.add_argument("workers", type=int)
    ap.add_argument("json", nargs="?", default=None)
    ap.add_argument("--max-meshes", type=int, default=None, help="only the first N meshes of the split")
    ap.add_argument("--cache-dir", default=None, help="default $MESHGDL_CACHE or ~/.cache/meshgdl")
    args = ap.parse_args(argv)
    env = measure.environment()
    ds = get_dataset("rna", args.split)
    cache = args.cache_dir or default_cache_dir()
    idx = list(range(len(ds) if args.max_meshes is None else min(len(ds), args.max_meshes)))
    cfg = ModelConfig(kind="gem", task="segmentation", n_classes=260, n_levels=4)
    before = folder_size(cache)
    r, wall = measure.timed(preprocess, ds, prepare, cfg, cache, workers=args.workers, indices=idx, progress=False,
                            on_error="skip")
    after = folder_size(cache)
    failed = sorted(ds.names[i] for i in r["failed"])
    mib = measure.MiB
    print(f"{args.split}: {r['n']} meshes prepared in {wall:.0f} s ({wall / max(1, r['n']):.2f} s per mesh) with "
          f"{args.workers} processes; cache {cache}: {after[0]} files, {after[1] / mib:.0f} MiB "
          f"(this run added {after[0] - before[0]} files, {(after[1] - before[1]) / mib:.0f} MiB); "
          f"failed: {failed}", flush=True)
    print(measure.environment_line(env), flush=True)
    if args.json:
        measure.write_json(args.json, measure.record(
            "tools/bench/rna_prepare.py",
            {"split": args.split, "workers": args.workers, "wall_s": wall, "meshes": r["n"],
             "preprocess_seconds": r["seconds"], "failed": failed, "cache_dir": str(cache),
             "cache_files_before": before[0], "cache_bytes_before": before[1],
             "cache_files_after": after[0], "cache_bytes_after": after[1]},
            args, environment_start=env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
