"""The working mesh attached to a deforming surface (meshgdl.data.working_mesh.attach_working_mesh)."""

from __future__ import annotations

import numpy as np

from meshes import icosphere
from meshgdl.data.working_mesh import attach_working_mesh, working_mesh
from meshgdl.geometry.normals import vertex_areas


def _edge_lengths(V, F):
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    return np.linalg.norm(V[e[:, 0]] - V[e[:, 1]], axis=1)


def test_attached_working_mesh_rides_along_and_maps_back():
    V, F = icosphere(5)  # 10242 vertices
    V = V * np.array([1.0, 0.7, 0.5])  # an ellipsoid: no symmetry to hide a wrong map
    aw = attach_working_mesh(V, F, 600)
    wm = working_mesh(V, F, 600)
    W0 = aw.positions(V)
    np.testing.assert_array_equal(aw.F, wm.F)
    # its vertices are the decimated ones, moved onto the input surface
    h = _edge_lengths(W0, aw.F).mean()
    assert np.linalg.norm(W0 - wm.V, axis=1).max() < 0.2 * h
    # a rigid motion of the input moves the working mesh rigidly (same edge lengths)
    c, s = np.cos(0.7), np.sin(0.7)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    W1 = aw.positions(V @ R.T + [3.0, -1.0, 2.0])
    np.testing.assert_allclose(_edge_lengths(W1, aw.F), _edge_lengths(W0, aw.F), rtol=1e-9)
    # a non-rigid deformation carries it along: it stays on the deformed surface
    from meshgdl.geometry.proximity import project_to_surface

    Vb = V.copy()
    Vb[:, 2] += 0.3 * V[:, 0] ** 2
    Wb = aw.positions(Vb)
    assert project_to_surface(Wb, (Vb - aw.center) * aw.scale, F)[2].max() < 1e-9
    assert np.abs(Wb - W0).max() > 2 * h  # it did move
    # values on the working mesh come back to the input's vertices (a linear function: exactly
    # up to the working surface's distance from the input)
    back = aw.to_input(W0[:, :2])
    want = aw.scale * (V[:, :2] - aw.center[:2])
    assert back.shape == (len(V), 2)
    err = np.abs(back - want).max(axis=1)
    w = vertex_areas(V, F)
    assert err.max() < 0.25 * h and np.sum(w * err) / w.sum() < 0.05 * h
