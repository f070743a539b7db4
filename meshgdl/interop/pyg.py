"""``torch_geometric.data.Data`` <-> meshgdl, PyG's mesh convention: ``pos (n, 3)``,
``face (3, m)`` long. torch_geometric is imported only when a conversion runs.

With ``operators=True`` the Data also carries the operator bundle of
:func:`meshgdl.operators.compute_operators`, under PyG-style names: ``edge_index
(2, E)`` (row 0 the neighbour q, row 1 the receiver p -- PyG's source -> target),
``theta``, ``r``, ``transport`` (E,), ``mass (n,)``, ``normals (n, 3)``, ``frames
(n, 3, 3)``, ``evecs (n, k)``, ``hks (n, T)`` and ``evals (1, k)`` (one row per
graph, so ``Batch.from_data_list`` stacks them). The sparse Laplacian and gradients
are not attached: PyG cannot batch them; use :func:`meshgdl.operators.collate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meshgdl.errors import MeshError
from meshgdl.interop._core import ConvertedMesh, check_kind, export, from_arrays, to_numpy

#: Operator-bundle fields attached by ``to_pyg(..., operators=True)``: per vertex, per edge, per graph.
VERTEX_FIELDS = ("mass", "normals", "frames", "evecs", "hks")
EDGE_FIELDS = ("theta", "r", "transport")


def from_pyg(data: Any, *, name: str | None = None, process: bool = True) -> ConvertedMesh:
    """``torch_geometric.data.Data`` with ``pos (n, 3)`` and ``face (3, m)`` ->
    :class:`~meshgdl.interop.ConvertedMesh` (cleaned, with maps back to ``pos`` /
    ``face``, which it keeps for :func:`to_pyg`).

    Raises TypeError for anything but a Data (a Batch of several graphs: use
    ``batch.to_data_list()``), MeshError when ``pos`` or ``face`` is missing or
    malformed or the mesh is empty.
    """
    check_kind(data, "torch_geometric", ("Data",), "a torch_geometric Data")
    name = name or "torch_geometric Data"
    if getattr(data, "num_graphs", 1) != 1 and hasattr(data, "to_data_list"):
        raise TypeError(f"a torch_geometric Batch of {data.num_graphs} graphs is not one mesh; "
                        "use batch.to_data_list()")
    pos, face = getattr(data, "pos", None), getattr(data, "face", None)
    if pos is None:
        raise MeshError(f"{name}: has no 'pos' (vertex positions)")
    if face is None:
        raise MeshError(f"{name}: has no 'face' (a point cloud or a plain graph?); a triangle mesh is needed")
    face = to_numpy(face)
    if face.ndim != 2 or face.shape[0] != 3:
        hint = " (PyG stores faces transposed: face = F.T)" if face.ndim == 2 and face.shape[1] == 3 else ""
        raise MeshError(f"{name}: 'face' must have shape (3, m), got {tuple(face.shape)}{hint}")
    return from_arrays(pos, face.T, name=name, process=process)


def to_pyg(mesh_like: Any, *, operators: bool | Any = False, k_eig: int = 128, cache_dir=None,
           dtype=None, cleaned: bool = False, **attrs):
    """A mesh-like -> ``torch_geometric.data.Data(pos (n, 3), face (3, m) long, ...)``.

    A mesh converted by :mod:`meshgdl.interop` comes back as its input's own arrays
    (exact round trip); ``cleaned=True`` or a Mesh loaded from a file gives the
    cleaned ``V``/``F``. ``dtype``: float tensors' dtype (default torch's default,
    float32 -- PyG's usual; pass ``torch.float64`` to keep float64 positions exactly).
    ``operators``: True (computed with ``k_eig``/``cache_dir``) or an
    :class:`~meshgdl.operators.Operators` of this mesh: attach the bundle (see the
    module docstring); needs a mesh that cleaning leaves unchanged, or ``cleaned=True``.
    ``attrs``: more attributes, stored as given -- except arrays with one row per
    *cleaned* vertex when the output has the input's vertices: those are mapped back
    (merged duplicates share a row, unreferenced vertices get 0).
    """
    import torch
    from torch_geometric.data import Data

    dtype = dtype or torch.get_default_dtype()
    ex = export(mesh_like, cleaned=cleaned)
    data = Data(pos=torch.as_tensor(np.ascontiguousarray(ex.V)).to(dtype),
                face=torch.as_tensor(np.ascontiguousarray(ex.F.T), dtype=torch.long))
    if operators is not False and operators is not None:
        mesh = ex.mesh
        if ex.source and not mesh.is_clean:
            raise MeshError(f"{mesh.source}: operators live on the cleaned mesh, and cleaning changed this one "
                            f"({'; '.join(mesh.warnings) or 'vertices or faces removed'}); pass cleaned=True")
        if operators is True:
            from meshgdl.operators import compute_operators

            operators = compute_operators(mesh.V, mesh.F, k_eig=k_eig, cache_dir=cache_dir)
        if not (hasattr(operators, "edge_index") and operators.V.shape == mesh.V.shape
                and np.array_equal(operators.F, mesh.F)):
            raise ValueError("operators: expected the Operators of this very mesh (same V and F)")
        data.edge_index = torch.as_tensor(operators.edge_index, dtype=torch.long)
        for f in VERTEX_FIELDS + EDGE_FIELDS:
            data[f] = torch.as_tensor(np.ascontiguousarray(getattr(operators, f))).to(dtype)
        data.evals = torch.as_tensor(operators.evals).to(dtype).reshape(1, -1)
    for k, v in attrs.items():
        rows = len(v) if hasattr(v, "__len__") and not isinstance(v, (str, bytes, dict)) else None
        if ex.source and rows == ex.mesh.n_vertices != len(ex.V):  # per cleaned vertex: map back
            v = torch.as_tensor(ex.vertex_values(v, k))
        data[k] = v
    return data
