"""Cache the RNA benchmark's model inputs (tools/bench/rna.sh prepare SPLIT).

The GEM U-Net's hierarchy contains level 0, which is all the DiffusionNet baseline
needs, so one pass serves both models. Usage: ``rna_prepare.py SPLIT WORKERS``.
"""

import sys

from meshgdl.data.datasets import get_dataset
from meshgdl.data.preprocess import default_cache_dir, preprocess
from meshgdl.data.batching import prepare
from meshgdl.nn.models import ModelConfig

if __name__ == "__main__":
    split, workers = sys.argv[1], int(sys.argv[2])
    ds = get_dataset("rna", split)
    cfg = ModelConfig(kind="gem", task="segmentation", n_classes=260, n_levels=4)
    r = preprocess(ds, prepare, cfg, default_cache_dir(), workers=workers, progress=False, on_error="skip")
    names = ds.names
    print(f"{split}: {r['n']} meshes prepared in {r['seconds']:.0f} s with {workers} processes; "
          f"failed: {sorted(names[i] for i in r['failed'])}", flush=True)
