"""Interactive window (Open3D GUI): a thin shell over :class:`meshgdl_viewer.scene.ViewerModel`
and :func:`meshgdl_viewer.render.to_o3d`, the same scene building the headless export uses.

Keys (also listed in ``meshgdl view --help`` and shown in the window):
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .colormaps import legend_width
from .scene import ViewerModel

KEY_HELP = [
    ("Up / Down", "next / previous channel"),
    ("PageUp / PageDown  or  . / ,", "next / previous feature (layer)"),
    ("Space", "play / pause the deformation"),
    ("Left / Right", "previous / next frame"),
    ("A", "toggle tangent arrows"),
    ("G", "toggle gauge frames (e1 red, e2 green)"),
    ("W", "toggle wireframe"),
    ("I", "toggle isolines"),
    ("S", "screenshot: meshgdl_view_NNNN.png (with legend) in the working directory"),
    ("Q / Esc", "quit"),
]

__doc__ += "\n".join(f"  {k:32s} {v}" for k, v in KEY_HELP) + "\n"


class ViewerWindow:
    """An Open3D GUI window showing ``model``; call :meth:`run`.

    Every key maps to a method (``next_channel``, ``toggle_play``, ...), so scripted
    use and tests drive the window exactly as the keyboard does.
    """

    def __init__(self, model: ViewerModel, title: str = "meshgdl view", fps: float = 12.0,
                 screenshot_dir: str | Path = "."):
        import open3d as o3d
        import open3d.visualization.gui as gui
        import open3d.visualization.rendering as rendering

        from .render import fit_camera

        self.o3d, self.gui, self.rendering = o3d, gui, rendering
        self.model = model
        self.fps = float(fps)
        self.playing = False
        self._last_step = 0.0
        self.screenshot_dir = Path(screenshot_dir)
        self.screenshots: list[Path] = []
        self._names: list[str] = []

        self.app = gui.Application.instance
        self.app.initialize()
        st = model.style
        self.window = self.app.create_window(title, st.width, st.height)
        self.widget = gui.SceneWidget()
        self.widget.scene = rendering.Open3DScene(self.window.renderer)
        sc = self.widget.scene
        sc.set_background(list(st.background) + [1.0])
        if st.shading == "flat":
            sc.view.set_post_processing(False)
        else:
            sc.view.set_color_grading(rendering.ColorGrading(
                rendering.ColorGrading.Quality.HIGH, rendering.ColorGrading.ToneMapping.LINEAR))
            sc.set_lighting(rendering.Open3DScene.LightingProfile.NO_SHADOWS,
                            np.array([0.3, -0.6, -0.75], np.float32))
        em = self.window.theme.font_size
        self.panel = gui.Vert(0.25 * em, gui.Margins(0.5 * em, 0.5 * em, 0.5 * em, 0.5 * em))
        self.legend = gui.ImageWidget()
        self.caption = gui.Label("")
        self.help = gui.Label("\n".join(f"{k}: {v}" for k, v in KEY_HELP))
        self.panel.add_child(self.legend)
        self.panel.add_child(self.caption)
        self.panel.add_child(self.help)
        self.window.add_child(self.widget)
        self.window.add_child(self.panel)
        self.window.set_on_layout(self._on_layout)
        self.window.set_on_key(self._on_key)
        self.window.set_on_tick_event(self._on_tick)

        aspect = max(st.width - legend_width(st.width), 1) / st.height
        cam = fit_camera(model.frames, aspect)
        pts = model.frames.reshape(-1, 3)
        bbox = o3d.geometry.AxisAlignedBoundingBox(pts.min(0), pts.max(0))
        self.widget.setup_camera(cam.fov, bbox, cam.center.astype(np.float32))
        self.widget.look_at(cam.center.astype(np.float32), cam.eye.astype(np.float32), cam.up.astype(np.float32))
        self.refresh()

    # -- layout and redraw
    def _on_layout(self, ctx):
        r = self.window.content_rect
        pw = (self.model.style.legend_width or legend_width(r.width)) if self.model.style.legend else 0
        self.widget.frame = self.gui.Rect(r.x, r.y, r.width - pw, r.height)
        self.panel.frame = self.gui.Rect(r.get_right() - pw, r.y, pw, r.height)

    def refresh(self) -> None:
        """Rebuild the scene for the model's current state."""
        from .render import legend_image, to_o3d

        scene = self.model.scene()
        sc = self.widget.scene
        for n in self._names:
            sc.remove_geometry(n)
        self._names = []
        for name, geom, mat in to_o3d(scene, self.model.style.shading):
            sc.add_geometry(name, geom, mat)
            self._names.append(name)
        self._scene = scene
        if scene.legend is not None:
            h = max(200, int(self.model.style.height * 0.6))
            lw = self.model.style.legend_width or legend_width(self.model.style.width)
            img = legend_image(scene, lw, h, self.model.style.background)
            self.legend.update_image(self.o3d.geometry.Image(np.ascontiguousarray(img)))
        self.caption.text = scene.caption.replace(" | ", "\n")
        self.window.set_needs_layout()
        self.window.post_redraw()

    # -- actions (one per key)
    def next_channel(self, d: int = 1):
        self.model.step_channel(d)
        self.refresh()

    def next_feature(self, d: int = 1):
        self.model.step_feature(d)
        self.refresh()

    def step_frame(self, d: int = 1):
        self.model.step_frame(d)
        self.refresh()

    def toggle_play(self):
        self.playing = not self.playing and self.model.num_frames > 1
        self._last_step = time.monotonic()

    def toggle(self, what: str):
        if what == "isolines":
            self.model.toggle_isolines()
        else:
            self.model.toggle(what)
        self.refresh()

    def screenshot(self, path: str | Path | None = None) -> None:
        """Save the current view, with legend and caption, as a PNG (atomic write)."""
        from .render import _save_png, compose

        if path is None:
            i = 1
            while (self.screenshot_dir / f"meshgdl_view_{i:04d}.png").exists():
                i += 1
            path = self.screenshot_dir / f"meshgdl_view_{i:04d}.png"
        path = Path(path)
        scene, style = self._scene, self.model.style

        def done(image):
            view = np.asarray(image)[:, :, :3].copy()
            _save_png(compose([view], scene, style), path)
            self.screenshots.append(path)
            print(f"saved {path}")

        self.widget.scene.scene.render_to_image(done)

    def close(self):
        self.window.close()

    # -- event plumbing
    def _on_key(self, event) -> bool:
        gui, K = self.gui, self.gui.KeyName
        if event.type != gui.KeyEvent.DOWN:
            return False
        actions = {
            K.UP: lambda: self.next_channel(1), K.DOWN: lambda: self.next_channel(-1),
            K.PAGE_UP: lambda: self.next_feature(1), K.PAGE_DOWN: lambda: self.next_feature(-1),
            K.PERIOD: lambda: self.next_feature(1), K.COMMA: lambda: self.next_feature(-1),
            K.SPACE: self.toggle_play,
            K.RIGHT: lambda: self.step_frame(1), K.LEFT: lambda: self.step_frame(-1),
            K.A: lambda: self.toggle("arrows"), K.G: lambda: self.toggle("gauge_frames"),
            K.W: lambda: self.toggle("wireframe"), K.I: lambda: self.toggle("isolines"),
            K.S: self.screenshot, K.Q: self.close, K.ESCAPE: self.close,
        }
        fn = actions.get(event.key)
        if fn is None:
            return False
        try:
            fn()
        except Exception as exc:  # a failing feature must not kill the window
            self.caption.text = f"error: {exc}"
        return True

    def _on_tick(self) -> bool:
        if not self.playing:
            return False
        now = time.monotonic()
        if now - self._last_step < 1.0 / self.fps:
            return False
        self._last_step = now
        self.step_frame(1)
        return True

    def run(self) -> None:
        self.app.run()


def show(model: ViewerModel, **kwargs) -> None:
    """Open a window on ``model`` and block until it is closed."""
    ViewerWindow(model, **kwargs).run()
