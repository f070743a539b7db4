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
    ("Space", "play / pause the animation (or drag the frame slider)"),
    ("Left / Right", "previous / next frame"),
    ("Home / End", "first / last frame"),
    ("+ / -  or  ] / [", "faster / slower playback (x1.5; 0.5 to 120 fps)"),
    ("A", "toggle tangent arrows"),
    ("G", "toggle gauge frames (e1 red, e2 green)"),
    ("W", "toggle wireframe"),
    ("I", "toggle isolines"),
    ("S", "screenshot: meshgdl_view_NNNN.png (with legend) in the working directory"),
    ("Q / Esc", "quit"),
]

__doc__ += "\n".join(f"  {k:32s} {v}" for k, v in KEY_HELP) + "\n"


MIN_FPS, MAX_FPS = 0.5, 120.0


class ViewerWindow:
    """An Open3D GUI window showing ``model``; call :meth:`run`.

    Every key maps to a method (``next_channel``, ``toggle_play``, ...), so scripted
    use and tests drive the window exactly as the keyboard does. ``compare``: a second
    model on the same frames (``--compare``), shown in a second 3D view to the right;
    frame, toggles and camera are shared, channel and feature keys act on ``model``.
    """

    def __init__(self, model: ViewerModel, title: str = "meshgdl view", fps: float = 12.0,
                 screenshot_dir: str | Path = ".", compare: ViewerModel | None = None):
        import open3d as o3d
        import open3d.visualization.gui as gui
        import open3d.visualization.rendering as rendering

        from .render import fit_camera

        self.o3d, self.gui, self.rendering = o3d, gui, rendering
        self.model = model
        self.compare = compare
        self.models = [model] if compare is None else [model, compare]
        self.fps = float(np.clip(fps, MIN_FPS, MAX_FPS))
        self.playing = False
        self._last_step = 0.0
        self.screenshot_dir = Path(screenshot_dir)
        self.screenshots: list[Path] = []
        self._refreshing = False

        self.app = gui.Application.instance
        self.app.initialize()
        st = model.style
        self.window = self.app.create_window(title, st.width * len(self.models), st.height)
        self.widgets = [self._scene_widget(st) for _ in self.models]
        self._names: list[list[str]] = [[] for _ in self.models]
        self.widget = self.widgets[0]
        em = self.window.theme.font_size
        self.panel = gui.Vert(0.25 * em, gui.Margins(0.5 * em, 0.5 * em, 0.5 * em, 0.5 * em))
        self.legends = [gui.ImageWidget() for _ in self.models]
        self.captions = [gui.Label("") for _ in self.models]
        self.legend, self.caption = self.legends[0], self.captions[0]
        for lg, cap in zip(self.legends, self.captions):
            self.panel.add_child(lg)
            self.panel.add_child(cap)
        self.slider = None
        if model.num_frames > 1:
            self.slider = gui.Slider(gui.Slider.INT)
            self.slider.set_limits(1, model.num_frames)
            self.slider.set_on_value_changed(self._on_slider)
            self.panel.add_child(self.slider)
        self.speed = gui.Label("")
        self.panel.add_child(self.speed)
        self.help = gui.Label("\n".join(f"{k}: {v}" for k, v in KEY_HELP))
        self.panel.add_child(self.help)
        for w in self.widgets:
            self.window.add_child(w)
        self.window.add_child(self.panel)
        self.window.set_on_layout(self._on_layout)
        self.window.set_on_key(self._on_key)
        self.window.set_on_tick_event(self._on_tick)

        aspect = max(st.width - legend_width(st.width), 1) / st.height
        cam = fit_camera(model.frames, aspect)
        pts = model.frames.reshape(-1, 3)
        bbox = o3d.geometry.AxisAlignedBoundingBox(pts.min(0), pts.max(0))
        for w in self.widgets:
            w.setup_camera(cam.fov, bbox, cam.center.astype(np.float32))
            w.look_at(cam.center.astype(np.float32), cam.eye.astype(np.float32), cam.up.astype(np.float32))
        self._synced_view = self._view_matrix(0)
        self.refresh()

    def _scene_widget(self, st):
        gui, rendering = self.gui, self.rendering
        w = gui.SceneWidget()
        w.scene = rendering.Open3DScene(self.window.renderer)
        sc = w.scene
        sc.set_background(list(st.background) + [1.0])
        if st.shading == "flat":
            sc.view.set_post_processing(False)
        else:
            sc.view.set_color_grading(rendering.ColorGrading(
                rendering.ColorGrading.Quality.HIGH, rendering.ColorGrading.ToneMapping.LINEAR))
            sc.set_lighting(rendering.Open3DScene.LightingProfile.NO_SHADOWS,
                            np.array([0.3, -0.6, -0.75], np.float32))
        return w

    def _on_slider(self, value) -> None:
        if not self._refreshing and int(round(value)) - 1 != self.model.frame:
            self.set_frame(int(round(value)) - 1)

    def _view_matrix(self, i: int) -> np.ndarray:
        return np.asarray(self.widgets[i].scene.camera.get_view_matrix())

    def _sync_cameras(self) -> bool:
        """Side by side: whichever view the mouse moved, the other follows."""
        if len(self.widgets) < 2:
            return False
        a, b = self._view_matrix(0), self._view_matrix(1)
        if np.array_equal(a, b):
            return False
        src, dst = (0, 1) if not np.array_equal(a, self._synced_view) else (1, 0)
        self.widgets[dst].scene.camera.copy_from(self.widgets[src].scene.camera)
        self._synced_view = self._view_matrix(src)
        self.widgets[dst].force_redraw()
        return True

    # -- layout and redraw
    def _on_layout(self, ctx):
        r = self.window.content_rect
        pw = (self.model.style.legend_width or legend_width(r.width // len(self.models))) \
            if self.model.style.legend else 0
        vw = (r.width - pw) // len(self.widgets)
        for i, w in enumerate(self.widgets):
            w.frame = self.gui.Rect(r.x + i * vw, r.y, vw, r.height)
        self.panel.frame = self.gui.Rect(r.get_right() - pw, r.y, pw, r.height)

    def refresh(self) -> None:
        """Rebuild the scene(s) for the models' current state."""
        from .render import legend_image, panel_title, to_o3d

        self._scenes = []
        for m, w, names, lg, cap in zip(self.models, self.widgets, self._names, self.legends, self.captions):
            scene = m.scene()
            sc = w.scene
            for n in names:
                sc.remove_geometry(n)
            names.clear()
            for name, geom, mat in to_o3d(scene, m.style.shading):
                sc.add_geometry(name, geom, mat)
                names.append(name)
            self._scenes.append(scene)
            if scene.legend is not None:
                h = max(160, int(m.style.height * 0.6 / len(self.models)))
                lw = m.style.legend_width or legend_width(m.style.width)
                img = legend_image(scene, lw, h, m.style.background)
                lg.update_image(self.o3d.geometry.Image(np.ascontiguousarray(img)))
            text = scene.caption.replace(" | ", "\n")
            cap.text = (f"{'left' if m is self.model else 'right'}: {panel_title(m)}\n" + text
                        if len(self.models) > 1 else text)
        self._scene = self._scenes[0]
        if self.slider is not None:
            self._refreshing = True  # the slider's callback must not step the frame again
            self.slider.int_value = self.model.frame + 1
            self._refreshing = False
        self.speed.text = f"{'playing' if self.playing else 'paused'} at {self.fps:g} fps"
        self.window.set_needs_layout()
        self.window.post_redraw()

    # -- actions (one per key)
    def next_channel(self, d: int = 1):
        self.model.step_channel(d)
        self.refresh()

    def next_feature(self, d: int = 1):
        self.model.step_feature(d)
        self.refresh()

    def set_frame(self, t: int):
        for m in self.models:
            m.set_frame(t)
        self.refresh()

    def step_frame(self, d: int = 1):
        self.set_frame(self.model.frame + d)

    def toggle_play(self):
        self.playing = not self.playing and self.model.num_frames > 1
        self._last_step = time.monotonic()
        self.refresh()

    def change_speed(self, factor: float):
        """Playback speed times ``factor`` (kept within MIN_FPS..MAX_FPS)."""
        self.fps = float(np.clip(round(self.fps * factor, 2), MIN_FPS, MAX_FPS))
        self.refresh()

    def toggle(self, what: str):
        for m in self.models:
            if what == "isolines":
                m.toggle_isolines()
            else:
                m.toggle(what)
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
        scenes, views = list(self._scenes), {}

        def done(i, image):
            views[i] = np.asarray(image)[:, :, :3].copy()
            if len(views) < len(self.models):
                return
            from .render import panel_title

            tags = (lambda m: [panel_title(m)]) if len(self.models) > 1 else (lambda m: None)
            panels = [compose([views[i]], scenes[i], m.style, tags=tags(m)) for i, m in enumerate(self.models)]
            h = min(p.shape[0] for p in panels)
            _save_png(np.concatenate([p[:h] for p in panels], axis=1), path)
            self.screenshots.append(path)
            print(f"saved {path}")

        for i, w in enumerate(self.widgets):
            w.scene.scene.render_to_image(lambda image, i=i: done(i, image))

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
            K.HOME: lambda: self.set_frame(0), K.END: lambda: self.set_frame(self.model.num_frames - 1),
            K.EQUALS: lambda: self.change_speed(1.5), K.PLUS: lambda: self.change_speed(1.5),
            K.RIGHT_BRACKET: lambda: self.change_speed(1.5),
            K.MINUS: lambda: self.change_speed(1 / 1.5), K.LEFT_BRACKET: lambda: self.change_speed(1 / 1.5),
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
        synced = self._sync_cameras()
        if not self.playing:
            return synced
        now = time.monotonic()
        if now - self._last_step < 1.0 / self.fps:
            return synced
        self._last_step = now
        self.step_frame(1)
        return True

    def run(self) -> None:
        self.app.run()


def show(model: ViewerModel, **kwargs) -> None:
    """Open a window on ``model`` and block until it is closed."""
    ViewerWindow(model, **kwargs).run()
