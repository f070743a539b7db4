"""meshgdl.io: loaders, cleaning + index maps, validation counts, saving, errors."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

from meshgdl.errors import MeshError
from meshgdl.io import (
    SUPPORTED_EXTENSIONS, Mesh, check_arrays, load_mesh, load_vertex_scalars, save_mesh, validate,
)
from meshes import grid, icosphere, torus

SAMPLES = Path(__file__).resolve().parents[1] / "sample_meshes"


def _same_triangles(A, B) -> bool:
    """Same set of oriented triangles up to cyclic rotation of each triangle."""
    def canon(F):
        F = np.asarray(F)
        r = np.argmin(F, axis=1)
        F = np.stack([np.roll(f, -k) for f, k in zip(F, r)])
        return F[np.lexsort(F.T[::-1])]
    return A.shape == B.shape and np.array_equal(canon(A), canon(B))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".ply", ".obj", ".off"])
def test_exact_round_trip(tmp_path, ext):
    V, F = torus(12, 8)
    V = V + np.array([1e-9, -3.3, 7.125])  # non-trivial mantissas
    p = tmp_path / f"t{ext}"
    save_mesh(p, V, F)
    m = load_mesh(p)
    assert np.array_equal(m.V, V)  # bit-exact: doubles in PLY, 17 digits in text
    assert np.array_equal(m.F, F)
    assert np.array_equal(m.orig_to_new, np.arange(len(V)))
    assert np.array_equal(m.face_origin, np.arange(len(F)))
    assert m.warnings == []


def test_stl_round_trip_welds_the_soup(tmp_path):
    V, F = icosphere(2)
    p = tmp_path / "s.stl"
    save_mesh(p, V, F)
    m = load_mesh(p)
    assert m.n_orig_vertices == 3 * len(F)  # an STL file is a triangle soup
    assert len(m.V) == len(V) and len(m.F) == len(F)
    assert any("merged" in w for w in m.warnings)
    # same geometry: map each loaded vertex to the nearest original (float32 storage)
    d = np.linalg.norm(m.V[:, None] - V[None].astype(np.float32).astype(np.float64), axis=2)
    near = d.argmin(1)
    assert d.min(1).max() < 1e-6 and len(np.unique(near)) == len(V)
    assert _same_triangles(near[m.F], F)
    assert validate(m.V, m.F).euler_characteristic == 2


@pytest.mark.parametrize("ext", [".glb", ".gltf"])
def test_gltf_scene_is_flattened_with_transforms(tmp_path, ext):
    a = trimesh.creation.box()
    b = trimesh.creation.icosphere(1)
    T = np.eye(4)
    T[:3, 3] = [5.0, 0.0, 0.0]
    sc = trimesh.Scene()
    sc.add_geometry(a, node_name="a", geom_name="a")
    sc.add_geometry(b, node_name="b", geom_name="b", transform=T)
    p = tmp_path / f"s{ext}"
    sc.export(p)
    m = load_mesh(p)
    assert len(m.V) == len(a.vertices) + len(b.vertices)
    assert len(m.F) == len(a.faces) + len(b.faces)
    rep = validate(m.V, m.F)
    assert rep.n_components == 2
    assert np.allclose(rep.bbox_max, [6.0, 1.0, 1.0], atol=1e-6)  # sphere moved to x = 5


def test_trimesh_written_ascii_ply_and_obj_with_attributes(tmp_path):
    V, F = icosphere(1)
    tm = trimesh.Trimesh(V, F, process=False)
    tm.export(tmp_path / "a.ply", encoding="ascii")
    m = load_mesh(tmp_path / "a.ply")
    assert np.allclose(m.V, V, atol=1e-7) and np.array_equal(m.F, F)
    # OBJ with texture coordinates and normals in the face tokens, and negative indices
    lines = ["v 0 0 0", "v 1 0 0", "v 1 1 0", "vt 0 0", "vn 0 0 1", "f 1/1/1 2/1/1 3/1/1",
             "v 0 1 0", "f -4//1 -2//1 -1//1"]
    (tmp_path / "b.obj").write_text("\n".join(lines) + "\n")
    m = load_mesh(tmp_path / "b.obj")
    assert m.F.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_binary_big_endian_ply_with_mixed_polygons(tmp_path):
    V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0.5, 0]], dtype=">f8")
    hdr = (b"ply\nformat binary_big_endian 1.0\nelement vertex 5\nproperty double x\n"
           b"property double y\nproperty double z\nelement face 2\n"
           b"property list uchar int vertex_indices\nproperty uchar flag\nend_header\n")
    body = V.tobytes() + struct.pack(">B3iB", 3, 1, 4, 2, 7) + struct.pack(">B4iB", 4, 0, 1, 2, 3, 9)
    (tmp_path / "m.ply").write_bytes(hdr + body)
    m = load_mesh(tmp_path / "m.ply")
    assert m.F.tolist() == [[1, 4, 2], [0, 1, 2], [0, 2, 3]]
    assert m.face_origin.tolist() == [0, 1, 1]


# ----------------------------------------------------------------------------- polygons, merging, index maps


def test_polygons_are_triangulated_with_face_origin(tmp_path):
    # a planar square (quad), a regular pentagon and a triangle
    pent = [[3 + np.cos(t), np.sin(t), 0] for t in np.linspace(0, 2 * np.pi, 5, endpoint=False)]
    V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]] + pent + [[5, 0, 0], [6, 0, 0], [5, 1, 0]])
    text = "".join(f"v {x} {y} {z}\n" for x, y, z in V)
    text += "f 1 2 3 4\nf 5 6 7 8 9\nf 10 11 12\n"
    (tmp_path / "p.obj").write_text(text)
    m = load_mesh(tmp_path / "p.obj")
    assert m.n_orig_faces == 3 and len(m.F) == 2 + 3 + 1
    assert m.face_origin.tolist() == [0, 0, 1, 1, 1, 2]
    area = trimesh.triangles.area(m.V[m.F])
    per_face = np.bincount(m.face_origin, weights=area)
    assert np.allclose(per_face, [1.0, 2.5 * np.sin(2 * np.pi / 5), 0.5])
    # per-triangle values back to file faces: the first triangle of each polygon
    vals = np.arange(10, 16)
    assert m.to_original_faces(vals).tolist() == [10, 12, 15]
    # triangles keep the polygon's orientation (+z)
    n = np.cross(m.V[m.F[:, 1]] - m.V[m.F[:, 0]], m.V[m.F[:, 2]] - m.V[m.F[:, 0]])
    assert (n[:, 2] > 0).all()


def test_merge_duplicates_drop_unreferenced_and_write_labels_back(tmp_path):
    # square split in two triangles; file vertex 4 duplicates vertex 2 (with -0.0),
    # file vertex 5 is unused
    text = ("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 1 1 -0.0\nv 7 7 7\n"
            "f 1 2 3\nf 1 5 4\n")
    (tmp_path / "d.obj").write_text(text)
    m = load_mesh(tmp_path / "d.obj")
    assert m.n_orig_vertices == 6 and len(m.V) == 4
    assert m.orig_to_new.tolist() == [0, 1, 2, 3, 2, -1]
    assert m.new_to_orig.tolist() == [0, 1, 2, 3]
    assert sorted(m.warnings) == ["dropped 1 unreferenced vertex", "merged 1 duplicate vertex"]
    labels = np.array([10, 11, 12, 13])
    back = m.to_original_vertices(labels, fill=-1)
    assert back.tolist() == [10, 11, 12, 13, 12, -1]
    assert np.array_equal(m.file_V[[0, 1, 2, 3]], m.V)
    assert np.array_equal(m.file_triangles(), [[0, 1, 2], [0, 2, 3]])
    # merging switched off: the duplicate stays a separate vertex
    m2 = load_mesh(tmp_path / "d.obj", merge_vertices=False)
    assert len(m2.V) == 5 and m2.orig_to_new.tolist() == [0, 1, 2, 3, 4, -1]
    # no processing at all: the file's arrays
    m3 = load_mesh(tmp_path / "d.obj", process=False)
    assert len(m3.V) == 6 and m3.F.tolist() == [[0, 1, 2], [0, 4, 3]]


def test_repeated_vertex_and_duplicate_faces_are_removed(tmp_path):
    text = ("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nv 0 0 0\n"
            "f 1 2 3\nf 2 4 3\nf 1 5 2\nf 3 2 1\nf 4 3 2\n")
    (tmp_path / "r.obj").write_text(text)
    m = load_mesh(tmp_path / "r.obj")
    # face 3 uses vertex 1 twice once 5 is merged into 1; faces 4, 5 repeat faces 1, 2
    assert m.F.tolist() == [[0, 1, 2], [1, 3, 2]]
    assert m.face_origin.tolist() == [0, 1]
    assert m.to_original_faces(np.array([1.0, 2.0]), fill=np.inf).tolist() == [1.0, 2.0, np.inf, np.inf, np.inf]
    assert any("same vertex twice" in w for w in m.warnings)
    assert any("2 duplicate faces" in w for w in m.warnings)


def test_from_arrays_matches_load(tmp_path):
    V, F = grid(5, 5)
    V2 = np.vstack([V, V[:3]])  # three duplicates at the end, unreferenced
    m = Mesh.from_arrays(V2, F)
    assert len(m.V) == len(V) and np.array_equal(m.F, F)
    assert m.orig_to_new[-3:].tolist() == [0, 1, 2]


# ----------------------------------------------------------------------------- errors


def _err(path, **kw) -> str:
    with pytest.raises(MeshError) as ei:
        load_mesh(path, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_directory_unsupported_empty(tmp_path):
    assert "file not found" in _err(tmp_path / "nope.obj")
    assert "is a directory" in _err(tmp_path)
    (tmp_path / "x.xyz").write_text("1 2 3\n")
    msg = _err(tmp_path / "x.xyz")
    assert "unsupported file type '.xyz'" in msg and all(e in msg for e in SUPPORTED_EXTENSIONS)
    (tmp_path / "e.obj").write_text("")
    assert "empty" in _err(tmp_path / "e.obj")


def test_corrupt_files(tmp_path):
    (tmp_path / "g.ply").write_bytes(b"this is not a ply file\n")
    assert "not a PLY file" in _err(tmp_path / "g.ply")
    # a binary PLY cut short in the middle of the face list
    V, F = icosphere(1)
    save_mesh(tmp_path / "full.ply", V, F)
    data = (tmp_path / "full.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[:-40])
    assert "truncated PLY" in _err(tmp_path / "cut.ply")
    (tmp_path / "r.stl").write_bytes(bytes(range(256)) * 2)
    assert "corrupt binary STL" in _err(tmp_path / "r.stl")
    (tmp_path / "r.glb").write_bytes(b"garbage" * 20)
    assert "cannot read GLB" in _err(tmp_path / "r.glb")
    (tmp_path / "t.off").write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n")
    assert "truncated OFF" in _err(tmp_path / "t.off")
    (tmp_path / "h.off").write_text("HELLO\n")
    assert "not an OFF file" in _err(tmp_path / "h.off")
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 one 0\nf 1 2 3\n")
    assert "unparsable vertex" in _err(tmp_path / "bad.obj")
    (tmp_path / "bin.obj").write_bytes(b"\x00\x01\x02" * 50)
    assert "not a text file" in _err(tmp_path / "bin.obj")


@pytest.mark.parametrize(
    "name, text, expect",
    [
        ("pos.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "references vertex 4, but the file has 3"),
        ("zero.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "references vertex 0"),
        ("neg.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -4\n", "references vertex -4"),
        ("idx.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "references vertex 3, but the file has 3"),
        ("neg.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "references vertex -1"),
    ],
)
def test_out_of_range_indices(tmp_path, name, text, expect):
    (tmp_path / name).write_text(text)
    assert expect in _err(tmp_path / name)


def test_out_of_range_index_in_ply(tmp_path):
    hdr = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
           "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
    (tmp_path / "o.ply").write_text(hdr + "0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n")
    assert "references vertex 5, but the file has 3" in _err(tmp_path / "o.ply")


def test_point_cloud_nan_inf_too_large(tmp_path):
    assert "no faces (a point cloud?)" in _err(SAMPLES / "pointcloud.ply")
    (tmp_path / "v.obj").write_text("v 0 0 0\nv 1 0 0\n")
    assert "no faces" in _err(tmp_path / "v.obj")
    msg = _err(SAMPLES / "nan.obj")
    assert "vertex 1 (0-based) has a non-finite coordinate" in msg
    (tmp_path / "inf.off").write_text("OFF\n3 1 0\n0 0 0\ninf 0 0\n0 1 0\n3 0 1 2\n")
    assert "non-finite" in _err(tmp_path / "inf.off")
    V, F = icosphere(2)
    save_mesh(tmp_path / "s.ply", V, F)
    assert "too large: 162 vertices (limit 100)" in _err(tmp_path / "s.ply", max_vertices=100)
    save_mesh(tmp_path / "s.obj", V, F)
    assert "too large" in _err(tmp_path / "s.obj", max_vertices=100)
    (tmp_path / "deg.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 1 2\nf 2 2 2\n")
    assert "no valid faces" in _err(tmp_path / "deg.obj")


def test_check_arrays_errors():
    V, F = icosphere(1)
    with pytest.raises(MeshError, match=r"shape \(n, 3\)"):
        check_arrays(V[:, :2], F)
    with pytest.raises(MeshError, match="must be integers"):
        check_arrays(V, F.astype(float))
    with pytest.raises(MeshError, match="no faces"):
        check_arrays(V, np.zeros((0, 3), int))
    Vn = V.copy()
    Vn[3, 1] = np.nan
    with pytest.raises(MeshError, match="vertex 3 .* non-finite"):
        check_arrays(Vn, F)
    Fb = F.copy()
    Fb[7, 2] = len(V)
    with pytest.raises(MeshError, match=f"face 7 references vertex {len(V)}"):
        check_arrays(V, Fb)
    with pytest.raises(MeshError, match="non-finite"):
        validate(Vn, F)


# ----------------------------------------------------------------------------- validation counts


def test_validate_closed_surfaces():
    V, F = torus(16, 8)
    r = validate(V, F)
    assert (r.n_vertices, r.n_faces, r.n_edges) == (128, 256, 384)
    assert r.euler_characteristic == 0 and r.genus == 1
    assert r.n_boundary_loops == 0 and r.is_watertight and r.is_manifold
    assert r.n_components == 1 and r.warnings == []
    V, F = icosphere(3)
    r = validate(V, F)
    assert r.euler_characteristic == 2 and r.genus == 0
    assert r.surface_area == pytest.approx(4 * np.pi, rel=2e-2)
    assert np.allclose(r.bbox_min, -1) and np.allclose(r.bbox_max, 1)


def test_validate_open_surfaces():
    V, F = grid(6, 5)
    r = validate(V, F)
    assert r.n_boundary_loops == 1 and r.n_boundary_edges == 2 * (5 + 4)
    assert r.euler_characteristic == 1 and r.genus == 0
    assert r.surface_area == pytest.approx(1.0)
    # annulus: remove the middle cells of a grid -> two boundary loops, chi = 0
    V, F = grid(6, 6)
    centre = V[F].mean(1)
    keep = ~((np.abs(centre[:, 0] - 0.5) < 0.3) & (np.abs(centre[:, 1] - 0.5) < 0.3))  # the middle 3x3 cells
    r = validate(V, F[keep])
    assert r.n_boundary_loops == 2 and r.euler_characteristic == 0 and r.genus == 0


def test_validate_defects():
    V, F = icosphere(2)
    n = len(V)
    # flip one face: its three edges become inconsistently oriented
    F1 = F.copy()
    F1[0] = F1[0, ::-1]
    assert validate(V, F1).n_inconsistent_edges == 3
    assert validate(V, F1).genus is None
    # a duplicate face is also a non-manifold edge triple
    r = validate(V, np.vstack([F, F[:1]]))
    assert r.n_duplicate_faces == 1 and r.n_nonmanifold_edges == 3
    # bowtie: two triangles sharing only one vertex
    Vb = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0.0]])
    Fb = np.array([[0, 1, 2], [0, 3, 4]])
    r = validate(Vb, Fb)
    assert r.n_nonmanifold_vertices == 1 and r.n_nonmanifold_edges == 0
    assert r.n_components == 1 and r.n_boundary_loops == 2
    # degenerate (collinear) face and an unreferenced vertex
    V2 = np.vstack([V, [[2, 0, 0], [3, 0, 0], [4, 0, 0], [9, 9, 9]]])
    F2 = np.vstack([F, [[n, n + 1, n + 2]]])
    r = validate(V2, F2)
    assert r.n_degenerate_faces == 1 and r.n_unreferenced_vertices == 1
    assert r.n_components == 2 and r.component_sizes == [n, 3]
    assert any("degenerate" in w for w in r.warnings)


def test_validate_defects_sample_file():
    m = load_mesh(SAMPLES / "defects.obj")
    assert (m.n_orig_vertices, len(m.V), len(m.F)) == (23, 21, 24)
    assert m.orig_to_new[16] == m.orig_to_new[5] and m.orig_to_new[17] == -1
    r = m.report()
    assert r.n_components == 2 and r.component_sizes == [17, 4]
    assert r.n_nonmanifold_edges == 1 and r.n_nonmanifold_vertices == 0
    assert r.n_degenerate_faces == 1 and r.n_duplicate_faces == 0
    assert r.n_boundary_loops == 1 and r.n_inconsistent_edges == 0
    assert r.euler_characteristic == 3
    assert r.warnings[:2] == ["merged 1 duplicate vertex", "dropped 1 unreferenced vertex"]


def test_sample_meshes_are_clean():
    expected = {"icosphere.obj": (2, 0), "torus.off": (0, 1), "figure.ply": (2, 0), "bumpy_sphere.stl": (2, 0)}
    for name, (chi, genus) in expected.items():
        r = load_mesh(SAMPLES / name).report()
        assert (r.euler_characteristic, r.genus) == (chi, genus), name
        assert r.is_watertight and r.is_manifold and r.n_components == 1, name
        assert (SAMPLES / name).stat().st_size < 300_000
    labels = np.loadtxt(SAMPLES / "figure.vertex_labels.txt", dtype=int)
    assert len(labels) == load_mesh(SAMPLES / "figure.ply").n_orig_vertices
    assert set(labels) == set(range(10))


# ----------------------------------------------------------------------------- saving


def test_ply_vertex_scalars_and_colours_round_trip(tmp_path):
    V, F = icosphere(1)
    n = len(V)
    rng = np.random.default_rng(0)
    d64 = rng.normal(size=n)
    d32 = rng.normal(size=n).astype(np.float32)
    lab = rng.integers(0, 8, n)
    col = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    p = tmp_path / "s.ply"
    save_mesh(p, V, F, vertex_colors=col, vertex_scalars={"dist": d64, "curv": d32, "label": lab})
    got = load_vertex_scalars(p)
    assert set(got) == {"red", "green", "blue", "dist", "curv", "label"}
    assert np.array_equal(got["dist"], d64) and got["dist"].dtype == np.float64
    assert np.array_equal(got["curv"], d32)
    assert np.array_equal(got["label"], lab)
    assert np.array_equal(np.stack([got["red"], got["green"], got["blue"]], 1), col)
    m = load_mesh(p)  # extra properties do not disturb the geometry
    assert np.array_equal(m.V, V) and np.array_equal(m.F, F)
    # float colours in [0, 1]
    save_mesh(p, V, F, vertex_colors=np.ones((n, 4)) * 0.5)
    assert (load_vertex_scalars(p)["alpha"] == 128).all()


def test_save_errors_leave_existing_file_untouched(tmp_path):
    V, F = icosphere(1)
    p = tmp_path / "keep.ply"
    save_mesh(p, V, F)
    before = p.read_bytes()
    with pytest.raises(MeshError, match="must have shape"):
        save_mesh(p, V, F, vertex_scalars={"d": np.zeros(3)})
    with pytest.raises(MeshError, match="invalid vertex property name"):
        save_mesh(p, V, F, vertex_scalars={"x": np.zeros(len(V))})
    with pytest.raises(MeshError, match="non-finite"):
        save_mesh(p, np.full_like(V, np.nan), F)
    with pytest.raises(MeshError, match="only be saved to .ply"):
        save_mesh(tmp_path / "a.obj", V, F, vertex_scalars={"d": np.zeros(len(V))})
    with pytest.raises(MeshError, match="cannot write '.xyz'"):
        save_mesh(tmp_path / "a.xyz", V, F)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.ply"]  # no temp files left behind


def test_load_vertex_scalars_errors(tmp_path):
    with pytest.raises(MeshError, match="not found"):
        load_vertex_scalars(tmp_path / "none.ply")
    with pytest.raises(MeshError, match=r"only be read from \.ply"):
        load_vertex_scalars(SAMPLES / "icosphere.obj")
