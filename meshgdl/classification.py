"""The pipeline behind ``meshgdl classify``: shape classification of any triangle mesh.

A user's mesh has whatever resolution, position, scale, orientation and vertex
order its author left in it; a classifier was trained on meshes of one resolution.
:func:`classify` bridges the two with the same machinery as ``meshgdl segment``:

1. **working mesh** (:func:`meshgdl.data.working_mesh.working_mesh`): small loose
   components set aside, centred, scaled to total area ``area`` (default 1) and
   brought to about ``working_vertices`` vertices (quadric decimation when too fine,
   subdivision then decimation when too coarse, untouched within
   ``[0.6, 1.25] * working_vertices``). A model that does not state its working
   resolution (a plain training checkpoint) gets the mesh at its own resolution,
   only centred and scaled;
2. **predict** (:meth:`Classifier.predict`): class probabilities of the whole mesh.
   The shipped models see intrinsic features only (HKS) through a gauge-equivariant
   network, so neither orientation nor vertex order matter, and they scale every
   mesh to unit area themselves (``unit_area``), so neither does scale.

All geometry is numpy/scipy (run with one BLAS thread); only :class:`Classifier`
touches torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from meshgdl.errors import CheckpointError, MeshError
from meshgdl.io import Mesh
from meshgdl.ood import assess, network_outputs, pooled_features
from meshgdl.data.working_mesh import WorkingMesh, check_surface_area, working_mesh
from meshgdl.pretrained import LoadedModel
from meshgdl.threads import blas_threads
from meshgdl.train.metrics import softmax

#: Stages reported to a progress callback, in order.
STAGES = ("preprocess", "predict")


@dataclass
class Classifier(LoadedModel):
    """A classification model ready to run (:class:`meshgdl.pretrained.LoadedModel`:
    ``predict(V, F)`` gives ``(C,)`` probabilities of a working mesh), and what
    :func:`classify` needs to know: ``working_vertices``, the resolution the model was
    trained at (``None``: use the mesh's own); ``area``: total area of the working
    mesh; ``info``: the checkpoint's sidecar JSON (``trained_on``, ``class_names``,
    ``working_vertices``...) or ``{}``.
    """

    working_vertices: int | None = None
    area: float = 1.0


def load_classifier(name_or_path: str | os.PathLike | None = None, device: str | None = "cpu",
                    working_vertices: int | None = None) -> Classifier:
    """Load a classification model for :func:`classify`.

    ``name_or_path``: a shipped model name (:func:`meshgdl.pretrained.names`, e.g.
    ``"shrec11"``), a checkpoint written by ``meshgdl train`` (file or run directory)
    or ``None`` for the default shipped classifier. Loaded through
    :func:`meshgdl.pretrained.load_model` (safetensors, no pickle). ``working_vertices``
    overrides the model's own working resolution. Raises CheckpointError (one line)
    for anything that is not an intact meshgdl classification checkpoint.
    """
    from meshgdl.pretrained import load_model

    lm = load_model(name_or_path, task="classification", device=device)
    nw = working_vertices if working_vertices is not None else lm.info.get("working_vertices")
    if nw is not None and int(nw) < 16:
        raise MeshError(f"working resolution must be at least 16 vertices, got {nw}")
    area = float(lm.info.get("area", 1.0))
    if not area > 0:
        raise CheckpointError(f"{lm.path}: working area must be > 0, got {area}")
    return Classifier(**lm.loaded_fields(), working_vertices=None if nw is None else int(nw), area=area)


@dataclass
class Classification:
    """Result of :func:`classify`: ``probabilities (C,) float64`` over ``class_names``
    (calibrated with the model's temperature).

    ``working``: the working mesh the model saw; ``timings``: seconds per stage;
    ``ood``: how unusual the mesh looks to the model (:func:`meshgdl.ood.assess`:
    ``ood_score``, ``threshold``, ``in_distribution``; the last two None for a model
    without an OOD threshold).
    """

    probabilities: np.ndarray
    class_names: list
    working: WorkingMesh
    timings: dict = field(default_factory=dict)
    ood: dict = field(default_factory=dict)

    @property
    def in_distribution(self) -> bool | None:
        """False when the model's OOD threshold flags this mesh (None: the model has none)."""
        return self.ood.get("in_distribution")

    @property
    def ood_score(self) -> float | None:
        """How unusual the mesh looks to the model (higher = more; compare with ``ood_threshold``)."""
        return self.ood.get("ood_score")

    @property
    def ood_threshold(self) -> float | None:
        return self.ood.get("threshold")

    @property
    def label(self) -> int:
        """Index of the most probable class."""
        return int(np.argmax(self.probabilities))

    @property
    def name(self) -> str:
        """Name of the most probable class."""
        return str(self.class_names[self.label])

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(class name, probability)`` pairs, most probable
        first (ties: lower class index first)."""
        order = np.argsort(-self.probabilities, kind="stable")[: max(int(k), 0)]
        return [(str(self.class_names[i]), float(self.probabilities[i])) for i in order]

    def to_dict(self, k: int = 5) -> dict:
        return {"class": self.name, "label": self.label,
                "top": [{"class": c, "probability": p} for c, p in self.top(k)]}


def classify(mesh: Mesh, classifier: Classifier, *,
             stage: Callable[[str], None] | None = None) -> Classification:
    """Classify a loaded mesh (any resolution, pose, scale, vertex order).

    ``mesh``: a :class:`meshgdl.io.Mesh` (e.g. from :func:`meshgdl.io.load_mesh`);
    ``classifier``: from :func:`load_classifier`. Every class's probability is
    returned (:meth:`Classification.top` for the K best). ``stage(name)`` is called
    as each of :data:`STAGES` begins. Raises MeshError (one line) for a mesh without
    surface area or whose input features cannot be computed.
    """
    say = stage or (lambda name: None)
    check_surface_area(mesh)
    times: dict[str, float] = {}
    with blas_threads(1):
        say("preprocess")
        t0 = time.perf_counter()
        n_target = classifier.working_vertices if classifier.working_vertices is not None else max(mesh.n_vertices, 16)
        wm = working_mesh(mesh.V, mesh.F, n_target, area=classifier.area)
        times["preprocess"] = time.perf_counter() - t0
        say("predict")
        t0 = time.perf_counter()
        rule = classifier.ood_rule
        try:
            if rule is not None and rule.needs_features:
                # the distance score needs the network's pooled features, from the same pass
                z, feats, mass = network_outputs(classifier, wm.V, wm.F, layer=rule.layer)
                probs = softmax(z[0], classifier.temperature)
                ood = assess(probs, rule=rule, features=pooled_features(feats, mass))
            else:
                probs = classifier.predict(wm.V, wm.F)
                ood = assess(probs, rule=rule)
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            # e.g. an eigen-solve that does not converge on a pathological working mesh
            name = mesh.path or "the mesh"
            raise MeshError(f"{name}: cannot compute the model's input features "
                            f"({' '.join(str(exc).split())[:160]})") from None
        times["predict"] = time.perf_counter() - t0
    return Classification(probabilities=probs, class_names=list(classifier.class_names), working=wm,
                          timings=times, ood=ood)


__all__ = ["STAGES", "Classifier", "Classification", "load_classifier", "classify"]
