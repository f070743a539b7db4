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

A mesh that moves with fixed connectivity (an animation) gets one working mesh for all
its poses: :func:`attach_working_mesh` ties the working vertices of the rest pose to
the input surface (a face and barycentric coordinates each, or the centre of a filled
hole), and :meth:`WorkingMeshReplay.apply` rebuilds the same triangulation from any
pose's positions -- every frame is then seen through the same triangles, not through a
decimation that changes from frame to frame.
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
    #: The last ``n_filled`` vertices are the centres of filled holes (``fill=True``).
    n_filled: int = 0

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
    center, scale = _normalization(Vk, Fk, fa[fkeep], area)
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
    n_filled = 0
    if fill:
        # Models are trained on closed surfaces; a scan's holes open Neumann boundaries
        # that change the spectrum (HKS) near them and split the coarse levels.
        Vf, Ff = fill_holes(clean.V, clean.F)
        if len(Ff) > clean.n_faces:
            n_before = clean.n_vertices
            clean = Mesh.from_arrays(Vf, Ff, name="working mesh")
            n_filled = clean.n_vertices - n_before
    if clean.n_vertices < 4:
        raise MeshError(f"the working mesh has only {clean.n_vertices} vertices")
    return WorkingMesh(V=clean.V, F=clean.F, center=center, scale=scale, kept=kept, method=method,
                       n_components=n_real, n_dropped_components=n_dropped, n_filled=n_filled)


def _normalization(V: np.ndarray, F: np.ndarray, fa: np.ndarray, area: float) -> tuple[np.ndarray, float]:
    """``(center (3,), scale)`` putting the surface ``(V, F)`` (face areas ``fa``) at its
    area-weighted centroid with total area ``area``."""
    a = float(fa.sum())
    centroids = (V[F[:, 0]] + V[F[:, 1]] + V[F[:, 2]]) / 3.0
    return (fa[:, None] * centroids).sum(0) / a, math.sqrt(area / a)


@dataclass
class WorkingMeshReplay:
    """One working mesh for every pose of a mesh with fixed connectivity.

    ``F (l, 3) int64``: the working triangles; ``W``: sparse ``(k, n)`` map from the input
    mesh's vertex positions (n, 3) to the working vertices (k, 3) before normalisation;
    ``input_F (m, 3)``, ``kept (n,) bool``, ``area``: what the per-pose normalisation
    needs (the kept components' area-weighted centroid and total area, as in
    :func:`working_mesh`). ``method``, ``n_components``, ``n_dropped_components``: those
    of the rest pose's working mesh.
    """

    F: np.ndarray
    W: object
    input_F: np.ndarray
    kept: np.ndarray
    area: float
    method: str
    n_components: int = 1
    n_dropped_components: int = 0

    @property
    def n_vertices(self) -> int:
        return int(self.W.shape[0])

    def apply(self, V: np.ndarray) -> WorkingMesh:
        """The working mesh of the pose ``V (n, 3) float64`` (the input's vertices, same
        connectivity as the rest pose): same triangles, vertices at ``W @ V``, centred
        and scaled from this pose's own surface."""
        V = np.asarray(V, dtype=np.float64)
        if V.shape != (self.W.shape[1], 3):
            raise MeshError(f"positions of shape {V.shape} do not fit the working mesh's input of "
                            f"{self.W.shape[1]} vertices")
        fkeep = self.kept[self.input_F[:, 0]]
        Fk = self.input_F[fkeep]
        fa = _check_area(V, Fk)
        center, scale = _normalization(V, Fk, fa, self.area)
        return WorkingMesh(V=(self.W @ V - center) * scale, F=self.F, center=center, scale=scale,
                           kept=self.kept, method=self.method, n_components=self.n_components,
                           n_dropped_components=self.n_dropped_components)


def attach_working_mesh(wm: WorkingMesh, V: np.ndarray, F: np.ndarray, area: float) -> WorkingMeshReplay:
    """Tie the working mesh ``wm`` of the surface ``(V (n, 3), F (m, 3))`` (its rest pose,
    as given to :func:`working_mesh` with total area ``area``) to that surface, so
    :meth:`WorkingMeshReplay.apply` rebuilds it for any other pose.

    Each working vertex is attached to its closest point of the kept input surface (a
    decimated vertex sits a little off the input surface; it is moved onto it), each
    filled hole's centre to the mean of its rim.
    """
    from meshgdl.geometry.proximity import barycentric_matrix, project_to_surface

    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    n_surf = len(wm.V) - wm.n_filled
    Fk = F[wm.kept[F[:, 0]]]
    face, bary, _ = project_to_surface(wm.V[:n_surf], wm.normalize(V), Fk)
    W = barycentric_matrix(Fk, face, bary, len(V))
    if wm.n_filled:
        # fill_holes puts each centre at the mean of its rim, the centre's only neighbours
        import scipy.sparse as sp

        fan = wm.F[wm.F.max(axis=1) >= n_surf]
        on_rim = fan < n_surf
        cid = np.repeat(fan.max(axis=1) - n_surf, 2)
        P = sp.csr_matrix((np.ones(len(cid)), (cid, fan[on_rim])), shape=(wm.n_filled, n_surf))
        P = sp.diags(1.0 / np.asarray(P.sum(axis=1)).ravel()) @ P
        W = sp.vstack([W, P @ W]).tocsr()
    return WorkingMeshReplay(F=wm.F, W=W, input_F=F, kept=wm.kept, area=float(area), method=wm.method,
                             n_components=wm.n_components, n_dropped_components=wm.n_dropped_components)


# ----------------------------------------------------------------------------- model


__all__ = ["DEFAULT_WORKING_VERTICES", "WorkingMesh", "WorkingMeshReplay", "working_mesh", "attach_working_mesh",
           "check_surface_area"]
