"""``meshgdl classify`` and :mod:`meshgdl.classification` with the shipped ``shrec11``
model: output formats, top-K, many meshes (one failing among them), invariance of
the probabilities to rotation / scale / translation / vertex order, one-line errors,
the registry listing. No training: tiny untrained checkpoints stand in for "any
checkpoint from meshgdl train".

Tests on real SHREC'11 meshes run when the dataset is present
(``../shared/datasets/shrec_11_meshcnn_split16``; skipped otherwise): the shipped
model must classify the listed test meshes correctly (its measured test accuracy is
in ``meshgdl/pretrained/shrec11.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from meshgdl.cli import main
from meshgdl.io import Mesh, load_mesh, save_mesh
from meshes import icosphere

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_meshes"
SHREC = ROOT.parent / "shared" / "datasets" / "shrec_11_meshcnn_split16" / "shrec_16"
#: Test meshes (one per listed class) the shipped model must get right.
SHREC_CHECK = ["alien", "camel", "hand", "octopus", "two_balls"]
#: Largest change of any class probability under rotation / scale / vertex order.
INVARIANCE_ATOL = 1e-4

needs_shrec = pytest.mark.skipif(not SHREC.is_dir(), reason="SHREC'11 data not present")


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshgdl: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def shrec_test_mesh(cls: str) -> Path:
    return sorted((SHREC / cls / "test").glob("*.obj"))[0]


@pytest.fixture(scope="module")
def classifier():
    from meshgdl.classification import load_classifier

    return load_classifier("shrec11", device="cpu")


def transformed(mesh: Mesh, seed: int) -> Mesh:
    """A rotated, scaled, moved copy with its vertices in another order."""
    from meshgdl.data.transforms import random_rotation_matrix

    rng = np.random.default_rng(seed)
    R = random_rotation_matrix(rng)
    perm = rng.permutation(mesh.n_vertices)
    V = ((mesh.V @ R.T) * float(np.exp(rng.uniform(-4, 4))) + rng.normal(size=3) * 10)[perm]
    return Mesh.from_arrays(V, np.argsort(perm)[mesh.F])


# ----------------------------------------------------------------------------- registry


def test_shipped_model_is_listed_and_describes_itself(capsys):
    from meshgdl.pretrained import default_model, list_models

    assert default_model("classification") == "shrec11"
    (info,) = [m for m in list_models("classification") if m["name"] == "shrec11"]
    assert len(info["class_names"]) == 30 and info["class_names"][0] == "alien"
    assert "420" in info["trained_on"] and "val.txt" in info["trained_on"] and "SHREC" in info["licence"]
    assert info["training"]["data"]["val_split"] and info["training"]["data"]["augment"]
    assert info["working_vertices"] == 250 and info["model_config"]["unit_area"] is True
    assert info["model_config"]["in_features"] == ["hks"]
    assert 0.9 <= info["metrics"]["test_accuracy"] <= 1.0
    rc, out, _ = run(["models", "--format", "json"], capsys)
    assert rc == 0
    shipped = {m["name"]: m for m in json.loads(out)}
    assert shipped["shrec11"]["task"] == "classification"
    rc, out, _ = run(["models"], capsys)
    assert "shrec11 (default): classification, 30 classes" in out


# ----------------------------------------------------------------------------- command line


def test_text_output_top_k(capsys):
    rc, out, err = run(["classify", SAMPLES / "figure.ply", "--top", "4", "--quiet"], capsys)
    assert rc == 0, err
    (line,) = out.strip().splitlines()
    assert line.startswith(f"{SAMPLES / 'figure.ply'}: ")
    pairs = [p.rsplit(" ", 1) for p in line.split(": ", 1)[1].split(", ")]
    assert len(pairs) == 4
    probs = [float(p) for _, p in pairs]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-3
    # quiet: nothing on stderr but the OOD warning (a capsule figure is not a SHREC'11 mesh)
    assert all(ln.startswith("meshgdl: warning: ") for ln in err.strip().splitlines())


def test_json_output_and_default_top(capsys):
    rc, out, _ = run(["classify", SAMPLES / "figure.ply", "--format", "json", "--quiet"], capsys)
    assert rc == 0
    doc = json.loads(out)
    (r,) = doc["results"]
    assert len(r["top"]) == 3 and r["class"] == r["top"][0]["class"]
    assert r["n_vertices"] == 5114 and r["working_mesh"]["method"] == "decimated"
    assert 0.6 * 250 <= r["working_mesh"]["vertices"] <= 1.25 * 250
    assert doc["model"]["n_classes"] == 30 and doc["model"]["working_vertices"] == 250
    rc, out, _ = run(["classify", SAMPLES / "figure.ply", "--format", "json", "--top", "100", "-q"], capsys)
    top = json.loads(out)["results"][0]["top"]
    assert len(top) == 30 and abs(sum(t["probability"] for t in top) - 1.0) < 1e-9


def test_many_meshes_one_failing_keeps_the_others(tmp_path, capsys):
    V, F = icosphere(3)
    save_mesh(tmp_path / "ball.ply", V, F)
    meshes = [SAMPLES / "figure.ply", tmp_path / "missing.obj", tmp_path / "ball.ply", SAMPLES / "nan.obj"]
    rc, out, err = run(["classify", *meshes, "--quiet"], capsys)
    assert rc == 2
    lines = out.strip().splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [str(meshes[0]), str(meshes[2])]
    lines = err.strip().splitlines()
    # a ball is unlike every SHREC class: the shipped model's OOD warning may name it
    assert all(e.startswith(("meshgdl: error: ", "meshgdl: warning: ")) for e in lines)
    errs = [e for e in lines if e.startswith("meshgdl: error: ")]
    assert len(errs) == 2
    assert "missing.obj" in errs[0] and "not found" in errs[0] and "non-finite" in errs[1]
    rc, out, err = run(["classify", *meshes, "--format", "json", "--quiet"], capsys)
    res = json.loads(out)["results"]
    assert rc == 2 and [("error" in r) for r in res] == [False, True, False, True]
    assert [r["input"] for r in res] == [str(m) for m in meshes]
    # the progress bar (several meshes, not quiet) goes to stderr only
    rc, out, err = run(["classify", SAMPLES / "figure.ply", tmp_path / "ball.ply"], capsys)
    assert rc == 0 and len(out.strip().splitlines()) == 2 and "meshgdl: error" not in err


@pytest.mark.parametrize("name, fragment", [
    ("missing.obj", "not found"),
    ("pointcloud.ply", "no faces"),
    ("nan.obj", "non-finite"),
])
def test_bad_meshes_give_one_line(tmp_path, capsys, name, fragment):
    src = SAMPLES / name if (SAMPLES / name).exists() else tmp_path / name
    rc, out, err = run(["classify", src], capsys)
    assert_one_line_error(rc, err, fragment)
    assert out == ""


def test_degenerate_mesh_and_bad_options(tmp_path, capsys):
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\n")
    rc, _, err = run(["classify", tmp_path / "flat.obj"], capsys)
    assert_one_line_error(rc, err, "no surface area")
    rc, _, err = run(["classify", SAMPLES / "figure.ply", "--top", "0"], capsys)
    assert_one_line_error(rc, err, "--top")
    rc, _, err = run(["classify", SAMPLES / "figure.ply", "--model", "no_such_model"], capsys)
    assert_one_line_error(rc, err, "no_such_model")


def test_segmentation_model_is_refused(capsys):
    rc, out, err = run(["classify", SAMPLES / "figure.ply", "--model", "figure_parts"], capsys)
    assert_one_line_error(rc, err, "segmentation model, not a classification model")
    assert out == ""


def test_any_classification_checkpoint_from_training(tmp_path, capsys):
    """``--model RUN_DIR`` of a plain training run (no sidecar): class names from the
    checkpoint, the mesh used at its own resolution."""
    import torch

    from meshgdl.nn.models import ModelConfig, build_model
    from meshgdl.train.checkpoint import save_checkpoint

    cfg = ModelConfig(kind="gem", task="classification", n_classes=3, hidden_irreps="4x0+2x1", n_layers=1,
                      nonlinearity="gated", k_eig=8, n_hks=4, unit_area=True)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "run" / "best.safetensors", model_state=build_model(cfg).state_dict(),
                    model_config=cfg.to_dict(), extra={"class_names": ["cube", "ball", "cup"]})
    V, F = icosphere(2)
    save_mesh(tmp_path / "s.ply", V, F)
    rc, out, err = run(["classify", tmp_path / "s.ply", "--model", tmp_path / "run", "--format", "json", "-q"],
                       capsys)
    assert rc == 0, err
    doc = json.loads(out)
    r = doc["results"][0]
    assert sorted(t["class"] for t in r["top"]) == ["ball", "cube", "cup"]
    assert r["working_mesh"] == {"vertices": len(V), "faces": len(F), "method": "as-is"}
    assert doc["model"]["working_vertices"] is None


# ----------------------------------------------------------------------------- invariance


@pytest.mark.parametrize("seed", [0, 1])
def test_probabilities_invariant_to_rotation_scale_and_vertex_order(classifier, seed):
    """figure.ply (5k vertices) goes through decimation to the working resolution:
    the whole pipeline, not only the network, must be invariant."""
    from meshgdl.classification import classify

    m = load_mesh(SAMPLES / "figure.ply")
    a = classify(m, classifier).probabilities
    b = classify(transformed(m, seed), classifier).probabilities
    assert a.shape == (30,) and abs(a.sum() - 1) < 1e-9
    np.testing.assert_allclose(b, a, atol=INVARIANCE_ATOL)


def test_classification_api(classifier):
    from meshgdl.classification import classify

    r = classify(load_mesh(SAMPLES / "bumpy_sphere.stl"), classifier)
    top = r.top(5)
    assert [c for c, _ in top][0] == r.name == classifier.class_names[r.label]
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert set(r.timings) == {"preprocess", "predict"}
    assert r.to_dict(2)["top"][1]["class"] == top[1][0]


# ----------------------------------------------------------------------------- real SHREC meshes


@needs_shrec
def test_shrec_test_meshes_classified_correctly(classifier, capsys):
    paths = [shrec_test_mesh(c) for c in SHREC_CHECK]
    rc, out, err = run(["classify", *paths, "--top", "1", "--quiet"], capsys)
    assert rc == 0, err
    got = [ln.split(": ", 1)[1].split(" ")[0] for ln in out.strip().splitlines()]
    assert got == SHREC_CHECK
    # meshes like its training meshes: no out-of-distribution warning, even with --reject-ood
    assert "warning" not in err
    rc, _, err = run(["classify", *paths, "--reject-ood", "--quiet"], capsys)
    assert rc == 0 and "warning" not in err


@needs_shrec
def test_shrec_mesh_transformed_and_remeshed(classifier):
    """A SHREC test mesh: the same probabilities when rotated, scaled and renumbered;
    the same class when Loop-subdivided to 16x the faces (decimated back to 250
    vertices by the working mesh)."""
    import trimesh

    from meshgdl.classification import classify

    m = load_mesh(shrec_test_mesh("camel"))
    a = classify(m, classifier)
    assert a.working.method == "as-is"
    np.testing.assert_allclose(classify(transformed(m, 3), classifier).probabilities, a.probabilities,
                               atol=INVARIANCE_ATOL)
    V2, F2 = trimesh.remesh.subdivide_loop(m.V, m.F, iterations=2)
    fine = classify(Mesh.from_arrays(np.asarray(V2), np.asarray(F2)), classifier)
    assert fine.working.method == "decimated" and fine.name == "camel"
