"""One call per job, on anything mesh-like: ``meshgdl.segment``, ``meshgdl.classify``,
``meshgdl.geodesic_distance``, ``meshgdl.spectrum``, ``meshgdl.compute_operators``;
``meshgdl.load_animation`` reads a deforming mesh (:func:`meshgdl.io.load_animation`).

``mesh_like`` is a path, ``(V, F)`` arrays, a :class:`meshgdl.io.Mesh`, a
``trimesh.Trimesh``, an Open3D ``TriangleMesh``, a PyTorch Geometric ``Data`` (``pos``,
``face``) -- see :func:`meshgdl.interop.as_mesh` -- or a batch (a PyTorch3D ``Meshes``,
a PyG ``Batch``), for which every function returns a list with one result per mesh.

Per-vertex and per-face results are in the *input's own* order: vertex ``i`` of the
result is vertex ``i`` of the file / array / object, whatever cleaning did (merged
duplicate vertices share their value; vertices used by no face get the documented
fill). These functions are what the ``meshgdl segment``, ``geodesic`` and
``spectrum`` commands run. Heavy modules (torch, the models) are imported inside
them, so ``import meshgdl`` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

# re-exported as meshgdl.load_animation / meshgdl.Animation (deforming meshes: mesh + .pc2/.mdd, or a frame folder)
from meshgdl.io import Animation, Mesh, load_animation  # noqa: F401


def _each(mesh_like: Any, fn: Callable[[Mesh], Any]):
    """``fn`` on the mesh, or a list of ``fn`` on every mesh of a batch."""
    from meshgdl.interop import as_mesh, as_meshes, is_batch

    if is_batch(mesh_like):
        return [fn(m) for m in as_meshes(mesh_like)]
    return fn(as_mesh(mesh_like))


def _checked_meshes(mesh_like: Any) -> tuple[bool, list[Mesh]]:
    """``(is a batch, meshes)``, every mesh checked to have surface area first, so a bad
    mesh of a batch fails before any model is loaded."""
    from meshgdl.interop import as_mesh, as_meshes, is_batch
    from meshgdl.data.working_mesh import check_surface_area

    batched = is_batch(mesh_like)
    meshes = as_meshes(mesh_like) if batched else [as_mesh(mesh_like)]
    for m in meshes:
        check_surface_area(m)
    return batched, meshes


def _name(mesh: Mesh) -> str:
    return mesh.path or getattr(mesh, "source", "") or "the mesh"


def input_vertices(mesh: Mesh, indices, what: str = "source") -> np.ndarray:
    """Vertex indices in the input's numbering (an int or a sequence of ints) ->
    sorted unique indices into ``mesh.V``. Raises ValueError (one line, naming
    ``what``) for an index out of range or a vertex used by no face."""
    raw = np.atleast_1d(np.asarray(indices))
    if raw.size == 0:
        raise ValueError(f"no {what} vertex given")
    if raw.dtype == bool or not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"{what} vertices must be integer indices, got {np.asarray(indices).tolist()!r}"[:200])
    n = mesh.n_orig_vertices
    out = []
    for s in raw.ravel().tolist():
        if not 0 <= s < n:
            raise ValueError(f"{what} {s} is out of range: {_name(mesh)} has {n} vertices (0..{n - 1})")
        j = int(mesh.orig_to_new[s])
        if j < 0:
            raise ValueError(f"{what} {s}: that vertex is used by no face of {_name(mesh)}")
        out.append(j)
    return np.unique(np.asarray(out, dtype=np.int64))


# ----------------------------------------------------------------------------- segmentation


@dataclass
class SegmentationResult:
    """What :func:`segment` returns for one mesh, in the input's own order.

    ``vertex_labels (n_in,) int64`` and ``face_labels (m_in,) int64``: a class index
    per vertex / face of the input (see :mod:`meshgdl.segmentation` for how
    unreferenced vertices and faces removed by cleaning are labelled);
    ``class_names``: name of each class index; ``probabilities (n_in, C) float64``:
    class probabilities before smoothing (NaN rows for vertices used by no face);
    ``mesh``: the cleaned meshgdl Mesh with its maps to the input; ``detail``: the
    pipeline's :class:`meshgdl.segmentation.Segmentation` (cleaned-mesh order,
    working mesh, timings); ``model``: the :class:`~meshgdl.segmentation.Segmenter`
    used (pass it as ``model=`` to skip reloading).
    """

    vertex_labels: np.ndarray
    face_labels: np.ndarray
    probabilities: np.ndarray
    class_names: list
    mesh: Mesh
    detail: Any
    model: Any = field(repr=False, default=None)

    @property
    def in_distribution(self) -> bool | None:
        """False when the model's out-of-distribution threshold flags this mesh (None: the
        model has none); ``detail.ood`` has the per-part verdicts."""
        return self.detail.ood.get("in_distribution")

    @property
    def ood_score(self) -> float | None:
        """How unusual the mesh looks to the model (higher = more; compare with ``ood_threshold``)."""
        return self.detail.ood.get("ood_score")

    @property
    def ood_threshold(self) -> float | None:
        return self.detail.ood.get("threshold")

    @property
    def vertex_names(self) -> list[str]:
        """The part name of every input vertex (``"(unlabelled)"`` for -1)."""
        return [self.class_names[i] if i >= 0 else "(unlabelled)" for i in self.vertex_labels.tolist()]

    def summary(self) -> list[dict]:
        """Per class: ``label``, ``name``, input ``vertices`` with it, ``area_share`` of the surface."""
        return self.detail.summary(self.mesh)


def _raw_faces(mesh: Mesh):
    """The input's triangles before cleaning, ``(T (t, 3) input vertex ids, origin (t,))``,
    for labelling faces that cleaning removed; None when unknown."""
    src = getattr(mesh, "source_F", None)
    if src is not None:
        return lambda: (src, np.arange(len(src), dtype=np.int64))
    if mesh.path and Path(mesh.path).is_file():
        def load():
            from meshgdl.io import load_mesh

            raw = load_mesh(mesh.path, merge_vertices=False, process=False)
            return raw.F, raw.face_origin
        return load
    return None


def segment(mesh_like: Any, model: Any = None, device: str | None = "cpu", *, working_vertices: int | None = None,
            smooth: int | None = None, refine: float | None = None, stage: Callable[[str], None] | None = None,
            frames=None, workers: int | None = None):
    """Segment a mesh into parts with a shipped or trained model -> :class:`SegmentationResult`
    (a list of them for a batch).

    An :class:`meshgdl.io.Animation` (``meshgdl.load_animation``) gives an
    :class:`meshgdl.animation_segmentation.AnimationSegmentation` instead: every frame
    (or the ``frames`` given) segmented on its own geometry in ``workers`` processes
    (``.frame_labels (T, n)`` in the file's vertex order, ``.sequence`` labelling of the
    rest pose by the frame-averaged probabilities, ``.consistency``).

    ``model``: ``None`` (the default shipped segmentation model,
    ``meshgdl.pretrained.DEFAULTS``), a shipped name (``meshgdl.pretrained.names()``),
    a checkpoint file or run directory from ``meshgdl train``, or a loaded
    :class:`~meshgdl.segmentation.Segmenter` (reused as is). ``device``: ``"cpu"``,
    ``"cuda[:N]"`` or ``"auto"``. ``working_vertices``: the model's working resolution
    (default: the model's). ``smooth``: rounds of neighbour majority vote on the input
    mesh (0 = off; default: the model's, see :attr:`Segmenter.smooth_iterations`).
    ``refine``: smoothness of the boundary refinement on the input mesh (a graph cut
    that makes part boundaries follow the input surface; 0 = off; default: the model's,
    see :attr:`Segmenter.refinement`).
    ``stage(name)``: called with ``"load"``, then ``"preprocess"``,
    ``"predict"``, ``"transfer"`` for each mesh. Runs :func:`meshgdl.segmentation.segment`
    (any resolution, pose, scale, vertex order). Raises MeshError for an unusable
    mesh, CheckpointError for a bad model, TypeError for a non-mesh.
    """
    from meshgdl.io import Animation
    from meshgdl.segmentation import Segmenter, load_segmenter
    from meshgdl.segmentation import segment as run_pipeline

    if smooth is not None and int(smooth) < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    if refine is not None and not (np.isfinite(float(refine)) and float(refine) >= 0):
        raise ValueError(f"refine must be a number >= 0, got {refine}")
    if isinstance(mesh_like, Animation):
        from meshgdl.animation_segmentation import segment_animation

        segmenter = model if isinstance(model, Segmenter) else \
            load_segmenter(model, device=device, working_vertices=working_vertices)
        return segment_animation(mesh_like, segmenter, frames=frames, workers=workers,
                                 smooth_iterations=None if smooth is None else int(smooth), refine=refine,
                                 raw_faces=_raw_faces(mesh_like.rest))
    if frames is not None or workers is not None:
        raise ValueError("frames and workers go with an Animation")
    say = stage or (lambda name: None)
    say("load")
    batched, meshes = _checked_meshes(mesh_like)
    segmenter = model if isinstance(model, Segmenter) else \
        load_segmenter(model, device=device, working_vertices=working_vertices)

    out = []
    for m in meshes:
        seg = run_pipeline(m, segmenter, smooth_iterations=None if smooth is None else int(smooth), refine=refine,
                           stage=stage,
                           raw_faces=_raw_faces(m))
        out.append(SegmentationResult(
            vertex_labels=seg.file_vertex_labels, face_labels=seg.file_face_labels,
            probabilities=m.to_original_vertices(seg.probabilities, fill=np.nan),
            class_names=list(seg.class_names), mesh=m, detail=seg, model=segmenter))
    return out if batched else out[0]


def classify(mesh_like: Any, model: Any = None, device: str | None = "cpu", *,
             working_vertices: int | None = None):
    """Classify a whole mesh with a shipped or trained classifier ->
    :class:`meshgdl.classification.Classification` (``.name``, ``.label``,
    ``.probabilities (C,)``, ``.top(k)``; a list of them for a batch).

    ``model``: ``None`` (the default shipped classifier), a shipped name, a checkpoint
    file or run directory, or a loaded :class:`~meshgdl.classification.Classifier`
    (reused as is). Runs :func:`meshgdl.classification.classify` (any resolution,
    pose, scale, vertex order). Raises MeshError for an unusable mesh,
    CheckpointError for a bad model, TypeError for a non-mesh.
    """
    from meshgdl.classification import Classifier, load_classifier
    from meshgdl.classification import classify as run_pipeline

    batched, meshes = _checked_meshes(mesh_like)
    classifier = model if isinstance(model, Classifier) else \
        load_classifier(model, device=device, working_vertices=working_vertices)
    out = [run_pipeline(m, classifier) for m in meshes]
    return out if batched else out[0]


# ----------------------------------------------------------------------------- geometry


def geodesic_distance(mesh_like: Any, source, *, exact: bool = False, t_coef: float = 1.0):
    """Geodesic distance on the surface from ``source`` -> (n_in,) float64 in the input's
    vertex order (a list of them for a batch, the same ``source`` on every mesh).

    ``source``: a vertex index or a sequence of them, in the input's numbering
    (distance to the nearest). Heat method (:func:`meshgdl.geometry.geodesics.heat_geodesic_distance`,
    time step ``t_coef`` times the squared mean edge length) or, with ``exact=True``,
    exact polyhedral distances (MMP; slower, manifold meshes only). In the mesh's
    units. Merged duplicate vertices share their distance; vertices no path reaches
    (other components, vertices used by no face) get ``inf``. Raises ValueError for a
    bad source index or ``t_coef``.
    """
    if not (np.isfinite(t_coef) and t_coef > 0):
        raise ValueError(f"t_coef must be a positive number, got {t_coef}")

    def one(mesh: Mesh) -> np.ndarray:
        from meshgdl.geometry import geodesics

        src = input_vertices(mesh, source)
        if exact:
            d = geodesics.exact_geodesic_distance(mesh.V, mesh.F, src)
        else:
            d = geodesics.heat_geodesic_distance(mesh.V, mesh.F, src, t_coef=t_coef)
        d = np.array(d, dtype=np.float64).reshape(-1)
        if d.shape != (mesh.n_vertices,):
            raise RuntimeError(f"geodesic solver returned shape {d.shape}, expected ({mesh.n_vertices},)")
        return mesh.to_original_vertices(d, fill=np.inf)

    return _each(mesh_like, one)


@dataclass
class Spectrum:
    """Laplace-Beltrami eigenpairs ``L phi = lambda M phi`` in the input's vertex order.

    ``evals (k,) float64`` ascending (1 / length^2); ``evecs (n_in, k) float64``
    M-orthonormal (vertices used by no face: zero rows; merged duplicates repeat
    their vertex's row); ``mass (n_in,) float64`` lumped vertex areas on the *first*
    input copy of each vertex (0 on other copies and unused vertices), so
    ``evecs.T @ (mass[:, None] * evecs)`` is the identity; ``laplacian``: the
    Laplacian used (``"cotan"`` or ``"robust"``); ``mesh``: the cleaned Mesh.
    """

    evals: np.ndarray
    evecs: np.ndarray
    mass: np.ndarray
    laplacian: str
    mesh: Mesh


def spectrum(mesh_like: Any, k: int = 20, *, laplacian: str = "auto"):
    """The ``k`` smallest Laplace-Beltrami eigenpairs -> :class:`Spectrum` (a list for a batch).

    ``laplacian``: ``"cotan"``, ``"robust"`` (tufted intrinsic Delaunay, for
    non-manifold or poor meshes) or ``"auto"`` (robust only when needed). Raises
    ValueError when ``k`` is not in ``1 .. n - 1`` (n: the cleaned mesh's vertices).
    """
    def one(mesh: Mesh) -> Spectrum:
        from meshgdl.geometry.laplacian import choose_laplacian_method
        from meshgdl.geometry.laplacian import laplacian as build_laplacian
        from meshgdl.geometry.spectral import eigenbasis

        n = mesh.n_vertices
        if not 1 <= int(k) < n:
            raise ValueError(f"k must be between 1 and {n - 1} for {_name(mesh)} ({n} vertices), got {k}")
        method = choose_laplacian_method(mesh.V, mesh.F) if laplacian == "auto" else laplacian
        L, M = build_laplacian(mesh.V, mesh.F, method=method)
        evals, evecs = eigenbasis(L, M, int(k))
        evals, evecs = np.asarray(evals, dtype=np.float64), np.asarray(evecs, dtype=np.float64)
        if evecs.shape != (n, k) or evals.shape != (k,):
            raise RuntimeError(f"eigenbasis returned shapes {evals.shape}, {evecs.shape}")
        mass = np.asarray(M.diagonal() if hasattr(M, "diagonal") else M, dtype=np.float64).reshape(-1)
        mass_in = np.zeros(mesh.n_orig_vertices)
        mass_in[mesh.new_to_orig] = mass
        return Spectrum(evals=evals, evecs=mesh.to_original_vertices(evecs, fill=0.0), mass=mass_in,
                        laplacian=method, mesh=mesh)

    return _each(mesh_like, one)


def compute_operators(mesh_like: Any, k_eig: int = 128, cache_dir=None, *, n_hks: int = 16,
                      laplacian: str = "auto"):
    """The operator bundle a network consumes -> :class:`meshgdl.operators.Operators`
    (a list for a batch); :func:`meshgdl.operators.compute_operators` on the cleaned mesh.

    The bundle is on the cleaned mesh (``ops.V``, ``ops.F``): identical to the input
    when the input has no duplicate or unreferenced vertices, else
    ``meshgdl.interop.as_mesh(mesh_like).orig_to_new`` maps input vertices to its rows.
    ``cache_dir``: where bundles are cached by content hash (``None``: no cache).
    """
    def one(mesh: Mesh):
        from meshgdl.operators import compute_operators as compute

        return compute(mesh.V, mesh.F, k_eig=k_eig, n_hks=n_hks, laplacian=laplacian,
                       cache_dir=None if cache_dir is None else Path(cache_dir).expanduser())

    return _each(mesh_like, one)


__all__ = ["segment", "SegmentationResult", "classify", "geodesic_distance", "spectrum", "Spectrum",
           "compute_operators", "input_vertices"]
