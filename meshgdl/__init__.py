"""meshgdl: geometric deep learning on 3D triangle meshes.

Data flows one way: ``io`` (files -> Mesh) -> ``geometry`` (numpy/scipy) ->
``operators`` (per-mesh bundle, cached) -> ``nn`` (torch) -> ``data``/``train`` ->
``cli`` and ``viewer``.

One call per job on anything mesh-like (a path, ``(V, F)``, a trimesh / Open3D / PyG /
PyTorch3D mesh; see :mod:`meshgdl.api` and :mod:`meshgdl.interop`):
``meshgdl.segment``, ``meshgdl.classify``, ``meshgdl.geodesic_distance``, ``meshgdl.spectrum``,
``meshgdl.compute_operators``; ``meshgdl.load_animation`` reads a deforming mesh (a mesh
file + ``.pc2`` / ``.mdd`` point cache, or a folder of frame meshes). They are imported
on first use, so ``import meshgdl`` loads nothing heavy.
"""

__version__ = "0.1.0"

#: Names re-exported from :mod:`meshgdl.api`, loaded on first access.
_API = ("segment", "classify", "geodesic_distance", "spectrum", "compute_operators", "SegmentationResult", "Spectrum",
        "load_animation", "Animation")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from meshgdl import api

        return getattr(api, name)
    raise AttributeError(f"module 'meshgdl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
