"""Multi-process data-parallel training (torch DistributedDataParallel) -- or none.

``torchrun --nproc_per_node N -m meshgdl train ...`` sets ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK`` / ``MASTER_ADDR``; :func:`init_distributed` sees them and joins the
process group (``nccl`` on CUDA, ``gloo`` on CPU). Without them it returns a
single-process :class:`DistContext` and every helper here degrades to a no-op, so
the same training code runs both ways.

Conventions: rank 0 alone logs, shows progress bars and writes checkpoints; every
rank loads the checkpoint on resume; metrics are exact because ranks sum their
confusion matrices (:func:`all_reduce_sum`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``; ``device`` it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_distributed(device: str | None = None, backend: str | None = None, timeout_s: float = 1800) -> DistContext:
    """Join the process group described by the torchrun environment, if any.

    device: ``"cpu"``, ``"cuda"`` or None (CUDA if available). With CUDA each rank
    uses ``cuda:LOCAL_RANK``. backend: default ``nccl`` for CUDA, ``gloo`` for CPU.
    """
    import torch
    import torch.distributed as dist

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch sees no CUDA device")
    world = env_world_size()
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if device.startswith("cuda"):
        if world > 1 or device == "cuda":
            device = f"cuda:{local if world > 1 else (torch.cuda.current_device())}"
        torch.cuda.set_device(torch.device(device))
    if world <= 1:
        return DistContext(0, 1, 0, device, None)
    backend = backend or ("nccl" if device.startswith("cuda") else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(dist.get_rank(), dist.get_world_size(), local, device, backend)


def cleanup(ctx: DistContext, synchronize: bool = False) -> None:
    """Destroy the process group. ``synchronize`` (after a successful run): meet the other
    ranks first, so that no rank tears down gloo while another still has its last
    collective in flight (seen once as "terminate called without an active exception" in
    both ranks of a 2-process CPU run on a loaded machine)."""
    import torch.distributed as dist

    if ctx.distributed and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, value):
    """Sum a tensor / numpy array / number over ranks (identity in a single process)."""
    if not ctx.distributed:
        return value
    import torch
    import torch.distributed as dist

    if isinstance(value, torch.Tensor):
        t = value.clone()
        # gloo cannot reduce CUDA tensors and nccl cannot reduce CPU ones
        t = t.to(ctx.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.to(value.device)
    arr = np.asarray(value)
    t = torch.as_tensor(arr.astype(np.float64) if arr.dtype.kind == "f" else arr.astype(np.int64), device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    out = t.cpu().numpy()
    return out.item() if np.ndim(value) == 0 else out


def broadcast_object(ctx: DistContext, obj):
    """Rank 0's ``obj`` on every rank (small JSON-like values only)."""
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_indices(n: int, ctx: DistContext, *, shuffle: bool, seed: int, epoch: int,
                  pad: bool = True) -> list[int]:
    """This rank's item indices for one epoch (``DistributedSampler`` semantics).

    The permutation depends only on ``(seed, epoch)``, so every rank agrees on it and
    a resumed run sees the same order. With ``pad`` (training) the list is padded by
    wrapping around so every rank takes the same number of steps (DDP needs that);
    without it (evaluation) each item is seen exactly once over all ranks.
    """
    import torch
    from torch.utils.data import DistributedSampler

    if pad:
        sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=shuffle, seed=seed, drop_last=False)
        sampler.set_epoch(epoch)
        return list(sampler)
    if shuffle:
        g = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    return order[ctx.rank::ctx.world_size]


def wrap_model(model, ctx: DistContext, find_unused_parameters: bool = True):
    """DDP-wrap ``model`` when running distributed (returns it unchanged otherwise)."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if ctx.device.startswith("cuda"):
        idx = int(ctx.device.split(":")[1])
        return DDP(model, device_ids=[idx], output_device=idx, find_unused_parameters=find_unused_parameters)
    return DDP(model, find_unused_parameters=find_unused_parameters)


def unwrap_model(model):
    return model.module if hasattr(model, "module") else model
