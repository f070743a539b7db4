"""``kind="diffusion"``: DiffusionNet as a meshgdl model.

DiffusionNet (Sharp et al. 2022) on the invariant summary of
the input features, ``n_layers`` blocks of ``width`` channels, every mesh scaled to
unit area first (:func:`meshgdl.operators.unit_area`, so learned diffusion times
mean the same in any units); for classification the per-vertex logits are
averaged (area-weighted), as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from meshgdl.data.batching import Batch
from meshgdl.nn.diffusion import DiffusionNet
from meshgdl.nn.features import feature_irreps, input_features
from meshgdl.nn.models.config import ModelConfig
from meshgdl.nn.models.registry import layer_index, register_model
from meshgdl.nn.pooling import global_pool, invariant_features
from meshgdl.operators import unit_area


@register_model("diffusion")
class DiffusionNetModel(nn.Module):
    """DiffusionNet on the invariant summary of the configured input features."""

    #: DiffusionNet works on the input mesh only.
    uses_hierarchy = False

    @staticmethod
    def check_config(cfg: ModelConfig) -> None:
        """Every ModelConfig that validates builds (nothing kind-specific to check)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        self.in_irreps = feature_irreps(cfg.in_features, n_hks=cfg.n_hks, n_wks=cfg.n_wks or None)
        c_in = self.in_irreps.count(0) + sum(m for m, f in self.in_irreps if f != 0)
        self.net = DiffusionNet(c_in, cfg.n_classes, width=cfg.width, n_blocks=cfg.n_layers, dropout=cfg.dropout)

    @property
    def num_feature_layers(self) -> int:
        return 1 + self.config.n_layers

    def _run(self, batch: Batch):
        if not isinstance(batch, Batch):
            raise TypeError(f"model input must be a Batch from collate_samples, got {type(batch).__name__}")
        # Like the reference implementation's mesh normalisation: the diffusion
        # times and the first layer's weights then mean the same on every mesh.
        ops = unit_area(batch.ops)
        x, ir = input_features(ops, self.config.in_features)
        if ir != self.in_irreps:
            raise ValueError(f"input features have type {ir}, the model expects {self.in_irreps} "
                             f"(samples prepared with another n_hks?)")
        return self.net(invariant_features(x, ir), ops, return_hidden=True)

    def forward(self, batch: Batch) -> torch.Tensor:
        out, _ = self._run(batch)
        if self.config.task == "classification":
            return global_pool(out, batch.mass, batch.batch, batch.num_graphs)
        return out

    def features(self, batch: Batch, layer: int) -> torch.Tensor:
        """(N, width) hidden state after the input layer (0) or block ``layer`` (no autograd)."""
        i = layer_index(layer, self.num_feature_layers)
        with torch.no_grad():
            _, hidden = self._run(batch)
        return hidden[i]


__all__ = ["DiffusionNetModel"]
