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
