"""meshgdl viewer: see learned and intrinsic features on (deforming) meshes.

Layers (each usable on its own):

* :mod:`meshgdl_viewer.features` -- feature sources, callables ``(V, F) -> (n,) | (n, C)``
  (HKS, geodesic distance, eigenfunctions, raw coordinates, files, model hook) and
  tangent (rho_n) features ``(V, F, gauges) -> (n, 2)``.
* :mod:`meshgdl_viewer.deform` -- deformation frames ``(T, n, 3)``: twist, bend, folders
  (real point caches are read by :func:`meshgdl.io.load_animation`, see ``session``).
* :mod:`meshgdl_viewer.scene` -- :class:`ViewerModel`: frames + features + UI state ->
  what to draw (numpy only): colours, isolines, glyphs, gauge frames, wireframe, legend.
* :mod:`meshgdl_viewer.render` -- headless Open3D/EGL rendering, legend composition, export.
* :mod:`meshgdl_viewer.app` -- the interactive Open3D window (thin layer over the same scene).
* :mod:`meshgdl_viewer.session` -- from command-line style inputs (mesh, feature,
  ``--animation`` / ``--deform``, ``--compare``) to :class:`ViewerModel` s.

Open3D is imported only when something is rendered, so the numpy layers stay cheap.

Example::

    from .session import build_model
    from .render import export
    model = build_model("builtin:capsule", feature="geodesic", deform="articulate", frames=4)
    export(model, "capsule.png")
"""

from .features import Feature, TangentFeature, ViewerError
from .scene import Style, ViewerModel

__all__ = ["Feature", "TangentFeature", "ViewerError", "Style", "ViewerModel"]
