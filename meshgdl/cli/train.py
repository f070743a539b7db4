"""``meshgdl train``: train a segmentation or classification model on a mesh dataset.

Single process::

    meshgdl train --dataset rna --model gem --epochs 50 --out runs/rna_gem --seed 0

Several processes / GPUs (DistributedDataParallel; the same options)::

    torchrun --nproc_per_node 4 -m meshgdl train --dataset rna --out runs/rna_gem

Interrupted runs continue exactly with ``--resume`` (same ``--out``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

from meshgdl.cli._common import UsageError


@contextlib.contextmanager
def dataset_warnings_as_lines():
    """Show dataset warnings (skipped meshes) as one ``meshgdl: warning: ...`` line each."""
    from meshgdl.data.datasets import DatasetWarning

    orig = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DatasetWarning):
            print(f"meshgdl: warning: {message}", file=sys.stderr)
        else:
            orig(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = orig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on a mesh dataset (checkpoints, resume, DDP)",
        description="Train a GEM-CNN or DiffusionNet model on a named dataset (rna) or a "
        "custom-folder dataset. Options override --config; a checkpoint is written to OUT "
        "after every epoch and --resume continues from it. Run under torchrun for "
        "multi-process data parallel training.",
    )
    p.add_argument("--dataset", help="dataset name (rna, human_seg, shrec11) or folder in the custom format")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, metrics)")
    p.add_argument("--config", metavar="JSON", help="training config file (TrainConfig fields + 'model')")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.safetensors")
    # not argparse choices: the kinds are what meshgdl.nn.models registers, and importing
    # it (torch) for every meshgdl command's parser would slow them all; build_config checks
    p.add_argument("--model", metavar="KIND",
                   help="a registered model kind (meshgdl.nn.models.MODELS: gem, diffusion, ...; default gem)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a ModelConfig field, value as JSON (e.g. width=64); repeatable")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--batch-size", type=int, help="meshes per step")
    p.add_argument("--scheduler", choices=["cosine", "step", "none"])
    p.add_argument("--warmup-epochs", type=int)
    p.add_argument("--step-size", type=int, help="epochs between LR drops (step scheduler)")
    p.add_argument("--gamma", type=float, help="LR drop factor (step scheduler)")
    p.add_argument("--grad-clip", type=float, help="clip the gradient norm (0: off)")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--seed", type=int, help="seed; also turns on deterministic mode")
    p.add_argument("--nondeterministic", dest="deterministic", action="store_false", default=None,
                   help="keep --seed but allow torch's faster non-deterministic kernels (e.g. CUDA index_add)")
    p.add_argument("--val-fraction", type=float, help="share of train meshes held out for validation")
    p.add_argument("--val-split", help="validate on this split instead (e.g. val from --split-dir)")
    p.add_argument("--split-dir", metavar="DIR",
                   help="folder of split lists (train.txt, val.txt, test.txt) replacing the dataset's own")
    p.add_argument("--select-metric", choices=["accuracy", "mean_iou", "loss"], help="picks best.safetensors")
    p.add_argument("--augment-rotate", choices=["so3", "x", "y", "z", "none"], help="random rotations (default so3)")
    p.add_argument("--augment-scale", type=float, nargs=2, metavar=("LO", "HI"), help="random isotropic scale range")
    p.add_argument("--augment-jitter", type=float, metavar="SIGMA", help="position noise, in mean edge lengths")
    p.add_argument("--augment-remesh", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="random decimation keeping MIN..MAX of the faces (slow: no operator cache)")
    p.add_argument("--max-meshes", type=int, help="use only the first N training meshes")
    p.add_argument("--skip-bad-meshes", action="store_true", default=None,
                   help="leave out (with a warning) training meshes that fail to load or preprocess")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop after N epochs of this invocation")
    p.add_argument("--data-root", help="folder holding named datasets (default $MESHGDL_DATA or ../shared/datasets)")
    p.add_argument("--cache-dir", help="preprocessing cache (default $MESHGDL_CACHE or ~/.cache/meshgdl)")
    p.add_argument("--workers", type=int, help="preprocessing processes (default 1)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--in-memory", action="store_true", default=None, help="keep prepared meshes in RAM")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


_FLAG_FIELDS = {
    "dataset": "dataset", "epochs": "epochs", "lr": "lr", "weight_decay": "weight_decay",
    "batch_size": "batch_size", "scheduler": "scheduler", "warmup_epochs": "warmup_epochs",
    "step_size": "step_size", "gamma": "gamma", "grad_clip": "grad_clip", "label_smoothing": "label_smoothing",
    "seed": "seed", "deterministic": "deterministic", "val_fraction": "val_fraction", "val_split": "val_split", "split_dir": "split_dir",
    "select_metric": "select_metric",
    "augment_rotate": "augment_rotate", "augment_scale": "augment_scale", "augment_jitter": "augment_jitter",
    "augment_remesh": "augment_remesh", "max_meshes": "max_meshes", "skip_bad_meshes": "skip_bad_meshes",
    "stop_after": "stop_after",
    "data_root": "data_root", "cache_dir": "cache_dir", "workers": "workers", "device": "device",
    "in_memory": "in_memory",
}


def check_model_kind(kind) -> None:
    """UsageError unless ``kind`` is a registered model kind (:data:`meshgdl.nn.models.MODELS`)."""
    from meshgdl.nn.models import MODELS

    if not isinstance(kind, str) or kind not in MODELS:
        raise UsageError(f"unknown model kind {kind!r}; registered kinds: {', '.join(sorted(MODELS))}")


def build_config(args):
    """TrainConfig from --config plus the options given on the command line."""
    from meshgdl.train.loop import TrainConfig

    d: dict = {}
    if args.config:
        p = Path(args.config)
        if not p.is_file():
            raise UsageError(f"{args.config}: config file not found")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"{args.config}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(d, dict):
            raise UsageError(f"{args.config}: expected a JSON object")
        d = dict(d.get("train", d)) if "train" in d and isinstance(d["train"], dict) else d
        if "model" in d and not isinstance(d["model"], dict):
            raise UsageError(f"{args.config}: 'model' must be an object")
    for flag, name in _FLAG_FIELDS.items():
        v = getattr(args, flag, None)
        if v is not None:
            d[name] = v
    if d.get("augment_rotate") == "none":
        d["augment_rotate"] = None
    model = dict(d.get("model") or {})
    if args.model:
        model["kind"] = args.model
    model.setdefault("kind", "gem")
    for opt in args.model_option:
        if "=" not in opt:
            raise UsageError(f"--model-option {opt!r}: expected KEY=VALUE")
        k, v = opt.split("=", 1)
        try:
            model[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            model[k.strip()] = v
    if not args.resume:  # a resumed run's kind comes from its checkpoint
        check_model_kind(model["kind"])
    d["model"] = model
    if args.no_progress:
        d["progress"] = False
    try:
        cfg = TrainConfig.from_dict(d)
        if not args.resume:
            cfg.validate()
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    return cfg


def run(args) -> int:
    from meshgdl.train.loop import train

    if not args.resume and not args.dataset and not args.config:
        raise UsageError("--dataset is required (or --config, or --resume)")
    out = Path(args.out)
    if not args.resume and (out / "last.safetensors").exists():
        raise UsageError(f"{out} already holds a run; add --resume to continue it or choose another --out")
    if args.resume and args.dataset is None:
        args.dataset = "(from checkpoint)"
    cfg = build_config(args)
    with dataset_warnings_as_lines():
        res = train(cfg, out, resume=args.resume, epochs=args.epochs if args.resume else None)
    if res:
        best = res.get("best") or {}
        print(f"meshgdl: {res.get('epochs_done')}/{res.get('epochs')} epochs in {out}; best "
              f"{best.get('metric', '')} {best.get('score', float('nan')):.4f} at epoch {best.get('epoch')}",
              file=sys.stderr)
    return 0
