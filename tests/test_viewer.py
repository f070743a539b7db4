"""Viewer: colour maps, isolines, glyphs, deformations, headless rendering, CLI export.

Rendering tests need headless EGL (Debian ``libegl1 libgl1-mesa-dri``); they are
skipped with that reason only when an offscreen renderer cannot be created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from meshes import grid, icosphere, torus
from meshgdl.colors import label_colors
from meshgdl.errors import MeshError
from meshgdl_viewer.colormaps import apply_colormap, colorbar_box, colormap_lut, label_rgb, legend_width
from meshgdl_viewer.deform import bend, deformation_frames, load_frame_folder, principal_axes, twist
from meshgdl_viewer.features import (Feature, ViewerError, array_feature, coordinate_feature, labels_feature,
                                     load_labels_file, load_scalar_file, model_features)
from meshgdl_viewer.scene import (Style, ViewerModel, glyph_segments, isoline_segments, parse_size,
                                  spread_subset, unique_edges)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ colour maps
def test_colormap_ends_clamp_and_nan():
    lut = colormap_lut("viridis")
    c = apply_colormap(np.array([0.0, 1.0, -5.0, 7.0, np.nan]), 0.0, 1.0)
    np.testing.assert_allclose(c[0], lut[0])
    np.testing.assert_allclose(c[1], lut[-1])
    np.testing.assert_allclose(c[2], lut[0])  # clamped below
    np.testing.assert_allclose(c[3], lut[-1])  # clamped above
    assert np.all(np.isfinite(c)) and not np.allclose(c[4], lut[0]) and not np.allclose(c[4], lut[-1])
    # constant field: no division by zero, one colour
    flat = apply_colormap(np.full(4, 2.0), 2.0, 2.0)
    assert np.all(np.isfinite(flat)) and np.ptp(flat, axis=0).max() == 0
    with pytest.raises(ValueError, match="unknown colour map"):
        colormap_lut("jet")


def test_label_colours_are_segment_palette_by_value():
    """The viewer colours a label value exactly as meshgdl segment's PLY does
    (meshgdl.colors.label_colors), whichever other labels are present."""
    pal = label_rgb(np.arange(40))
    np.testing.assert_array_equal(np.round(255 * pal).astype(np.uint8), label_colors(np.arange(40)))
    d = np.linalg.norm(pal[:, None] - pal[None], axis=2) + np.eye(40)
    assert d.min() > 0.02  # distinct labels stay distinguishable
    cols = label_rgb(np.array([7, 3, 3, 9, 7]))
    np.testing.assert_allclose(cols[0], cols[4])
    assert not np.allclose(cols[0], cols[1])
    np.testing.assert_allclose(cols[1], label_rgb(np.array([3]))[0])  # not rank among those present
    np.testing.assert_allclose(label_rgb(np.array([[-1]])), [np.array(label_colors(np.array([-1]))[0]) / 255])


def test_label_feature_faces_and_legend_use_value_colours():
    V, F = torus(24, 12)
    labels = (np.arange(len(V)) % 3) * 4 + 1  # values 1, 5, 9: not 0..k-1, so rank != value
    m = ViewerModel(V[None], F, [labels_feature(labels, class_names=[f"c{i}" for i in range(10)])],
                    Style(width=160, height=120))
    fs = m.scene()
    assert fs.label_cells
    np.testing.assert_allclose(fs.colors, label_colors(labels) / 255.0)
    assert fs.legend.kind == "labels" and fs.legend.classes.tolist() == [1, 5, 9]
    assert fs.legend.names == ["c1", "c5", "c9"]


def test_label_cells_draw_each_vertex_cell_in_its_colour():
    from meshgdl.geometry.normals import face_areas, vertex_areas, vertex_normals
    from meshgdl_viewer.render import label_cells

    V, F = torus(24, 12)
    labels = (V[:, 0] > 0.3).astype(np.int64) + 2 * (V[:, 2] > 0.1)
    C = label_colors(labels) / 255.0
    V2, F2, N2, C2 = label_cells(V, F, vertex_normals(V, F), C)
    same = (labels[F] == labels[F][:, :1]).all(axis=1)
    assert len(F2) == same.sum() + 6 * (~same).sum() and (~same).any()
    np.testing.assert_allclose(np.linalg.norm(N2, axis=1), 1.0, atol=1e-9)
    # every drawn triangle has one colour, and each label covers exactly its vertices' barycentric areas
    assert (C2[F2] == C2[F2][:, :1]).all()
    fa = face_areas(V2, F2)
    va = vertex_areas(V, F)
    for lab in np.unique(labels):
        drawn = fa[(C2[F2[:, 0]] == label_colors(np.array([lab]))[0] / 255.0).all(axis=1)].sum()
        assert drawn == pytest.approx(va[labels == lab].sum(), rel=1e-9)
    # one label everywhere: the mesh as it was
    V3, F3, _, _ = label_cells(V, F, vertex_normals(V, F), np.tile(C[:1], (len(V), 1)))
    assert np.array_equal(F3, F) and len(V3) == len(V)


# ------------------------------------------------------------------ isolines and glyphs
def test_isolines_of_linear_function_on_grid_are_exact():
    V, F = grid(9, 9, jitter=0.3)
    f = V[:, 0] + 0.0
    P, faces, W = isoline_segments(V, F, f, [0.43, 0.71])
    # end points lie exactly on the level sets, interpolation weights reproduce them
    on = np.isclose(P[..., 0], 0.43) | np.isclose(P[..., 0], 0.71)
    assert on.all()
    np.testing.assert_allclose(np.einsum("kec,kcd->ked", W, V[F[faces]]), P)
    # each level set is a straight segment across the unit square: total length 1
    for lv in (0.43, 0.71):
        sel = np.isclose(P[:, 0, 0], lv)
        assert np.linalg.norm(P[sel, 0] - P[sel, 1], axis=1).sum() == pytest.approx(1.0, abs=1e-9)


def test_isoline_equator_of_sphere():
    V, F = icosphere(4)
    P, _, _ = isoline_segments(V, F, V[:, 2], [0.0])
    assert np.abs(P[..., 2]).max() < 1e-12
    length = np.linalg.norm(P[:, 0] - P[:, 1], axis=1).sum()
    assert 0.98 * 2 * np.pi < length <= 2 * np.pi  # inscribed polygon of the unit circle
    assert isoline_segments(V, F, V[:, 2], [5.0])[0].shape == (0, 2, 3)


def test_glyphs_point_along_gauge_angle():
    rng = np.random.default_rng(0)
    k = 20
    base = rng.normal(size=(k, 3))
    # random orthonormal frames (rows e1, e2, n)
    Q = np.linalg.qr(rng.normal(size=(k, 3, 3)))[0].transpose(0, 2, 1)
    phi = rng.uniform(-np.pi, np.pi, k)
    lengths = rng.uniform(0.5, 2.0, k)
    # rho_1: the ray is a e1 + b e2, with an arrow head (3 segments per glyph)
    coeffs = 3.0 * np.stack([np.cos(phi), np.sin(phi)], 1)
    S = glyph_segments(base, Q, coeffs, 1, lengths)
    assert S.shape == (3 * k, 2, 3)
    want = base + lengths[:, None] * (np.cos(phi)[:, None] * Q[:, 0] + np.sin(phi)[:, None] * Q[:, 1])
    np.testing.assert_allclose(S[:k, 0], base)
    np.testing.assert_allclose(S[:k, 1], want, atol=1e-12)
    # rho_2 with angle 2*phi: a headless line field, rays at phi and phi + pi
    coeffs2 = np.stack([np.cos(2 * phi), np.sin(2 * phi)], 1)
    S2 = glyph_segments(base, Q, coeffs2, 2, lengths)
    assert S2.shape == (2 * k, 2, 3)
    d0 = S2[:k, 1] - base
    d1 = S2[k:, 1] - base
    np.testing.assert_allclose(d0, -d1, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.einsum("ij,ij->i", d0, want - base)), lengths ** 2, rtol=1e-9)


def test_scene_draws_rho_n_vectors_in_each_gauge_frame():
    from meshgdl.geometry.gauges import compute_gauges
    from meshgdl_viewer.features import array_tangent

    V, F = torus(24, 12)
    n = len(V)
    # rho_2 value at angle 2*alpha: a line field at alpha = pi/6 from e1 (rays at alpha, alpha + pi)
    alpha = np.pi / 6
    coeffs = np.tile([np.cos(2 * alpha), np.sin(2 * alpha)], (n, 1))
    st = Style(width=200, height=200, arrows=True, max_glyphs=40)
    m = ViewerModel(V[None], F, [coordinate_feature()], st, tangent=array_tangent(coeffs, order=2))
    layer = next(l for l in m.scene().lines if l.name == "arrows")
    idx = m.glyph_indices()
    assert len(idx) == 40 and layer.segments.shape == (80, 2, 3)
    fr = compute_gauges(V, F).frames[idx]
    want = np.cos(alpha) * fr[:, 0] + np.sin(alpha) * fr[:, 1]
    d = layer.segments[:, 1] - layer.segments[:, 0]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(d[:40], want, atol=1e-9)
    np.testing.assert_allclose(d[40:], -want, atol=1e-9)
    # a glyph's base sits on its vertex (lifted along the normal against z-fighting)
    lift = layer.segments[:40, 0] - V[idx]
    assert np.abs(np.einsum("ij,ij->i", lift, fr[:, 0])).max() < 1e-9


def test_spread_subset_and_edges():
    V, F = torus(16, 8)
    idx = spread_subset(V, 30)
    assert len(np.unique(idx)) == 30
    assert spread_subset(V, 10_000).tolist() == list(range(len(V)))
    E = unique_edges(F)
    assert len(E) == 3 * len(F) // 2  # closed surface: every edge in two faces


# ------------------------------------------------------------------ deformations
def _capsule_like(max_edge: float = 0.2):
    """A closed tube along z (length 3.6, radius 0.3) with rings along its whole length."""
    import trimesh

    m = trimesh.creation.capsule(height=3.0, radius=0.3, count=[16, 16])
    V, F = trimesh.remesh.subdivide_to_size(m.vertices, m.faces, max_edge=max_edge)
    return np.asarray(V, np.float64), np.asarray(F, np.int64)


def test_twist_and_bend_move_only_the_band():
    V, F = _capsule_like()
    c, axes = principal_axes(V)
    assert abs(abs(axes[0, 2]) - 1) < 1e-9  # the tube's axis
    u = (V - c) @ axes[0]
    u = (u - u.min()) / np.ptp(u)
    E = unique_edges(F)
    L0 = np.linalg.norm(V[E[:, 0]] - V[E[:, 1]], axis=1)
    for W in (twist(V, 1.2), bend(V, 1.0)):
        L = np.linalg.norm(W[E[:, 0]] - W[E[:, 1]], axis=1)
        before = np.all(u[E] <= 0.25, axis=1)
        after = np.all(u[E] >= 0.75, axis=1)
        assert before.sum() > len(E) // 8 and after.sum() > len(E) // 8
        np.testing.assert_allclose(W[u <= 0.25], V[u <= 0.25], atol=1e-12)  # fixed end
        np.testing.assert_allclose(L[after], L0[after], rtol=1e-9)  # far end: rigid motion
        assert np.abs(W - V).max() > 0.1  # it did move
    # the bend keeps the centre line's length: the far tip's distance along the bent
    # axis equals the straight one, and the far end turned by exactly the angle
    W = bend(V, np.pi / 2)
    tip = np.argmax(u)
    far = u >= 0.8
    d0 = V[far] - V[far].mean(0)
    d1 = W[far] - W[far].mean(0)
    # a rigid rotation by pi/2 about the third principal axis maps the axis onto the second
    np.testing.assert_allclose(d1 @ axes[1], d0 @ axes[0], atol=1e-6)
    assert np.linalg.norm(W[tip] - V[tip]) > 1.0
    fr = deformation_frames(V, "twist", 5)
    assert fr.shape == (5,) + V.shape
    np.testing.assert_array_equal(fr[0], V)
    assert all(np.abs(fr[i + 1] - fr[i]).max() > 1e-3 for i in range(4))
    with pytest.raises(ValueError):
        deformation_frames(V, "melt", 3)


def test_intrinsic_features_stay_attached_while_coordinates_swim():
    from meshgdl_viewer.features import geodesic_feature, hks_feature

    V, F = _capsule_like(0.25)
    fr = deformation_frames(V, "twist", 3)  # rigid ends, sheared middle: near-isometric
    src = int(np.argmin(V[:, 2]))

    def drift(feature, ch):
        v = feature.frames(fr, F)[:, :, ch]
        return np.abs(v[-1] - v[0]).mean() / np.ptp(v[0])

    assert drift(geodesic_feature(src), 0) < 0.005
    hks = hks_feature(k=32)
    # (the last channels are almost constant (~1/area): relative drift means nothing there)
    assert max(drift(hks, c) for c in (0, 4, 8)) < 0.005
    assert min(drift(coordinate_feature(), c) for c in (0, 1)) > 0.1  # x, y swim


def test_frame_folder_round_trip_and_mismatch(tmp_path):
    from meshgdl.io import load_mesh, save_mesh

    V, F = torus(16, 8)
    save_mesh(tmp_path / "rest.obj", V, F)
    fr = deformation_frames(V, "bend", 3)
    d = tmp_path / "frames"
    d.mkdir()
    for name, k in (("pose0", 0), ("pose2", 2), ("pose10", 1)):  # natural order: 10 after 2
        save_mesh(d / f"{name}.obj", fr[k], F)
    ref = load_mesh(tmp_path / "rest.obj")
    got = load_frame_folder(d, ref)
    np.testing.assert_allclose(got, fr[[0, 2, 1]], atol=1e-12)
    from meshgdl_viewer.session import build_model  # --animation FOLDER: the same frames

    m = build_model(str(tmp_path / "rest.obj"), feature="x", animation=str(d), frames=2)
    np.testing.assert_allclose(m.frames, fr[[0, 1]], atol=1e-12)
    assert m.frame_numbers.tolist() == [0, 2] and m.total_frames == 3
    save_mesh(d / "pose11.obj", *torus(12, 8))
    with pytest.raises(MeshError, match="pose11.obj: frame 3 has 96 vertices"):
        load_frame_folder(d, ref)
    (d / "pose11.obj").unlink()
    with pytest.raises(MeshError, match="connectivity"):  # the folder's frames differ from MESH
        load_frame_folder(d, load_mesh(_save_torus(tmp_path / "other.obj", 12, 8)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeshError, match="no mesh files"):
        load_frame_folder(tmp_path / "empty", ref)


def _save_torus(path, *args):
    from meshgdl.io import save_mesh

    save_mesh(path, *torus(*args))
    return path


# ------------------------------------------------------------------ features and model state
def test_feature_files_validate_and_map_file_order(tmp_path):
    from meshgdl.io import load_mesh

    # a file with a duplicated vertex: the cleaned mesh has one vertex fewer
    (tmp_path / "dup.obj").write_text(
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 0 0\nv 1 1 0\nf 1 2 3\nf 4 5 3\n")
    m = load_mesh(tmp_path / "dup.obj")
    assert len(m.V) == 4 and m.n_orig_vertices == 5
    np.savetxt(tmp_path / "s.txt", [10.0, 11.0, 12.0, 11.0, 14.0])
    vals = load_scalar_file(tmp_path / "s.txt", m)
    np.testing.assert_allclose(vals, [10.0, 11.0, 12.0, 14.0])
    (tmp_path / "bad.txt").write_text("1\n2\n")
    with pytest.raises(ViewerError, match="2 values"):
        load_scalar_file(tmp_path / "bad.txt", m)
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan, 0, 0]))
    with pytest.raises(ViewerError, match="NaN"):
        load_scalar_file(tmp_path / "nan.npy", m)
    (tmp_path / "lab.txt").write_text("0\n1\n1.5\n2\n")
    with pytest.raises(ViewerError, match="integers"):
        load_labels_file(tmp_path / "lab.txt", m)
    (tmp_path / "lab2.txt").write_text("0\n1\n1\n2\n")
    assert load_labels_file(tmp_path / "lab2.txt", m).tolist() == [0, 1, 1, 2]


def test_model_features_reject_files_that_are_not_checkpoints(tmp_path):
    from meshgdl.errors import CheckpointError

    ck = tmp_path / "m.safetensors"
    ck.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="checkpoint"):
        model_features(ck, np.zeros((3, 3)), np.array([[0, 1, 2]]), 0, 0)
    with pytest.raises(CheckpointError, match="not found"):
        model_features(tmp_path / "missing.safetensors", np.zeros((3, 3)), np.array([[0, 1, 2]]), 0, 0)


def test_model_range_is_shared_by_frames_and_signs_are_aligned():
    V, F = _capsule_like()
    fr = deformation_frames(V, "bend", 4)
    # a sign-ambiguous feature (like an eigenfunction) whose sign flips on odd frames
    calls = []

    def flippy(Vt, Ft):
        calls.append(1)
        s = -1.0 if len(calls) % 2 == 0 else 1.0
        return s * (Vt[:, 0] - Vt[:, 0].mean())

    f = Feature("flippy", flippy, kind="signed", align_signs=True)
    m = ViewerModel(fr, F, [f, coordinate_feature()])
    vals = m.channel_values()
    corr = [np.sum(vals[t] * vals[0]) for t in range(4)]
    assert min(corr) > 0  # all frames agree in sign with frame 0
    lo, hi = m.value_range()
    assert lo == -hi and hi == pytest.approx(np.abs(vals).max())  # signed: symmetric, over all frames
    m.step_feature()
    assert m.num_channels == 3 and m.feature.intrinsic is False
    m.channel = 2
    lo, hi = m.value_range()
    assert lo == pytest.approx(fr[:, :, 2].min()) and hi == pytest.approx(fr[:, :, 2].max())
    with pytest.raises(ViewerError, match="channel 5 out of range"):
        ViewerModel(fr, F, [coordinate_feature()], channel=5)
    for bad in ("12", "0x10", "axb"):
        with pytest.raises(ViewerError):
            parse_size(bad)


# ------------------------------------------------------------------ rendering (EGL)
@pytest.fixture(scope="module")
def egl():
    from meshgdl_viewer.render import OffscreenView, RenderUnavailable

    try:
        v = OffscreenView(64, 64)
    except RenderUnavailable as exc:
        pytest.skip(f"headless EGL rendering unavailable: {exc}")
    v.close()
    return True


def _project(cam, P, w, h):
    d = (cam.eye - cam.center) / np.linalg.norm(cam.eye - cam.center)
    right = np.cross(cam.up, d)
    X = P - cam.eye
    zc = -(X @ d)
    t = np.tan(np.radians(cam.fov) / 2)
    u = w / 2 + (X @ right) / zc / (t * w / h) * w / 2
    v = h / 2 - (X @ cam.up) / zc / t * h / 2
    return u, v


def test_render_mesh_where_projected_background_elsewhere(egl):
    from meshgdl_viewer.render import HeadlessRenderer

    V, F = torus()
    st = Style(width=320, height=240, shading="flat", legend=False, caption=False)
    m = ViewerModel(V[None], F, [array_feature(np.zeros(len(V)), "zero")], st)
    r = HeadlessRenderer(m)
    img = r.image().astype(int)
    assert img.shape == (240, 320, 3)
    bg = np.array([round(255 * c) for c in r.view.background])
    fg = np.abs(img - bg).max(axis=2) > 8
    ys, xs = np.nonzero(fg)
    u, v = _project(r.camera, V, 320, 240)
    # silhouette bounding box = projected vertices' bounding box (within AA pixels)
    assert abs(xs.min() - u.min()) < 3 and abs(xs.max() - u.max()) < 3
    assert abs(ys.min() - v.min()) < 3 and abs(ys.max() - v.max()) < 3
    # the hole of the torus and the corners are background
    cu, cv = _project(r.camera, np.zeros((1, 3)), 320, 240)
    assert not fg[int(round(cv[0])), int(round(cu[0]))]
    assert not fg[:3, :3].any() and not fg[-3:, -3:].any()
    # flat shading renders the feature colour exactly (a constant field: middle of the map)
    want = np.round(255 * apply_colormap(np.zeros(1), 0, 0)[0]).astype(int)
    assert (np.abs(img[fg] - want).max(axis=1) < 3).mean() > 0.9


def test_channel_change_changes_colours_and_labels_use_palette(egl):
    from meshgdl_viewer.render import HeadlessRenderer

    V, F = torus()
    st = Style(width=240, height=200, shading="flat", legend=False, caption=False)
    labels = (np.arctan2(V[:, 1], V[:, 0]) // (np.pi / 2)).astype(int) + 2  # 4 quadrants
    m = ViewerModel(V[None], F, [coordinate_feature(), labels_feature(labels)], st)
    r = HeadlessRenderer(m)
    a = r.image().astype(int)
    m.step_channel(1)
    b = r.image().astype(int)
    bg = np.array([round(255 * c) for c in r.view.background])
    fg = np.abs(a - bg).max(axis=2) > 8
    np.testing.assert_array_equal(a[~fg], b[~fg])  # same silhouette, same background
    assert np.abs(a[fg] - b[fg]).max(axis=1).mean() > 20  # x-colouring vs y-colouring
    m.step_feature(1)
    c = r.image().astype(int)
    pal = label_colors(np.arange(4)).astype(int)  # the quadrants' values 0..3, coloured by value
    dist = np.abs(c[fg][:, None, :] - pal[None]).max(axis=2)  # (pixels, 4)
    near = dist.min(axis=1) <= 3
    assert near.mean() > 0.9  # all but anti-aliased edge pixels are exact palette colours
    counts = np.bincount(dist.argmin(axis=1)[near], minlength=4)
    assert (counts > 0.1 * near.sum()).all()  # each of the 4 labels is visible


def test_deformation_frames_render_differently_and_lit_shading_works(egl):
    from meshgdl_viewer.render import HeadlessRenderer

    V, F = _capsule_like()
    fr = deformation_frames(V, "bend", 3)
    m = ViewerModel(fr, F, [coordinate_feature()], Style(width=240, height=180, arrows=True,
                                                         gauge_frames=True, wireframe=True))
    r = HeadlessRenderer(m)
    a, b = r.image(0).astype(int), r.image(2).astype(int)
    assert (np.abs(a - b).max(axis=2) > 30).mean() > 0.02
    scene = m.scene(2)
    names = {layer.name for layer in scene.lines}
    assert {"arrows", "e1", "e2", "wireframe"} <= names
    # gradient arrows of the x coordinate lie in the tangent planes of the bent frame
    arrows = next(layer for layer in scene.lines if layer.name == "arrows").segments
    assert len(arrows) > 0


def test_colour_bar_in_legend_shows_map_ends(egl):
    from meshgdl_viewer.render import HeadlessRenderer, layout

    V, F = icosphere(3)
    st = Style(width=320, height=240, cmap="viridis")
    m = ViewerModel(V[None], F, [array_feature(V[:, 2] * 5 + 1, "height")], st)
    img = HeadlessRenderer(m).image()
    assert img.shape == (240, 320, 3)
    lay = layout(st)
    x0, y0, x1, y1 = colorbar_box(lay["view_h"], lay["legend_w"])
    ox = lay["view_w"]
    lut = np.round(255 * colormap_lut("viridis")).astype(int)
    top = img[y0, ox + (x0 + x1) // 2].astype(int)
    bottom = img[y1 - 1, ox + (x0 + x1) // 2].astype(int)
    assert np.abs(top - lut[-1]).max() <= 3  # max at the top
    assert np.abs(bottom - lut[0]).max() <= 3  # min at the bottom
    # the legend has dark tick text next to the bar
    text = img[y0 - 6:y0 + 6, ox + x1 + 6:320].astype(int)
    assert (text.max(axis=2) < 100).any()


# ------------------------------------------------------------------ command line
def _run_cli(argv):
    from meshgdl.cli import main

    return main(["view"] + [str(a) for a in argv])


@pytest.fixture
def torus_obj(tmp_path):
    from meshgdl.io import save_mesh

    V, F = torus(24, 12)
    p = tmp_path / "torus.obj"
    save_mesh(p, V, F)
    return p


def test_cli_exports_png_gif_and_frames_atomically(egl, tmp_path, torus_obj, capsys):
    from PIL import Image

    out = tmp_path / "out" / "x.png"
    assert _run_cli([torus_obj, "--feature", "x", "--export", out, "--size", "320x240"]) == 0
    im = Image.open(out)
    assert im.size == (320, 240) and im.format == "PNG"
    gif = tmp_path / "anim.gif"
    assert _run_cli([torus_obj, "--feature", "x", "--deform", "twist", "--frames", "3",
                     "--export", gif, "--size", "160x120"]) == 0
    g = Image.open(gif)
    assert g.n_frames == 3 and g.size == (160, 120)
    d = tmp_path / "frames"
    assert _run_cli([torus_obj, "--labels", _labels(tmp_path, 24 * 12), "--deform", "bend", "--frames", "2",
                     "--export", str(d) + "/", "--size", "96x96"]) == 0
    assert sorted(p.name for p in d.iterdir()) == ["frame_0000.png", "frame_0001.png"]
    # nothing half-written left behind (atomic writes use dot-prefixed temp files)
    leftovers = [p for p in tmp_path.rglob(".*") if p.is_file()]
    assert leftovers == []


def _labels(tmp_path, n):
    p = tmp_path / "labels.txt"
    np.savetxt(p, np.arange(n) % 3, fmt="%d")
    return p


@pytest.mark.parametrize("argv, msg", [
    (["{mesh}", "--feature", "x", "--size", "big", "--export", "{out}"], "size must look like"),
    (["{mesh}", "--feature", "x", "--channel", "9", "--export", "{out}"], "channel 9 out of range"),
    (["{mesh}", "--feature", "x", "--export", "{tmp}/a.bmp"], "unsupported export type"),
    (["{tmp}/missing.obj", "--export", "{out}"], "not found"),
    (["{mesh}", "--scalar", "{tmp}/nope.npy", "--export", "{out}"], "not found"),
    (["{mesh}", "--feature", "x", "--deform", "{tmp}/nofolder", "--export", "{out}"], "not twist, bend"),
    (["{mesh}", "--feature", "x", "--deform", "articulate", "--export", "{out}"], "builtin:capsule"),
    (["{mesh}", "--model", "{tmp}/m.ckpt", "--export", "{out}"], "not found"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, torus_obj, capsys, argv, msg):
    fill = {"mesh": torus_obj, "out": tmp_path / "o.png", "tmp": tmp_path}
    rc = _run_cli([a.format(**fill) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("meshgdl: error:") and msg in err
    assert not (tmp_path / "o.png").exists()


def test_cli_window_without_display_is_a_one_line_error(torus_obj, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("display detection is Linux-only")
    assert _run_cli([torus_obj, "--feature", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--export" in err


def test_cli_model_without_trained_checkpoint(tmp_path, torus_obj, capsys):
    ck = tmp_path / "m.safetensors"
    ck.write_bytes(b"not a model")
    assert _run_cli([torus_obj, "--model", ck, "--layer", "1", "--export", tmp_path / "o.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint" in err
    assert not (tmp_path / "o.png").exists()


def test_cli_shows_every_layer_of_a_trained_model(egl, tmp_path, torus_obj, capsys):
    import torch

    from meshgdl.nn.models import ModelConfig, build_model as build_net
    from meshgdl.train.checkpoint import save_checkpoint
    from meshgdl_viewer.features import model_features, num_model_layers
    from meshgdl_viewer.session import build_model

    cfg = ModelConfig(kind="gem", n_classes=3, in_features=["hks"], k_eig=16, n_hks=4,
                      hidden_irreps="4x0 + 4x1", n_layers=1, n_samples=7)
    torch.manual_seed(0)
    net = build_net(cfg)
    ck = save_checkpoint(tmp_path / "tiny.safetensors", model_state=net.state_dict(), model_config=cfg.to_dict())
    n_layers = num_model_layers(ck)
    assert n_layers == net.num_feature_layers
    # the hook returns exactly the network's own layer features
    from meshgdl.io import load_mesh
    from meshgdl.data.batching import collate_samples, prepare

    mesh = load_mesh(torus_obj)
    with torch.no_grad():
        want = net.eval().features(collate_samples([prepare(mesh.V, mesh.F, cfg)]), 1)[:, 2].double().numpy()
    np.testing.assert_allclose(model_features(ck, mesh.V, mesh.F, 1, 2), want, rtol=1e-6, atol=1e-9)
    # layers are the features the window cycles through, starting at --layer
    vm = build_model(str(torus_obj), model=str(ck), layer=1, channel=2)
    assert [f.name for f in vm.features[:n_layers]] == [f"model layer {(1 + i) % n_layers}" for i in range(n_layers)]
    out = tmp_path / "m.png"
    assert _run_cli([torus_obj, "--model", ck, "--layer", "-1", "--channel", "3", "--export", out,
                     "--size", "160x120"]) == 0 and out.exists()
    for argv, msg in ((["--layer", "7"], "--layer 7 out of range"), (["--channel", "99"], "channel 99 out of range")):
        capsys.readouterr()
        assert _run_cli([torus_obj, "--model", ck, *argv, "--export", tmp_path / "bad.png"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err
    assert not (tmp_path / "bad.png").exists()


def test_model_features_on_a_fine_mesh_use_an_attached_working_mesh(tmp_path):
    """A mesh finer than the model's working resolution runs through the model on a
    working mesh (and hierarchy) decimated once and replayed on every frame; a rigid
    motion of the frame then leaves the (intrinsic) features unchanged. Shipped models
    load by name."""
    import torch

    from meshgdl.nn.models import ModelConfig, build_model as build_net
    from meshgdl.train.checkpoint import save_checkpoint
    from meshgdl_viewer.features import ModelOnMesh, model_feature
    from meshgdl_viewer.session import build_model

    cfg = ModelConfig(kind="gem", n_classes=3, in_features=["hks"], k_eig=16, n_hks=4,
                      hidden_irreps="4x0 + 4x1", n_layers=1, n_samples=7)
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "tiny.safetensors", model_state=build_net(cfg).state_dict(),
                         model_config=cfg.to_dict())
    V, F = torus(80, 40)  # 3200 vertices > 1.25 x the default working resolution (2500)
    run = ModelOnMesh(ck)
    f = model_feature(ck, 1, run)
    c, s = np.cos(1.0), np.sin(1.0)
    moved = V @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T + [0.5, 2.0, -1.0]
    vals = f.frames(np.stack([V, moved]), F)
    assert run.plan is not None and vals.shape[:2] == (2, len(V))
    assert f.detail.startswith("(on a ") and "working mesh" in f.detail
    np.testing.assert_allclose(vals[1], vals[0], atol=1e-4 * np.abs(vals).max())
    m = build_model("builtin:torus", model="human_parts", layer=-1)
    assert m.feature.name.startswith("model layer") and m.num_channels > 1


def test_cli_subprocess_one_line_error_and_mp4(tmp_path, torus_obj):
    from meshgdl_viewer.render import ffmpeg_executable

    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "a.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "meshgdl", "view", str(torus_obj), "--feature", "x", "--deform", "twist",
         "--frames", "2", "--size", "160x120", "--export", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    if ffmpeg_executable() is None:
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert "ffmpeg" in proc.stderr and not out.exists()
    else:
        assert proc.returncode == 0, proc.stderr
        assert _mp4_frames(out) == 2


def _mp4_frames(path) -> int:
    """Frames in an MP4, counted by decoding it (imageio-ffmpeg's ffmpeg)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


# ------------------------------------------------------------------ real animations (--animation)
T_ANIM = 5


@pytest.fixture
def torus_anim(tmp_path):
    """A torus and a 5-frame twist of it as a .pc2 point cache (meshgdl.io.save_pc2)."""
    from meshgdl.io import save_mesh, save_pc2

    V, F = torus(24, 12)
    save_mesh(tmp_path / "torus.obj", V, F)
    fr = deformation_frames(V, "twist", T_ANIM)
    save_pc2(tmp_path / "twist.pc2", fr.astype(np.float32))
    return tmp_path / "torus.obj", tmp_path / "twist.pc2", fr


def test_cli_exports_point_cache_animation_frame_counts(egl, tmp_path, torus_anim):
    from PIL import Image

    from meshgdl_viewer.render import ffmpeg_executable
    from meshgdl_viewer.session import build_model

    mesh, cache, fr = torus_anim
    base = [mesh, "--animation", cache, "--feature", "x", "--size", "160x120"]
    gif = tmp_path / "a.gif"
    assert _run_cli(base + ["--export", gif]) == 0
    g = Image.open(gif)
    assert g.n_frames == T_ANIM and g.size == (160, 120)
    d = tmp_path / "frames"
    assert _run_cli(base + ["--frames", "3", "--export", str(d) + "/"]) == 0
    assert sorted(p.name for p in d.iterdir()) == [f"frame_{i:04d}.png" for i in range(3)]
    if ffmpeg_executable() is not None:
        mp4 = tmp_path / "a.mp4"
        assert _run_cli(base + ["--export", mp4]) == 0
        assert _mp4_frames(mp4) == T_ANIM
    # the frames are the cache's positions; --frames picks evenly, captions count in the file's frames
    m = build_model(str(mesh), feature="x", animation=str(cache), frames=3)
    assert m.frame_numbers.tolist() == [0, 2, 4] and m.total_frames == T_ANIM
    np.testing.assert_allclose(m.frames, fr[[0, 2, 4]], atol=1e-6)
    assert "frame 3/5 (twist)" in m.caption(1)


def test_per_frame_labels_accepted_and_wrong_shapes_refused(egl, tmp_path, torus_anim, capsys):
    from meshgdl_viewer.session import build_model

    mesh, cache, fr = torus_anim
    n = fr.shape[1]
    lab = (np.arange(T_ANIM)[:, None] + np.arange(n)[None] // 50) % 4  # (T, n): changes per frame
    np.save(tmp_path / "ok.npy", lab.astype(np.int64))
    m = build_model(str(mesh), labels=str(tmp_path / "ok.npy"), animation=str(cache), frames=3)
    np.testing.assert_array_equal(m.channel_values(), lab[[0, 2, 4]])
    assert m.feature.kind == "labels"
    out = tmp_path / "l.png"
    assert _run_cli([mesh, "--animation", cache, "--labels", tmp_path / "ok.npy", "--export", out,
                     "--size", "160x120"]) == 0 and out.exists()
    np.save(tmp_path / "short.npy", lab[:4])
    np.save(tmp_path / "narrow.npy", lab[:, :-1])
    for name, msg in (("short.npy", "per-frame labels for 4 frames, but the animation has 5"),
                      ("narrow.npy", f"{n - 1} labels per frame, but the mesh has {n} vertices")):
        capsys.readouterr()
        assert _run_cli([mesh, "--animation", cache, "--labels", tmp_path / name,
                         "--export", tmp_path / "bad.png"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err and msg in err, err
    # a (T, n) file without an animation is refused too
    assert _run_cli([mesh, "--labels", tmp_path / "ok.npy", "--export", tmp_path / "bad.png"]) == 2
    assert "needs --animation" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


def test_side_by_side_has_two_panels(egl, tmp_path, torus_anim):
    from PIL import Image

    mesh, cache, _ = torus_anim
    gif = tmp_path / "cmp.gif"
    assert _run_cli([mesh, "--animation", cache, "--feature", "hks", "--compare", "x", "--frames", "2",
                     "--export", gif, "--size", "200x150"]) == 0
    g = Image.open(gif)
    assert g.n_frames == 2 and g.size == (400, 150)  # two panels of --size
    im = np.asarray(g.convert("RGB")).astype(int)
    bg = im[2, 198]  # top-right corner of the left panel's legend: background
    for half in (im[:, :200], im[:, 200:]):
        view = half[20:120, :100]  # each panel's 3D view shows the torus
        assert (np.abs(view - bg).max(axis=2) > 30).mean() > 0.05
    # the two panels differ (HKS vs x), so the right one is not a copy of the left
    assert np.abs(im[:, :200] - im[:, 200:]).max(axis=2).mean() > 10
    png = tmp_path / "cmp.png"  # a still: the compared feature's strip below the main one
    assert _run_cli([mesh, "--animation", cache, "--feature", "hks", "--compare", "x", "--frames", "3",
                     "--export", png, "--size", "200x150"]) == 0
    assert Image.open(png).size == (3 * (200 - 72) + 72, 300)


def test_animation_and_deform_are_exclusive(tmp_path, torus_anim, capsys):
    mesh, cache, _ = torus_anim
    assert _run_cli([mesh, "--animation", cache, "--deform", "twist", "--feature", "x",
                     "--export", tmp_path / "o.gif"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--animation" in err and "--deform" in err
    assert _run_cli(["builtin:torus", "--animation", cache, "--export", tmp_path / "o.gif"]) == 2
    assert "animated mesh's file" in capsys.readouterr().err
    assert not (tmp_path / "o.gif").exists()


# ------------------------------------------------------------------ interactive window
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run not installed (Debian package xvfb)")
def test_window_opens_responds_to_actions_and_closes(tmp_path):
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import numpy as np
        from meshes import torus
        from meshgdl_viewer.app import ViewerWindow
        from meshgdl_viewer.deform import deformation_frames
        from meshgdl_viewer.features import coordinate_feature, array_feature
        from meshgdl_viewer.scene import Style, ViewerModel
        V, F = torus(24, 12)
        from meshgdl_viewer.session import compare_model
        m = ViewerModel(deformation_frames(V, "twist", 3), F,
                        [coordinate_feature(), array_feature(V[:, 2], "z")], Style(width=400, height=300))
        other = compare_model(m, "x", channel=1)  # side by side: a second view, same frames
        w = ViewerWindow(m, screenshot_dir={str(tmp_path)!r}, compare=other, fps=12)
        log = []
        def drive():
            steps = [lambda: w.next_channel(1), lambda: w.next_feature(1), lambda: w.step_frame(1),
                     lambda: w.toggle("arrows"), lambda: w.toggle("gauge_frames"),
                     lambda: w.toggle("wireframe"), lambda: w.change_speed(1.5), w.toggle_play, w.toggle_play,
                     lambda: w.set_frame(2), w.screenshot]
            for s in steps:
                w.app.post_to_main_thread(w.window, s)
                time.sleep(0.15)
            t0 = time.time()
            while not w.screenshots and time.time() - t0 < 30:  # the capture is asynchronous
                time.sleep(0.1)
            log.append((m.channel, m.feature_index, m.style.arrows, m.style.wireframe))
            log.append(("frames", m.frame, other.frame, w.slider.int_value, w.fps, w.playing, other.style.arrows))
            w.app.post_to_main_thread(w.window, w.close)
        threading.Thread(target=drive, daemon=True).start()
        w.run()
        print("STATE", log, [str(p) for p in w.screenshots])
    """)
    env = {k: v for k, v in os.environ.items() if k != "EGL_PLATFORM"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    state = [l for l in proc.stdout.splitlines() if l.startswith("STATE")]
    assert state and "(0, 1, True, True)" in state[0]
    assert "('frames', 2, 2, 3, 18.0, False, True)" in state[0]  # slider, speed, shared frame/toggles
    shots = list(tmp_path.glob("meshgdl_view_*.png"))
    assert len(shots) == 1
    from PIL import Image

    im = np.asarray(Image.open(shots[0]).convert("RGB")).astype(int)
    assert im.shape[0] > 100 and np.ptp(im.reshape(-1, 3), axis=0).max() > 100  # not blank
    w = im.shape[1] // 2  # two panels, both drawn
    assert min(np.ptp(im[:, :w].reshape(-1, 3), axis=0).max(), np.ptp(im[:, w:].reshape(-1, 3), axis=0).max()) > 100


def test_labels_legend_names_fit_and_cli_class_names(egl, tmp_path, torus_obj, capsys):
    """--class-names puts "value name" rows in the legend, widened so the names fit;
    the names come from a shipped model, a file or a list."""
    from PIL import Image

    from meshgdl_viewer.colormaps import labels_legend_width, labels_panel

    names = ["head", "lower_arm", "upper_leg"]
    w = labels_legend_width(320, 240, names)
    assert legend_width(320) < w <= 160
    panel = labels_panel(240, w, np.array([0, 1, 2]), "parts", names=names)
    plain = labels_panel(240, w, np.array([0, 1, 2]), "parts")
    ink = lambda im: int((im.max(axis=2) < 100).sum())  # noqa: E731 - dark text pixels
    assert ink(panel) > ink(plain) + 100  # the names are drawn
    assert (panel[:, -3:].max(axis=2) > 240).all()  # ... and do not run off the panel's right edge
    # swatches are the label values' colours (here 0, 4, 11: not their ranks 0, 1, 2)
    classes = np.array([0, 4, 11])
    sw = labels_panel(240, w, classes, "parts")
    fs = max(9, min(16, 240 // 28))
    x, top = max(4, w // 8) + fs // 2, max(30, int(0.14 * 240)) + fs // 2
    got = np.stack([sw[top + i * (fs + 6), x] for i in range(3)])
    np.testing.assert_array_equal(got, label_colors(classes))

    lab = tmp_path / "parts.txt"
    n = len(torus(24, 12)[0])
    lab.write_text("".join(f"{i % 3}\n" for i in range(n)))
    (tmp_path / "classes.txt").write_text("head\nlower_arm\nupper_leg\n")
    for spec in ("head,lower_arm,upper_leg", tmp_path / "classes.txt"):
        out = tmp_path / "named.png"
        assert _run_cli([torus_obj, "--labels", lab, "--class-names", spec, "--export", out,
                         "--size", "320x240"]) == 0
        assert Image.open(out).size == (320, 240)
    assert _run_cli([torus_obj, "--feature", "x", "--class-names", "a,b", "--export", tmp_path / "y.png"]) == 2
    assert "--class-names goes with --labels" in capsys.readouterr().err
