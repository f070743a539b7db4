"""meshgdl.interop: exact round trips with trimesh, Open3D, PyTorch Geometric and
PyTorch3D objects (duplicate and unreferenced vertices included), index maps back to
the input's order, networks on a PyTorch3D batch, one-line errors for bad input.

The optional libraries come with ``pip install -e .[dev]`` (tools/setup.sh); a test
is skipped, saying which library is missing, only where one is absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meshgdl.errors import MeshError
from meshgdl.interop import ConvertedMesh, as_mesh, as_meshes, is_batch
from meshes import icosphere, torus

TORUS = str(Path(__file__).resolve().parents[1] / "sample_meshes" / "torus.off")


def _need(module: str, extra: str):
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install -c constraints.txt "
                                               f"-e '.[{extra}]')")


def dirty_sphere():
    """An icosphere whose arrays have a duplicate of vertex 0 (used by two faces), an
    unreferenced vertex in the middle and one at the end: cleaning changes the order."""
    V, F = icosphere(1)
    n = len(V)
    mid = n // 2
    # insert an unused vertex at position `mid`, shifting later indices
    V2 = np.vstack([V[:mid], [[7.0, 7.0, 7.0]], V[mid:], V[:1], [[-3.0, 2.0, 1.0]]])
    F2 = np.where(F >= mid, F + 1, F)
    dup = n + 1  # the copy of vertex 0
    uses0 = np.flatnonzero((F2 == 0).any(1))[:2]
    for j in uses0:
        F2[j][F2[j] == 0] = dup
    return V2, F2.astype(np.int64), {"unused": [mid, n + 2], "dup": (0, dup)}


# ----------------------------------------------------------------------------- core


def test_converted_mesh_cleans_and_keeps_maps_and_source():
    V, F, info = dirty_sphere()
    m = as_mesh((V, F))
    assert isinstance(m, ConvertedMesh) and not m.is_clean
    assert m.n_orig_vertices == len(V) and m.n_vertices == len(V) - 3
    assert np.array_equal(m.file_V, V) and np.array_equal(m.source_F, F)
    a, b = info["dup"]
    assert m.orig_to_new[a] == m.orig_to_new[b] >= 0
    assert (m.orig_to_new[info["unused"]] == -1).all()
    # every input face maps to a cleaned face over the same positions
    assert np.array_equal(m.V[m.F], V[F][m.face_origin])
    vals = np.arange(m.n_vertices) * 10
    back = m.to_original_vertices(vals, fill=-1)
    assert back[a] == back[b] and (back[info["unused"]] == -1).all()
    clean = as_mesh(icosphere(1))
    assert clean.is_clean and np.array_equal(clean.orig_to_new, np.arange(clean.n_vertices))


@pytest.mark.parametrize(
    "obj, exc, fragment",
    [
        (42, TypeError, "cannot use a int as a mesh"),
        (np.zeros((5, 3)), TypeError, "alone is not a mesh; pass (V, F)"),
        ((np.zeros((0, 3)), np.zeros((0, 3), dtype=int)), MeshError, "empty mesh"),
        ((np.zeros((3, 3)), np.zeros((0, 3), dtype=int)), MeshError, "no faces"),
        ((np.eye(3), np.array([[0, 1, 3]])), MeshError, "references vertex 3"),
        ((np.eye(3), np.array([[0.0, 1.0, 2.0]])), MeshError, "faces must be integers"),
        ((np.eye(3)[:, :2], np.array([[0, 1, 2]])), MeshError, "vertices must have shape (n, 3)"),
        ((np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]]), np.array([[0, 1, 2]])), MeshError, "non-finite"),
        ("nope/missing.obj", MeshError, "file not found"),
    ],
)
def test_bad_inputs_one_line_errors(obj, exc, fragment):
    with pytest.raises(exc) as ei:
        as_mesh(obj)
    msg = str(ei.value)
    assert fragment in msg and "\n" not in msg


def test_import_meshgdl_loads_no_optional_library():
    code = ("import sys, meshgdl, meshgdl.interop, meshgdl.api; "
            "print(sorted(m for m in ('torch', 'trimesh', 'open3d', 'torch_geometric', 'pytorch3d') "
            "if m in sys.modules)); meshgdl.segment")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- trimesh


def test_trimesh_round_trip_is_exact():
    import trimesh

    from meshgdl.interop import from_trimesh, to_trimesh

    V, F, info = dirty_sphere()
    tm = trimesh.Trimesh(V, F, process=False)
    m = from_trimesh(tm)
    assert m.n_vertices == len(V) - 3 and m.source == "trimesh.Trimesh"
    back = to_trimesh(m)
    assert np.array_equal(back.vertices, V) and np.array_equal(back.faces, F)
    assert np.array_equal(to_trimesh(tm).faces, F)  # any mesh-like, directly
    # per-cleaned-vertex values come back on the input's vertices
    lab = np.arange(m.n_vertices)
    t2 = to_trimesh(m, vertex_attributes={"label": lab}, face_attributes={"area": np.ones(len(F))})
    assert np.array_equal(t2.vertex_attributes["label"], m.to_original_vertices(lab, fill=0))
    c = to_trimesh(m, cleaned=True)
    assert np.array_equal(c.vertices, m.V) and np.array_equal(c.faces, m.F)
    with pytest.raises(ValueError, match=r"expected 45 \(or 42, the cleaned mesh.s\) rows"):
        to_trimesh(m, vertex_attributes={"x": np.zeros(7)})
    with pytest.raises(TypeError, match="trimesh.Scene"):
        from_trimesh(trimesh.Scene([tm]))
    with pytest.raises(TypeError, match="expected a trimesh.Trimesh"):
        from_trimesh(trimesh.PointCloud(V))
    with pytest.raises(MeshError, match="trimesh.Trimesh: no vertices and no faces"):
        from_trimesh(trimesh.Trimesh())


# ----------------------------------------------------------------------------- Open3D


def test_open3d_round_trip_is_exact_with_colors():
    o3d = _need("open3d", "viewer")
    from meshgdl.interop import from_open3d, to_open3d

    V, F, info = dirty_sphere()
    om = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(V), o3d.utility.Vector3iVector(F.astype(np.int32)))
    m = from_open3d(om)
    back = to_open3d(m, vertex_colors=np.full((m.n_vertices, 3), 255, dtype=np.uint8))
    assert np.array_equal(np.asarray(back.vertices), V)
    assert np.array_equal(np.asarray(back.triangles), F)
    col = np.asarray(back.vertex_colors)
    assert col.shape == (len(V), 3) and (col[info["unused"]] == 0).all() and col[0].tolist() == [1, 1, 1]
    tm = o3d.t.geometry.TriangleMesh.from_legacy(om)
    assert np.array_equal(from_open3d(tm).source_F, F)
    with pytest.raises(TypeError, match="expected an open3d TriangleMesh"):
        from_open3d(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(V)))
    with pytest.raises(MeshError, match="open3d TriangleMesh: no vertices and no faces"):
        from_open3d(o3d.geometry.TriangleMesh())


# ----------------------------------------------------------------------------- PyG


def test_pyg_round_trip_is_exact_and_batches():
    _need("torch_geometric", "pyg")
    import torch
    from torch_geometric.data import Batch, Data

    from meshgdl.interop import from_pyg, to_pyg

    V, F, info = dirty_sphere()
    d = Data(pos=torch.as_tensor(V, dtype=torch.float32), face=torch.as_tensor(F.T))
    m = from_pyg(d)
    back = to_pyg(m)  # float32 default, like PyG
    assert torch.equal(back.pos, d.pos) and torch.equal(back.face, d.face) and back.face.dtype == torch.long
    d64 = Data(pos=torch.as_tensor(V), face=torch.as_tensor(F.T))
    assert torch.equal(to_pyg(from_pyg(d64), dtype=torch.float64).pos, d64.pos)
    # per-cleaned-vertex attributes are mapped back, others stored as given
    b2 = to_pyg(m, label=torch.arange(m.n_vertices), y=3)
    assert b2.label.shape == (len(V),) and b2.y == 3
    assert b2.label[info["dup"][0]] == b2.label[info["dup"][1]]

    batch = Batch.from_data_list([d, Data(pos=torch.rand(4, 3), face=torch.tensor([[0, 1, 2], [1, 3, 2]]).T)])
    assert is_batch(batch)
    ms = as_meshes(batch)
    assert [x.n_orig_vertices for x in ms] == [len(V), 4]
    assert np.array_equal(ms[0].source_F, F)
    with pytest.raises(TypeError, match="Batch of 2 graphs"):
        from_pyg(batch)
    with pytest.raises(MeshError, match="has no 'face'"):
        from_pyg(Data(pos=d.pos))
    with pytest.raises(MeshError, match=r"shape \(3, m\).*transposed"):
        from_pyg(Data(pos=d.pos, face=torch.as_tensor(F)))
    with pytest.raises(TypeError, match="expected a torch_geometric Data"):
        from_pyg((V, F))


def test_pyg_operators_as_attributes():
    _need("torch_geometric", "pyg")
    import torch
    from torch_geometric.data import Batch

    from meshgdl.interop import to_pyg
    from meshgdl.operators import compute_operators

    V, F = icosphere(1)
    ops = compute_operators(V, F, k_eig=8, n_hks=4)
    d = to_pyg((V, F), operators=ops)
    assert torch.equal(d.edge_index, torch.as_tensor(ops.edge_index))
    assert d.theta.shape == (ops.num_edges,) and d.evecs.shape == (len(V), 8) and d.evals.shape == (1, 8)
    assert d.frames.shape == (len(V), 3, 3) and d.hks.shape == (len(V), 4)
    b = Batch.from_data_list([d, d])  # PyG batches the bundle like any graph
    assert b.edge_index.shape[1] == 2 * ops.num_edges and b.evals.shape == (2, 8)
    Vd, Fd, _ = dirty_sphere()
    with pytest.raises(MeshError, match="operators live on the cleaned mesh.*cleaned=True"):
        to_pyg((Vd, Fd), operators=True, k_eig=8)
    dc = to_pyg((Vd, Fd), operators=True, k_eig=8, cleaned=True)
    assert dc.pos.shape == (len(Vd) - 3, 3) and dc.evecs.shape == (len(Vd) - 3, 8)
    with pytest.raises(ValueError, match="Operators of this very mesh"):
        to_pyg(torus(8, 6), operators=ops)


# ----------------------------------------------------------------------------- PyTorch3D


@pytest.fixture
def p3d_batch():
    _need("pytorch3d.structures", "pytorch3d")
    import torch
    from pytorch3d.structures import Meshes

    V1, F1, info = dirty_sphere()
    V2, F2 = torus(10, 6)
    meshes = Meshes(verts=[torch.as_tensor(V1, dtype=torch.float32), torch.as_tensor(V2, dtype=torch.float32)],
                    faces=[torch.as_tensor(F1), torch.as_tensor(F2)])
    return meshes, info


def test_pytorch3d_round_trip_of_two_different_meshes(p3d_batch):
    import torch

    from meshgdl.interop import from_pytorch3d, to_pytorch3d

    meshes, info = p3d_batch
    ms = from_pytorch3d(meshes)
    assert [m.source for m in ms] == ["Meshes[0]", "Meshes[1]"]
    assert [m.n_orig_vertices for m in ms] == meshes.num_verts_per_mesh().tolist()
    assert ms[0].n_vertices == ms[0].n_orig_vertices - 3 and ms[1].is_clean
    back = to_pytorch3d(ms)
    assert torch.equal(back.verts_packed(), meshes.verts_packed())
    assert torch.equal(back.faces_packed(), meshes.faces_packed())
    assert is_batch(meshes) and len(as_meshes(meshes)) == 2
    # mixed inputs and a meshgdl operator batch
    mixed = to_pytorch3d([ms[1], TORUS])
    assert mixed.num_verts_per_mesh().tolist() == [ms[1].n_vertices, 1152]
    from meshgdl.operators import collate, compute_operators

    ob = collate([compute_operators(m.V, m.F, k_eig=4, n_hks=2) for m in ms])
    fromb = to_pytorch3d(ob, cleaned=True)
    assert torch.equal(fromb.faces_list()[0], torch.as_tensor(ms[0].F))
    assert torch.allclose(fromb.verts_list()[1], torch.as_tensor(ms[1].V, dtype=torch.float32))


def test_pytorch3d_bad_inputs(p3d_batch):
    import torch
    from pytorch3d.structures import Meshes

    from meshgdl.interop import from_pytorch3d, to_pytorch3d, with_vertex_features

    meshes, _ = p3d_batch
    with pytest.raises(ValueError, match="empty pytorch3d Meshes batch"):
        from_pytorch3d(Meshes(verts=[], faces=[]))
    with pytest.raises(TypeError, match="expected a pytorch3d.structures.Meshes"):
        from_pytorch3d([np.zeros((3, 3))])
    empty_one = Meshes(verts=[torch.rand(3, 3), torch.zeros(0, 3)],
                       faces=[torch.tensor([[0, 1, 2]]), torch.zeros(0, 3, dtype=torch.long)])
    with pytest.raises(MeshError, match=r"Meshes\[1\]: no vertices and no faces"):
        from_pytorch3d(empty_one)
    with pytest.raises(TypeError, match="batch of 2 meshes is not one mesh"):
        as_mesh(meshes)
    with pytest.raises(ValueError, match="1 arrays for 2 meshes"):
        to_pytorch3d(from_pytorch3d(meshes), vertex_features=[np.zeros(45)])
    with pytest.raises(ValueError, match="expected 105 rows"):
        with_vertex_features(meshes, torch.zeros(7, 3))
    with pytest.raises(ValueError, match="no meshes given"):
        to_pytorch3d([])


def test_pytorch3d_vertex_features_as_textures(p3d_batch):
    import torch

    from meshgdl.interop import with_vertex_features

    meshes, _ = p3d_batch
    feats = torch.rand(int(meshes.num_verts_per_mesh().sum()), 3)
    try:
        import pytorch3d.renderer  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="TexturesVertex needs pytorch3d.renderer.*CUDA build of torch"):
            with_vertex_features(meshes, feats)
        pytest.skip("pytorch3d.renderer needs a CUDA build of torch here; the error above was checked")
    out = with_vertex_features(meshes, feats)
    assert torch.equal(out.textures.verts_features_packed(), feats)


def _tiny_model(task="segmentation", n_classes=3):
    import torch

    from meshgdl.nn.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(task=task, n_classes=n_classes, hidden_irreps="2x0 + 2x1", n_layers=1, head_hidden=8,
                      nonlinearity="gated", k_eig=8, n_hks=4)
    return build_model(cfg).double().eval()


def test_predict_on_a_pytorch3d_batch_is_aligned_with_verts_packed(p3d_batch):
    import torch

    from meshgdl.interop import from_pytorch3d, predict

    meshes, info = p3d_batch
    net = _tiny_model()
    out = predict(net, meshes)
    counts = meshes.num_verts_per_mesh().tolist()
    assert out.shape == (sum(counts), 3) and out.dtype == torch.float64
    # the same as each mesh alone, and equal to the network on the cleaned mesh mapped back
    ms = from_pytorch3d(meshes)
    parts = torch.split(out, counts)
    for m, part in zip(ms, parts):
        alone = predict(net, [(m.V, m.F)])
        assert torch.allclose(part, torch.as_tensor(m.to_original_vertices(alone.detach().numpy(), fill=0.0)),
                              atol=1e-9)
    a, b = info["dup"]
    assert torch.equal(parts[0][a], parts[0][b]) and (parts[0][info["unused"]] == 0).all()
    padded = predict(net, meshes, padded=True)
    assert padded.shape == (2, max(counts), 3) and torch.equal(padded[1, :counts[1]], parts[1])
    # a training loop can back-propagate into the network
    net.train()
    predict(net, meshes).square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    cls = predict(_tiny_model("classification", 4), meshes)
    assert cls.shape == (2, 4)


def test_predict_with_a_shipped_model_name(p3d_batch):
    from meshgdl.interop import predict

    from meshgdl.interop import to_pytorch3d

    meshes, _ = p3d_batch
    one = to_pytorch3d(TORUS)
    out = predict("figure_parts", one)
    assert out.shape == (1152, 10) and bool(out.isfinite().all())
    with pytest.raises(TypeError, match="expected a model name"):
        predict(3.5, meshes)
