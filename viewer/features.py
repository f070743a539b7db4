"""Feature sources: callables ``(V, F) -> per-vertex values``.

A :class:`Feature` wraps such a callable with what the viewer needs to draw it
(colour map kind, channel names, whether it is intrinsic). The viewer calls it once
per deformation frame, so an intrinsic feature (HKS, geodesic distance,
eigenfunctions, a model's output) is *recomputed* on the deformed shape -- if it stays
attached to the same surface points, it is invariant to that deformation.

Tangent (rho_n) features are :class:`TangentFeature` callables
``(V, F, gauges) -> (n, 2)``: the coefficients ``(a, b)`` of each vertex's value in
its gauge ``(e1, e2)``.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from meshgdl.errors import CheckpointError


class ViewerError(ValueError):
    """Bad viewer input (feature file, channel, option); the CLI prints it as one line."""


FeatureFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Bytes each per-frame cache (a feature's values, the eigenbases) may hold: a long
#: sequence of a fine mesh must not keep every frame's eigenbasis.
CACHE_BYTES = 128 * 2**20


@dataclass
class Feature:
    """A per-vertex feature the viewer can colour a mesh by.

    Attributes
    ----------
    name : shown in the legend title.
    compute : ``(V (n,3) float64, F (m,3) int64) -> (n,) or (n, C)`` values.
    kind : ``"scalar"`` (sequential colour map), ``"signed"`` (diverging map centred
        on 0) or ``"labels"`` (integer classes, categorical palette).
    intrinsic : True when the values depend only on the surface's metric (stay attached
        under isometric deformation); the viewer says so in the caption.
    channel_names : optional names of the C channels (default ``name[c]``).
    class_names : labels only: the name of each label value (legend ``"3 upper_arm"``).
    align_signs : eigenfunctions are defined up to sign; flip each frame's channels to
        correlate positively with frame 0 so a sign flip is not mistaken for drift.
    """

    name: str
    compute: FeatureFn
    kind: str = "scalar"
    intrinsic: bool = True
    channel_names: list[str] | None = None
    class_names: list[str] | None = None
    align_signs: bool = False
    detail: str = ""  # extra words for the caption (the legend title stays short)
    per_frame: np.ndarray | None = None  # (T, n, C) fixed values, one set per frame (frames() only)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __call__(self, V: np.ndarray, F: np.ndarray) -> np.ndarray:
        """``(n, C)`` values on mesh ``(V, F)`` (cached by content)."""
        key = _digest(V, F)
        if key not in self._cache:
            out = np.asarray(self.compute(np.asarray(V, np.float64), np.asarray(F, np.int64)))
            if out.ndim == 1:
                out = out[:, None]
            if out.ndim != 2 or out.shape[0] != len(V):
                raise ViewerError(
                    f"feature {self.name!r} returned shape {out.shape}, expected ({len(V)},) or ({len(V)}, C)"
                )
            if self.kind != "labels":
                out = out.astype(np.float64)
                finite = np.isfinite(out)
                if not finite.any():
                    raise ViewerError(f"feature {self.name!r} has no finite values")
                # e.g. geodesic distance on a component the source cannot reach:
                # drawn grey, left out of the colour range and the isolines
                out[~finite] = np.nan
            self._cache[key] = out
            while len(self._cache) > 1 and (len(self._cache) > 64
                                            or sum(a.nbytes for a in self._cache.values()) > CACHE_BYTES):
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def channel_name(self, c: int, num_channels: int) -> str:
        if self.channel_names and c < len(self.channel_names):
            return f"{self.name} {self.channel_names[c]}"
        return self.name if num_channels == 1 else f"{self.name}[{c}]"

    def frames(self, frames: np.ndarray, F: np.ndarray) -> np.ndarray:
        """``(T, n, C)`` values on every frame of a deformation ``(T, n, 3)``."""
        if self.per_frame is not None:
            if self.per_frame.shape[:2] != frames.shape[:2]:
                raise ViewerError(f"{self.name}: values for {self.per_frame.shape[0]} frames of "
                                  f"{self.per_frame.shape[1]} vertices, shown on {frames.shape[0]} frames "
                                  f"of {frames.shape[1]}")
            return self.per_frame
        vals = [self(Vt, F) for Vt in frames]
        if self.align_signs and len(vals) > 1:
            from meshgdl.geometry.normals import vertex_areas

            ref = vals[0]
            out = [ref]
            for Vt, v in zip(frames[1:], vals[1:]):
                w = vertex_areas(Vt, F)[:, None]
                s = np.sign(np.sum(w * v * ref, axis=0))
                out.append(v * np.where(s == 0, 1.0, s))
            vals = out
        return np.stack(vals)


@dataclass
class TangentFeature:
    """A tangent (rho_``order``) feature: ``compute(V, F, gauges) -> (n, 2)`` gauge coefficients.

    A rho_n value ``(a, b)`` at vertex p is drawn as ``n`` rays at angles
    ``(atan2(b, a) + 2 pi k) / n`` from ``e1`` (counter-clockwise about the normal),
    of length proportional to ``hypot(a, b)``; for n = 1 this is the vector
    ``a e1 + b e2``.
    """

    name: str
    compute: Callable
    order: int = 1

    def __post_init__(self):
        if int(self.order) < 1:
            raise ViewerError(f"tangent feature order must be >= 1, got {self.order}")


def _digest(V: np.ndarray, F: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in (V, F):
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- spectral helpers
_SPECTRAL_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()


def spectral(V: np.ndarray, F: np.ndarray, k: int, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """``(evals (k,), evecs (n, k))`` of the mesh Laplacian (``method`` as in
    :func:`meshgdl.geometry.laplacian.laplacian`), cached by mesh content.

    HKS and eigenfunction features share one decomposition per frame.
    """
    from meshgdl.geometry.laplacian import laplacian
    from meshgdl.geometry.spectral import eigenbasis

    k = int(min(k, len(V) - 2))
    if k < 1:
        raise ViewerError(f"mesh has too few vertices ({len(V)}) for a spectral feature")
    key = (_digest(V, F), k, method)
    if key in _SPECTRAL_CACHE:
        _SPECTRAL_CACHE.move_to_end(key)
        return _SPECTRAL_CACHE[key]
    L, M = laplacian(V, F, method=method)
    evals, evecs = eigenbasis(L, M, k)
    _SPECTRAL_CACHE[key] = out = (np.asarray(evals), np.asarray(evecs))
    while len(_SPECTRAL_CACHE) > 1 and (len(_SPECTRAL_CACHE) > 48 or
                                        sum(v.nbytes for _, v in _SPECTRAL_CACHE.values()) > CACHE_BYTES):
        _SPECTRAL_CACHE.popitem(last=False)
    return out


class _RestChoices:
    """Settings fixed on the first mesh a feature sees (the rest frame) and reused on
    every later frame, so the feature's definition does not change with the pose:
    the Laplacian method (cotan vs robust) and the HKS diffusion times."""

    def __init__(self):
        self.method: str | None = None
        self.times: np.ndarray | None = None
        self.k: int | None = None

    def laplacian_method(self, V, F) -> str:
        if self.method is None:
            from meshgdl.geometry.laplacian import choose_laplacian_method

            self.method = choose_laplacian_method(V, F)
        return self.method


def multiplet_safe_cut(evals: np.ndarray, k: int, rtol: float = 1e-3) -> int:
    """Largest ``k' <= k`` such that eigenvalue ``k'`` (the first one left out) is not
    within ``rtol`` of eigenvalue ``k' - 1``.

    A truncated eigenbasis that keeps only part of a (near-)degenerate eigenspace
    depends on the arbitrary basis the solver picked inside it, so HKS built from it
    is not invariant (symmetric shapes -- spheres, tubes, tori -- have many such
    multiplets). ``evals`` must hold more than ``k`` values to decide; otherwise all
    of them are kept.
    """
    evals = np.asarray(evals, np.float64)
    if len(evals) <= k:
        return len(evals)
    while k > 1 and abs(evals[k] - evals[k - 1]) <= rtol * max(abs(evals[k]), 1e-300):
        k -= 1
    return k


# ---------------------------------------------------------------- built-in features
FEATURE_NAMES = ("hks", "geodesic", "eigen", "x")


def hks_feature(k: int = 64, n_times: int = 16) -> Feature:
    """Heat kernel signature: ``n_times`` channels, small diffusion times first
    (log-spaced over the rest shape's spectrum; the same times on every frame), from
    at most ``k`` eigenpairs, cut so no eigenspace is split."""
    rest = _RestChoices()

    def compute(V, F):
        from meshgdl.geometry.spectral import default_hks_times, hks

        # a few spare pairs so the cut never splits an eigenspace (see multiplet_safe_cut)
        evals, evecs = spectral(V, F, k + 8, rest.laplacian_method(V, F))
        if rest.k is None:
            rest.k = multiplet_safe_cut(evals, k)
            rest.times = default_hks_times(evals[:rest.k], n_times)
        return hks(evals[:rest.k], evecs[:, :rest.k], times=rest.times)

    return Feature("HKS", compute, kind="scalar", intrinsic=True,
                   channel_names=[f"t{i}" for i in range(n_times)])


def eigen_feature(k: int = 16) -> Feature:
    """Laplace-Beltrami eigenfunctions ``phi_0 .. phi_{k-1}`` (mass-orthonormal, signed)."""
    rest = _RestChoices()

    def compute(V, F):
        return spectral(V, F, k, rest.laplacian_method(V, F))[1]

    return Feature("eigenfunction", compute, kind="signed", intrinsic=True,
                   channel_names=[f"phi{i}" for i in range(k)], align_signs=True)

def geodesic_feature(source: int | list[int] = 0) -> Feature:
    """Heat-method geodesic distance from vertex ``source`` (mesh length units)."""
    sources = [int(s) for s in np.atleast_1d(source)]

    def compute(V, F):
        bad = [s for s in sources if not 0 <= s < len(V)]
        if bad:
            raise ViewerError(f"geodesic source vertex {bad[0]} out of range [0, {len(V) - 1}]")
        from meshgdl.geometry.geodesics import heat_geodesic_distance

        return heat_geodesic_distance(V, F, sources)

    label = ", ".join(map(str, sources))
    return Feature("geodesic", compute, kind="scalar", intrinsic=True,
                   detail=f"distance from vertex {label}")


def coordinate_feature() -> Feature:
    """Raw x, y, z coordinates: NOT intrinsic -- the contrast case that swims."""
    return Feature("coordinate", lambda V, F: V.copy(), kind="scalar", intrinsic=False,
                   channel_names=["x", "y", "z"])


def array_feature(values: np.ndarray, name: str = "scalar", kind: str | None = None) -> Feature:
    """Fixed per-vertex values ``(n,)`` or ``(n, C)`` (e.g. from a file): they ride on
    the vertices, so they follow any deformation by construction."""
    values = np.asarray(values)
    if kind is None:
        kind = "signed" if values.size and values.min() < 0 < values.max() else "scalar"

    def compute(V, F):
        if len(values) != len(V):
            raise ViewerError(f"{name}: {len(values)} values for a mesh with {len(V)} vertices")
        return values

    return Feature(name, compute, kind=kind, intrinsic=True)


def labels_feature(labels: np.ndarray, name: str = "labels", class_names: list[str] | None = None) -> Feature:
    labels = np.asarray(labels).astype(np.int64)
    f = array_feature(labels, name=name, kind="labels")
    f.class_names = list(class_names) if class_names else None
    return f


def frame_labels_feature(labels: np.ndarray, name: str = "labels",
                         class_names: list[str] | None = None) -> Feature:
    """Integer labels ``(T, n)``, one labelling per frame of an animation (e.g.
    ``meshgdl segment --animation``'s ``frame_labels.npy``)."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.ndim != 2:
        raise ViewerError(f"{name}: per-frame labels must have shape (T, n), got {labels.shape}")

    def compute(V, F):
        raise ViewerError(f"{name}: per-frame labels are defined only on their animation's frames")

    return Feature(name, compute, kind="labels", intrinsic=True,
                   class_names=list(class_names) if class_names else None, per_frame=labels[:, :, None])


def builtin_feature(name: str, *, source: int = 0, k: int = 64) -> Feature:
    """Feature by name: ``hks``, ``geodesic`` (from ``source``), ``eigen``, ``x`` (coordinates)."""
    if name == "hks":
        return hks_feature(k=k)
    if name == "geodesic":
        return geodesic_feature(source)
    if name == "eigen":
        return eigen_feature(k=min(k, 32))
    if name == "x":
        return coordinate_feature()
    raise ViewerError(f"unknown feature {name!r}; choose one of {', '.join(FEATURE_NAMES)}")


# ---------------------------------------------------------------- model features
_MODELS: dict = {}


def _loaded_model(checkpoint_path: str | os.PathLike):
    """The :class:`meshgdl.pretrained.LoadedModel` of a checkpoint, run folder or shipped
    model name (eval mode, CPU); cached by path and modification time."""
    try:
        from meshgdl.pretrained import load_model, resolve_model
    except ImportError as exc:  # the model code is optional for the rest of the viewer
        raise CheckpointError(f"model features need meshgdl's model code ({exc})") from None

    p = resolve_model(checkpoint_path)
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key not in _MODELS:
        lm = load_model(p)
        _MODELS.clear()  # one model at a time: they can be large
        _MODELS[key] = lm
    return _MODELS[key]


def load_trained_model(checkpoint_path: str | os.PathLike):
    """``(model, config)`` from a ``meshgdl train`` checkpoint (file or run folder) or a
    shipped model name, in eval mode (:func:`meshgdl.pretrained.load_model`); cached by
    path and modification time."""
    lm = _loaded_model(checkpoint_path)
    return lm.model, lm.config


def num_model_layers(checkpoint_path: str | os.PathLike) -> int:
    """How many feature layers ``model.features(batch, layer)`` accepts."""
    return int(load_trained_model(checkpoint_path)[0].num_feature_layers)


_SAMPLES: "OrderedDict[tuple, object]" = OrderedDict()
_SAMPLE_BUDGET = 200_000  # vertices of prepared geometry kept (all layers of a frame share one)


def _prepared(cfg, V: np.ndarray, F: np.ndarray, replay=None):
    """:func:`meshgdl.data.batching.prepare` of ``(V, F)``, cached by content so that
    stepping through a model's layers on the same frames does not recompute geometry."""
    from meshgdl.data.batching import prepare

    key = (_digest(V, F), repr(cfg), id(replay))
    if key in _SAMPLES:
        _SAMPLES.move_to_end(key)
        return _SAMPLES[key][0]
    sample = prepare(V, F, cfg, replay=replay)
    _SAMPLES[key] = (sample, len(V), replay)  # holding the replay keeps its id unique
    while len(_SAMPLES) > 1 and sum(e[1] for e in _SAMPLES.values()) > _SAMPLE_BUDGET:
        _SAMPLES.popitem(last=False)
    return sample


def model_layer_features(checkpoint_path: str | os.PathLike, V: np.ndarray, F: np.ndarray,
                         layer: int, replay=None) -> np.ndarray:
    """``(n, C)`` float64 gauge-invariant activations of ``layer`` of a trained model on
    mesh ``(V, F)`` (the model's own geometry is computed for this mesh, as given;
    ``replay``: its coarse levels from :func:`meshgdl.data.batching.attach_sample`)."""
    import torch

    from meshgdl.data.batching import collate_samples

    model, cfg = load_trained_model(checkpoint_path)
    n_layers = int(model.num_feature_layers)
    if not -n_layers <= int(layer) < n_layers:
        raise ViewerError(f"--layer {layer} out of range: the model has {n_layers} feature layers "
                          f"(0..{n_layers - 1})")
    batch = collate_samples([_prepared(cfg, np.asarray(V, np.float64), np.asarray(F, np.int64), replay)])
    with torch.no_grad():
        h = model.features(batch, int(layer))
    return h.detach().cpu().double().numpy()


def model_features(checkpoint_path: str | os.PathLike, V: np.ndarray, F: np.ndarray,
                   layer: int, channel: int) -> np.ndarray:
    """``(n,)`` activations of ``channel`` at ``layer`` of a trained model on ``(V, F)``.

    Raises :class:`CheckpointError` when the file is not a trained meshgdl checkpoint
    (train one with ``meshgdl train``) and :class:`ViewerError` for a layer or channel
    out of range.
    """
    h = model_layer_features(checkpoint_path, V, F, layer)
    if not 0 <= int(channel) < h.shape[1]:
        raise ViewerError(f"--channel {channel} out of range: layer {layer} has {h.shape[1]} channels")
    return h[:, int(channel)]


class ModelOnMesh:
    """A trained model run on a (deforming) mesh the way ``meshgdl segment`` runs it.

    A mesh finer than the model's working resolution (its description's
    ``working_vertices``, else :data:`meshgdl.data.working_mesh.DEFAULT_WORKING_VERTICES`;
    more than 1.25 times that) gets, on the first mesh seen (the rest frame), one
    working mesh tied to the surface (:func:`meshgdl.data.working_mesh.attach_working_mesh`),
    the model's coarse levels tied to it (:func:`meshgdl.data.batching.attach_sample`)
    and each vertex's point on the working surface: every frame is then seen through
    the same triangles and hierarchy, and the activations are interpolated back to the
    mesh's vertices. Coarser meshes go through the model as they are. Shared by all
    layers of one model, so they see the same working mesh.
    """

    def __init__(self, checkpoint_path: str | os.PathLike):
        self.checkpoint = checkpoint_path
        self.plan: tuple | None = None  # (replay of the working mesh, hierarchy replay, face, bary)
        self.n_working = 0
        self._rest_F: np.ndarray | None = None

    def _attach(self, V: np.ndarray, F: np.ndarray) -> None:
        from meshgdl.data.batching import attach_sample
        from meshgdl.data.working_mesh import DEFAULT_WORKING_VERTICES, attach_working_mesh, working_mesh
        from meshgdl.geometry.normals import vertex_normals
        from meshgdl.geometry.proximity import project_to_surface

        lm = _loaded_model(self.checkpoint)
        info = lm.info or {}
        n_work = int(info.get("working_vertices") or DEFAULT_WORKING_VERTICES)
        self.plan, self.n_working = None, 0
        self._rest_F = np.array(F, copy=True)
        if len(V) <= 1.25 * n_work:
            return
        area = float(info.get("area", 1.0))
        rep = attach_working_mesh(working_mesh(V, F, n_work, area=area, fill=bool(info.get("fill_holes", False))),
                                  V, F, area)
        wm = rep.apply(V)
        face, bary, _ = project_to_surface(wm.normalize(V), wm.V, wm.F, normals=vertex_normals(V, F))
        self.plan = (rep, attach_sample(wm.V, wm.F, lm.config), face, bary)
        self.n_working = len(wm.V)

    def layer(self, V: np.ndarray, F: np.ndarray, layer: int) -> np.ndarray:
        """``(n, C)`` activations of ``layer`` on frame ``(V, F)``."""
        from meshgdl.geometry.proximity import interpolate

        if self._rest_F is None or not np.array_equal(self._rest_F, F):
            self._attach(V, F)
        if self.plan is None:
            return model_layer_features(self.checkpoint, V, F, layer)
        rep, replay, face, bary = self.plan
        wm = rep.apply(V)
        return interpolate(model_layer_features(self.checkpoint, wm.V, wm.F, layer, replay=replay),
                           wm.F, face, bary)

    def detail(self) -> str:
        return f"(on a {self.n_working}-vertex working mesh)" if self.plan is not None else ""


def model_feature(checkpoint_path: str | os.PathLike, layer: int, run: ModelOnMesh | None = None) -> Feature:
    """All channels of one model layer as a :class:`Feature` (recomputed per frame);
    layers of one model share ``run`` (:class:`ModelOnMesh`)."""
    run = run or ModelOnMesh(checkpoint_path)

    def compute(V, F):
        out = run.layer(V, F, layer)
        feat.detail = run.detail()
        return out

    feat = Feature(f"model layer {layer}", compute, kind="scalar", intrinsic=True)
    return feat


# ---------------------------------------------------------------- tangent features
def gradient_tangent(feature: Feature, channel: int = 0) -> TangentFeature:
    """The intrinsic gradient of a scalar feature's ``channel``, as a rho_1 field."""
    from meshgdl.geometry.gradient import tangent_gradient

    def compute(V, F, gauges):
        f = feature(V, F)[:, channel].astype(np.float64)
        Gx, Gy = tangent_gradient(gauges)
        return np.stack([Gx @ f, Gy @ f], axis=1)

    return TangentFeature(f"grad {feature.channel_name(channel, 2)}", compute, order=1)


def array_tangent(coeffs: np.ndarray, order: int = 1, name: str = "vectors") -> TangentFeature:
    """Fixed gauge coefficients ``(n, 2)`` (e.g. from a file)."""
    coeffs = np.asarray(coeffs, dtype=np.float64)

    def compute(V, F, gauges):
        if len(coeffs) != len(V):
            raise ViewerError(f"{name}: {len(coeffs)} vectors for a mesh with {len(V)} vertices")
        return coeffs

    return TangentFeature(name, compute, order=order)


# ---------------------------------------------------------------- files
def _per_vertex(values: np.ndarray, mesh, path, what: str = "values") -> np.ndarray:
    """Accept values on the cleaned vertices (n) or on the file's vertices (n_orig)."""
    n = len(mesh.V)
    n_orig = getattr(mesh, "n_orig_vertices", n)
    if len(values) == n:
        return values
    if len(values) == n_orig and hasattr(mesh, "new_to_orig"):
        return values[mesh.new_to_orig]
    want = f"{n}" if n == n_orig else f"{n} (or the file's {n_orig})"
    raise ViewerError(f"{path}: {len(values)} {what}, but the mesh has {want} vertices")


def _read_array(path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise ViewerError(f"{path}: file not found")
    try:
        if p.suffix.lower() == ".npy":
            return np.load(p, allow_pickle=False)
        return np.loadtxt(p, ndmin=1, delimiter="," if p.suffix.lower() == ".csv" else None)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:160]
        raise ViewerError(f"{path}: cannot read values ({msg})") from None


def load_scalar_file(path, mesh) -> np.ndarray:
    """Per-vertex scalars ``(n,)`` or ``(n, C)`` from ``.npy`` / ``.txt`` / ``.csv``."""
    a = _read_array(path)
    if a.ndim not in (1, 2) or not np.issubdtype(a.dtype, np.number):
        raise ViewerError(f"{path}: expected a numeric (n,) or (n, C) array, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ViewerError(f"{path}: contains NaN or infinite values")
    return _per_vertex(a, mesh, path)


def load_labels_file(path, mesh, n_frames: int | None = None) -> np.ndarray:
    """Integer per-vertex labels ``(n,)`` from ``.txt`` (one per line) or ``.npy``.

    With ``n_frames`` (an animation of that many frames), also a ``(n_frames, n)``
    array: one labelling per frame (n: the file's or the cleaned mesh's vertex
    count), returned as ``(n_frames, n_cleaned)``.
    """
    a = _read_array(path)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if not np.issubdtype(a.dtype, np.number) or a.ndim not in (1, 2) or (a.ndim == 2 and n_frames is None):
        hint = " (a (T, n) file of per-frame labels needs --animation)" if a.ndim == 2 else ""
        raise ViewerError(f"{path}: expected one integer label per vertex, got shape {a.shape}{hint}")
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise ViewerError(f"{path}: labels must be integers")
    a = a.astype(np.int64)
    if a.ndim == 1:
        return _per_vertex(a, mesh, path)
    if a.shape[0] != n_frames:
        raise ViewerError(f"{path}: per-frame labels for {a.shape[0]} frames, but the animation has {n_frames}")
    return _per_vertex(a.T, mesh, path, what="labels per frame").T


def load_vectors_file(path, mesh) -> np.ndarray:
    """Gauge coefficients ``(n, 2)`` from ``.npy`` / ``.txt``."""
    a = _read_array(path)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ViewerError(f"{path}: expected an (n, 2) array of gauge coefficients, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ViewerError(f"{path}: contains NaN or infinite values")
    return _per_vertex(a, mesh, path)
