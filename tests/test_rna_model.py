"""The shipped ``rna_surface`` model (tools/train_rna.py): its registry entry, its class
names / label values (class index c <-> RNA file label c - 1) and one segmentation of a
small sample mesh. Needs no dataset and trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshgdl.pretrained import PRETRAINED_DIR, describe, list_models, names

SAMPLES = Path(__file__).resolve().parents[1] / "sample_meshes"
RNA = PRETRAINED_DIR / "rna_surface.safetensors"
pytestmark = pytest.mark.skipif(not RNA.is_file(), reason="rna_surface not shipped in this installation")


def test_rna_surface_is_registered_with_its_label_values():
    assert "rna_surface" in names()
    assert "rna_surface" in {d["name"] for d in list_models("segmentation")}
    d = describe("rna_surface")
    assert d["task"] == "segmentation" and d["model_config"]["n_classes"] == 260
    assert d["class_names"] == [str(v) for v in range(-1, 259)]
    assert d["label_values"] == list(range(-1, 259))
    assert "MIT" in d["licence"] and "Poulenard" in d["trained_on"]
    assert 0 < d["metrics"]["test_vertex_accuracy"] <= 1 and d["metrics"]["test_meshes"] == 136
    assert RNA.stat().st_size < 2_000_000


def test_rna_surface_segments_a_small_mesh():
    from meshgdl.api import segment

    r = segment(SAMPLES / "torus.off", model="rna_surface")
    n = len(r.mesh.file_V) if r.mesh.file_V is not None else r.mesh.n_vertices
    assert r.vertex_labels.shape == (n,)
    assert r.vertex_labels.min() >= 0 and r.vertex_labels.max() < 260
    assert len(r.class_names) == 260


RNA_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "rna_surface_segmentation"


@pytest.mark.skipif(not (RNA_DATA / "off").is_dir(), reason="RNA dataset not present")
def test_rna_test_mesh_labelled_in_its_own_values_and_not_flagged(tmp_path, capsys):
    """One test molecule through ``meshgdl segment --model rna_surface``: the label file
    holds the dataset's values (-1..258) in the file's vertex order, most of them equal to
    the ground truth, and the mesh is not flagged as out of distribution."""
    import json

    import numpy as np

    from meshgdl.cli import main

    name = Path(sorted((RNA_DATA / "test.txt").read_text().split())[0]).stem
    off = RNA_DATA / "off" / f"{name}.off"
    truth = np.loadtxt(RNA_DATA / "labels" / f"{name}.txt", dtype=np.int64)
    out = tmp_path / "m.ply"
    assert main(["segment", str(off), "--model", "rna_surface", "-o", str(out), "-q", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["in_distribution"] is True and doc["ood_score"] <= doc["ood_threshold"]
    got = np.loadtxt(tmp_path / "m.vertex_labels.txt", dtype=np.int64)
    assert got.shape == truth.shape and got.min() >= -1 and got.max() <= 258
    assert np.mean(got == truth) > 0.6
