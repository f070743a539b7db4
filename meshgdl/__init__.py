"""meshgdl: geometric deep learning on 3D triangle meshes.

Data flows one way: ``io`` (files -> Mesh) -> ``geometry`` (numpy/scipy) ->
``operators`` (per-mesh bundle, cached) -> ``nn`` (torch) -> ``data``/``train`` ->
``cli`` and ``viewer``.
"""

__version__ = "0.1.0"
