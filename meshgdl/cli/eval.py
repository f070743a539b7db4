"""``meshgdl eval CHECKPOINT``: metrics of a trained model on a dataset split.

Segmentation is scored per vertex of the *original* files (predictions of the
cleaned mesh mapped back through the loader's index map), as benchmarks require.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from meshgdl.cli._common import UsageError
from meshgdl.cli.train import dataset_warnings_as_lines


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset split (metrics JSON)",
        description="Evaluate a checkpoint (file, or run directory: best, else last) on a dataset "
        "split. Segmentation accuracy / IoU are computed on every vertex of the original mesh "
        "files; classification accuracy and the confusion matrix per mesh.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint .safetensors or run directory")
    p.add_argument("--dataset", help="dataset name or folder (default: the one it was trained on)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--split-dir", metavar="DIR",
                   help="folder of split lists replacing the dataset's own (default: the run's, if it used one)")
    p.add_argument("--data-root", help="folder holding named datasets (default $MESHGDL_DATA or ../shared/datasets)")
    p.add_argument("--out", metavar="JSON", help="write the metrics here (default: print to stdout)")
    p.add_argument("--predictions", metavar="DIR", help="write per-file-vertex predicted labels, one file per mesh")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--cache-dir", help="preprocessing cache (default $MESHGDL_CACHE or ~/.cache/meshgdl)")
    p.add_argument("--workers", type=int, default=1, help="preprocessing processes")
    p.add_argument("--max-meshes", type=int, help="evaluate only the first N meshes")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from meshgdl.train.checkpoint import load_checkpoint
    from meshgdl.train.loop import evaluate
    from meshgdl.train.metrics import json_safe

    if args.out:
        out = Path(args.out)
        if out.suffix.lower() != ".json":
            raise UsageError(f"{args.out}: --out must end with .json")
        if not out.parent.exists():
            raise UsageError(f"{args.out}: folder {out.parent} does not exist")
    dataset, data_root, split_dir = args.dataset, args.data_root, args.split_dir
    if dataset is None:
        ck = load_checkpoint(args.checkpoint, verify=False)
        tc = ck.train_config or {}
        dataset = tc.get("dataset")
        if not dataset:
            raise UsageError("the checkpoint does not say which dataset it was trained on; pass --dataset")
        data_root = data_root or tc.get("data_root")
        split_dir = split_dir or tc.get("split_dir")
    with dataset_warnings_as_lines():
        res = evaluate(args.checkpoint, dataset, args.split, data_root=data_root, device=args.device,
                       cache_dir=args.cache_dir, workers=args.workers, progress=not args.no_progress,
                       predictions_dir=args.predictions, max_meshes=args.max_meshes,
                       split_dir=split_dir)
    text = json.dumps(json_safe(res), indent=1)
    if args.out:
        from meshgdl.atomic import write_text_atomic

        write_text_atomic(args.out, text + "\n")
    else:
        sys.stdout.write(text + "\n")
    line = f"meshgdl: {res['dataset']}/{res['split']}: {res['n_meshes']} meshes, accuracy {res['accuracy']:.4f}"
    if isinstance(res.get("mean_iou"), float) and math.isfinite(res["mean_iou"]):
        line += f", mean IoU {res['mean_iou']:.4f}"
    line += f" ({res['meshes_per_second']:.2f} meshes/s)"
    print(line, file=sys.stderr)
    return 0
