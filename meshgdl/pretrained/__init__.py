"""Shipped models, and the one way to turn a model name or checkpoint into a network.

A shipped model is a pair ``NAME.safetensors`` (weights + model config, written by
:func:`meshgdl.train.checkpoint.save_checkpoint`; safetensors, no pickle) and
``NAME.json`` (its description: ``task``, ``class_names``, ``trained_on``,
``licence``, ``metrics``, ``working_vertices``, ``area``, the training recipe). Every
shipped model is trained by a script in ``tools/`` whose command is in its JSON.

* :func:`list_models` -- the shipped models' descriptions (``meshgdl models``);
* :func:`resolve_model` -- a shipped name, a checkpoint file or a run directory ->
  the checkpoint file;
* :func:`load_model` -- the same argument -> a :class:`LoadedModel` (network in eval
  mode, config, class names, description), used by ``segment``, ``classify``, the
  viewer and ``eval``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meshgdl.errors import CheckpointError, MeshError
from meshgdl.ood import OODRule

PRETRAINED_DIR = Path(__file__).resolve().parent

#: Default shipped model per task (``meshgdl segment`` / ``meshgdl classify``
#: without ``--model``); the first name present in this installation is used.
DEFAULTS = {
    "segmentation": ("human_parts", "figure_parts"),
    "classification": ("shrec11",),
}


def names() -> list[str]:
    """Names of the shipped models present in this installation (sorted)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors") if p.with_suffix(".json").is_file())


def read_sidecar(path: str | os.PathLike) -> dict:
    """The JSON description next to a checkpoint (``X.safetensors`` -> ``X.json``), or ``{}``."""
    js = Path(path).with_suffix(".json")
    if not js.is_file():
        return {}
    try:
        info = json.loads(js.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{js}: unreadable model description ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{js}: model description must be a JSON object")
    return info


def describe(name: str) -> dict:
    """The shipped model ``name``'s description (its JSON), with ``name`` and ``path`` added."""
    if name not in names():
        raise CheckpointError(f"no shipped model named {name!r} (shipped: {', '.join(names()) or 'none'})")
    p = PRETRAINED_DIR / f"{name}.safetensors"
    info = read_sidecar(p)
    info.setdefault("task", (info.get("model_config") or {}).get("task", "segmentation"))
    return {**info, "name": name, "path": str(p)}


def list_models(task: str | None = None) -> list[dict]:
    """Descriptions of the shipped models (optionally only those for ``task``)."""
    out = [describe(n) for n in names()]
    return [d for d in out if task is None or d.get("task") == task]


def default_model(task: str) -> str:
    """The name of the default shipped model for ``task``."""
    have = set(names())
    for n in DEFAULTS.get(task, ()):
        if n in have:
            return n
    raise CheckpointError(f"no shipped {task} model in this installation; pass --model CKPT|RUN_DIR")


def resolve_model(name_or_path: str | os.PathLike | None, task: str | None = None) -> Path:
    """Checkpoint file for a shipped model name, a checkpoint file or a run directory.

    ``None`` means the default shipped model for ``task``. A name of a shipped model
    wins over a file of the same name in the working directory only when no such
    file exists. Raises CheckpointError (one line) for anything else.
    """
    from meshgdl.train.checkpoint import resolve_checkpoint

    if name_or_path is None:
        if task is None:
            raise CheckpointError("no model given")
        name_or_path = default_model(task)
    s = str(name_or_path)
    p = Path(s).expanduser()
    if not p.exists() and s in names():
        return PRETRAINED_DIR / f"{s}.safetensors"
    if not p.exists() and os.sep not in s and not p.suffix:
        raise CheckpointError(f"{s}: neither a shipped model ({', '.join(names()) or 'none'}) "
                              "nor a checkpoint file or run directory")
    return resolve_checkpoint(p)


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> cuda if available else cpu; checks that cuda exists."""
    import torch

    d = (device or "auto").lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MeshError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        return d
    if d != "cpu":
        raise MeshError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    return d



@dataclass
class LoadedModel:
    """A network ready to run (float32, eval mode, on ``device``) and what describes it.

    ``info``: the checkpoint's JSON description (``{}`` for a plain training
    checkpoint); ``class_names``: one per class (from the description, else the
    checkpoint, else ``"0"``, ``"1"``...); ``temperature``: the calibration of
    :meth:`predict`'s probabilities (the description's ``calibration.temperature``, else
    1); ``ood_rule``: its out-of-distribution warning (:class:`meshgdl.ood.OODRule`, from
    the description's ``ood``; None without one).
    """

    model: object
    config: object
    class_names: list
    path: str
    device: str
    info: dict = field(default_factory=dict)
    checkpoint: object = None
    temperature: float = 1.0
    ood_rule: object = None

    def loaded_fields(self) -> dict:
        """The fields of this :class:`LoadedModel`, to build a task-specific subclass from it."""
        return {k: getattr(self, k) for k in ("model", "config", "class_names", "path", "device", "info",
                                              "checkpoint", "temperature", "ood_rule")}

    @property
    def task(self) -> str:
        return str(self.config.task)

    @property
    def n_classes(self) -> int:
        return int(self.config.n_classes)

    def predict(self, V: np.ndarray, F: np.ndarray, cache_dir=None, replay=None,
                calibrated: bool = True) -> np.ndarray:
        """Class probabilities of the network on one mesh ``V (k, 3) float64, F (l, 3)
        int64`` (its geometry computed by :func:`meshgdl.data.batching.prepare`, with the
        coarse levels of ``replay`` if given): ``(k, C) float64`` per vertex for
        segmentation, ``(C,)`` for classification; rows sum to 1. ``calibrated``:
        ``softmax(logits / temperature)``; False: the network's own ``softmax(logits)``."""
        import torch

        from meshgdl.data.batching import collate_samples, prepare

        T = self.temperature if calibrated else 1.0
        sample = prepare(V, F, self.config, cache_dir=cache_dir, replay=replay)
        with torch.no_grad():
            batch = collate_samples([sample], device=self.device, dtype=torch.float32)
            probs = torch.softmax(self.model(batch).double() / T, dim=-1).cpu().numpy()
        want = (len(V), self.n_classes) if self.task == "segmentation" else (1, self.n_classes)
        if probs.shape != want or not np.all(np.isfinite(probs)):
            raise RuntimeError(f"model returned unusable output of shape {tuple(probs.shape)}")
        return probs if self.task == "segmentation" else probs[0]


def load_model(name_or_path: str | os.PathLike | None = None, *, task: str | None = None,
               device: str | None = "cpu") -> LoadedModel:
    """Load a shipped model (by name), a checkpoint file or a run directory.

    ``task``: when given, the checkpoint must be a model for that task (and
    ``None`` picks the task's default shipped model). Loaded only through
    :func:`meshgdl.train.checkpoint.load_checkpoint` (safetensors, no pickle).
    Raises CheckpointError (one line) for anything that is not an intact meshgdl
    checkpoint of the right task. ``device``: ``"cpu"``, ``"cuda[:N]"`` or
    ``None``/``"auto"`` (:func:`resolve_device`).
    """
    from meshgdl.train.checkpoint import load_checkpoint, model_from_checkpoint

    device = resolve_device(device)
    p = resolve_model(name_or_path, task)
    ck = load_checkpoint(p)
    config, model = model_from_checkpoint(ck)
    if task is not None and config.task != task:
        raise CheckpointError(f"{p}: a {config.task} model, not a {task} model")
    info = read_sidecar(p)
    cls = [str(c) for c in (info.get("class_names") or ck.extra.get("class_names") or [])]
    if len(cls) != config.n_classes:
        cls = [str(i) for i in range(config.n_classes)]
    model = model.float().to(device).eval()
    return LoadedModel(model=model, config=config, class_names=cls, path=str(p), device=str(device),
                       info=info, checkpoint=ck, temperature=calibration_temperature(info, p),
                       ood_rule=OODRule.from_info(info, str(p.with_suffix(".json"))))


def calibration_temperature(info: dict, path: str | os.PathLike = "model") -> float:
    """The temperature in a model description's ``calibration`` entry (1 without one);
    CheckpointError (one line) when it is not a positive number."""
    cal = info.get("calibration")
    if cal is None:
        return 1.0
    try:
        T = float(cal["temperature"])
    except (TypeError, KeyError, ValueError):
        raise CheckpointError(f"{Path(path).with_suffix('.json')}: 'calibration' needs a numeric 'temperature'") from None
    if not (np.isfinite(T) and T > 0):
        raise CheckpointError(f"{Path(path).with_suffix('.json')}: calibration temperature must be > 0, got {T}")
    return T


def update_description(path: str | os.PathLike, updates: dict) -> Path:
    """Merge ``updates`` (top-level keys) into the JSON description next to the checkpoint
    ``path`` (``X.safetensors`` -> ``X.json``, created if missing), written atomically.
    Used by the tools that fit a shipped model's calibration and OOD threshold."""
    from meshgdl.atomic import write_text_atomic

    js = Path(path).with_suffix(".json")
    info = read_sidecar(path)
    info.update(updates)
    write_text_atomic(js, json.dumps(info, indent=1) + "\n")
    return js
