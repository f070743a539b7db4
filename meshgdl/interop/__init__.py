"""Conversions between meshgdl and the mesh types of trimesh, Open3D, PyTorch Geometric
and PyTorch3D.

* ``from_X(obj)`` -> a :class:`ConvertedMesh`: a :class:`meshgdl.io.Mesh` cleaned like a
  loaded file (merged duplicate positions, unreferenced vertices dropped) whose index
  maps (``orig_to_new``, ``face_origin``, :meth:`~meshgdl.io.Mesh.to_original_vertices`)
  bring results back to the input's own vertices and faces; PyTorch3D gives one per
  mesh of the batch.
* ``to_X(mesh_like)`` -> the other library's object. A mesh that came from
  ``from_X`` / :func:`as_mesh` converts back to its input's arrays exactly (vertex
  and face order, duplicates and unreferenced vertices included); ``cleaned=True``
  gives the cleaned mesh.
* :func:`as_mesh` takes any of them (or a path, or ``(V, F)``) and is what
  ``meshgdl.segment`` and the other one-call functions use.

The libraries are imported only when one of their objects is converted; trimesh is
a core dependency, Open3D comes with the ``viewer`` extra, ``torch_geometric`` with
``pyg`` and PyTorch3D (``easypytorch3d``) with ``pytorch3d``.
"""

from meshgdl.interop._core import ConvertedMesh, as_mesh, as_meshes, from_arrays, is_batch
from meshgdl.interop.open3d import from_open3d, to_open3d
from meshgdl.interop.pyg import from_pyg, to_pyg
from meshgdl.interop.pytorch3d import from_pytorch3d, predict, to_pytorch3d, with_vertex_features
from meshgdl.interop.trimesh import from_trimesh, to_trimesh

__all__ = [
    "ConvertedMesh", "as_mesh", "as_meshes", "from_arrays", "is_batch",
    "from_trimesh", "to_trimesh", "from_open3d", "to_open3d", "from_pyg", "to_pyg",
    "from_pytorch3d", "to_pytorch3d", "with_vertex_features", "predict",
]
