"""The training and evaluation loops behind ``meshgdl train`` and ``meshgdl eval``.

:func:`train` runs (or resumes) a run in a run directory::

    RUN/config.json        train + model config as used (JSON)
    RUN/dataset.json       which meshes were used (train / val / skipped names)
    RUN/last.safetensors   checkpoint after every epoch (atomic; see train.checkpoint)
    RUN/best.safetensors   checkpoint of the best validation score so far
    RUN/metrics.jsonl      one JSON line per epoch (loss, accuracy, mIoU, lr, timings, memory)
    RUN/results.json       summary, rewritten every epoch (so partial runs have one)

The model is reached only through a small contract (by default
:func:`default_api`: :mod:`meshgdl.nn.models` and :mod:`meshgdl.data.batching`): ``ModelConfig`` (``to_dict`` / ``from_dict``; fields
``kind``, ``task``, ``n_classes``), ``build_model(config)``,
``prepare(V, F, config, cache_dir=None) -> sample`` and
``collate_samples(samples, device=None, dtype=None) -> batch``; ``model(batch)``
returns ``(N, n_classes)`` per-vertex logits (segmentation, vertices in the order of
the samples) or ``(B, n_classes)`` per-mesh logits (classification). Pass another
object with these attributes as ``api`` to train any model.

Reproducibility. ``seed`` seeds the model initialisation; the shuffle order depends
only on ``(seed, epoch)``, augmentation on ``(seed, epoch, mesh index)`` and
dropout on ``(seed, epoch, rank)``, so the result does not depend on where a run
was interrupted: ``--resume`` after epoch k gives bit-identical weights to an
uninterrupted run (CPU, deterministic mode). Deterministic mode
(``torch.use_deterministic_algorithms``) is on when a seed is given explicitly.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from meshgdl.atomic import write_text_atomic
from meshgdl.errors import CheckpointError, DatasetError
from meshgdl.train import checkpoint as ckpt_mod
from meshgdl.train import distributed as dist_mod
from meshgdl.train.metrics import IGNORE_INDEX, confusion_matrix_torch, json_safe, task_metrics

#: Fields that may change when a run is resumed (where and how it runs, not what it learns).
RUNTIME_FIELDS = ("data_root", "device", "workers", "cache_dir", "progress", "stop_after", "in_memory")


@dataclass
class TrainConfig:
    """Everything a run needs, as JSON (``RUN/config.json``).

    ``model`` holds ``ModelConfig`` fields (``kind``, widths, ...); ``task`` and
    ``n_classes`` are filled from the dataset. ``scheduler``: ``"cosine"`` (to
    ``min_lr_ratio * lr`` at the last epoch), ``"step"`` (``* gamma`` every
    ``step_size`` epochs) or ``"none"``; ``warmup_epochs`` ramps linearly first.
    ``val_fraction`` of the training meshes (chosen by ``seed``) are held out for
    validation unless ``val_split`` names a split (e.g. ``"val"``; ``"test"`` is
    optimistic). ``split_dir``: a folder of split lists (``train.txt``, ``val.txt``,
    ``test.txt``) replacing the dataset's own (custom folders), e.g. a validation
    split held out by subject, or one draw of a "10 per class" protocol.
    ``augment_rotate``: ``"so3"``, ``"x"``, ``"y"``, ``"z"`` or None;
    ``augment_scale``: ``[lo, hi]`` or None; ``augment_jitter``: noise in mean edge
    lengths; ``augment_remesh``: ``[min, max]`` kept face fraction or None (slow:
    recomputes operators). ``max_meshes`` trains on the first N meshes only.
    ``skip_bad_meshes`` leaves out (with a warning, listed in ``RUN/dataset.json``)
    training/validation meshes whose loading or preprocessing fails, instead of stopping.
    ``stop_after`` ends this invocation after that many epochs (resume later).
    """

    dataset: str = ""
    data_root: str | None = None
    model: dict = field(default_factory=lambda: {"kind": "gem"})
    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 1
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.01
    step_size: int = 30
    gamma: float = 0.1
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    seed: int | None = None
    deterministic: bool | None = None
    val_fraction: float = 0.1
    val_split: str | None = None
    split_dir: str | None = None
    select_metric: str = "accuracy"
    augment_rotate: str | None = "so3"
    augment_scale: list | None = None
    augment_jitter: float = 0.0
    augment_remesh: list | None = None
    max_meshes: int | None = None
    skip_bad_meshes: bool = False
    workers: int = 1
    cache_dir: str | None = None
    device: str | None = None
    in_memory: bool = False
    progress: bool = True
    stop_after: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**d)

    def validate(self) -> None:
        if not self.dataset:
            raise ValueError("no dataset given")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.scheduler not in ("cosine", "step", "none"):
            raise ValueError(f"scheduler must be cosine, step or none, got {self.scheduler!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if self.select_metric not in ("accuracy", "mean_iou", "loss"):
            raise ValueError("select_metric must be accuracy, mean_iou or loss")


def default_api():
    """meshgdl's own model contract: :mod:`meshgdl.nn.models` (``ModelConfig``,
    ``build_model``) with :mod:`meshgdl.data.batching` (``prepare``, ``collate_samples``)."""
    from types import SimpleNamespace

    from meshgdl.data import batching
    from meshgdl.nn import models

    return SimpleNamespace(ModelConfig=models.ModelConfig, build_model=models.build_model,
                           prepare=batching.prepare, collate_samples=batching.collate_samples)


# --------------------------------------------------------------------------- helpers


def _seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across runs and Python versions)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def set_determinism(seed: int, deterministic: bool) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every torch.empty() with NaN, to expose reads of
        # uninitialised memory; none happen in training (same losses bit for bit), and the
        # fill cost the GEM U-Net's CPU step 2.5 % (in-process A/B on RNA meshes).
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based)."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.scheduler == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs - 1)
        t = min(1.0, (epoch - cfg.warmup_epochs) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.scheduler == "step":
        return cfg.gamma ** ((epoch - cfg.warmup_epochs) // max(1, cfg.step_size))
    return 1.0


def build_model_config(api, cfg: TrainConfig, task: str, n_classes: int):
    d = dict(cfg.model)
    d["task"], d["n_classes"] = task, int(n_classes)
    return api.ModelConfig.from_dict(d)


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated by torch (CUDA) or peak resident set size (CPU), MiB."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _targets(targets: list[np.ndarray], task: str, device):
    """Concatenated targets and, per target, the index of its mesh in the batch."""
    import torch

    if task == "segmentation":
        t = torch.as_tensor(np.concatenate(targets), dtype=torch.long, device=device)
        sizes = torch.as_tensor([len(y) for y in targets], device=device)
        return t, torch.repeat_interleave(torch.arange(len(targets), device=device), sizes)
    t = torch.as_tensor(np.array([int(y) for y in targets]), dtype=torch.long, device=device)
    return t, torch.arange(len(targets), device=device)


def mesh_losses(logits, target, mesh_id, n_meshes: int, label_smoothing: float = 0.0):
    """Per-mesh mean cross-entropy over its labelled vertices (or its one label).

    Returns ``(losses (B,), labelled (B,) bool)``. The training loss is the mean of
    ``losses[labelled]``: every mesh weighs the same whatever its resolution, and a
    batch of B meshes in one process equals B processes with one mesh each (DDP
    averages the gradients the same way).
    """
    import torch
    import torch.nn.functional as Fnn

    valid = target != IGNORE_INDEX
    per = Fnn.cross_entropy(logits, target.clamp_min(0), reduction="none", label_smoothing=label_smoothing)
    per = per * valid.to(per.dtype)
    tot = torch.zeros(n_meshes, dtype=per.dtype, device=per.device).index_add(0, mesh_id, per)
    cnt = torch.zeros(n_meshes, dtype=per.dtype, device=per.device).index_add(0, mesh_id, valid.to(per.dtype))
    return tot / cnt.clamp_min(1), cnt > 0


def _augment(sample, transform, rng):
    from meshgdl.data.transforms import apply_to_sample

    return apply_to_sample(sample, transform, rng)


def _check_logits(logits, target, task: str, n_classes: int):
    if logits.dim() != 2 or logits.shape[1] != n_classes or logits.shape[0] != target.shape[0]:
        unit = "vertices" if task == "segmentation" else "meshes"
        raise RuntimeError(
            f"model returned logits of shape {tuple(logits.shape)}, expected ({target.shape[0]}, {n_classes}) "
            f"({target.shape[0]} {unit})"
        )


# --------------------------------------------------------------------------- evaluation on prepared data


def run_epoch_eval(model, prepared, api, task: str, n_classes: int, ctx, *, batch_size: int = 1,
                   label_smoothing: float = 0.0, progress: bool = False, desc: str = "val") -> dict:
    """Loss and confusion matrix of ``model`` over a :class:`PreparedDataset` (exact over ranks)."""
    import torch
    from tqdm.auto import tqdm

    model.eval()
    idx = dist_mod.shard_indices(len(prepared), ctx, shuffle=False, seed=0, epoch=0, pad=False)
    cm = torch.zeros(n_classes, n_classes, dtype=torch.long, device=ctx.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    count = torch.zeros((), dtype=torch.float64, device=ctx.device)
    bar = tqdm(total=len(idx), desc=desc, unit="mesh", leave=False, disable=not (progress and ctx.is_main))
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            got = [prepared[j] for j in chunk]
            batch = api.collate_samples([g[0] for g in got], device=ctx.device)
            target, mesh_id = _targets([g[1] for g in got], task, ctx.device)
            logits = model(batch)
            _check_logits(logits, target, task, n_classes)
            per, lab = mesh_losses(logits.float(), target, mesh_id, len(chunk), label_smoothing)
            loss_sum += per[lab].double().sum()
            count += lab.sum()
            cm += confusion_matrix_torch(logits.argmax(1), target, n_classes)
            bar.update(len(chunk))
    bar.close()
    return _reduced_metrics(ctx, task, cm, loss_sum, count)


def _reduced_metrics(ctx, task: str, cm, loss_sum, count) -> dict:
    """Task metrics of the confusion matrix and mean loss, summed over all processes."""
    cm = dist_mod.all_reduce_sum(ctx, cm)
    loss_sum = dist_mod.all_reduce_sum(ctx, loss_sum)
    count = dist_mod.all_reduce_sum(ctx, count)
    out = task_metrics(task, cm.cpu().numpy())
    out["loss"] = float(loss_sum / count) if float(count) > 0 else math.nan
    return out


# --------------------------------------------------------------------------- training


def _split_train_val(n: int, cfg: TrainConfig, seed: int) -> tuple[list[int], list[int]]:
    if cfg.val_split or cfg.val_fraction <= 0 or n < 2:
        return list(range(n)), []
    k = min(n - 1, max(1, int(round(cfg.val_fraction * n))))
    perm = np.random.default_rng(_seed_for(seed, 7919)).permutation(n)
    val = sorted(perm[:k].tolist())
    train = sorted(perm[k:].tolist())
    return train, val


def run_finished(run_dir: str | os.PathLike) -> bool:
    """Has the run in ``run_dir`` done all its epochs? (``results.json`` is rewritten
    after every epoch; its ``finished`` flag says.)"""
    try:
        return bool(json.loads((Path(run_dir) / "results.json").read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def _compact(m: dict) -> dict:
    keep = ("loss", "accuracy", "mean_iou", "mean_class_accuracy", "count")
    return {k: m[k] for k in keep if k in m}


def train(cfg: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False, api=None,
          epochs: int | None = None) -> dict:
    """Train (or resume) a run in ``out_dir``; returns the results dict (also ``results.json``).

    With ``resume`` the run's settings come from ``out_dir/last.safetensors``; only
    the :data:`RUNTIME_FIELDS` of ``cfg`` apply, and ``epochs`` (if given) extends or
    shortens the run (the LR schedule follows the new length).
    Works single-process or under ``torchrun`` (DDP); see the module docstring.
    """
    api = api or default_api()
    out = Path(out_dir)
    last_path = out / "last.safetensors"
    ck = None
    if resume:
        if not last_path.exists():
            raise CheckpointError(f"{out}: nothing to resume (no last.safetensors)")
        ck = ckpt_mod.load_checkpoint(last_path)
        if not ck.train_config:
            raise CheckpointError(f"{last_path}: checkpoint has no training config to resume from")
        saved = TrainConfig.from_dict(ck.train_config)
        # the run's identity comes from the checkpoint; only runtime fields may change
        for name in RUNTIME_FIELDS:
            setattr(saved, name, getattr(cfg, name))
        if epochs is not None:
            saved.epochs = int(epochs)
        cfg = saved
    cfg.validate()
    if cfg.seed is None:
        cfg.seed = int.from_bytes(os.urandom(4), "little")
        if cfg.deterministic is None:
            cfg.deterministic = False
    elif cfg.deterministic is None:
        cfg.deterministic = True
    seed = int(cfg.seed)

    ctx = dist_mod.init_distributed(cfg.device)
    try:
        results = _train(cfg, out, ck, api, ctx, seed)
    except BaseException:
        dist_mod.cleanup(ctx)  # no barrier: the other ranks may never reach it
        raise
    dist_mod.cleanup(ctx, synchronize=True)
    return results


def _train(cfg: TrainConfig, out: Path, ck, api, ctx, seed: int) -> dict:
    import torch
    from tqdm.auto import tqdm

    from meshgdl.cache import folder_size
    from meshgdl.data.datasets import DatasetWarning, get_dataset
    from meshgdl.data.preprocess import PreparedDataset, default_cache_dir, preprocess
    from meshgdl.data.transforms import RandomRemesh, build_augmentation

    set_determinism(seed, bool(cfg.deterministic))
    show = bool(cfg.progress) and ctx.is_main
    log = (lambda msg: tqdm.write(msg, file=sys.stderr)) if ctx.is_main else (lambda msg: None)

    train_ds = get_dataset(cfg.dataset, "train", cfg.data_root, cfg.split_dir)
    task, n_classes = train_ds.task, train_ds.n_classes
    n_all = len(train_ds)
    use = list(range(n_all if cfg.max_meshes is None else min(n_all, int(cfg.max_meshes))))
    tr_pos, va_pos = _split_train_val(len(use), cfg, seed)
    tr_idx = [use[p] for p in tr_pos]
    val_ds, va_idx = None, []
    if cfg.val_split:
        val_ds = get_dataset(cfg.dataset, cfg.val_split, cfg.data_root, cfg.split_dir)
        if val_ds.n_classes != n_classes or val_ds.task != task:
            raise DatasetError(f"split {cfg.val_split} has {val_ds.n_classes} classes, train {n_classes}")
        va_idx = list(range(len(val_ds)))
    elif va_pos:
        val_ds, va_idx = train_ds, [use[p] for p in va_pos]

    model_cfg = build_model_config(api, cfg, task, n_classes)
    if ck is not None and api.ModelConfig.from_dict(dict(ck.model_config)).to_dict() != model_cfg.to_dict():
        raise CheckpointError(f"{out}/last.safetensors: the run's model config differs from the checkpoint's")
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()

    # one process computes the caches; the others wait and then read them
    unusable: dict[str, dict[int, str]] = {"train": {}, "val": {}}
    prep: dict[str, Any] = {}
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for ds, idx, nm in ((train_ds, tr_idx, "train"), (val_ds, va_idx, "val")):
            if ds is not None and idx:
                r = preprocess(ds, api.prepare, model_cfg, cache_dir, workers=int(cfg.workers), indices=idx,
                               progress=show, desc=f"preprocess {nm}",
                               on_error="skip" if cfg.skip_bad_meshes else "raise")
                unusable[nm] = r["failed"]
                prep[nm] = {"meshes": r["n"], "seconds": r["seconds"], "failed": len(r["failed"])}
                for msg in r["failed"].values():
                    warnings.warn(f"skipped {nm} mesh: {msg}", DatasetWarning, stacklevel=2)
        files, size = folder_size(cache_dir)
        prep["cache"] = {"dir": str(cache_dir), "files": files, "bytes": size}
        runs = {k: p for k, p in prep.items() if k != "cache"}
        seconds = sum(p["seconds"] for p in runs.values())
        if seconds >= 1:  # quiet when everything was cached already
            what = " + ".join(f"{p['meshes']} {k}" for k, p in runs.items())
            log(f"meshgdl: preprocessing ({what} meshes): {seconds:.1f} s with {cfg.workers} process(es); "
                f"cache {cache_dir}: {files} files, {size / 2**20:.0f} MiB")
    unusable = dist_mod.broadcast_object(ctx, unusable)
    tr_idx = [i for i in tr_idx if i not in unusable["train"]]
    va_idx = [i for i in va_idx if i not in unusable["val"]]
    if not tr_idx:
        raise DatasetError(f"dataset {cfg.dataset}: no usable training mesh")
    if ctx.is_main:
        info = {
            "train": {**train_ds.describe(), "names": [train_ds.records[i].name for i in tr_idx]},
            "val": None if val_ds is None else {
                **val_ds.describe(), "names": [val_ds.records[i].name for i in va_idx]},
            "max_meshes": cfg.max_meshes,
            "preprocessing": prep,
            "unusable": {nm: {(train_ds if nm == "train" else val_ds).records[i].name: m for i, m in d.items()}
                         for nm, d in unusable.items()},
        }
        write_text_atomic(out / "dataset.json", json.dumps(info, indent=1))
        write_text_atomic(out / "config.json", json.dumps({"train": cfg.to_dict(), "model": model_cfg.to_dict()}, indent=1))
    dist_mod.barrier(ctx)

    train_data = PreparedDataset(train_ds, api.prepare, model_cfg, cache_dir, tr_idx, cfg.in_memory)
    val_data = PreparedDataset(val_ds, api.prepare, model_cfg, cache_dir, va_idx, cfg.in_memory) if va_idx else None

    torch.manual_seed(seed)
    model = api.build_model(model_cfg).to(ctx.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(cfg, e))
    start_epoch, history, best = 0, [], None
    if ck is not None:
        ckpt_mod.load_model_weights(model, ck)
        if ck.optimizer_state is None:
            raise CheckpointError(f"{ck.path}: checkpoint has no optimizer state to resume from")
        ckpt_mod.load_optimizer_state(optimizer, {
            "state": {k: {kk: (vv.to(ctx.device) if hasattr(vv, "to") else vv) for kk, vv in v.items()}
                      for k, v in ck.optimizer_state["state"].items()},
            "param_groups": ck.optimizer_state["param_groups"]})
        if ck.scheduler_state:
            scheduler.load_state_dict(dict(ck.scheduler_state))
        if ck.rng_state:
            ckpt_mod.restore_rng_state(ck.rng_state)
        start_epoch = ck.epoch
        history = list(ck.extra.get("history", []))
        best = ck.extra.get("best")
        log(f"meshgdl: resuming {out} at epoch {start_epoch + 1}/{cfg.epochs}")
    ddp_model = dist_mod.wrap_model(model, ctx)

    augment = build_augmentation(cfg.augment_rotate, tuple(cfg.augment_scale) if cfg.augment_scale else None,
                                 cfg.augment_jitter)
    remesh = RandomRemesh(*cfg.augment_remesh) if cfg.augment_remesh else None
    sign = -1.0 if cfg.select_metric == "loss" else 1.0
    end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start_epoch + int(cfg.stop_after))
    results: dict[str, Any] = {}
    for epoch in range(start_epoch, end_epoch):
        torch.manual_seed(_seed_for(seed, epoch, ctx.rank, 1))
        ddp_model.train()
        order = dist_mod.shard_indices(len(train_data), ctx, shuffle=True, seed=seed, epoch=epoch)
        cm = torch.zeros(n_classes, n_classes, dtype=torch.long, device=ctx.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
        n_loss = torch.zeros((), dtype=torch.float64, device=ctx.device)
        t0, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        lr_now = optimizer.param_groups[0]["lr"]
        bar = tqdm(total=len(order), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="mesh", leave=False,
                   disable=not show)
        for s in range(0, len(order), cfg.batch_size):
            chunk = order[s:s + cfg.batch_size]
            samples, targets = [], []
            for j in chunk:
                rng = np.random.default_rng(_seed_for(seed, epoch, tr_idx[j], 2))
                sample, y, _ = train_data.get(j, remesh, rng) if remesh else train_data.get(j)
                if len(augment):
                    sample = _augment(sample, augment, rng)
                samples.append(sample)
                targets.append(y)
            batch = api.collate_samples(samples, device=ctx.device)
            target, mesh_id = _targets(targets, task, ctx.device)
            logits = ddp_model(batch)
            _check_logits(logits, target, task, n_classes)
            per, lab = mesh_losses(logits, target, mesh_id, len(chunk), cfg.label_smoothing)
            # nothing labelled in the batch gives a zero loss (still a graph: DDP ranks stay in step)
            loss = per.sum() / lab.sum().clamp_min(1)
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite loss at epoch {epoch + 1} (meshes "
                                   f"{[train_data.names[j] for j in chunk]}); lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip and cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            with torch.no_grad():
                loss_sum += per[lab].detach().double().sum()
                n_loss += lab.sum()
                cm += confusion_matrix_torch(logits.detach().argmax(1), target, n_classes)
            bar.update(len(chunk))
            if show:
                c = cm.cpu().numpy()
                bar.set_postfix(loss=f"{float(loss_sum / n_loss.clamp_min(1)):.4f}",
                                acc=f"{np.trace(c) / max(1, c.sum()):.4f}", refresh=False)
        bar.close()
        train_time, ru1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        scheduler.step()
        train_m = _reduced_metrics(ctx, task, cm, loss_sum, n_loss)
        n_steps_meshes = len(order) * ctx.world_size
        row = {"epoch": epoch + 1, "lr": lr_now, "train": _compact(train_m),
               "train_seconds": train_time, "meshes_per_second": n_steps_meshes / max(train_time, 1e-9),
               # this process's CPU time (all threads) and page faults over the epoch's training:
               # unlike the wall time, hardly changed by other jobs on a shared machine
               "train_cpu_seconds": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
               "train_page_faults": ru1.ru_minflt - ru0.ru_minflt,
               "peak_memory_mb": peak_memory_mb(ctx.device)}
        if val_data is not None:
            tv = time.perf_counter()
            val_m = run_epoch_eval(ddp_model, val_data, api, task, n_classes, ctx, batch_size=cfg.batch_size,
                                   label_smoothing=cfg.label_smoothing, progress=show)
            row["val"] = _compact(val_m)
            row["val_seconds"] = time.perf_counter() - tv
            score = val_m["loss"] if cfg.select_metric == "loss" else val_m.get(cfg.select_metric, math.nan)
        else:
            score = train_m["loss"] if cfg.select_metric == "loss" else train_m.get(cfg.select_metric, math.nan)
        improved = best is None or (math.isfinite(score) and sign * score > sign * best["score"])
        if improved:
            best = {"epoch": epoch + 1, "score": score, "metric": cfg.select_metric}
        history.append(row)
        if ctx.is_main:
            extra = {"history": history, "best": best, "n_classes": n_classes, "task": task,
                     "class_names": train_ds.class_names}
            state = dict(
                model_state=dist_mod.unwrap_model(ddp_model).state_dict(), model_config=model_cfg.to_dict(),
                epoch=epoch + 1, optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                rng_state=ckpt_mod.capture_rng_state(), train_config=cfg.to_dict(), extra=extra,
            )
            ckpt_mod.save_checkpoint(out / "last.safetensors", **state)
            if improved:
                ckpt_mod.save_checkpoint(out / "best.safetensors", **state)
            # rewritten from the checkpointed history, so a run killed between the two
            # writes and resumed never logs an epoch twice or skips one
            write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(json_safe(r)) + "\n" for r in history))
            results = {
                "run_dir": str(out), "dataset": cfg.dataset, "task": task, "n_classes": n_classes,
                "epochs_done": epoch + 1, "epochs": cfg.epochs, "finished": epoch + 1 >= cfg.epochs,
                "n_train": len(tr_idx), "n_val": len(va_idx), "world_size": ctx.world_size,
                "device": ctx.device, "best": best, "last": row, "model": model_cfg.to_dict(),
            }
            write_text_atomic(out / "results.json", json.dumps(json_safe(results), indent=1))
            msg = (f"epoch {epoch + 1}/{cfg.epochs}  loss {train_m['loss']:.4f}  acc {train_m['accuracy']:.4f}")
            if "val" in row:
                msg += f"  val loss {row['val']['loss']:.4f}  val acc {row['val']['accuracy']:.4f}"
                if "mean_iou" in row["val"]:
                    msg += f"  val mIoU {row['val']['mean_iou']:.4f}"
            msg += f"  ({row['meshes_per_second']:.2f} meshes/s, lr {lr_now:.2e})"
            log(msg)
        dist_mod.barrier(ctx)
    if ctx.is_main and not results:
        p = out / "results.json"
        results = json.loads(p.read_text()) if p.exists() else {"run_dir": str(out), "epochs_done": start_epoch}
    return dist_mod.broadcast_object(ctx, results)


# --------------------------------------------------------------------------- evaluation on original meshes


def predictions_on_file_vertices(item, pred: np.ndarray) -> np.ndarray:
    """Per-vertex predictions on the cleaned mesh -> on every vertex of the *file*.

    Kept and merged file vertices take their cleaned vertex's prediction; dropped
    (unreferenced) file vertices take the prediction of the nearest kept file
    vertex (Euclidean), so every file vertex is scored.
    """
    pred = np.asarray(pred)
    o2n = np.asarray(item.orig_to_new)
    out = np.empty(len(o2n), dtype=pred.dtype)
    kept = o2n >= 0
    out[kept] = pred[o2n[kept]]
    if (~kept).any():
        from scipy.spatial import cKDTree

        fv = np.asarray(item.file_V)
        _, nn = cKDTree(fv[kept]).query(fv[~kept])
        out[~kept] = out[kept][nn]
    return out


def evaluate(checkpoint: str | os.PathLike, dataset: str, split: str = "test", *, data_root=None,
             device: str | None = None, cache_dir=None, workers: int = 1, progress: bool = True,
             predictions_dir: str | os.PathLike | None = None, api=None, max_meshes: int | None = None,
             split_dir: str | os.PathLike | None = None) -> dict:
    """Metrics of a checkpoint on a dataset split, scored on the original files' vertices.

    Segmentation: every file vertex (the prediction of its cleaned vertex, or of the
    nearest kept vertex if cleaning dropped it) against the file's labels; metrics
    pooled over all vertices of the split (``vertex``), the mean of per-mesh
    accuracies (``mean_mesh_accuracy``) and, for face-labelled data, per-face metrics
    (``face``, a face predicted as the majority of its first triangle's corners).
    Classification: one prediction per mesh. ``predictions_dir`` writes one
    ``<name>.txt`` of per-file-vertex (or per-mesh) predicted labels.
    """
    import torch
    from tqdm.auto import tqdm

    from meshgdl.data.datasets import get_dataset
    from meshgdl.data.labels import vertex_to_face_labels
    from meshgdl.data.preprocess import PreparedDataset, default_cache_dir, preprocess
    from meshgdl.train.metrics import confusion_matrix

    api = api or default_api()
    ck = ckpt_mod.load_checkpoint(checkpoint)
    model_cfg, model = ckpt_mod.model_from_checkpoint(ck, api)
    ds = get_dataset(dataset, split, data_root, split_dir)
    n_classes = int(ck.model_config.get("n_classes", ds.n_classes))
    task = ck.model_config.get("task", ds.task)
    if ds.n_classes != n_classes or ds.task != task:
        raise DatasetError(
            f"checkpoint predicts {n_classes} classes ({task}); dataset {ds.name}/{split} has "
            f"{ds.n_classes} ({ds.task})"
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    idx = list(range(len(ds) if max_meshes is None else min(len(ds), max_meshes)))
    preprocess(ds, api.prepare, model_cfg, cache, workers=workers, indices=idx, progress=progress,
               desc=f"preprocess {split}")
    data = PreparedDataset(ds, api.prepare, model_cfg, cache, idx)
    cm_v = np.zeros((n_classes, n_classes), dtype=np.int64)
    cm_f = np.zeros((n_classes, n_classes), dtype=np.int64)
    per_mesh, has_face = [], False
    pred_dir = Path(predictions_dir) if predictions_dir else None
    t0 = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    with torch.no_grad():
        for j in tqdm(range(len(data)), desc=f"eval {split}", unit="mesh", disable=not progress, leave=False):
            sample, y, item = data[j]
            logits = model(api.collate_samples([sample], device=device))
            if task == "classification":
                p = int(logits.argmax(1)[0])
                cm_v += confusion_matrix([p], [int(y)], n_classes)
                per_mesh.append({"name": item.name, "pred": p, "target": int(y)})
                if pred_dir is not None:
                    write_text_atomic(pred_dir / f"{item.name.replace('/', '__')}.txt", f"{p}\n")
                continue
            pred = logits.argmax(1).cpu().numpy()
            if item.file_labels is not None:
                pf = predictions_on_file_vertices(item, pred)
                c = confusion_matrix(pf, item.file_labels, n_classes)
            else:
                pf = predictions_on_file_vertices(item, pred)
                c = confusion_matrix(pred, y, n_classes)
            cm_v += c
            acc = float(np.trace(c) / c.sum()) if c.sum() else math.nan
            entry = {"name": item.name, "accuracy": acc, "n_vertices": int(c.sum())}
            if item.file_face_labels is not None:
                has_face = True
                tri = vertex_to_face_labels(item.F, pred)
                face_pred = np.full(item.n_orig_faces, IGNORE_INDEX, dtype=np.int64)
                order = np.arange(len(item.F))[::-1]  # first triangle of a polygon wins
                face_pred[item.face_origin[order]] = tri[order]
                scored = face_pred != IGNORE_INDEX
                cf = confusion_matrix(face_pred[scored], item.file_face_labels[scored], n_classes)
                cm_f += cf
                entry["face_accuracy"] = float(np.trace(cf) / cf.sum()) if cf.sum() else math.nan
                entry["unscored_faces"] = int((~scored).sum())
            else:
                # vertex-labelled data: a triangle's label, true or predicted, is the
                # majority of its corners (SubdivNet's per-face accuracy on raw meshes)
                has_face = True
                tf, pf_tri = vertex_to_face_labels(item.F, np.asarray(y)), vertex_to_face_labels(item.F, pred)
                scored = tf != IGNORE_INDEX
                cf = confusion_matrix(pf_tri[scored], tf[scored], n_classes)
                cm_f += cf
                entry["face_accuracy"] = float(np.trace(cf) / cf.sum()) if cf.sum() else math.nan
            per_mesh.append(entry)
            if pred_dir is not None:
                write_text_atomic(pred_dir / f"{item.name}.txt", "".join(f"{int(v)}\n" for v in pf))
    seconds = time.perf_counter() - t0
    res: dict[str, Any] = {
        "checkpoint": str(ck.path), "dataset": ds.name, "split": split, "task": task,
        "n_meshes": len(data), "epoch": ck.epoch, "seconds": seconds,
        "meshes_per_second": len(data) / max(seconds, 1e-9), "device": device,
        "peak_memory_mb": peak_memory_mb(device),
        "subset": {"missing": ds.missing, "used": [ds.records[i].name for i in idx]} if ds.missing else None,
    }
    if task == "classification":
        res.update(task_metrics(task, cm_v, ds.class_names))
    else:
        res["vertex"] = task_metrics(task, cm_v)
        res["accuracy"] = res["vertex"]["accuracy"]
        res["mean_iou"] = res["vertex"]["mean_iou"]
        accs = [m["accuracy"] for m in per_mesh if math.isfinite(m["accuracy"])]
        res["mean_mesh_accuracy"] = float(np.mean(accs)) if accs else math.nan
        if has_face:
            res["face"] = task_metrics(task, cm_f)
            res["face"]["from"] = ("file face labels" if any("unscored_faces" in m for m in per_mesh)
                                   else "vertex labels (majority of each triangle's corners)")
            res["face_accuracy"] = res["face"]["accuracy"]
    res["per_mesh"] = per_mesh
    return res
