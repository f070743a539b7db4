"""The one-call API (meshgdl.segment / classify / geodesic_distance / spectrum /
compute_operators) on every kind of mesh-like, results in the input's own order, the
same labels as ``meshgdl segment`` on the same file, and the README's "Using meshgdl
from Python" examples, executed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import meshgdl
from meshgdl.cli import main
from meshgdl.errors import CheckpointError, MeshError
from meshgdl.interop import as_mesh
from meshgdl.io import load_mesh
from meshes import icosphere
from test_interop import dirty_sphere

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_meshes"
FIGURE = SAMPLES / "figure.ply"


@pytest.fixture(scope="module")
def figure_segmenter():
    from meshgdl.segmentation import load_segmenter

    return load_segmenter("figure_parts", device="cpu")


@pytest.fixture(scope="module")
def figure_result(figure_segmenter):
    import trimesh

    tm = trimesh.load(FIGURE, process=False)
    return tm, meshgdl.segment(tm, model=figure_segmenter)


def _labels(p):
    return np.loadtxt(p, dtype=np.int64)


def test_segment_a_trimesh_gives_the_cli_labels(tmp_path, capsys, figure_result):
    tm, res = figure_result
    out = tmp_path / "fig.ply"
    rc = main(["segment", str(FIGURE), "-o", str(out), "--model", "figure_parts", "--device", "cpu", "--quiet"])
    capsys.readouterr()
    assert rc == 0
    assert np.array_equal(res.vertex_labels, _labels(tmp_path / "fig.vertex_labels.txt"))
    assert np.array_equal(res.face_labels, _labels(tmp_path / "fig.face_labels.txt"))
    assert res.vertex_labels.shape == (len(tm.vertices),) and res.face_labels.shape == (len(tm.faces),)
    assert res.class_names[:2] == ["head", "torso"] and res.vertex_names[0] in res.class_names
    assert res.probabilities.shape == (len(tm.vertices), 10)
    assert np.allclose(res.probabilities.sum(1), 1.0)
    assert sum(r["vertices"] for r in res.summary()) == len(tm.vertices)
    gt = _labels(SAMPLES / "figure.vertex_labels.txt")
    assert np.mean(res.vertex_labels == gt) > 0.9


def test_segment_in_the_input_order_of_dirty_arrays(figure_segmenter, figure_result):
    """Permuted vertices plus a duplicate and an unreferenced vertex: labels follow the
    input's numbering, the duplicate shares its twin's label, the loose vertex gets one too."""
    tm, ref = figure_result
    V, F = np.asarray(tm.vertices), np.asarray(tm.faces)
    n = len(V)
    perm = np.random.default_rng(0).permutation(n)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(n)
    Vp = np.vstack([V[perm], V[perm[:1]], V.mean(0, keepdims=True)])  # n: copy of vertex 0, n+1: unused
    Fp = inv[F]
    j = int(np.flatnonzero((Fp == 0).any(1))[0])
    Fp[j][Fp[j] == 0] = n
    res = meshgdl.segment((Vp, Fp), model=figure_segmenter)
    assert res.vertex_labels.shape == (n + 2,) and res.face_labels.shape == (len(F),)
    assert np.mean(res.vertex_labels[:n] == ref.vertex_labels[perm]) >= 0.999
    assert res.vertex_labels[n] == res.vertex_labels[0] and res.vertex_labels[n + 1] >= 0
    assert np.isnan(res.probabilities[n + 1]).all() and np.isfinite(res.probabilities[:n + 1]).all()
    assert np.mean(res.face_labels == ref.face_labels) >= 0.999  # faces keep their order


def test_segment_a_pytorch3d_batch_of_two_meshes(figure_segmenter, figure_result):
    pytest.importorskip("pytorch3d.structures", reason="pytorch3d is not installed (pip install -e '.[pytorch3d]')")
    import torch
    from pytorch3d.structures import Meshes

    tm, ref = figure_result
    torus = load_mesh(SAMPLES / "torus.off")
    meshes = Meshes(verts=[torch.as_tensor(np.asarray(tm.vertices)), torch.as_tensor(torus.V)],
                    faces=[torch.as_tensor(np.asarray(tm.faces)), torch.as_tensor(torus.F)])
    out = meshgdl.segment(meshes, model=figure_segmenter)
    assert isinstance(out, list) and len(out) == 2
    assert np.array_equal(out[0].vertex_labels, ref.vertex_labels)
    assert out[1].vertex_labels.shape == (1152,) and out[1].face_labels.shape == (2304,)
    d = meshgdl.geodesic_distance(meshes, source=3)
    assert [len(x) for x in d] == [len(tm.vertices), 1152] and d[0][3] == 0 == d[1][3]


def test_segment_errors():
    with pytest.raises(TypeError, match="cannot use a dict as a mesh"):
        meshgdl.segment({"V": 1})
    with pytest.raises(CheckpointError, match="neither a shipped model"):
        meshgdl.segment(icosphere(2), model="no_such_model")
    with pytest.raises(MeshError, match="no surface area"):
        meshgdl.segment((np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]]), np.array([[0, 1, 2]])))
    with pytest.raises(ValueError, match="smooth must be >= 0"):
        meshgdl.segment(icosphere(2), smooth=-1)


def test_geodesic_distance_in_the_input_order():
    from meshgdl.geometry.geodesics import heat_geodesic_distance

    V, F, info = dirty_sphere()
    m = as_mesh((V, F))
    a, b = info["dup"]
    d = meshgdl.geodesic_distance((V, F), source=b)  # the duplicate copy of vertex 0 as source
    ref = heat_geodesic_distance(m.V, m.F, [m.orig_to_new[a]])
    assert np.array_equal(d, m.to_original_vertices(ref, fill=np.inf))
    assert d[a] == d[b] == 0 and np.isinf(d[info["unused"]]).all()
    exact = meshgdl.geodesic_distance((V, F), source=[a, 5], exact=True)
    assert exact[5] == 0 and np.isfinite(exact[:5]).all()
    for src, frag in [(len(V), f"source {len(V)} is out of range: mesh has {len(V)} vertices"),
                      (info["unused"][0], "that vertex is used by no face of mesh"),
                      (1.5, "must be integer indices"), ([], "no source vertex")]:
        with pytest.raises(ValueError, match=re.escape(frag)):
            meshgdl.geodesic_distance((V, F), source=src)
    with pytest.raises(ValueError, match="t_coef must be a positive number"):
        meshgdl.geodesic_distance((V, F), 0, t_coef=0)


def test_spectrum_and_operators_of_dirty_input():
    V, F, info = dirty_sphere()
    s = meshgdl.spectrum((V, F), k=6)
    a, b = info["dup"]
    assert s.evecs.shape == (len(V), 6) and np.array_equal(s.evecs[a], s.evecs[b])
    assert (s.evecs[info["unused"]] == 0).all() and s.mass[b] == 0 and s.mass[a] > 0
    assert np.allclose(s.evecs.T @ (s.mass[:, None] * s.evecs), np.eye(6), atol=1e-8)
    assert s.laplacian in ("cotan", "robust") and abs(s.evals[0]) < 1e-8
    with pytest.raises(ValueError, match="k must be between 1 and 41"):
        meshgdl.spectrum((V, F), k=42)
    ops = meshgdl.compute_operators((V, F), k_eig=8, n_hks=4)
    m = as_mesh((V, F))
    assert np.array_equal(ops.V, m.V) and ops.evecs.shape == (m.n_vertices, 8)


def test_operators_of_a_library_object_are_cached(tmp_path):
    import trimesh

    Vi, Fi = icosphere(2)
    tm = trimesh.Trimesh(Vi, Fi, process=False)
    ops = meshgdl.compute_operators(tm, k_eig=8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and ops.evecs.shape == (len(Vi), 8)
    again = meshgdl.compute_operators((Vi, Fi), k_eig=8, cache_dir=tmp_path)  # read back from the cache
    assert np.array_equal(again.evecs, ops.evecs)


def test_classify_with_a_loaded_classifier():
    clsmod = pytest.importorskip("meshgdl.classification", reason="meshgdl.classification is not in this tree")
    from test_interop import _tiny_model

    net = _tiny_model("classification", 4).float()
    clf = clsmod.Classifier(model=net, config=net.config, class_names=["a", "b", "c", "d"], working_vertices=None,
                            area=1.0, path="tiny", device="cpu", info={})
    out = meshgdl.classify(icosphere(2), model=clf)
    assert out.probabilities.shape == (4,) and out.name in "abcd"
    assert np.isclose(out.probabilities.sum(), 1.0)


# ----------------------------------------------------------------------------- README


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Using meshgdl from Python\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert m, "README has no 'Using meshgdl from Python' section"
    return re.findall(r"^```python\n(.*?)^```", m.group(1), flags=re.S | re.M)


BLOCKS = _readme_python_blocks()
NEEDS = {"open3d": "viewer", "torch_geometric": "pyg", "pyg": "pyg", "pytorch3d": "pytorch3d"}


def test_readme_section_has_one_example_per_library():
    text = "\n".join(BLOCKS)
    assert len(BLOCKS) >= 5
    for word in ("meshgdl.segment(", "from_trimesh", "to_open3d", "to_pyg", "to_pytorch3d", "predict("):
        assert word in text, word


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_examples_run(i, tmp_path, monkeypatch):
    code = BLOCKS[i]
    for word, extra in NEEDS.items():
        if re.search(rf"\b{word}\b", code) and word != "pyg":
            pytest.importorskip(word, reason=f"{word} is not installed (pip install -e '.[{extra}]')")
    if "to_pyg" in code:
        pytest.importorskip("torch_geometric", reason="torch_geometric is not installed (pip install -e '.[pyg]')")
    os.symlink(SAMPLES, tmp_path / "sample_meshes")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md python block {i}", "exec"), {"__name__": "__readme__"})
