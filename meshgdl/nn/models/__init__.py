"""Complete networks for mesh segmentation and classification.

* :class:`ModelConfig` -- every architecture and geometry choice, JSON round-trip
  (:meth:`~ModelConfig.to_dict` / :meth:`~ModelConfig.from_dict`); its
  :attr:`~ModelConfig.geometry` is what :func:`meshgdl.data.batching.prepare` computes.
* :func:`build_model` ``(config) -> nn.Module`` with ``model(batch) -> logits`` for a
  :class:`meshgdl.data.batching.Batch` and ``model.features(batch, layer)``; the
  kinds are registered in :data:`MODELS` (:mod:`meshgdl.nn.models.registry`).

Models only consume batches: samples and batches (:func:`~meshgdl.data.batching.prepare`,
:func:`~meshgdl.data.batching.collate_samples`) live in :mod:`meshgdl.data.batching`.

Adding a model kind: write ``meshgdl/nn/models/<kind>.py`` with a class decorated
``@register_model("<kind>")`` (see :mod:`~meshgdl.nn.models.registry` for what it
provides) and add its import below -- that import is the registration.
"""

from meshgdl.nn.models.registry import MODELS, build_model, register_model  # noqa: I001
from meshgdl.nn.models.config import ModelConfig

# Registered model kinds (one import per kind).
from meshgdl.nn.models.gem import GEMBlock, GEMNet, IrrepDropout
from meshgdl.nn.models.diffusion import DiffusionNetModel

__all__ = [
    "MODELS",
    "register_model",
    "build_model",
    "ModelConfig",
    "GEMNet",
    "GEMBlock",
    "IrrepDropout",
    "DiffusionNetModel",
]
