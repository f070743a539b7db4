"""What to draw, as plain numpy: coloured mesh, isolines, tangent glyphs, gauge
frames, wireframe and the legend. Shared by the headless renderer and the window.

:class:`ViewerModel` holds the deformation frames, the feature list and the UI state
(frame, feature, channel, toggles) and turns the current state into a
:class:`FrameScene`; :mod:`meshgdl_viewer.render` only converts that to Open3D objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .colormaps import apply_colormap, label_rgb
from .features import Feature, TangentFeature, ViewerError, gradient_tangent


# ---------------------------------------------------------------- geometry of lines
def isoline_segments(V: np.ndarray, F: np.ndarray, f: np.ndarray, levels):
    """Level sets of a piecewise-linear function by marching triangles.

    Parameters
    ----------
    V : (n, 3) float64, F : (m, 3) int64, f : (n,) float64 values at vertices.
    levels : iterable of float.

    Returns
    -------
    P : (s, 2, 3) float64 segment end points. Each triangle whose corners straddle a
        level (some ``f >= level``, some below) gives one segment per level, its ends
        on the two crossed edges at the linearly interpolated crossing.
    faces : (s,) int64 triangle of each segment.
    W : (s, 2, 3) float64 weights of the end points over that triangle's corners
        (``P = W @ V[F[faces]]``), to interpolate any per-vertex attribute the same way.
    """
    V = np.asarray(V, np.float64)
    F = np.asarray(F, np.int64)
    f = np.asarray(f, np.float64)
    fv = f[F]  # (m, 3)
    valid = np.isfinite(fv).all(axis=1)  # faces touching a NaN value have no level set
    out_f, out_w = [], []
    for lv in np.atleast_1d(np.asarray(levels, np.float64)):
        above = fv >= lv
        cnt = above.sum(axis=1)
        faces = np.flatnonzero(((cnt == 1) | (cnt == 2)) & valid)
        if len(faces) == 0:
            continue
        ends = np.full((len(faces), 3, 3), np.nan)  # (face, edge, corner weight)
        for e, (i, j) in enumerate(((0, 1), (1, 2), (2, 0))):
            cross = above[faces, i] != above[faces, j]
            fi, fj = fv[faces, i], fv[faces, j]
            t = (lv - fi[cross]) / (fj[cross] - fi[cross])
            ends[cross, e] = 0.0
            ends[cross, e, i] = 1.0 - t
            ends[cross, e, j] = t
        # exactly two of the three edges are crossed; move them to the front
        order = np.argsort(~np.isfinite(ends[:, :, 0]), axis=1, kind="stable")[:, :2]
        out_w.append(np.take_along_axis(ends, order[:, :, None], axis=1))
        out_f.append(faces)
    if not out_f:
        return np.zeros((0, 2, 3)), np.zeros(0, np.int64), np.zeros((0, 2, 3))
    faces = np.concatenate(out_f)
    W = np.concatenate(out_w)
    return np.einsum("kec,kcd->ked", W, V[F[faces]]), faces, W


def interpolate_on_segments(F: np.ndarray, faces: np.ndarray, W: np.ndarray, attr: np.ndarray) -> np.ndarray:
    """Per-vertex ``attr (n, d)`` interpolated to isoline end points -> ``(s, 2, d)``."""
    return np.einsum("kec,kcd->ked", W, np.asarray(attr)[np.asarray(F)[faces]])


def unique_edges(F: np.ndarray) -> np.ndarray:
    """``(E, 2)`` int64 undirected edges of a triangle mesh, each once."""
    F = np.asarray(F, np.int64)
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def glyph_segments(V: np.ndarray, frames: np.ndarray, coeffs: np.ndarray, order: int,
                   lengths: np.ndarray, head: float = 0.3) -> np.ndarray:
    """Segments ``(s, 2, 3)`` drawing a rho_``order`` tangent feature.

    Parameters
    ----------
    V : (k, 3) glyph base points; frames : (k, 3, 3) rows ``e1, e2, normal``;
    coeffs : (k, 2) gauge coefficients ``(a, b)``; lengths : (k,) ray lengths.

    A rho_n value points (n-fold symmetrically) at angles ``(atan2(b, a) + 2 pi j) / n``
    from ``e1``, counter-clockwise about the normal. Order 1 gets an arrow head
    (two barbs of ``head`` times the length, in the tangent plane).
    """
    phi = np.arctan2(coeffs[:, 1], coeffs[:, 0]) / order
    segs = []
    e1, e2 = frames[:, 0], frames[:, 1]
    for j in range(order):
        a = phi + 2.0 * np.pi * j / order
        d = np.cos(a)[:, None] * e1 + np.sin(a)[:, None] * e2
        tip = V + lengths[:, None] * d
        segs.append(np.stack([V, tip], axis=1))
        if order == 1:
            side = np.cos(a + np.pi / 2)[:, None] * e1 + np.sin(a + np.pi / 2)[:, None] * e2
            for sgn in (1.0, -1.0):
                barb = -np.cos(np.pi / 7) * d + sgn * np.sin(np.pi / 7) * side
                segs.append(np.stack([tip, tip + head * lengths[:, None] * barb], axis=1))
    return np.concatenate(segs) if segs else np.zeros((0, 2, 3))


def spread_subset(V: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``min(k, n)`` vertices spread evenly over ``V`` (farthest-point
    sampling from vertex 0, deterministic), so glyphs do not clump."""
    n = len(V)
    if k >= n:
        return np.arange(n)
    idx = np.empty(k, dtype=np.int64)
    idx[0] = 0
    d = np.linalg.norm(V - V[0], axis=1)
    for i in range(1, k):
        idx[i] = int(np.argmax(d))
        d = np.minimum(d, np.linalg.norm(V - V[idx[i]], axis=1))
    return np.sort(idx)


# ---------------------------------------------------------------- scene containers
@dataclass
class Style:
    """How to draw. Sizes in pixels; colours sRGB in [0, 1]."""

    width: int = 800
    height: int = 600
    shading: str = "lit"  # "lit" (shaded) or "flat" (exact colours, no lighting)
    background: tuple = (1.0, 1.0, 1.0)
    wireframe: bool = False
    arrows: bool = False
    gauge_frames: bool = False
    isolines: int | None = None  # number of isoline bands; None: 12 for geodesic distance, else 0
    legend: bool = True
    legend_width: int | None = None  # pixels; None: colormaps.legend_width(width)
    caption: bool = True
    max_glyphs: int | None = None  # None: about one glyph per 26x26 pixels
    cmap: str | None = None  # None: viridis for scalar features, coolwarm for signed ones
    line_width: float = 1.5
    arrow_color: tuple = (1.0, 1.0, 1.0)  # light: isolines are dark, so glyphs stay distinct

    def __post_init__(self):
        if self.shading not in ("lit", "flat"):
            raise ViewerError(f"shading must be 'lit' or 'flat', got {self.shading!r}")
        if self.width < 32 or self.height < 32 or self.width > 8192 or self.height > 8192:
            raise ViewerError(f"image size {self.width}x{self.height} out of range (32..8192)")


@dataclass
class LineLayer:
    name: str
    segments: np.ndarray  # (s, 2, 3)
    color: tuple
    width: float


@dataclass
class Legend:
    kind: str  # "colorbar" | "labels"
    title: str
    vmin: float = 0.0
    vmax: float = 1.0
    cmap: str = "viridis"
    levels: np.ndarray | None = None
    classes: np.ndarray | None = None  # labels: the values present, sorted (swatch colours: label_rgb)
    names: list | None = None  # labels: a name per entry of ``classes``


@dataclass
class FrameScene:
    V: np.ndarray
    F: np.ndarray
    colors: np.ndarray  # (n, 3) sRGB per vertex
    normals: np.ndarray
    lines: list = field(default_factory=list)
    legend: Legend | None = None
    caption: str = ""
    label_cells: bool = False  # labels: each vertex's barycentric cell in its colour (render.label_cells)


def parse_size(text: str) -> tuple[int, int]:
    """``"800x600"`` -> ``(800, 600)``."""
    try:
        w, h = (int(s) for s in str(text).lower().split("x"))
    except ValueError:
        raise ViewerError(f"size must look like 800x600, got {text!r}") from None
    if not (32 <= w <= 8192 and 32 <= h <= 8192):
        raise ViewerError(f"image size {w}x{h} out of range (32..8192)")
    return w, h


# ---------------------------------------------------------------- the model
class ViewerModel:
    """Frames + features + UI state -> :class:`FrameScene`.

    Parameters
    ----------
    frames : (T, n, 3) float64 vertex positions sharing ``F``.
    F : (m, 3) int64.
    features : list of :class:`Feature` (cycled by next/previous feature).
    style : :class:`Style`.
    tangent : optional :class:`TangentFeature` drawn as glyphs when ``style.arrows``;
        default: the intrinsic gradient of the shown channel (a rho_1 field).
    deform_name : shown in the caption.
    frame_numbers, total_frames : where ``frames`` come from in a longer sequence
        (``(T,)`` 0-based frame numbers of a file of ``total_frames``); the caption counts
        in the file's frames. Default: ``frames`` are the whole sequence.
    """

    def __init__(self, frames, F, features, style: Style | None = None, *,
                 tangent: TangentFeature | None = None, channel: int = 0, feature_index: int = 0,
                 deform_name: str = "", frame_numbers=None, total_frames: int | None = None):
        frames = np.asarray(frames, np.float64)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3 or frames.shape[2] != 3 or len(frames) == 0:
            raise ViewerError(f"frames must have shape (T, n, 3), got {frames.shape}")
        if not features:
            raise ViewerError("no feature to show")
        self.frames = frames
        self.F = np.asarray(F, np.int64)
        self.features = list(features)
        self.style = style or Style()
        self.tangent = tangent
        self.deform_name = deform_name
        self.frame_numbers = (np.arange(len(frames)) if frame_numbers is None
                              else np.asarray(frame_numbers, np.int64))
        self.total_frames = int(len(frames) if total_frames is None else total_frames)
        if self.frame_numbers.shape != (len(frames),):
            raise ViewerError(f"{len(self.frame_numbers)} frame numbers for {len(frames)} frames")
        self.frame = 0
        self.feature_index = feature_index % len(self.features)
        self.channel = 0
        self._values: dict = {}
        self._gauges: dict = {}
        self._glyph_idx = None
        nc = self.num_channels
        if not 0 <= channel < nc:
            raise ViewerError(f"channel {channel} out of range: {self.feature.name} has {nc} channel(s)")
        self.channel = channel
        # Glyph/line scale follows the rest shape so it stays fixed during playback.
        e = unique_edges(self.F)
        self.edge_length = float(np.mean(np.linalg.norm(frames[0][e[:, 0]] - frames[0][e[:, 1]], axis=1)))
        lo, hi = frames.reshape(-1, 3).min(0), frames.reshape(-1, 3).max(0)
        self.diagonal = float(np.linalg.norm(hi - lo))

    # -- state
    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def feature(self) -> Feature:
        return self.features[self.feature_index]

    def all_values(self) -> np.ndarray:
        """``(T, n, C)`` values of the current feature on every frame (cached)."""
        key = self.feature_index
        if key not in self._values:
            self._values[key] = self.feature.frames(self.frames, self.F)
        return self._values[key]

    @property
    def num_channels(self) -> int:
        return self.all_values().shape[2]

    def set_frame(self, t: int) -> None:
        self.frame = int(t) % self.num_frames

    def step_frame(self, d: int = 1) -> None:
        self.set_frame(self.frame + d)

    def step_channel(self, d: int = 1) -> None:
        self.channel = (self.channel + d) % self.num_channels

    def step_feature(self, d: int = 1) -> None:
        self.feature_index = (self.feature_index + d) % len(self.features)
        self.channel = min(self.channel, self.num_channels - 1)

    def toggle(self, what: str) -> None:
        if what not in ("arrows", "gauge_frames", "wireframe", "legend"):
            raise ViewerError(f"cannot toggle {what!r}")
        setattr(self.style, what, not getattr(self.style, what))

    def toggle_isolines(self) -> None:
        self.style.isolines = 0 if self.num_isolines() else 12

    # -- derived quantities
    def channel_values(self) -> np.ndarray:
        """``(T, n)`` current channel over all frames."""
        return self.all_values()[:, :, self.channel]

    def cmap(self) -> str:
        if self.style.cmap:
            return self.style.cmap
        return "coolwarm" if self.feature.kind == "signed" else "viridis"

    def value_range(self) -> tuple[float, float]:
        """Colour range shared by all frames (symmetric about 0 for signed features),
        so a colour means the same value in every frame."""
        v = self.channel_values()
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        if self.feature.kind == "signed":
            m = max(abs(lo), abs(hi))
            return -m, m
        return lo, hi

    def num_isolines(self) -> int:
        if self.style.isolines is not None:
            return int(self.style.isolines)
        return 12 if self.feature.name == "geodesic" else 0

    def isoline_levels(self) -> np.ndarray:
        k = self.num_isolines()
        lo, hi = self.value_range()
        if k <= 0 or self.feature.kind == "labels" or not hi > lo:
            return np.zeros(0)
        return lo + (hi - lo) * np.arange(1, k) / k

    def gauges(self, t: int):
        if t not in self._gauges:
            from meshgdl.geometry.gauges import compute_gauges

            self._gauges[t] = compute_gauges(self.frames[t], self.F)
        return self._gauges[t]

    def glyph_indices(self) -> np.ndarray:
        if self._glyph_idx is None:
            k = self.style.max_glyphs or int(np.clip(self.style.width * self.style.height / 700, 50, 3000))
            self._glyph_idx = spread_subset(self.frames[0], k)
        return self._glyph_idx

    def tangent_feature(self) -> TangentFeature | None:
        if self.tangent is not None:
            return self.tangent
        if self.feature.kind == "labels":
            return None
        return gradient_tangent(self.feature, self.channel)

    def colors(self, t: int | None = None) -> np.ndarray:
        """``(n, 3)`` vertex colours of frame ``t`` (labels: their value's colour)."""
        t = self.frame if t is None else t
        vals = self.all_values()[t, :, self.channel]
        if self.feature.kind == "labels":
            # colour by label value (meshgdl.colors), as segment's PLY and the legend do
            return label_rgb(np.asarray(vals, dtype=np.int64))
        lo, hi = self.value_range()
        return apply_colormap(vals, lo, hi, self.cmap())

    def legend(self) -> Legend:
        title = self.feature.channel_name(self.channel, self.num_channels)
        if self.feature.kind == "labels":
            classes = np.unique(np.asarray(self.channel_values()).ravel().astype(np.int64))
            cn = self.feature.class_names
            names = None if not cn else [cn[c] if 0 <= c < len(cn) else "" for c in classes.tolist()]
            return Legend("labels", title, classes=classes, names=names)
        lo, hi = self.value_range()
        return Legend("colorbar", title, vmin=lo, vmax=hi, cmap=self.cmap(), levels=self.isoline_levels())

    def caption(self, t: int | None = None) -> str:
        t = self.frame if t is None else t
        name = self.feature.channel_name(self.channel, self.num_channels)
        parts = [f"{name} {self.feature.detail}" if self.feature.detail else name]
        parts.append("intrinsic" if self.feature.intrinsic else "extrinsic (not invariant)")
        if self.num_frames > 1:
            parts.append(f"frame {self.frame_label(t)}" + (f" ({self.deform_name})" if self.deform_name else ""))
        return " | ".join(parts)

    def frame_label(self, t: int) -> str:
        """``"12/88"``: frame ``t``'s number in its sequence (1-based) over the sequence's length."""
        return f"{int(self.frame_numbers[t]) + 1}/{self.total_frames}"

    def scene(self, t: int | None = None) -> FrameScene:
        """Everything to draw for frame ``t`` (default: the current frame)."""
        from meshgdl.geometry.normals import vertex_normals

        t = self.frame if t is None else int(t)
        V = self.frames[t]
        N = vertex_normals(V, self.F)
        lift = 2e-3 * self.diagonal  # lines sit just above the surface (no z-fighting)
        lines = []
        levels = self.isoline_levels()
        if len(levels):
            P, faces, W = isoline_segments(V, self.F, self.channel_values()[t], levels)
            P = P + lift * interpolate_on_segments(self.F, faces, W, N)
            lines.append(LineLayer("isolines", P, (0.08, 0.08, 0.08), self.style.line_width))
        if self.style.wireframe:
            e = unique_edges(self.F)
            P = np.stack([V[e[:, 0]] + lift * N[e[:, 0]], V[e[:, 1]] + lift * N[e[:, 1]]], axis=1)
            lines.append(LineLayer("wireframe", P, (0.15, 0.15, 0.15), 1.0))
        if self.style.arrows or self.style.gauge_frames:
            idx = self.glyph_indices()
            g = self.gauges(t)
            base = V[idx] + lift * N[idx]
            fr = g.frames[idx]
            size = 1.2 * self.edge_length * max(1.0, np.sqrt(len(V) / max(len(idx), 1)) * 0.7)
            if self.style.gauge_frames:
                ones = np.full(len(idx), 0.6 * size)
                lines.append(LineLayer("e1", glyph_segments(base, fr, np.tile([1.0, 0.0], (len(idx), 1)), 1, ones, head=0.0)[: len(idx)],
                                       (0.85, 0.1, 0.1), self.style.line_width))
                lines.append(LineLayer("e2", glyph_segments(base, fr, np.tile([0.0, 1.0], (len(idx), 1)), 1, ones, head=0.0)[: len(idx)],
                                       (0.1, 0.6, 0.15), self.style.line_width))
            tf = self.tangent_feature() if self.style.arrows else None
            if tf is not None:
                coeffs = np.asarray(tf.compute(V, self.F, g), np.float64)
                if coeffs.shape != (len(V), 2):
                    raise ViewerError(f"tangent feature {tf.name!r} returned shape {coeffs.shape}, expected ({len(V)}, 2)")
                mag = np.hypot(coeffs[idx, 0], coeffs[idx, 1])
                scale = self._glyph_norm(tf)
                lengths = size * np.clip(mag / scale, 0.0, 1.0) if scale > 0 else np.zeros(len(idx))
                keep = np.isfinite(lengths) & (lengths > 1e-3 * size)
                P = glyph_segments(base[keep], fr[keep], coeffs[idx][keep], tf.order, lengths[keep])
                lines.append(LineLayer("arrows", P, self.style.arrow_color, self.style.line_width))
        return FrameScene(V, self.F, self.colors(t), N, lines,
                          self.legend() if self.style.legend else None,
                          self.caption(t) if self.style.caption else "",
                          label_cells=self.feature.kind == "labels")

    def _glyph_norm(self, tf: TangentFeature) -> float:
        """Largest glyph magnitude over all frames (a robust 98th percentile), so a
        glyph's length means the same in every frame."""
        key = ("glyph", id(tf) if self.tangent is not None else (self.feature_index, self.channel))
        if key not in self._values:
            idx = self.glyph_indices()
            mags = []
            for t in range(self.num_frames):
                c = np.asarray(tf.compute(self.frames[t], self.F, self.gauges(t)), np.float64)[idx]
                mags.append(np.hypot(c[:, 0], c[:, 1]))
            allm = np.concatenate(mags) if mags else np.zeros(0)
            allm = allm[np.isfinite(allm)]
            self._values[key] = float(np.percentile(allm, 98)) if len(allm) else 0.0
        return self._values[key]
