"""Out-of-distribution scores of one mesh, from a model's per-vertex outputs.

A model answers every mesh, also one unlike anything it was trained on (a horse for a
human-body model). The scores here say how unusual a mesh looks to the model; each is
*higher for more unusual meshes*, is one number per mesh, and is turned into a warning
by a threshold fixed on in-distribution validation meshes (:func:`fit_threshold`).

From per-vertex logits ``z (n, C)`` and weights ``w (n,)`` (vertex areas: the mean is a
mean over the surface, whatever the triangulation), with temperature ``T``
(:func:`meshgdl.train.metrics.fit_temperature`) and ``p = softmax(z / T)``
(:func:`logit_scores`):

* ``max_prob``: ``1 - sum_i w_i max_c p_ic / sum_i w_i`` (one minus the mean confidence);
* ``max_prob_median``: one minus the weighted median of ``max_c p_ic`` (a confident mesh
  with an unsure patch -- a hole, a cut -- stays low; a shape unsure everywhere does not);
* ``energy``: the mean of ``-T logsumexp(z_i / T)`` (Liu et al. 2020);
* ``entropy``: the mean of ``-sum_c p_ic log p_ic`` (nats).

From the network's gauge-invariant per-vertex features (``model.features(batch,
layer)``), pooled per mesh by :func:`pooled_features` (area-weighted mean and standard
deviation of every channel), against the pooled features of reference meshes (the
training set) in a :class:`FeatureReference`:

* ``mahalanobis``: ``sqrt((x - mu)^T S^-1 (x - mu))`` with the reference's covariance
  shrunk towards its diagonal (there are fewer reference meshes than channels);
* ``knn``: the mean Euclidean distance, in channels standardised by the reference, to the
  ``k`` nearest reference meshes.

Numpy only, except :func:`network_outputs` (torch, a loaded model). Used by
``tools/bench/ood.py``; importable by the segment / classify pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meshgdl.train.metrics import log_softmax

#: Scores computed from logits (:func:`logit_scores`), and from features (:class:`FeatureReference`).
LOGIT_SCORES = ("max_prob", "max_prob_median", "energy", "entropy")
FEATURE_SCORES = ("mahalanobis", "knn")


def _weights(w, n: int) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / max(n, 1))
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError(f"weights must be ({n},) finite, >= 0 and not all 0")
    return w / w.sum()


def logit_scores(logits, weights=None, temperature: float = 1.0) -> dict[str, float]:
    """``max_prob``, ``energy`` and ``entropy`` of one mesh (module docstring) from its
    per-vertex ``logits (n, C)`` (``(C,)`` or ``(1, C)`` for a classifier), weighted by
    ``weights (n,)`` (None: equal). Higher = more unusual."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[0] == 0 or not np.all(np.isfinite(z)):
        raise ValueError(f"logits must be a finite (n >= 1, C) array, got shape {z.shape}")
    T = float(temperature)
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    w = _weights(weights, z.shape[0])
    lp = log_softmax(z, T)
    p = np.exp(lp)
    m = (z / T).max(axis=1)
    lse = m + np.log(np.exp(z / T - m[:, None]).sum(axis=1))
    return {
        "max_prob": float(1.0 - w @ p.max(axis=1)),
        "max_prob_median": float(1.0 - weighted_median(p.max(axis=1), w)),
        "energy": float(w @ (-T * lse)),
        "entropy": float(w @ -(p * lp).sum(axis=1)),
    }


def weighted_median(x, w) -> float:
    """The smallest ``x_i`` whose weight, with that of every smaller value, reaches half
    the total of ``w`` (``x (n,)``, ``w (n,) >= 0``, not all zero)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    w = np.asarray(w, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cum, 0.5 * cum[-1])])


def pooled_features(features, weights=None) -> np.ndarray:
    """``(2 D,)``: the weighted mean and standard deviation over the vertices of every
    channel of ``features (n, D)`` (invariant per-vertex features of one mesh)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"features must be a finite (n >= 1, D) array, got shape {x.shape}")
    w = _weights(weights, x.shape[0])
    mu = w @ x
    sd = np.sqrt(np.maximum(w @ (x - mu) ** 2, 0.0))
    return np.concatenate([mu, sd])


@dataclass
class FeatureReference:
    """Pooled features of reference meshes (:meth:`fit`), and the distances of a new
    mesh's pooled features to them (:meth:`scores`). ``to_dict`` / ``from_dict``: JSON."""

    X: np.ndarray  # (M, P) the reference meshes' pooled features
    mean: np.ndarray  # (P,)
    scale: np.ndarray  # (P,) standard deviation per channel (constant channels: 1)
    precision: np.ndarray  # (P, P) inverse of the shrunk covariance of the standardised channels
    k: int = 5
    shrinkage: float = 0.1

    @classmethod
    def fit(cls, X, k: int = 5, shrinkage: float = 0.1) -> "FeatureReference":
        """From ``X (M, P)`` pooled features of M >= 2 reference meshes. The covariance
        of the standardised channels (a correlation matrix) is shrunk as
        ``(1 - shrinkage) R + shrinkage I`` before it is inverted."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2 or not np.all(np.isfinite(X)):
            raise ValueError(f"reference features must be a finite (M >= 2, P) array, got shape {X.shape}")
        if not 0 < shrinkage <= 1:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale = np.where(scale > 1e-12 * (1.0 + np.abs(mean)), scale, 1.0)
        Z = (X - mean) / scale
        R = np.cov(Z, rowvar=False, bias=True).reshape(X.shape[1], X.shape[1])
        C = (1.0 - shrinkage) * R + shrinkage * np.eye(X.shape[1])
        return cls(X=X, mean=mean, scale=scale, precision=np.linalg.inv(C), k=int(min(k, X.shape[0])),
                   shrinkage=float(shrinkage))

    def scores(self, x) -> dict[str, float]:
        """``mahalanobis`` and ``knn`` distance (module docstring) of pooled features
        ``x (P,)`` of one mesh. Higher = more unusual."""
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.shape != self.mean.shape or not np.all(np.isfinite(x)):
            raise ValueError(f"pooled features must be finite of shape {self.mean.shape}, got {x.shape}")
        z = (x - self.mean) / self.scale
        Zr = (self.X - self.mean) / self.scale
        d = np.sort(np.linalg.norm(Zr - z, axis=1))[: self.k]
        return {"mahalanobis": float(np.sqrt(max(z @ self.precision @ z, 0.0))), "knn": float(d.mean())}

    def to_dict(self) -> dict:
        return {"X": self.X.tolist(), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "k": self.k, "shrinkage": self.shrinkage}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureReference":
        ref = cls.fit(np.asarray(d["X"]), k=int(d["k"]), shrinkage=float(d["shrinkage"]))
        return ref


def fit_threshold(scores_in, rate: float = 0.05) -> float:
    """The smallest threshold ``t`` among the scores such that at most ``floor(rate * n)``
    of the in-distribution ``scores_in (n,)`` are flagged (``score > t``)."""
    s = np.sort(np.asarray(scores_in, dtype=np.float64).ravel())[::-1]
    if not s.size or np.isnan(s).any():
        raise ValueError("fit_threshold needs at least one score and no NaN")
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    return float(s[int(np.floor(rate * s.size))])


#: Scores a pipeline computes from the (calibrated) probabilities it already has.
PROBABILITY_SCORES = ("max_prob", "max_prob_median", "entropy")
#: Parts smaller than this share of the modelled area get no part verdict (too few
#: vertices for a mean that means anything).
MIN_PART_SHARE = 0.01


def probability_score(probs, weights=None, score: str = "max_prob") -> float:
    """``max_prob`` (one minus the weighted mean of each row's largest probability),
    ``max_prob_median`` (one minus its weighted median) or ``entropy`` (weighted mean,
    nats) of probabilities ``probs (n, C)`` (``(C,)`` for a
    classifier) with ``weights (n,)`` (None: equal). Equals :func:`logit_scores` of
    logits whose softmax at the chosen temperature is ``probs``. Higher = more unusual."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or p.shape[0] == 0 or not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError(f"probabilities must be a finite, non-negative (n >= 1, C) array, got shape {p.shape}")
    if score not in PROBABILITY_SCORES:
        raise ValueError(f"score must be one of {PROBABILITY_SCORES}, got {score!r}")
    w = _weights(weights, p.shape[0])
    if score == "max_prob":
        return float(1.0 - w @ p.max(axis=1))
    if score == "max_prob_median":
        return float(1.0 - weighted_median(p.max(axis=1), w))
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return float(w @ -plogp.sum(axis=1))


def part_scores(probs, weights=None, score: str = "max_prob") -> list[tuple[int, float, float]]:
    """Per predicted part (each row's argmax of ``probs (n, C)``): ``(label, area_share,
    score)``, the score (:func:`probability_score`) over that part's vertices only and
    its share of the total weight; parts in label order."""
    p = np.asarray(probs, dtype=np.float64)
    w = _weights(weights, p.shape[0])
    lab = np.argmax(p, axis=1)
    out = []
    for c in np.unique(lab):
        m = lab == c
        share = float(w[m].sum())
        out.append((int(c), share, probability_score(p[m], w[m] if share > 0 else None, score)))
    return out


@dataclass(frozen=True)
class OODRule:
    """A model's out-of-distribution warning, from its description's ``"ood"`` entry
    (:meth:`from_info`): flag a mesh when ``score`` exceeds ``threshold``, a part when its
    own score exceeds ``part_threshold`` (None: no part verdicts). ``score``: one of
    :data:`PROBABILITY_SCORES` (on the calibrated probabilities), or of
    :data:`FEATURE_SCORES` (classifiers: the distance of the mesh's pooled features at
    ``layer`` to the ``reference`` meshes', the entry's ``"reference"``:
    :meth:`FeatureReference.to_dict` plus ``"layer"``)."""

    score: str
    threshold: float
    part_threshold: float | None = None
    reference: FeatureReference | None = field(default=None, compare=False, repr=False)
    layer: int = -1

    @property
    def needs_features(self) -> bool:
        return self.score in FEATURE_SCORES

    @classmethod
    def from_info(cls, info: dict, where: str = "model description") -> "OODRule | None":
        """The rule in ``info["ood"]`` (None when there is none); CheckpointError (one
        line) for a malformed one."""
        from meshgdl.errors import CheckpointError

        d = info.get("ood")
        if d is None:
            return None
        try:
            score = str(d["score"])
            thr = float(d["threshold"])
            pt = d.get("part_threshold")
            pt = None if pt is None else float(pt)
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{where}: 'ood' needs a 'score' and a numeric 'threshold'") from None
        if score not in PROBABILITY_SCORES + FEATURE_SCORES:
            raise CheckpointError(f"{where}: unknown ood score {score!r} "
                                  f"(known: {', '.join(PROBABILITY_SCORES + FEATURE_SCORES)})")
        if not np.isfinite(thr) or (pt is not None and not np.isfinite(pt)):
            raise CheckpointError(f"{where}: ood thresholds must be finite numbers")
        ref, layer = None, -1
        if score in FEATURE_SCORES:
            try:
                ref = FeatureReference.from_dict(d["reference"])
                layer = int(d["reference"].get("layer", -1))
            except (TypeError, KeyError, ValueError, AttributeError):
                raise CheckpointError(f"{where}: the ood score {score!r} needs a 'reference' of pooled features "
                                      "(X, k, shrinkage)") from None
        return cls(score=score, threshold=thr, part_threshold=pt, reference=ref, layer=layer)


def assess(probs, weights=None, rule: OODRule | None = None, class_names=None, parts: bool = False,
           features=None) -> dict:
    """How unusual one mesh looks to a model, from its calibrated ``probs (n, C)``
    (``(C,)`` for a classifier) on the vertices it ran on, weighted by ``weights (n,)``
    (vertex areas), or, for a rule on a feature score, from the mesh's ``features``
    (:func:`pooled_features` at the rule's layer). Returns ``{"score", "ood_score",
    "threshold", "in_distribution"}`` (threshold and verdict None without a ``rule``; the
    score is then ``max_prob``) and, with ``parts``, ``"parts"``: per predicted part
    ``{"label", "name", "area_share", "ood_score", "in_distribution"}`` (verdict None for
    parts under :data:`MIN_PART_SHARE` of the area or without a part threshold)."""
    name = rule.score if rule is not None else "max_prob"
    if rule is not None and rule.needs_features:
        if features is None or parts:
            raise ValueError(f"the ood score {name!r} needs the mesh's pooled features (and has no part verdicts)")
        s = rule.reference.scores(features)[name]
    else:
        s = probability_score(probs, weights, name)
    out = {"score": name, "ood_score": s, "threshold": None if rule is None else rule.threshold,
           "in_distribution": None if rule is None else bool(s <= rule.threshold)}
    if parts:
        pt = None if rule is None else rule.part_threshold
        out["part_threshold"] = pt
        out["parts"] = [{"label": c, "name": str(class_names[c]) if class_names is not None else str(c),
                         "area_share": a, "ood_score": sc,
                         "in_distribution": None if pt is None or a < MIN_PART_SHARE else bool(sc <= pt)}
                        for c, a, sc in part_scores(probs, weights, name)]
    return out


def flagged(scores, threshold: float) -> np.ndarray:
    """``scores > threshold`` (bool array): the meshes that get the warning."""
    return np.asarray(scores, dtype=np.float64) > float(threshold)


def network_outputs(model, V: np.ndarray, F: np.ndarray, layer=-1, cache_dir=None):
    """One mesh through a loaded model (:class:`meshgdl.pretrained.LoadedModel`): its
    geometry by :func:`meshgdl.data.batching.prepare` as in ``LoadedModel.predict``.
    Returns ``(logits, features, mass)``: ``logits (n, C)`` (``(1, C)`` for a classifier),
    the invariant per-vertex ``features (n, D)`` after ``layer``
    (``model.model.features``; -1: the summary the head sees; a list of layers gives a
    list of arrays) and the vertex areas ``mass (n,)``, all float64 numpy."""
    import torch

    from meshgdl.data.batching import collate_samples, prepare

    sample = prepare(V, F, model.config, cache_dir=cache_dir)
    with torch.no_grad():
        batch = collate_samples([sample], device=model.device, dtype=torch.float32)
        logits = model.model(batch).double().cpu().numpy()
        layers = [layer] if np.isscalar(layer) else list(layer)
        feats = [model.model.features(batch, int(l)).double().cpu().numpy() for l in layers]
        feats = feats[0] if np.isscalar(layer) else feats
        mass = batch.mass.double().cpu().numpy()
    return logits, feats, mass


def mesh_outputs(model, V: np.ndarray, F: np.ndarray, layer=-1, min_vertices: int | None = None, cache_dir=None):
    """A working mesh through a loaded segmentation model the way the segment pipeline
    runs it: every component that :func:`meshgdl.segmentation.model_components` sends to
    the model as a mesh of its own (:func:`network_outputs`; ``min_vertices``: None for
    the pipeline's). Returns ``(logits (k, C), features (k, D) or a list, weights (k,),
    index (k,))`` for the ``k`` vertices of those components: ``index`` their rows in
    ``V``, ``weights`` their vertex areas on the whole mesh (so every component counts by
    its area). The smaller components, which the pipeline labels from their neighbours,
    are left out."""
    from meshgdl.geometry.normals import vertex_areas
    from meshgdl.segmentation import MIN_MODEL_VERTICES, model_components  # same layer: imported late

    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    if min_vertices is None:
        min_vertices = getattr(model, "min_component_vertices", MIN_MODEL_VERTICES)
    parts, _, _ = model_components(F, len(V), min_vertices)
    area = vertex_areas(V, F)
    zs, fs, idxs = [], [], []
    for idx, Fc in parts:
        z, f, _ = network_outputs(model, V[idx], Fc, layer=layer, cache_dir=cache_dir)
        zs.append(z)
        fs.append([f] if np.isscalar(layer) else f)
        idxs.append(idx)
    index = np.concatenate(idxs)
    feats = [np.concatenate([f[j] for f in fs]) for j in range(len(fs[0]))]
    return np.concatenate(zs), feats[0] if np.isscalar(layer) else feats, area[index], index

__all__ = ["LOGIT_SCORES", "FEATURE_SCORES", "PROBABILITY_SCORES", "MIN_PART_SHARE", "logit_scores",
           "probability_score", "weighted_median", "part_scores", "OODRule", "assess", "pooled_features", "FeatureReference",
           "fit_threshold", "flagged", "network_outputs", "mesh_outputs"]
