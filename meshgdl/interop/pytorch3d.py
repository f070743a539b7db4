"""PyTorch3D ``Meshes`` batches <-> meshgdl, and meshgdl networks run on a ``Meshes`` batch.

Only ``pytorch3d.structures`` is used, which works with a CPU build of torch (the
``pytorch3d`` extra installs ``easypytorch3d``, a Linux wheel of PyTorch3D). Per-vertex
textures (:func:`with_vertex_features`) need ``pytorch3d.renderer``, whose compiled
ops need a CUDA build of torch; everything else here does not.

Alignment: ``from_pytorch3d(meshes)[i]`` keeps ``meshes.verts_list()[i]`` and
``meshes.faces_list()[i]`` (its ``file_V`` / ``source_F``), and every per-vertex tensor
this module returns has one row per row of ``meshes.verts_packed()``, in that order
(or is padded like ``meshes.verts_padded()`` with ``padded=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meshgdl.interop._core import ConvertedMesh, check_kind, export, from_arrays, to_numpy


def _check_meshes(meshes: Any) -> None:
    check_kind(meshes, "pytorch3d", ("Meshes",), "a pytorch3d.structures.Meshes batch")
    if len(meshes) == 0:
        raise ValueError("empty pytorch3d Meshes batch (no meshes)")


def from_pytorch3d(meshes: Any, *, process: bool = True) -> list[ConvertedMesh]:
    """A ``pytorch3d.structures.Meshes`` batch -> one :class:`~meshgdl.interop.ConvertedMesh`
    per mesh (named ``Meshes[i]`` in errors), cleaned, with maps back to that mesh's
    ``verts_list()[i]`` / ``faces_list()[i]``. Tensors may be on any device.

    Raises TypeError for anything but a Meshes, ValueError for an empty batch,
    MeshError for an empty or broken mesh in it.
    """
    _check_meshes(meshes)
    return [from_arrays(v, f, name=f"Meshes[{i}]", process=process)
            for i, (v, f) in enumerate(zip(meshes.verts_list(), meshes.faces_list()))]


def _items(meshes_like: Any) -> list:
    """A list/tuple of mesh-likes, a meshgdl batch (``TorchOperators`` or ``data.batching.Batch``),
    a PyTorch3D batch, or one mesh-like -> a list of mesh-likes."""
    if hasattr(meshes_like, "levels") and hasattr(meshes_like, "pools"):  # data.batching.Batch
        meshes_like = meshes_like.levels[0]
    if all(hasattr(meshes_like, a) for a in ("pos", "faces", "ptr", "num_graphs")):  # TorchOperators
        ptr = to_numpy(meshes_like.ptr).astype(np.int64)
        pos, faces = to_numpy(meshes_like.pos), to_numpy(meshes_like.faces)
        which = np.searchsorted(ptr, faces[:, 0], side="right") - 1
        return [(pos[ptr[i]:ptr[i + 1]], faces[which == i] - ptr[i]) for i in range(len(ptr) - 1)]
    from meshgdl.interop._core import is_batch

    if is_batch(meshes_like):
        return from_pytorch3d(meshes_like)
    pair = (isinstance(meshes_like, tuple) and len(meshes_like) == 2
            and all(getattr(a, "ndim", None) == 2 for a in meshes_like))
    if isinstance(meshes_like, (list, tuple)) and not pair:
        if not meshes_like:
            raise ValueError("no meshes given (an empty list)")
        return list(meshes_like)
    return [meshes_like]


def to_pytorch3d(meshes_like: Any, vertex_features=None, *, cleaned: bool = False, dtype=None, device=None):
    """Meshes -> a ``pytorch3d.structures.Meshes`` batch.

    ``meshes_like``: a list of mesh-likes (paths, ``(V, F)``, meshgdl Meshes, trimesh...),
    one mesh-like, or a meshgdl batch (:class:`~meshgdl.operators.TorchOperators`,
    ``meshgdl.data.batching.Batch``). Meshes converted by :mod:`meshgdl.interop` come back
    as their input's own arrays (``to_pytorch3d(from_pytorch3d(m))`` has the same
    packed vertices and faces as ``m``); ``cleaned=True`` gives cleaned meshes.
    ``dtype``: vertex dtype (default torch's default, float32); faces are int64.
    ``vertex_features``: optional per-vertex features attached as ``TexturesVertex``
    (see :func:`with_vertex_features`; a list with one (n_i, C) array per mesh --
    rows per output or per cleaned vertex -- or a packed (sum n_i, C) array).
    """
    import torch
    from pytorch3d.structures import Meshes

    dtype = dtype or torch.get_default_dtype()
    exs = [export(m, cleaned=cleaned) for m in _items(meshes_like)]
    verts = [torch.as_tensor(np.ascontiguousarray(e.V)).to(dtype=dtype, device=device) for e in exs]
    faces = [torch.as_tensor(np.ascontiguousarray(e.F), dtype=torch.int64, device=device) for e in exs]
    out = Meshes(verts=verts, faces=faces)
    if vertex_features is None:
        return out
    if isinstance(vertex_features, (list, tuple)):
        if len(vertex_features) != len(exs):
            raise ValueError(f"vertex_features: {len(vertex_features)} arrays for {len(exs)} meshes")
        vertex_features = [torch.as_tensor(e.vertex_values(f, f"vertex_features[{i}]"))
                           for i, (e, f) in enumerate(zip(exs, vertex_features))]
    return with_vertex_features(out, vertex_features)


def _per_mesh(meshes: Any, values, what: str) -> list:
    """Per-vertex values of a batch -> a list of (n_i, ...) tensors: from a list (one per
    mesh), a packed tensor (rows of ``verts_packed()``) or a padded one (N, max n_i, ...)."""
    import torch

    counts = [int(c) for c in meshes.num_verts_per_mesh().tolist()]
    if isinstance(values, (list, tuple)):
        if len(values) != len(counts):
            raise ValueError(f"{what}: {len(values)} arrays for a batch of {len(counts)} meshes")
        out = [torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in values]
        for i, (v, n) in enumerate(zip(out, counts)):
            if v.ndim < 1 or v.shape[0] != n:
                raise ValueError(f"{what}[{i}]: expected {n} rows (mesh {i}'s vertices), got {tuple(v.shape)}")
        return out
    t = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if t.ndim >= 1 and t.shape[0] == sum(counts):
        return list(torch.split(t, counts))
    if t.ndim >= 2 and t.shape[0] == len(counts) and t.shape[1] == max(counts):
        return [t[i, :n] for i, n in enumerate(counts)]
    raise ValueError(f"{what}: expected {sum(counts)} rows (verts_packed) or shape ({len(counts)}, {max(counts)}, ...) "
                     f"(verts_padded), got {tuple(t.shape)}")


def with_vertex_features(meshes: Any, features) -> Any:
    """The same batch with per-vertex ``features`` as ``TexturesVertex``.

    ``features``: packed (sum n_i, C) aligned with ``meshes.verts_packed()`` (what
    :func:`predict` returns), padded (N, max n_i, C), or a list of (n_i, C); 1-D
    values become C = 1. Needs ``pytorch3d.renderer`` (compiled ops: a CUDA build of
    torch); raises ImportError saying so where it cannot be imported.
    """
    _check_meshes(meshes)
    per = _per_mesh(meshes, features, "features")
    try:
        from pytorch3d.renderer.mesh.textures import TexturesVertex
    except ImportError as exc:
        raise ImportError(f"TexturesVertex needs pytorch3d.renderer, which cannot be imported here "
                          f"({' '.join(str(exc).split())[:120]}; its compiled ops need a CUDA build of torch); "
                          "keep the features as the packed tensor instead") from None
    per = [(p if p.ndim > 1 else p[:, None]).to(device=meshes.device, dtype=meshes.verts_packed().dtype)
           for p in per]
    return type(meshes)(verts=meshes.verts_list(), faces=meshes.faces_list(), textures=TexturesVertex(per))


def _network(model: Any, device=None):
    """A model name/path/None, a loaded model (``.model`` + ``.config``) or a meshgdl
    network (``.config``) -> ``(network, config)``."""
    import os

    if model is None or isinstance(model, (str, os.PathLike)):
        from meshgdl.pretrained import load_model

        lm = load_model(model, task=None if model is not None else "segmentation", device=device or "cpu")
        return lm.model, lm.config
    if hasattr(model, "model") and hasattr(model, "config"):  # LoadedModel, Segmenter
        return model.model, model.config
    if hasattr(model, "config") and callable(model):
        return model, model.config
    raise TypeError(f"expected a model name, checkpoint path or meshgdl network, got a {type(model).__name__}")


def to_batch(meshes_like: Any, config, *, cache_dir=None, device=None, dtype=None):
    """Meshes -> ``(batch, meshes)``: the :class:`meshgdl.data.batching.Batch` a meshgdl network
    with ``config`` takes (operators of each *cleaned* mesh, computed or read from
    ``cache_dir``) and the list of meshgdl Meshes (index maps back to each input)."""
    from meshgdl.interop._core import as_mesh
    from meshgdl.data.batching import collate_samples, prepare

    mlist = [as_mesh(m) for m in _items(meshes_like)]
    batch = collate_samples([prepare(m.V, m.F, config, cache_dir=cache_dir) for m in mlist],
                            device=device, dtype=dtype)
    return batch, mlist


def predict(model: Any, meshes: Any, *, padded: bool = False, cache_dir=None, device=None):
    """Run a meshgdl network on a PyTorch3D batch (or any list of mesh-likes).

    ``model``: a shipped model name, a checkpoint or run directory, ``None`` (the
    default segmentation model), a loaded model (``meshgdl.pretrained.load_model``,
    ``meshgdl.segmentation.load_segmenter``) or a meshgdl network (its ``.config`` says
    what geometry it needs). The network runs on each mesh at the mesh's own
    resolution, in its current mode (train/eval) and on its parameters' device, with
    autograd on, so a PyTorch3D training loop can call it and back-propagate into it.

    Returns for a segmentation network the per-vertex outputs (logits), float
    (sum n_i, C) aligned with ``meshes.verts_packed()`` -- merged duplicate vertices
    share a row, vertices used by no face get 0 -- or, with ``padded=True``,
    (N, max n_i, C) like ``verts_padded()`` (zero padding); for a classification
    network the (N, C) logits, one row per mesh. For the full segmentation pipeline
    (remeshing to the model's working resolution, label transfer, smoothing) use
    :func:`meshgdl.segment`, which accepts a Meshes batch too.
    """
    import torch

    net, config = _network(model, device)
    p = next(iter(net.parameters()), None)
    dev, dt = (p.device, p.dtype) if p is not None else (torch.device(device or "cpu"), torch.get_default_dtype())
    batch, mlist = to_batch(meshes, config, cache_dir=cache_dir, device=dev, dtype=dt)
    out = net(batch)
    if config.task != "segmentation":
        return out
    ptr = batch.ptr.tolist()
    pieces = []
    for i, m in enumerate(mlist):
        o = out[ptr[i]:ptr[i + 1]]
        idx = torch.as_tensor(m.orig_to_new, device=o.device)
        pieces.append(torch.where((idx >= 0)[:, None], o[idx.clamp_min(0)], o.new_zeros(())))
    if padded:
        return torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True, padding_value=0.0)
    return torch.cat(pieces)


__all__ = ["from_pytorch3d", "to_pytorch3d", "with_vertex_features", "to_batch", "predict"]
