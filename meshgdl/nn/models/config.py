"""``ModelConfig``: every architecture and geometry choice of a model, JSON round-trip."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from meshgdl.data.batching import GeometryConfig, GeometryOptions
from meshgdl.nn.features import feature_irreps
from meshgdl.nn.irreps import Irreps
from meshgdl.nn.models.registry import MODELS

TASK_CHOICES = ("segmentation", "classification")
NONLINEARITY_CHOICES = ("regular", "norm", "gated")
NORM_CHOICES = ("instance", "batch", "none")
AGGR_CHOICES = ("mean", "sqrt", "sum")
LAPLACIAN_CHOICES = ("auto", "cotan", "robust")


@dataclass
class ModelConfig(GeometryOptions):
    """Architecture + geometry settings of a model (all JSON-serialisable).

    Shared: ``kind`` (a registered model kind, :data:`meshgdl.nn.models.MODELS`:
    ``"gem" | "diffusion"``), ``task`` (``"segmentation" |
    "classification"``), ``n_classes``, ``in_features`` (names from
    :mod:`meshgdl.nn.features`), ``n_layers`` (GEM: conv blocks per stage;
    DiffusionNet: blocks), ``head_hidden`` (width of the output MLP), ``dropout``.

    Geometry (:attr:`geometry`, what :func:`meshgdl.data.batching.prepare`
    computes): ``k_eig`` eigenpairs, ``n_hks`` HKS times, ``n_wks`` WKS energies (0:
    none; needed for the ``"wks"`` input feature), ``laplacian`` (``"auto" | "cotan" | "robust"``), ``n_levels`` resolution levels
    (GEM U-Net; 1 = no pooling), each with ``level_ratio`` times the vertices of the
    previous one, ``coarse_k_eig`` eigenpairs on the coarse levels.

    GEM: ``hidden_irreps`` (e.g. ``"16x0 + 16x1 + 16x2"``; ``"regular"`` needs equal
    multiplicities of frequencies 0..L), ``nonlinearity`` (``"regular" | "norm" |
    "gated"``), ``n_samples`` (angles for ``"regular"``, >= 2L+1; the whole network's
    relative gauge-invariance error with ``"4x0 + 4x1 + 4x2"``, two blocks, was 40% /
    18% / 3% / 0.6% for 5 / 7 / 17 / 33 samples, so the default is 17), ``norm``
    (``"instance" | "batch" | "none"``), ``radial`` (radial basis functions; 0 =
    angular kernels only), ``radial_cutoff`` (in mean edge lengths), ``aggr``
    (neighbour normalisation of :class:`GEMConv`), ``unit_area`` (scale every mesh
    to total area 1 before computing the input features, so HKS values and
    gradients mean the same in any units: the model becomes invariant to uniform
    scaling; off by default to keep earlier checkpoints' inputs unchanged).

    DiffusionNet: ``width`` (always scales meshes to unit area).
    """

    kind: str = "gem"
    task: str = "segmentation"
    n_classes: int = 2
    in_features: list = field(default_factory=lambda: ["hks"])
    # GEM-CNN
    hidden_irreps: str = "16x0 + 16x1 + 16x2"
    n_layers: int = 4
    nonlinearity: str = "regular"
    n_samples: int = 17
    norm: str = "instance"
    radial: int = 0
    radial_cutoff: float = 2.0
    aggr: str = "mean"
    # DiffusionNet
    width: int = 128
    # heads
    head_hidden: int = 64
    dropout: float = 0.0

    def __post_init__(self):
        if isinstance(self.in_features, str):
            self.in_features = [self.in_features]
        self.in_features = [str(k) for k in self.in_features]
        self.validate()

    def validate(self) -> None:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"model option {name} must be one of {', '.join(options)}, got {getattr(self, name)!r}")

        def positive(name, minimum=1):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"model option {name} must be an integer >= {minimum}, got {v!r}")

        if self.kind not in MODELS:
            raise ValueError(f"model option kind must be one of {', '.join(sorted(MODELS))}, got {self.kind!r}")
        choice("task", TASK_CHOICES)
        choice("nonlinearity", NONLINEARITY_CHOICES)
        choice("norm", NORM_CHOICES)
        choice("aggr", AGGR_CHOICES)
        choice("laplacian", LAPLACIAN_CHOICES)
        positive("n_classes", 2 if self.task == "classification" else 1)
        for name in ("k_eig", "n_hks", "n_levels", "coarse_k_eig", "n_layers", "n_samples", "width", "head_hidden"):
            positive(name)
        positive("radial", 0)
        positive("n_wks", 0)
        if not isinstance(self.unit_area, bool):
            raise ValueError(f"model option unit_area must be true or false, got {self.unit_area!r}")
        if not 0.0 < float(self.level_ratio) < 1.0:
            raise ValueError(f"model option level_ratio must be in (0, 1), got {self.level_ratio!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"model option dropout must be in [0, 1), got {self.dropout!r}")
        if not float(self.radial_cutoff) > 0:
            raise ValueError(f"model option radial_cutoff must be > 0, got {self.radial_cutoff!r}")
        if "wks" in self.in_features and self.n_wks == 0:
            raise ValueError("input feature 'wks' needs n_wks > 0 (WKS energies computed by prepare())")
        feature_irreps(self.in_features, n_hks=self.n_hks, n_wks=self.n_wks or None)  # unknown/repeated kinds
        if Irreps(self.hidden_irreps).dim == 0:
            raise ValueError("hidden_irreps must not be empty")
        MODELS[self.kind].check_config(self)

    @property
    def geometry(self) -> GeometryConfig:
        """What :func:`meshgdl.data.batching.prepare` computes for this model."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(GeometryOptions)}
        return GeometryConfig(**own, hierarchy=MODELS[self.kind].uses_hierarchy)

    @property
    def ratios(self) -> list[float]:
        return self.geometry.ratios

    @property
    def uses_hierarchy(self) -> bool:
        return self.geometry.uses_hierarchy

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model option(s): {', '.join(unknown)}")
        return cls(**d)


__all__ = ["ModelConfig"]
