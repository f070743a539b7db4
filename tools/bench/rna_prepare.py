"""Cache the RNA benchmark's model inputs (tools/bench/rna.sh prepare SPLIT).

The GEM U-Net's hierarchy contains level 0, which is all the DiffusionNet baseline
needs, so one pass serves both models. Usage: ``rna_prepare.py SPLIT WORKERS [JSON]``;
JSON, if given, receives the record of ``tools/bench/measure.py`` (wall time, the
preprocessing's own figures, machine, versions, commit, load).
"""

import sys

import measure
from meshgdl.data.datasets import get_dataset
from meshgdl.data.preprocess import default_cache_dir, preprocess
from meshgdl.data.batching import prepare
from meshgdl.nn.models import ModelConfig

if __name__ == "__main__":
    split, workers = sys.argv[1], int(sys.argv[2])
    env = measure.environment()
    ds = get_dataset("rna", split)
    cfg = ModelConfig(kind="gem", task="segmentation", n_classes=260, n_levels=4)
    r, wall = measure.timed(preprocess, ds, prepare, cfg, default_cache_dir(), workers=workers, progress=False,
                            on_error="skip")
    names = ds.names
    failed = sorted(names[i] for i in r["failed"])
    print(f"{split}: {r['n']} meshes prepared in {wall:.0f} s with {workers} processes; failed: {failed}", flush=True)
    print(measure.environment_line(env), flush=True)
    if len(sys.argv) > 3:
        measure.write_json(sys.argv[3], measure.record(
            "tools/bench/rna_prepare.py", {"split": split, "workers": workers, "wall_s": wall, "meshes": r["n"],
                                           "preprocess_seconds": r["seconds"], "failed": failed},
            environment_start=env))
