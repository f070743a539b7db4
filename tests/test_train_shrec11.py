"""tools/train_shrec11.py's training copies (no training here): augmented copies are
seeded, valid working meshes at the stated resolutions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from meshes import torus

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("fast_simplification")


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("train_shrec11", ROOT / "tools" / "train_shrec11.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_shrec11", mod)
    spec.loader.exec_module(mod)
    return mod


def test_augmented_copies_are_seeded_valid_working_meshes(recipe):
    V, F = torus(24, 12)  # 288 vertices, about a SHREC mesh's
    lo, hi = recipe.AUGMENT_N_RANGE
    used_all = set()
    for seed in range(6):
        a, used = recipe.augmented_copy(V, F, np.random.default_rng(seed))
        b, _ = recipe.augmented_copy(V, F, np.random.default_rng(seed))
        np.testing.assert_array_equal(a.V, b.V)
        np.testing.assert_array_equal(a.F, b.F)
        assert a.F.min() >= 0 and a.F.max() < len(a.V) and np.all(np.isfinite(a.V))
        assert 0.8 * lo * recipe.WORKING_VERTICES <= len(a.V) <= 1.2 * hi * recipe.WORKING_VERTICES
        used_all |= set(used)
    assert used_all <= set(recipe.AUGMENT)
    plain, used = recipe.augmented_copy(V, F, np.random.default_rng(0), plain=True)
    assert used == [] and len(plain.F) > 0


def test_holes_are_cut_into_the_copy(recipe):
    V, F = torus(24, 12)
    a = recipe.retriangulate(V, F, np.random.default_rng(0), holes=2)
    # a closed torus has no boundary; a holed copy has boundary edges
    E = np.sort(np.concatenate([a.F[:, [0, 1]], a.F[:, [1, 2]], a.F[:, [2, 0]]]), axis=1)
    _, counts = np.unique(E, axis=0, return_counts=True)
    assert (counts == 1).any()
    b = recipe.retriangulate(V, F, np.random.default_rng(0))
    E = np.sort(np.concatenate([b.F[:, [0, 1]], b.F[:, [1, 2]], b.F[:, [2, 0]]]), axis=1)
    _, counts = np.unique(E, axis=0, return_counts=True)
    assert (counts == 2).all()
