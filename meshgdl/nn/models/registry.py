"""The model registry: a model kind is one module plus one registration.

A model module defines an ``nn.Module`` taking a :class:`ModelConfig` and decorates
it with ``@register_model("kind")``; :mod:`meshgdl.nn.models` imports the module (the
registration line). :func:`build_model` looks the kind up here -- an unregistered
kind is an error, never a silent default.

What a registered class provides (the model contract):

* ``__init__(config)``; ``forward(batch) -> logits``: ``(N, n_classes)`` per vertex
  (segmentation, vertices in sample order) or ``(B, n_classes)`` per mesh
  (classification), for a :class:`meshgdl.data.batching.Batch`;
* ``num_feature_layers`` and ``features(batch, layer) -> (N, C)`` (gauge-invariant
  per-vertex features of an intermediate layer on the input vertices, no autograd);
* class attribute ``uses_hierarchy`` (does :func:`meshgdl.data.batching.prepare`
  build the coarse levels for it) and classmethod ``check_config(config)`` (raise
  ValueError for option combinations this kind cannot build).
"""

from __future__ import annotations

from typing import Callable

#: kind -> model class.
MODELS: dict[str, type] = {}


def register_model(kind: str) -> Callable[[type], type]:
    """Class decorator: make ``kind`` buildable by :func:`build_model` (and valid in a config)."""

    def deco(cls: type) -> type:
        if kind in MODELS and MODELS[kind] is not cls:
            raise ValueError(f"model kind {kind!r} is already registered by {MODELS[kind].__qualname__}")
        for attr in ("uses_hierarchy", "check_config", "features", "num_feature_layers"):
            if not hasattr(cls, attr):
                raise TypeError(f"model kind {kind!r}: {cls.__qualname__} has no {attr}")
        MODELS[kind] = cls
        return cls

    return deco


def build_model(config):
    """The network ``config`` (a ModelConfig or its dict) describes; weights from torch's RNG."""
    from meshgdl.nn.models.config import ModelConfig

    config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))
    return MODELS[config.kind](config)  # validate() has checked the kind


def layer_index(layer: int, n: int) -> int:
    """``layer`` of a model with ``n`` feature layers as an index in [0, n) (negative
    values count from the end); IndexError when out of range."""
    i = int(layer) + n if int(layer) < 0 else int(layer)
    if not 0 <= i < n:
        raise IndexError(f"layer {layer} out of range for a model with {n} feature layers")
    return i


__all__ = ["MODELS", "register_model", "build_model", "layer_index"]
