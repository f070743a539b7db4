"""Training checkpoints: one safetensors file, no pickle anywhere.

Layout of a checkpoint file (``RUN/last.safetensors``, ``RUN/best.safetensors``):

* tensors ``model/<name>``: the model's ``state_dict`` (weights and buffers);
* tensors ``optim/<param id>/<key>``: the optimizer's per-parameter state tensors
  (AdamW's ``exp_avg``, ``exp_avg_sq``, ``step``);
* header metadata ``"meshgdl"``: a JSON document with the format tag and version,
  the model config (``ModelConfig.to_dict()``), the training config, the epoch
  count completed, the optimizer's ``param_groups`` and non-tensor state, the LR
  scheduler's ``state_dict``, the RNG states (torch CPU/CUDA as base64, numpy and
  Python as lists), free-form ``extra`` (metrics history, dataset subset) and a
  SHA-256 of every tensor's bytes.

The file is written with :func:`meshgdl.atomic.atomic_path` (temp + rename), so an
interrupted save leaves the previous checkpoint intact. :func:`load_checkpoint`
only parses the safetensors header and raw tensor bytes -- never ``torch.load`` --
and turns a missing, truncated, corrupt or foreign file into a one-line
:class:`~meshgdl.errors.CheckpointError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meshgdl.atomic import atomic_path
from meshgdl.errors import CheckpointError

FORMAT = "meshgdl-checkpoint"
FORMAT_VERSION = 1
META_KEY = "meshgdl"
#: Names looked up, in order, when a run directory is given instead of a file.
RUN_DIR_CANDIDATES = ("best.safetensors", "last.safetensors")


@dataclass
class Checkpoint:
    """Contents of a checkpoint file (tensors on CPU unless ``map_location`` said otherwise)."""

    model_state: dict
    model_config: dict
    epoch: int = 0
    optimizer_state: dict | None = None
    scheduler_state: dict | None = None
    rng_state: dict | None = None
    train_config: dict | None = None
    extra: dict = field(default_factory=dict)
    path: str | None = None


# --------------------------------------------------------------------------- JSON helpers


def _jsonable(obj: Any, where: str = "value") -> Any:
    """Plain-JSON copy of ``obj`` (tuples -> lists, numpy scalars -> Python); tensors rejected."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise CheckpointError(f"cannot store {where} of type {type(obj).__name__} in checkpoint metadata")


# --------------------------------------------------------------------------- RNG state


def capture_rng_state(generators: dict | None = None) -> dict:
    """RNG states of torch (CPU + every CUDA device), numpy's global RNG, Python's
    ``random`` and of the given named ``numpy.random.Generator`` / ``torch.Generator``
    objects, as plain JSON (byte states in base64)."""
    import torch

    def b64(t) -> str:
        return base64.b64encode(bytes(t.cpu().numpy().tobytes())).decode("ascii")

    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": b64(torch.get_rng_state()),
        "cuda": [b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "generators": {},
    }
    for name, g in (generators or {}).items():
        if isinstance(g, np.random.Generator):
            out["generators"][name] = {"numpy": g.bit_generator.state}
        elif isinstance(g, torch.Generator):
            out["generators"][name] = {"torch": b64(g.get_state())}
        else:
            raise TypeError(f"generator {name!r}: unsupported type {type(g).__name__}")
    return out


def restore_rng_state(state: dict, generators: dict | None = None) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored where devices exist)."""
    import torch

    def unb64(s: str):
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()

    try:
        torch.set_rng_state(unb64(state["torch"]))
        cuda = state.get("cuda") or []
        if cuda and torch.cuda.is_available():
            n = min(len(cuda), torch.cuda.device_count())
            torch.cuda.set_rng_state_all([unb64(s) for s in cuda[:n]])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
        ver, internal, gauss = state["python"]
        random.setstate((ver, tuple(internal), gauss))
        for name, g in (generators or {}).items():
            saved = state.get("generators", {}).get(name)
            if saved is None:
                continue
            if isinstance(g, np.random.Generator):
                g.bit_generator.state = saved["numpy"]
            else:
                g.set_state(unb64(saved["torch"]))
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint RNG state is unusable ({exc})") from None


# --------------------------------------------------------------------------- optimizer state


def _flatten_optimizer(sd: dict) -> tuple[dict, dict]:
    import torch

    tensors, meta_state = {}, {}
    for pid, st in sd.get("state", {}).items():
        js = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim/{pid}/{k}"] = v
            else:
                js[k] = _jsonable(v, f"optimizer state {pid}.{k}")
        meta_state[str(pid)] = js
    meta = {"param_groups": _jsonable(sd.get("param_groups", []), "optimizer param_groups"), "state": meta_state}
    return tensors, meta


def _unflatten_optimizer(meta: dict, tensors: dict) -> dict:
    state: dict = {}
    for pid, js in meta.get("state", {}).items():
        state[int(pid)] = dict(js)
    for name, t in tensors.items():
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = t
    return {"state": state, "param_groups": meta.get("param_groups", [])}


def load_optimizer_state(optimizer, state: dict) -> None:
    """``optimizer.load_state_dict`` with JSON lists turned back into the tuples the
    live optimizer uses (e.g. AdamW ``betas``), so state dicts compare equal.

    Build the LR scheduler *before* calling this: constructing a scheduler resets
    the groups' learning rates to ``initial_lr * factor(0)``.
    """
    groups = []
    for saved, live in zip(state["param_groups"], optimizer.param_groups):
        g = dict(saved)
        for k, v in g.items():
            if isinstance(live.get(k), tuple) and isinstance(v, list):
                g[k] = tuple(v)
        groups.append(g)
    if len(state["param_groups"]) != len(optimizer.param_groups):
        raise CheckpointError(
            f"checkpoint optimizer has {len(state['param_groups'])} parameter groups, "
            f"the model's optimizer {len(optimizer.param_groups)}"
        )
    try:
        optimizer.load_state_dict({"state": state["state"], "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint optimizer state does not fit this model ({exc})") from None


# --------------------------------------------------------------------------- save / load


def _digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return h.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model_state: dict,
    model_config: dict,
    epoch: int = 0,
    optimizer_state: dict | None = None,
    scheduler_state: dict | None = None,
    rng_state: dict | None = None,
    train_config: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically; returns the path. See the module docstring for the layout."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in model_state.items():
        # clone: safetensors refuses tensors that share storage (tied weights, views)
        tensors[f"model/{k}"] = v.detach().cpu().contiguous().clone()
    optim_meta = None
    if optimizer_state is not None:
        otens, optim_meta = _flatten_optimizer(optimizer_state)
        tensors.update({k: v.detach().cpu().contiguous().clone() for k, v in otens.items()})
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "epoch": int(epoch),
        "model_config": _jsonable(model_config, "model_config"),
        "train_config": _jsonable(train_config, "train_config"),
        "optimizer": optim_meta,
        "scheduler": _jsonable(scheduler_state, "scheduler state"),
        "rng": _jsonable(rng_state, "rng state"),
        "extra": _jsonable(extra or {}, "extra"),
        "sha256": _digest(tensors),
    }
    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (-> its best, else last, checkpoint)."""
    p = Path(path)
    if p.is_dir():
        for name in RUN_DIR_CANDIDATES:
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: run directory holds no checkpoint ({' or '.join(RUN_DIR_CANDIDATES)})")
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint not found")
    return p


def read_metadata(path: str | os.PathLike) -> dict:
    """The checkpoint's JSON metadata only (cheap: reads the header, not the tensors)."""
    from safetensors import safe_open

    p = resolve_checkpoint(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{p}: not a readable safetensors checkpoint ({_short(exc)})") from None
    return _parse_meta(p, raw)


def _parse_meta(p: Path, raw: str | None) -> dict:
    if raw is None:
        raise CheckpointError(f"{p}: not a meshgdl checkpoint (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{p}: corrupt checkpoint metadata (invalid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a meshgdl checkpoint (format tag missing)")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {meta.get('version')} is not supported (expected {FORMAT_VERSION})"
        )
    if not isinstance(meta.get("model_config"), dict):
        raise CheckpointError(f"{p}: checkpoint has no model config")
    return meta


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu", verify: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (or a run directory's best/last).

    ``verify`` recomputes the SHA-256 of the tensors and rejects a file whose bytes
    changed. Raises :class:`CheckpointError` for anything that is not an intact
    meshgdl checkpoint.
    """
    from safetensors import safe_open

    p = resolve_checkpoint(path)
    if p.stat().st_size < 8:
        raise CheckpointError(f"{p}: truncated checkpoint ({p.stat().st_size} bytes)")
    tensors = {}
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = _parse_meta(p, (f.metadata() or {}).get(META_KEY))
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({_short(exc)})") from None
    if verify and meta.get("sha256") != _digest(tensors):
        raise CheckpointError(f"{p}: corrupt checkpoint (tensor checksum mismatch)")
    if map_location != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    if not model_state:
        raise CheckpointError(f"{p}: checkpoint holds no model weights")
    optim = None
    if meta.get("optimizer") is not None:
        optim = _unflatten_optimizer(meta["optimizer"], {k: v for k, v in tensors.items() if k.startswith("optim/")})
    return Checkpoint(
        model_state=model_state,
        model_config=meta["model_config"],
        epoch=int(meta.get("epoch", 0)),
        optimizer_state=optim,
        scheduler_state=meta.get("scheduler"),
        rng_state=meta.get("rng"),
        train_config=meta.get("train_config"),
        extra=meta.get("extra") or {},
        path=str(p),
    )


def load_model_weights(model, ckpt: Checkpoint) -> None:
    """``model.load_state_dict(ckpt.model_state)`` with a one-line error on mismatch."""
    missing, unexpected, shapes = [], [], []
    own = model.state_dict()
    for k in own:
        if k not in ckpt.model_state:
            missing.append(k)
        elif tuple(own[k].shape) != tuple(ckpt.model_state[k].shape):
            shapes.append(f"{k} {tuple(ckpt.model_state[k].shape)} vs {tuple(own[k].shape)}")
    unexpected = [k for k in ckpt.model_state if k not in own]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"shape mismatch {shapes[0]}")
        raise CheckpointError(f"{ckpt.path}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(ckpt.model_state)


def model_from_checkpoint(ckpt: Checkpoint, api=None):
    """``(config, model)``: the network a checkpoint describes, with its weights, on the CPU.

    ``api``: the model contract (``ModelConfig``, ``build_model``; default
    :mod:`meshgdl.nn.models`). The one checkpoint -> model path: shipped models,
    ``segment``, ``classify``, the viewer and ``eval`` all load through here.
    Raises CheckpointError (one line) when the config or the weights do not fit.
    """
    if api is None:
        from meshgdl.nn import models as api
    try:
        config = api.ModelConfig.from_dict(dict(ckpt.model_config))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{ckpt.path}: model config is not usable ({exc})") from None
    model = api.build_model(config)
    load_model_weights(model, ckpt)
    return config, model


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
