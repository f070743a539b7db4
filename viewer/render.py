"""Headless rendering (Open3D ``OffscreenRenderer`` over EGL) and export to
PNG / GIF / MP4 / a folder of PNG frames.

The 3D view is rendered by Filament; the legend (colour bar with min/max ticks, or
label swatches) and the caption are composed onto the image with Pillow, because
Open3D's offscreen renderer draws no 2D text.

Headless EGL needs the Debian packages ``libegl1 libgl1-mesa-dri`` and
``EGL_PLATFORM=surfaceless`` (set here when unset).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meshgdl.atomic import atomic_path

from .colormaps import (colorbar_panel, labels_panel, legend_width, srgb_to_linear,
                        text_strip)
from .deform import principal_axes
from .features import ViewerError
from .scene import FrameScene, Style, ViewerModel


class RenderUnavailable(RuntimeError):
    """Headless OpenGL (EGL) could not be initialised on this machine."""


# ---------------------------------------------------------------- camera
@dataclass
class Camera:
    center: np.ndarray
    eye: np.ndarray
    up: np.ndarray
    fov: float  # vertical field of view, degrees
    near: float
    far: float


def fit_camera(frames: np.ndarray, aspect: float, fov: float = 30.0,
               azimuth: float = 20.0, elevation: float = 12.0, margin: float = 0.06) -> Camera:
    """A fixed camera that keeps every frame of ``frames (T, n, 3)`` in view.

    Looks along the rest shape's smallest principal axis (at its broadest side), with
    the largest principal axis up, turned by ``azimuth`` / ``elevation`` degrees for
    depth; the distance is the smallest that fits every vertex of every frame inside
    the (``aspect`` = width / height) viewport, less a ``margin`` fraction. The camera
    does not move during playback, so motion on screen is the shape's.
    """
    frames = np.asarray(frames, np.float64)
    pts = frames.reshape(-1, 3)
    _, axes = principal_axes(frames.reshape(-1, frames.shape[-2], 3)[0])
    up0, view0 = axes[0], axes[2]
    side = np.cross(up0, view0)
    az, el = np.radians(azimuth), np.radians(elevation)
    d = np.cos(el) * (np.cos(az) * view0 + np.sin(az) * side) + np.sin(el) * up0  # towards the eye
    up = up0 - np.dot(up0, d) * d
    up /= np.linalg.norm(up)
    right = np.cross(up, d)
    tan_h = np.tan(np.radians(fov) / 2) * (1.0 - margin)
    tan_w = tan_h * aspect
    center = 0.5 * (pts.min(0) + pts.max(0))
    for _ in range(2):  # re-centre on the projected extent, then fit the distance
        X = pts - center
        x, y, z = X @ right, X @ up, X @ d
        center = center + right * 0.5 * (x.max() + x.min()) + up * 0.5 * (y.max() + y.min())
    X = pts - center
    x, y, z = X @ right, X @ up, X @ d
    dist = float(max(np.max(z + np.abs(x) / tan_w), np.max(z + np.abs(y) / tan_h), 1e-9))
    depth = float(z.max() - z.min()) + 1e-9
    near = max(dist - float(z.max()) - 0.05 * depth, dist * 1e-3)
    return Camera(center, center + dist * d, up, fov, near, dist - float(z.min()) + 0.05 * depth)


# ---------------------------------------------------------------- Open3D objects
def _o3d():
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


def label_cells(V: np.ndarray, F: np.ndarray, N: np.ndarray, C: np.ndarray):
    """A mesh that draws a per-vertex labelling as it is: each vertex's barycentric cell
    (the parts of its faces nearer to it than to the other corners: corner, two edge
    midpoints, centroid) in the vertex's colour, so part boundaries run through edge
    midpoints and face centroids -- the curve whose length the boundary refinement
    (:func:`meshgdl.data.labels.refine_labels`) measures -- not along whole faces, whose
    majority colours turn the sliver triangles of a fine scan into spikes.

    V, N: (n, 3) positions and unit normals; F: (m, 3); C: (n, 3) colours. Faces whose
    corners share a colour stay as they are; each other face becomes six triangles with
    their own vertices. Returns ``(V', F', N', C')``.
    """
    V, F, N, C = (np.asarray(a) for a in (V, F, N, C))
    mixed = ~((C[F[:, 0]] == C[F[:, 1]]).all(axis=1) & (C[F[:, 0]] == C[F[:, 2]]).all(axis=1))
    Fm = F[mixed]
    if not len(Fm):
        return V, F, N, C
    cen, ncen = V[Fm].mean(axis=1), N[Fm].mean(axis=1)
    pts, nrm, col = [], [], []
    for k in range(3):
        me, nx, pv = Fm[:, k], Fm[:, (k + 1) % 3], Fm[:, (k + 2) % 3]
        m1, m2 = 0.5 * (V[me] + V[nx]), 0.5 * (V[me] + V[pv])
        n1, n2 = 0.5 * (N[me] + N[nx]), 0.5 * (N[me] + N[pv])
        # (corner, midpoint to the next, centroid), (corner, centroid, midpoint to the previous): the face's winding
        pts += [np.stack([V[me], m1, cen], 1), np.stack([V[me], cen, m2], 1)]
        nrm += [np.stack([N[me], n1, ncen], 1), np.stack([N[me], ncen, n2], 1)]
        col += [np.repeat(C[me][:, None], 3, axis=1)] * 2
    P, Q, K = (np.concatenate(x).reshape(-1, 3) for x in (pts, nrm, col))
    Q /= np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
    newF = len(V) + np.arange(len(P)).reshape(-1, 3)
    return (np.concatenate([V, P]), np.concatenate([F[~mixed], newF]), np.concatenate([N, Q]),
            np.concatenate([C, K]))


def to_o3d(scene: FrameScene, shading: str = "lit"):
    """``[(name, geometry, material)]`` for a :class:`FrameScene` (shared with the window)."""
    o3d = _o3d()
    from open3d.visualization import rendering

    V, F, N, cols = (np.asarray(a) for a in (scene.V, scene.F, scene.normals, scene.colors))
    if scene.label_cells:
        V, F, N, cols = label_cells(V, F, N, cols)
    m = o3d.geometry.TriangleMesh()
    m.vertices = o3d.utility.Vector3dVector(V.astype(np.float64))
    m.triangles = o3d.utility.Vector3iVector(F.astype(np.int32))
    m.vertex_normals = o3d.utility.Vector3dVector(N.astype(np.float64))
    # The lit pipeline works in linear light and re-encodes to sRGB; the flat one is
    # rendered with post-processing off, so it takes sRGB as-is (exact colours).
    cols = srgb_to_linear(cols) if shading == "lit" else cols
    m.vertex_colors = o3d.utility.Vector3dVector(np.clip(cols, 0, 1))
    mat = rendering.MaterialRecord()
    mat.shader = "defaultLit" if shading == "lit" else "defaultUnlit"
    if shading == "lit":
        mat.base_roughness = 0.8
        mat.base_reflectance = 0.2
    out = [("mesh", m, mat)]
    for layer in scene.lines:
        if len(layer.segments) == 0:
            continue
        P = np.asarray(layer.segments, np.float64).reshape(-1, 3)
        ls = o3d.geometry.LineSet()
        ls.points = o3d.utility.Vector3dVector(P)
        ls.lines = o3d.utility.Vector2iVector(np.arange(len(P), dtype=np.int32).reshape(-1, 2))
        col = np.asarray(layer.color, np.float64)
        col = srgb_to_linear(col) if shading == "lit" else col
        ls.colors = o3d.utility.Vector3dVector(np.tile(col, (len(P) // 2, 1)))
        lm = rendering.MaterialRecord()
        lm.shader = "unlitLine"
        lm.line_width = float(layer.width)
        out.append((layer.name, ls, lm))
    return out


@contextlib.contextmanager
def _quiet_native_output():
    """Silence Filament/EGL's banner lines (printed by C++ straight to fds 1 and 2);
    on failure the captured text is attached to the exception."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException as exc:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sink.seek(0)
            exc.native_output = sink.read().decode(errors="replace")[-2000:]
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class OffscreenView:
    """One EGL offscreen renderer of ``width x height`` (the 3D part only)."""

    def __init__(self, width: int, height: int, shading: str = "lit", background=(1.0, 1.0, 1.0)):
        self._o3d = _o3d()
        from open3d.visualization import rendering

        try:
            with _quiet_native_output():
                self.renderer = rendering.OffscreenRenderer(int(width), int(height))
        except Exception as exc:
            raise RenderUnavailable(
                f"headless rendering unavailable ({' '.join(str(exc).split())[:200]}); "
                "install libegl1 and libgl1-mesa-dri"
            ) from None
        self.width, self.height, self.shading = int(width), int(height), shading
        sc = self.renderer.scene
        sc.set_background(list(background) + [1.0])
        if shading == "flat":
            sc.view.set_post_processing(False)
        else:
            sc.view.set_color_grading(rendering.ColorGrading(
                rendering.ColorGrading.Quality.HIGH, rendering.ColorGrading.ToneMapping.LINEAR))
            sc.set_lighting(rendering.Open3DScene.LightingProfile.NO_SHADOWS, np.array([0.3, -0.6, -0.75], np.float32))
        self._names: list[str] = []
        # Filament's output transform shifts the clear colour slightly (e.g. white ->
        # 248 grey with tone mapping); the 2D panels copy the real value so the
        # composed image has one uniform background.
        img = np.asarray(self.renderer.render_to_image())
        self.background = tuple(float(c) / 255.0 for c in img[0, 0])

    def render(self, scene: FrameScene, camera: Camera) -> np.ndarray:
        """``(height, width, 3) uint8`` image of ``scene`` seen from ``camera``."""
        sc = self.renderer.scene
        for name in self._names:
            sc.remove_geometry(name)
        self._names = []
        for name, geom, mat in to_o3d(scene, self.shading):
            sc.add_geometry(name, geom, mat)
            self._names.append(name)
        f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
        self.renderer.setup_camera(camera.fov, f32(camera.center), f32(camera.eye), f32(camera.up),
                                   camera.near, camera.far)
        return np.asarray(self.renderer.render_to_image()).copy()

    def close(self) -> None:
        self.renderer = None


# ---------------------------------------------------------------- composition
def layout(style: Style) -> dict:
    """Pixel layout of one output image: 3D viewport, legend panel, caption strip."""
    lw = (style.legend_width or legend_width(style.width)) if style.legend else 0
    ch = max(16, min(28, style.height // 22)) if style.caption else 0
    if style.width - lw < 16 or style.height - ch < 16:
        raise ViewerError(f"image size {style.width}x{style.height} leaves no room for the 3D view beside "
                          f"the legend ({lw} pixels) and caption; use a larger --size")
    return {"view_w": style.width - lw, "view_h": style.height - ch, "legend_w": lw, "caption_h": ch}


def legend_image(scene: FrameScene, width: int, height: int, background) -> np.ndarray:
    lg = scene.legend
    if lg.kind == "labels":
        return labels_panel(height, width, lg.classes, lg.title, background, names=lg.names)
    return colorbar_panel(height, width, lg.vmin, lg.vmax, lg.cmap, lg.title, background, lg.levels)


def compose(views: list[np.ndarray], scene: FrameScene, style: Style, tags: list[str] | None = None,
            background=None) -> np.ndarray:
    """Put one or more rendered views side by side, the legend on the right and the
    caption below. Returns ``(H, W, 3) uint8``. ``background`` (sRGB floats) paints
    the panels; default ``style.background``."""
    from PIL import Image, ImageDraw

    bg = style.background if background is None else background
    lay = layout(style)
    h = views[0].shape[0]
    row = np.concatenate(views, axis=1)
    if tags:
        im = Image.fromarray(row)
        draw = ImageDraw.Draw(im)
        from .colormaps import _font, _ink

        font = _font(max(10, min(16, h // 24)))
        for i, tag in enumerate(tags):
            draw.text((i * views[0].shape[1] + 6, 4), tag, fill=_ink(np.asarray(bg)), font=font)
        row = np.asarray(im)
    if lay["legend_w"] and scene.legend is not None:
        row = np.concatenate([row, legend_image(scene, lay["legend_w"], h, bg)], axis=1)
    if lay["caption_h"]:
        row = np.concatenate([row, text_strip(row.shape[1], lay["caption_h"], scene.caption, bg)], axis=0)
    return row


class HeadlessRenderer:
    """Renders a :class:`ViewerModel` to composed images (legend + caption).

    ``compare``: a second model on the same frames (:func:`meshgdl_viewer.session.compare_model`),
    drawn as a second panel from the same camera: :meth:`image` puts the two panels
    side by side (each titled with its feature), :meth:`strip` one above the other.
    """

    def __init__(self, model: ViewerModel, compare: ViewerModel | None = None):
        self.model = model
        self.models = [model] if compare is None else [model, compare]
        if compare is not None and compare.frames.shape != model.frames.shape:
            raise ViewerError("the compared feature must be shown on the same frames")
        lay = layout(model.style)
        self.view = OffscreenView(lay["view_w"], lay["view_h"], model.style.shading, model.style.background)
        self.camera = fit_camera(model.frames, lay["view_w"] / lay["view_h"])

    def render_view(self, t: int | None = None, model: ViewerModel | None = None) -> tuple[np.ndarray, FrameScene]:
        scene = (model or self.model).scene(t)
        return self.view.render(scene, self.camera), scene

    def image(self, t: int | None = None) -> np.ndarray:
        """The composed image of frame ``t``: ``(height, width * panels, 3) uint8``."""
        panels = []
        for m in self.models:
            view, scene = self.render_view(t, m)
            tags = [panel_title(m)] if len(self.models) > 1 else None
            panels.append(compose([view], scene, m.style, tags=tags, background=self.view.background))
        return np.concatenate(panels, axis=1)

    def strip(self, frames: list[int]) -> np.ndarray:
        """Several frames side by side sharing one legend (for a still of a deformation);
        with a compared feature, its row below (``(height * panels, ...)``)."""
        rows = []
        for m in self.models:
            views, scene = [], None
            for t in frames:
                v, scene = self.render_view(t, m)
                views.append(v)
            scene.caption = m.caption(frames[-1]).rsplit(" | frame", 1)[0] + (
                f" | frames {', '.join(m.frame_label(t).split('/')[0] for t in frames)} of {m.total_frames}"
                + (f" ({m.deform_name})" if m.deform_name else ""))
            tags = [f"t={m.frame_label(t).split('/')[0]}" for t in frames]
            rows.append(compose(views, scene, m.style, tags=tags, background=self.view.background))
        return np.concatenate(rows, axis=0)


def panel_title(model: ViewerModel) -> str:
    """Short title of a side-by-side panel: the shown channel and whether it is intrinsic."""
    f = model.feature
    return (f"{f.channel_name(model.channel, model.num_channels)}: "
            + ("intrinsic" if f.intrinsic else "extrinsic"))


# ---------------------------------------------------------------- export
def export_kind(path: str) -> str:
    """``png`` / ``gif`` / ``mp4`` / ``dir`` from an export path."""
    p = str(path)
    ext = Path(p).suffix.lower()
    if p.endswith(("/", os.sep)) or (Path(p).is_dir()) or ext == "":
        return "dir"
    if ext in (".png", ".gif", ".mp4"):
        return ext[1:]
    raise ViewerError(f"{path}: unsupported export type {ext!r}; use .png, .gif, .mp4 or a folder/")


def _save_png(img: np.ndarray, path) -> None:
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(img).save(tmp, format="PNG", optimize=True)


def _save_gif(images, path, fps: float) -> None:
    """``images``: an iterable of ``(H, W, 3) uint8`` frames, each turned into a
    palette image as it arrives (as Pillow's GIF writer would), so a long sequence is
    never held in memory as RGB."""
    from PIL import Image

    frames = [Image.fromarray(im).convert("P", palette=Image.Palette.ADAPTIVE) for im in images]
    with atomic_path(path, suffix=".gif") as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=int(round(1000 / fps)), loop=0, optimize=False)


def ffmpeg_executable() -> str | None:
    """An ffmpeg binary: imageio-ffmpeg's bundled one if installed, else one on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return shutil.which("ffmpeg")


def _save_mp4(images, path, fps: float) -> None:
    """``images``: an iterable of ``(H, W, 3) uint8`` frames, piped to ffmpeg (H.264,
    yuv420p) as they arrive."""
    exe = ffmpeg_executable()
    if exe is None:
        raise ViewerError("mp4 export needs ffmpeg (pip install imageio-ffmpeg, or an ffmpeg on PATH); "
                          "export a .gif instead")
    it = iter(images)
    first = next(it)
    h, w = first.shape[:2]
    # yuv420p (the format players accept) needs even sizes
    h2, w2 = h - h % 2, w - w % 2
    with atomic_path(path, suffix=".mp4") as tmp:
        cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w2}x{h2}",
               "-r", str(fps), "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", str(tmp)]
        with tempfile.TemporaryFile() as errf:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=errf)
            try:
                for im in itertools.chain([first], it):
                    proc.stdin.write(np.ascontiguousarray(im[:h2, :w2]).tobytes())
            except BrokenPipeError:
                pass  # ffmpeg stopped early: its message is reported below
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                rc = proc.wait()
            if rc != 0:
                errf.seek(0)
                err = errf.read().decode(errors="replace")
                raise ViewerError(f"ffmpeg failed: {' '.join(err.split())[:200]}")


def export(model: ViewerModel, path: str, fps: float = 12.0, strip_frames: int = 4,
           compare: ViewerModel | None = None, progress=None) -> list[Path]:
    """Render ``model`` headless and write ``path``; returns the files written.

    * ``.png``: one frame; for a deformation, ``strip_frames`` evenly spaced frames side
      by side (first to last) with one legend.
    * ``.gif`` / ``.mp4``: every frame, ``fps`` frames per second (mp4 needs ffmpeg:
      imageio-ffmpeg's bundled binary, or one on PATH).
    * a folder (trailing ``/`` or existing directory): ``frame_0000.png`` ... one per frame.

    ``compare``: a second model on the same frames, drawn beside the first (its own
    legend and caption, same camera); a png strip puts its row below. ``progress(i, T)``
    is called after each frame is rendered. Frames are rendered and written one at a
    time. Every file is written to a temporary name and renamed into place.
    """
    kind = export_kind(path)
    if kind == "mp4" and ffmpeg_executable() is None:
        _save_mp4([], path, fps)  # raises the one-line "needs ffmpeg" error before rendering
    r = HeadlessRenderer(model, compare)
    try:
        T = model.num_frames
        if kind == "png":
            if T == 1:
                img = r.image(model.frame)
            else:
                k = max(1, min(strip_frames, T))
                img = r.strip(sorted(set(np.round(np.linspace(0, T - 1, k)).astype(int).tolist())))
            _save_png(img, path)
            return [Path(path)]

        def images():
            for t in range(T):
                yield r.image(t)
                if progress is not None:
                    progress(t + 1, T)

        if kind == "gif":
            _save_gif(images(), path, fps)
            return [Path(path)]
        if kind == "mp4":
            _save_mp4(images(), path, fps)
            return [Path(path)]
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for t, im in enumerate(images()):
            f = out / f"frame_{t:04d}.png"
            _save_png(im, f)
            written.append(f)
        return written
    finally:
        r.view.close()
