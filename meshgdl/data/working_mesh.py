"""The working mesh: a user's mesh normalised and resampled for a model.

A user's mesh has whatever resolution, position, scale and small defects its author
left in it; a model was trained at one working resolution on clean meshes.
:func:`working_mesh` bridges the two for ``meshgdl segment`` and ``meshgdl classify``
(and for the training recipes that make their data the same way): components holding
less than ``min_component_share`` of the surface area (specks, loose bits) are set
aside; the rest is centred on its area-weighted centroid and scaled to total area
``area`` (default 1), then brought to about ``n_target`` vertices -- quadric
decimation (:func:`meshgdl.geometry.remesh.decimate`, canonical vertex order) when
too fine, Loop subdivision (midpoint subdivision for non-manifold meshes) and then
decimation when too coarse, untouched when already within ``[0.6, 1.25] * n_target``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.geometry.normals import face_areas
from meshgdl.geometry.remesh import decimate, fill_holes, relax_slivers, subdivide_to
from meshgdl.geometry.topology import vertex_components
from meshgdl.io import Mesh

#: Working resolution used when a model does not say.
DEFAULT_WORKING_VERTICES = 2500


@dataclass
class WorkingMesh:
    """The mesh a model runs on, in normalised coordinates.

    ``V (k, 3) float64``, ``F (l, 3) int64``: working mesh, ``X_work = (X - center) * scale``
    for input coordinates ``X``; ``kept (n,) bool``: input vertices whose component
    was kept (the others are labelled by transfer only); ``method``: ``"as-is"``,
    ``"decimated"``, ``"subdivided"`` or ``"subdivided+decimated"``.
    """

    V: np.ndarray
    F: np.ndarray
    center: np.ndarray
    scale: float
    kept: np.ndarray
    method: str
    n_components: int = 1
    n_dropped_components: int = 0

    def normalize(self, X: np.ndarray) -> np.ndarray:
        """Input coordinates (k, 3) -> working-mesh coordinates."""
        return (np.asarray(X, dtype=np.float64) - self.center) * self.scale


def _check_area(V: np.ndarray, F: np.ndarray, name: str = "the mesh") -> np.ndarray:
    fa = face_areas(V, F)
    total = float(fa.sum())
    diag = float(np.linalg.norm(V.max(0) - V.min(0))) if len(V) else 0.0
    if not (math.isfinite(total) and total > 1e-14 * max(diag, 1e-300) ** 2):
        raise MeshError(f"{name} has no surface area (all faces are degenerate)")
    return fa


def check_surface_area(mesh: Mesh) -> None:
    """Raise MeshError (one line, naming the file) if ``mesh`` has no surface area
    (every face degenerate), so no model can run on it. Cheap; run before any work
    is shown."""
    _check_area(mesh.V, mesh.F, mesh.path or "the mesh")


def _large_components(F: np.ndarray, n: int, fa: np.ndarray, share: float) -> tuple[np.ndarray, int, int]:
    """``(kept (n,) bool, n_components, n_dropped)``: vertices of the face-connected
    components holding at least ``share`` of the area ``fa`` (m,) (the largest is
    always kept); vertices used by no face are not kept and not counted."""
    n_comp, comp = vertex_components(F, n)
    comp_area = np.bincount(comp[F[:, 0]], weights=fa, minlength=n_comp)
    used = np.zeros(n_comp, dtype=bool)
    used[comp[F[:, 0]]] = True
    keep_comp = used & (comp_area >= share * float(fa.sum()))
    keep_comp[int(np.argmax(np.where(used, comp_area, -1.0)))] = True
    return keep_comp[comp], int(used.sum()), int((used & ~keep_comp).sum())


def working_mesh(
    V: np.ndarray,
    F: np.ndarray,
    n_target: int = DEFAULT_WORKING_VERTICES,
    *,
    area: float = 1.0,
    min_component_share: float = 0.01,
    keep_range: tuple[float, float] = (0.6, 1.25),
    fill: bool = False,
) -> WorkingMesh:
    """Bring a cleaned mesh to the model's working resolution and normalised pose/scale.

    V: (n, 3) float64, F: (m, 3) int64 (a cleaned mesh, e.g. ``Mesh.V, Mesh.F``).
    n_target: working vertex count. area: total area after scaling (squared units of
    the working mesh). Components with less than ``min_component_share`` of the
    area are left out (the largest is always kept). ``fill``: close the working mesh's
    holes (:func:`meshgdl.geometry.remesh.fill_holes`). Raises MeshError if the surface
    has (almost) no area.
    """
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    n = len(V)
    if n_target < 16:
        raise ValueError(f"n_target must be at least 16, got {n_target}")
    fa = _check_area(V, F)
    kept, n_real, n_dropped = _large_components(F, n, fa, min_component_share)
    idx = np.flatnonzero(kept)
    remap = np.full(n, -1, dtype=np.int64)
    remap[idx] = np.arange(len(idx))
    fkeep = kept[F[:, 0]]
    Vk, Fk = V[idx], remap[F[fkeep]]
    fk = fa[fkeep]
    a_k = float(fk.sum())
    centroids = (Vk[Fk[:, 0]] + Vk[Fk[:, 1]] + Vk[Fk[:, 2]]) / 3.0
    center = (fk[:, None] * centroids).sum(0) / a_k
    scale = math.sqrt(area / a_k)
    Vk = (Vk - center) * scale

    lo, hi = keep_range
    nk = len(Vk)
    method = "as-is"
    if nk < lo * n_target:
        Vk, Fk = subdivide_to(Vk, Fk, lo * n_target)
        method = "subdivided"
    if len(Vk) > hi * n_target:
        Vk, Fk, _ = decimate(Vk, Fk, int(n_target), parent="nearest")
        Vk = relax_slivers(Vk, Fk)
        method = "decimated" if method == "as-is" else "subdivided+decimated"
    # Decimation can leave repeated or degenerate-by-index triangles: clean like a file.
    clean = Mesh.from_arrays(Vk, Fk, name="working mesh")
    # ... and split off tiny pieces (a fin, a collapsed tube): a small component adds
    # its own high eigenvalues to the spectrum and shifts every spectrum-relative HKS time.
    keep_w, _, _ = _large_components(clean.F, clean.n_vertices, face_areas(clean.V, clean.F),
                                     min_component_share)
    if not keep_w.all():
        clean = Mesh.from_arrays(clean.V, clean.F[keep_w[clean.F[:, 0]]], name="working mesh")
    if fill:
        # Models are trained on closed surfaces; a scan's holes open Neumann boundaries
        # that change the spectrum (HKS) near them and split the coarse levels.
        Vf, Ff = fill_holes(clean.V, clean.F)
        if len(Ff) > clean.n_faces:
            clean = Mesh.from_arrays(Vf, Ff, name="working mesh")
    if clean.n_vertices < 4:
        raise MeshError(f"the working mesh has only {clean.n_vertices} vertices")
    return WorkingMesh(V=clean.V, F=clean.F, center=center, scale=scale, kept=kept, method=method,
                       n_components=n_real, n_dropped_components=n_dropped)


# ----------------------------------------------------------------------------- deforming input


@dataclass
class AttachedWorkingMesh:
    """A working mesh fixed to the surface of an input mesh, so it follows that mesh
    through a deformation that keeps its connectivity (an animation's frames).

    Built once on the rest shape (:func:`attach_working_mesh`): each working vertex is
    a point ``(face, bary)`` of the input surface and each input vertex a point
    ``(back_face, back_bary)`` of the working surface. On any frame ``V (n, 3)`` of the
    input, :meth:`positions` gives the working vertices (same ``F`` every frame) and
    :meth:`to_input` brings per-working-vertex values back to the input's vertices
    through the rest correspondence -- one decimation for the whole sequence, and a
    surface point keeps its working-mesh neighbours in every frame.
    """

    F: np.ndarray  # (l, 3) int64 working triangles (holes filled when ``fill``)
    input_F: np.ndarray  # (m, 3) int64 the input's triangles
    face: np.ndarray  # (k0,) int64 input triangle of each working vertex (before filling)
    bary: np.ndarray  # (k0, 3) float64 its barycentric coordinates there
    back_face: np.ndarray  # (n,) int64 working triangle of each input vertex
    back_bary: np.ndarray  # (n, 3) float64
    center: np.ndarray
    scale: float
    fill: bool = False  # close the holes again on every frame (fan around each loop's centroid)
    n_open_faces: int = 0  # working triangles before filling (the first ones of ``F``)

    def positions(self, V: np.ndarray) -> np.ndarray:
        """Working vertices ``(k, 3) float64`` on the input frame ``V (n, 3)``, in the rest
        shape's normalised coordinates (``(X - center) * scale``)."""
        from meshgdl.geometry.proximity import interpolate
        from meshgdl.geometry.remesh import fill_holes

        W = interpolate((np.asarray(V, np.float64) - self.center) * self.scale, self.input_F, self.face, self.bary)
        if self.fill:
            W, F = fill_holes(W, self.F[: self.n_open_faces])
            if len(F) != len(self.F):
                raise MeshError("the working mesh's holes changed between frames")
        return W

    def to_input(self, values: np.ndarray) -> np.ndarray:
        """Per-working-vertex ``values (k,) or (k, C)`` -> ``(n,) or (n, C)`` on the input's vertices."""
        from meshgdl.geometry.proximity import interpolate

        v = np.asarray(values)
        out = interpolate(v.reshape(len(v), -1), self.F, self.back_face, self.back_bary)
        return out.reshape((-1,) + v.shape[1:])


def attach_working_mesh(V: np.ndarray, F: np.ndarray, n_target: int = DEFAULT_WORKING_VERTICES, *,
                        area: float = 1.0, fill: bool = False) -> AttachedWorkingMesh:
    """:func:`working_mesh` of the rest shape ``V (n, 3), F (m, 3)``, its vertices
    projected onto the input surface (decimation moves them slightly off it) and
    recorded as surface points, and every input vertex projected back onto the
    working surface (:func:`meshgdl.geometry.proximity.project_to_surface`, normals
    respected as in ``meshgdl segment``). Frame-by-frame use: :class:`AttachedWorkingMesh`."""
    from meshgdl.geometry.normals import vertex_normals
    from meshgdl.geometry.proximity import interpolate, project_to_surface
    from meshgdl.geometry.remesh import fill_holes

    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    wm = working_mesh(V, F, n_target, area=area, fill=False)
    Vn = wm.normalize(V)
    face, bary, _ = project_to_surface(wm.V, Vn, F)
    W = interpolate(Vn, F, face, bary)
    Fw = wm.F
    if fill:
        W, Fw = fill_holes(W, wm.F)
    back_face, back_bary, _ = project_to_surface(Vn, W, Fw, normals=vertex_normals(V, F))
    return AttachedWorkingMesh(F=Fw, input_F=F, face=face, bary=bary, back_face=back_face, back_bary=back_bary,
                               center=wm.center, scale=wm.scale, fill=fill, n_open_faces=len(wm.F))


__all__ = ["DEFAULT_WORKING_VERTICES", "WorkingMesh", "working_mesh", "check_surface_area",
           "AttachedWorkingMesh", "attach_working_mesh"]
