"""Evaluation metrics from a confusion matrix; calibration (temperature scaling, ECE,
reliability bins) and ROC AUC of per-mesh scores.

Everything is computed from one ``(C, C)`` int64 confusion matrix ``cm`` with
``cm[true, pred]`` counts, so per-batch results can be summed (also across DDP
ranks) and the metrics of a whole split are exact, not averages of batch averages.

Conventions
-----------
* Targets equal to ``ignore_index`` (default -1, "unlabelled") are left out.
* Accuracy is the fraction of counted items (vertices or meshes) predicted right.
* IoU of class c is ``TP / (TP + FP + FN)``; it is ``nan`` for a class that occurs
  neither in the targets nor in the predictions (undefined, not 0 or 1), and the
  mean IoU averages the defined ones only.
"""

from __future__ import annotations

import math

import numpy as np

from meshgdl.data.labels import IGNORE_INDEX, frame_majority


def confusion_matrix(pred, target, n_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Confusion matrix ``(n_classes, n_classes)`` int64, rows = true class, columns = prediction.

    pred, target: integer arrays of the same shape (numpy or torch). Targets equal to
    ``ignore_index`` are skipped; any other value outside ``[0, n_classes)`` raises
    ``ValueError``.
    """
    pred = _as_numpy(pred).astype(np.int64, copy=False).ravel()
    target = _as_numpy(target).astype(np.int64, copy=False).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in size: {pred.size} vs {target.size}")
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    for nm, a in (("target", target), ("pred", pred)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            bad = a[(a < 0) | (a >= n_classes)][0]
            raise ValueError(f"{nm} value {int(bad)} outside [0, {n_classes})")
    return np.bincount(target * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_matrix_torch(pred, target, n_classes: int, ignore_index: int = IGNORE_INDEX):
    """Same as :func:`confusion_matrix` but stays on the tensors' device (no host sync)."""
    import torch

    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = target != ignore_index
    idx = target[keep] * n_classes + pred[keep]
    return torch.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(cm: np.ndarray) -> float:
    """Fraction of correct predictions; ``nan`` for an empty matrix."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else math.nan


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """(C,) float64 IoU per class; ``nan`` where the class is absent from targets and predictions."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of the defined per-class IoUs (``nan`` if none is defined)."""
    iou = per_class_iou(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """(C,) recall of each class; ``nan`` for classes absent from the targets."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.where(support > 0, support, 1), np.nan)


def _nan_to_none(a) -> list:
    return [None if not np.isfinite(x) else float(x) for x in np.asarray(a, dtype=np.float64)]


def segmentation_metrics(cm: np.ndarray, class_names: list[str] | None = None) -> dict:
    """JSON-ready metrics of a per-vertex (or per-face) segmentation.

    Keys: ``accuracy``, ``mean_iou``, ``mean_class_accuracy``, ``per_class_iou``
    (list, ``None`` for undefined), ``support`` (targets per class), ``count``.
    """
    cm = np.asarray(cm)
    pca = per_class_accuracy(cm)
    out = {
        "accuracy": accuracy(cm),
        "mean_iou": mean_iou(cm),
        "mean_class_accuracy": float(np.nanmean(pca)) if np.isfinite(pca).any() else math.nan,
        "per_class_iou": _nan_to_none(per_class_iou(cm)),
        "support": [int(s) for s in cm.sum(1)],
        "count": int(cm.sum()),
    }
    if class_names is not None:
        out["class_names"] = list(class_names)
    return out


def classification_metrics(cm: np.ndarray, class_names: list[str] | None = None) -> dict:
    """JSON-ready metrics of mesh classification: ``accuracy``, ``mean_class_accuracy``,
    ``per_class_accuracy``, ``confusion_matrix`` (rows true, columns predicted), ``count``."""
    cm = np.asarray(cm)
    pca = per_class_accuracy(cm)
    out = {
        "accuracy": accuracy(cm),
        "mean_class_accuracy": float(np.nanmean(pca)) if np.isfinite(pca).any() else math.nan,
        "per_class_accuracy": _nan_to_none(pca),
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "count": int(cm.sum()),
    }
    if class_names is not None:
        out["class_names"] = list(class_names)
    return out


def task_metrics(task: str, cm: np.ndarray, class_names: list[str] | None = None) -> dict:
    if task == "segmentation":
        return segmentation_metrics(cm, class_names)
    if task == "classification":
        return classification_metrics(cm, class_names)
    raise ValueError(f"unknown task {task!r}; expected 'segmentation' or 'classification'")


def temporal_consistency(frame_labels, ignore_index: int = IGNORE_INDEX) -> dict:
    """How steady per-frame labels ``(T, n)`` of one deforming mesh are.

    * ``majority_agreement``: share of (vertex, frame) labels equal to that vertex's
      most frequent label over the frames (ties: the smallest label);
    * ``never_changing``: share of vertices with one label in every frame;
    * ``flips_per_frame``: mean share of vertices whose label differs from the previous
      frame's (0 for a single frame).

    Vertices labelled ``ignore_index`` in any frame are left out.
    """
    L = np.asarray(frame_labels)
    if L.ndim != 2 or L.shape[0] == 0:
        raise ValueError(f"frame_labels must have shape (T >= 1, n), got {L.shape}")
    L = L[:, ~np.any(L == ignore_index, axis=0)].astype(np.int64)
    T, n = L.shape
    if n == 0:
        return {"frames": int(T), "vertices": 0, "majority_agreement": float("nan"),
                "never_changing": float("nan"), "flips_per_frame": float("nan")}
    majority = frame_majority(L, ignore_index)
    return {
        "frames": int(T),
        "vertices": int(n),
        "majority_agreement": float((L == majority).mean()),
        "never_changing": float((L == L[0]).all(axis=0).mean()),
        "flips_per_frame": float((L[1:] != L[:-1]).mean()) if T > 1 else 0.0,
    }


def edge_length_variation(frame_lengths) -> np.ndarray:
    """How far from isometric a motion is: ``frame_lengths (T, e)``, every edge's length
    in every frame -> ``(e,)`` each edge's standard deviation over the frames relative to
    its mean length (0 for an isometric motion)."""
    R = np.asarray(frame_lengths, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] == 0:
        raise ValueError(f"frame_lengths must have shape (T >= 1, e), got {R.shape}")
    return R.std(axis=0) / np.maximum(R.mean(axis=0), np.finfo(float).tiny)


def feature_drift(frame_values, constant_rtol: float = 1e-12) -> dict:
    """How much per-vertex features ``(T, n, C)`` of one deforming mesh move over its
    frames, relative to how much they vary over the surface.

    Vertex ``i`` must be the same surface point in every frame (fixed connectivity, or
    one working mesh replayed on every pose), and the channels must be quantities that
    mean the same in every frame (gauge-invariant ones: scalars, norms of rho_n blocks;
    not the raw components of a rho_n feature, nor signed eigenfunctions). Per channel
    ``c``, with ``qbar_i`` the mean of ``q_ti`` over the frames, ``mu_t`` its mean over
    the vertices and ``S_c = mean_(t,i) (q_ti - mu_t)^2`` the spread over the surface:

    * ``drift_c = sqrt(mean_(t,i) (q_ti - qbar_i)^2 / S_c)``: the temporal variation
      about each vertex's mean, against the spatial variation;
    * ``step_c = sqrt(mean_(t>=1,i) (q_ti - q_(t-1)i)^2 / (2 S_c))``: the same for
      consecutive frames.

    Both are 0 for features that ride on the surface and about 1 (``drift``:
    ``sqrt(1 - 1/T)``) for values redrawn at random every frame; neither changes under
    an offset or a rescaling of a channel. The summary ``drift`` / ``step`` is the root
    mean square over channels (every channel weighs the same, whatever its units);
    channels whose spread is at most ``constant_rtol`` times their own mean square
    (constant channels, e.g. a ReLU that never fires) are left out and counted in
    ``constant_channels``; ``drift_median`` is the median channel's drift (one
    ill-conditioned channel moves the mean square, not the median).
    ``relative_to_norm`` is ``sqrt(sum (q_ti - qbar_i)^2 / sum q_ti^2)`` over all
    channels together (offset- and scale-dependent, for reference).
    """
    Q = np.asarray(frame_values, dtype=np.float64)
    if Q.ndim == 2:
        Q = Q[:, :, None]
    if Q.ndim != 3 or Q.shape[0] < 1 or Q.shape[1] < 2:
        raise ValueError(f"frame_values must have shape (T >= 1, n >= 2, C), got {Q.shape}")
    if not np.all(np.isfinite(Q)):
        raise ValueError("frame_values contains NaN or infinite values")
    T, n, C = Q.shape
    spread = ((Q - Q.mean(axis=1, keepdims=True)) ** 2).mean(axis=(0, 1))
    temporal = ((Q - Q.mean(axis=0, keepdims=True)) ** 2).mean(axis=(0, 1))
    steps = ((Q[1:] - Q[:-1]) ** 2).mean(axis=(0, 1)) if T > 1 else np.zeros(C)
    live = (spread > 0) & (spread > constant_rtol * (Q**2).mean(axis=(0, 1)))
    d = np.sqrt(temporal[live] / spread[live])
    s = np.sqrt(steps[live] / (2.0 * spread[live]))
    total = float((Q**2).sum())
    return {
        "frames": int(T),
        "vertices": int(n),
        "channels": int(live.sum()),
        "constant_channels": int(C - live.sum()),
        "drift": float(np.sqrt(np.mean(d**2))) if live.any() else float("nan"),
        "step": float(np.sqrt(np.mean(s**2))) if live.any() else float("nan"),
        "drift_median": float(np.median(d)) if live.any() else float("nan"),
        "drift_per_channel": [float(x) for x in d],
        "relative_to_norm": float(np.sqrt(temporal.sum() * T * n / total)) if total > 0 else float("nan"),
    }


# --------------------------------------------------------------------------- calibration


def _check_logits_labels(logits, labels, ignore_index: int):
    z = _as_numpy(logits).astype(np.float64, copy=False)
    y = _as_numpy(labels).astype(np.int64, copy=False).ravel()
    if z.ndim != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(f"expected logits (N, C) and labels (N,), got {z.shape} and {y.shape}")
    keep = y != ignore_index
    z, y = z[keep], y[keep]
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"label value {int(y[(y < 0) | (y >= z.shape[1])][0])} outside [0, {z.shape[1]})")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinite values")
    return z, y


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(logits / temperature)`` along the last axis, float64 (stable)."""
    z = _as_numpy(logits).astype(np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` along the last axis, float64."""
    return np.exp(log_softmax(logits, temperature))


def temper(probs, temperature: float) -> np.ndarray:
    """``softmax(z / T)`` from ``probs = softmax(z)`` (rows along the last axis), float64:
    ``p^(1/T)`` renormalised, so a pipeline can apply a fitted temperature to the
    probabilities it already has. Zero probabilities stay zero; ``T = 1`` returns a copy."""
    p = np.asarray(probs, dtype=np.float64)
    T = float(temperature)
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if T == 1.0:
        return p.copy()
    with np.errstate(divide="ignore"):
        z = np.log(p) / T
    z = z - z.max(axis=-1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(axis=-1, keepdims=True)


def temperature_nll(logits, labels, temperature: float, ignore_index: int = IGNORE_INDEX) -> float:
    """Mean negative log-likelihood (nats) of ``labels`` under ``softmax(logits / T)``;
    labels equal to ``ignore_index`` are left out."""
    z, y = _check_logits_labels(logits, labels, ignore_index)
    if not y.size:
        return math.nan
    return float(-log_softmax(z, temperature)[np.arange(y.size), y].mean())


def fit_temperature(logits, labels, ignore_index: int = IGNORE_INDEX,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature scaling (Guo et al. 2017): the ``T`` in ``bounds`` minimising the mean
    negative log-likelihood of ``softmax(logits / T)`` on held-out ``logits (N, C)``,
    ``labels (N,)`` (rows labelled ``ignore_index`` left out).

    The NLL is convex in ``1 / T`` (a log-sum-exp minus a linear term), so a bounded
    golden-section search over ``log T`` finds the global minimum; a minimum at a bound
    returns the bound. Argmax predictions (hence accuracy) do not change with ``T``.
    Raises ValueError without labelled rows or with NaN / infinite logits.
    """
    from scipy.optimize import minimize_scalar

    z, y = _check_logits_labels(logits, labels, ignore_index)
    if not y.size:
        raise ValueError("fit_temperature: no labelled rows")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not 0 < lo < hi:
        raise ValueError(f"temperature bounds must satisfy 0 < lo < hi, got {bounds}")
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-log_softmax(z, math.exp(log_t))[rows, y].mean())

    res = minimize_scalar(nll, bounds=(math.log(lo), math.log(hi)), method="bounded",
                          options={"xatol": 1e-6})
    best = min((nll(math.log(lo)), lo), (nll(math.log(hi)), hi), (float(res.fun), math.exp(float(res.x))))
    return float(best[1])


def calibration_bins(probs, labels, n_bins: int = 15, ignore_index: int = IGNORE_INDEX) -> dict:
    """Reliability-diagram bins of class probabilities ``probs (N, C)`` against
    ``labels (N,)``: the confidence (max probability) of each labelled row falls in one of
    ``n_bins`` equal bins of ``(0, 1]`` (bin ``b`` = ``(b/n, (b+1)/n]``; 0 goes to the
    first). Returns ``edges (n_bins + 1,)``, per bin ``count``, mean ``confidence`` and
    ``accuracy`` (share whose argmax is the label; both ``nan`` for an empty bin), and
    ``total`` (labelled rows)."""
    p, y = _check_logits_labels(probs, labels, ignore_index)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = p.max(axis=1) if p.shape[0] else np.zeros(0)
    correct = (p.argmax(axis=1) == y).astype(np.float64) if p.shape[0] else np.zeros(0)
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "count": count, "confidence": mean_conf,
            "accuracy": acc, "total": int(y.size)}


def expected_calibration_error(probs, labels, n_bins: int = 15, ignore_index: int = IGNORE_INDEX) -> float:
    """ECE: ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over the bins of
    :func:`calibration_bins` (``nan`` without labelled rows)."""
    bins = calibration_bins(probs, labels, n_bins, ignore_index)
    if not bins["total"]:
        return math.nan
    c = bins["count"]
    live = c > 0
    gap = np.abs(bins["accuracy"][live] - bins["confidence"][live])
    return float((c[live] * gap).sum() / bins["total"])


def roc_auc(scores_in, scores_out) -> float:
    """Area under the ROC curve of a score meant to be higher on ``scores_out`` (e.g.
    out-of-distribution meshes) than on ``scores_in``: the probability that a random
    out-score exceeds a random in-score, ties counting one half (Mann-Whitney U with
    mid-ranks). 1: separable, 0.5: no better than chance. Raises ValueError for an empty
    side or NaN scores."""
    from scipy.stats import rankdata

    a = np.asarray(scores_in, dtype=np.float64).ravel()
    b = np.asarray(scores_out, dtype=np.float64).ravel()
    if not a.size or not b.size:
        raise ValueError(f"roc_auc needs scores on both sides, got {a.size} and {b.size}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("roc_auc: NaN scores")
    r = rankdata(np.concatenate([a, b]))  # average ranks of ties
    u = r[a.size:].sum() - b.size * (b.size + 1) / 2.0
    return float(u / (a.size * b.size))


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def json_safe(obj):
    """Copy of ``obj`` with NaN / inf floats replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj
