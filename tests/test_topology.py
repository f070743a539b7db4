"""Connectivity helpers of meshgdl.geometry.topology: ring distances."""

import numpy as np
import pytest
from scipy.sparse.csgraph import shortest_path

from meshgdl.data.synthetic import icosphere
from meshgdl.geometry.topology import ring_distance, vertex_adjacency


def strip(n_quads: int):
    """A row of quads, each split in two: vertices 2i (bottom) and 2i + 1 (top)."""
    F = []
    for i in range(n_quads):
        a, b, c, d = 2 * i, 2 * i + 2, 2 * i + 3, 2 * i + 1
        F += [[a, b, c], [a, c, d]]
    return np.array(F, dtype=np.int64), 2 * n_quads + 2


def test_ring_distance_on_a_strip_is_the_column_distance():
    F, n = strip(6)
    d = ring_distance(F, n, [0, 1], max_rings=10)  # the left column
    assert d.tolist() == [i // 2 for i in range(n)]
    # capped beyond max_rings
    assert ring_distance(F, n, [0, 1], max_rings=2).tolist() == [min(i // 2, 3) for i in range(n)]


def test_ring_distance_matches_breadth_first_search_and_accepts_a_mask():
    V, F = icosphere(3)
    n = len(V)
    seeds = [0, 17, 300]
    hops = shortest_path(vertex_adjacency(F, n), unweighted=True, indices=seeds).min(axis=0)
    d = ring_distance(F, n, seeds, max_rings=4)
    np.testing.assert_array_equal(d, np.minimum(hops, 5).astype(np.int64))
    mask = np.zeros(n, dtype=bool)
    mask[seeds] = True
    np.testing.assert_array_equal(ring_distance(F, n, mask, max_rings=4), d)
    assert mask.sum() == 3  # the caller's mask is not modified


def test_ring_distance_without_seeds_or_reachable_seeds():
    F, n = strip(3)
    assert (ring_distance(F, n, [], max_rings=3) == 4).all()
    F2 = np.concatenate([F, F + n])  # two copies; seeds only in the first
    d = ring_distance(F2, 2 * n, [0], max_rings=10)
    assert (d[n:] == 11).all() and d[0] == 0


def test_ring_distance_rejects_a_mask_of_the_wrong_length():
    F, n = strip(2)
    with pytest.raises(ValueError, match="seeds"):
        ring_distance(F, n, np.zeros(n + 1, dtype=bool), max_rings=1)
