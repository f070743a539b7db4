"""meshgdl.io animations: PC2 / MDD point caches, frame folders, memory mapping, bad input."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

import meshgdl
from meshgdl.errors import MeshError
from meshgdl.io import Animation, Mesh, load_animation, load_mesh, read_mdd, read_pc2, save_mesh, save_pc2
from meshes import torus

ANIM_DATA = Path("/work/shared/datasets/animations")
PC2_HEAD = struct.Struct("<12siiffi")


def _frames(V, T, seed=0):
    """(T, n, 3) float32 positions: a wobbling, translating copy of V."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float64)[:, None, None]
    P = V[None] * (1 + 0.1 * np.sin(t + V[None, :, :1])) + 0.01 * t + 1e-3 * rng.standard_normal((T,) + V.shape)
    return P.astype(np.float32)


@pytest.fixture
def scene(tmp_path):
    """A torus OBJ (float32-exact coordinates) and 5 frames of positions for it."""
    V, F = torus(10, 6)
    V = V.astype(np.float32).astype(np.float64)
    mesh = tmp_path / "rest.obj"
    save_mesh(mesh, V, F)
    return mesh, V, F, _frames(V, 5)


def _write_pc2(path, P, start=0.0, rate=1.0, *, magic=b"POINTCACHE2\0", version=1, n=None, T=None, extra=b""):
    P = np.asarray(P, "<f4")
    head = PC2_HEAD.pack(magic, version, P.shape[1] if n is None else n, start, rate, len(P) if T is None else T)
    Path(path).write_bytes(head + P.tobytes() + extra)


def _write_mdd(path, P, times=None, *, rest_block=False, T=None, n=None, extra=b""):
    """MDD as LightWave/Blender lay it out: >ii frames points, >f times, >f xyz frames."""
    P = np.asarray(P, np.float32)
    frames, points = len(P), P.shape[1]
    times = np.arange(frames) / 25.0 if times is None else times
    data = struct.pack(">ii", frames if T is None else T, points if n is None else n)
    data += struct.pack(f">{frames}f", *times)
    if rest_block:
        data += struct.pack(f">{points * 3}f", *P[0].ravel())
    data += struct.pack(f">{frames * points * 3}f", *P.ravel())
    Path(path).write_bytes(data + extra)


# ----------------------------------------------------------------------------- PC2


def test_pc2_read_matches_what_was_written(tmp_path, scene):
    mesh, V, F, P = scene
    cache = tmp_path / "a.pc2"
    _write_pc2(cache, P, start=10.0, rate=0.5)
    a = load_animation(mesh, cache)
    assert isinstance(a, Animation) and len(a) == a.n_frames == 5
    assert isinstance(a.positions, np.memmap) and a.positions.dtype == np.dtype("<f4")
    assert a.positions.shape == (5, len(V), 3) and not a.positions.flags.writeable
    np.testing.assert_array_equal(a.positions, P)
    np.testing.assert_array_equal(a.times, [10.0, 10.5, 11.0, 11.5, 12.0])
    assert a.times.dtype == np.float64 and a.time_unit == "frame"
    assert (a.path, a.cache_path) == (str(mesh), str(cache))
    assert (a.start_frame, a.sample_rate) == (10.0, 0.5)
    assert a.frame_positions(2).dtype == np.float64
    np.testing.assert_array_equal(a.frame_positions(2), P[2].astype(np.float64))
    np.testing.assert_array_equal(a.frame_positions(-1), P[4].astype(np.float64))


def test_pc2_round_trip_is_bit_identical(tmp_path, scene):
    mesh, V, F, P = scene
    P = P.copy()
    P[0, 0] = [-0.0, 1e-38, 3.4e38]  # signed zero, subnormal-ish and huge values survive
    first, second = tmp_path / "first.pc2", tmp_path / "second.pc2"
    save_pc2(first, P, start_frame=-3.25, sample_rate=0.1)
    a = load_animation(mesh, first)
    save_pc2(second, a.positions, a.start_frame, a.sample_rate)
    assert first.read_bytes() == second.read_bytes()
    assert len(first.read_bytes()) == 32 + P.nbytes
    # and the header is the documented struct
    magic, version, n, start, rate, T = PC2_HEAD.unpack(first.read_bytes()[:32])
    assert (magic, version, n, T) == (b"POINTCACHE2\0", 1, len(V), 5)
    assert (start, rate) == (np.float32(-3.25), np.float32(0.1))


def test_save_pc2_from_float64_and_refuses_bad_positions(tmp_path):
    P = np.random.default_rng(1).standard_normal((3, 4, 3))
    out = tmp_path / "x.pc2"
    save_pc2(out, P)
    d = read_pc2(out)
    np.testing.assert_array_equal(d.positions, P.astype(np.float32))
    P[2, 1, 0] = np.nan
    with pytest.raises(MeshError, match=r"y\.pc2: frame 2: NaN or Inf position \(point 1\)"):
        save_pc2(tmp_path / "y.pc2", P)
    assert not (tmp_path / "y.pc2").exists()  # atomic: nothing half-written is left
    assert [f.name for f in tmp_path.iterdir()] == ["x.pc2"]
    with pytest.raises(MeshError, match="shape"):
        save_pc2(tmp_path / "z.pc2", np.zeros((4, 3)))
    with pytest.raises(MeshError, match="0 frames"):
        save_pc2(tmp_path / "z.pc2", np.zeros((0, 4, 3)))


# ----------------------------------------------------------------------------- frames and the rest mesh


def test_frames_use_the_rest_connectivity_and_index_maps(tmp_path):
    # a quad mesh with a duplicate vertex and an unused one: cleaning changes the numbering
    V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0], [5, 5, 5]], np.float64)
    mesh = tmp_path / "quad.obj"
    mesh.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in V) + "f 1 5 3 4\n")
    P = _frames(V, 3)
    cache = tmp_path / "quad.pc2"
    save_pc2(cache, P)
    a = load_animation(mesh, cache)
    rest = load_mesh(mesh)
    np.testing.assert_array_equal(a.rest.F, rest.F)
    np.testing.assert_array_equal(a.rest.orig_to_new, rest.orig_to_new)
    assert a.rest.n_vertices == 4 and a.rest.n_orig_vertices == 6
    for t in range(3):
        m = a.frame(t)
        assert isinstance(m, Mesh)
        np.testing.assert_array_equal(m.file_V, P[t].astype(np.float64))
        np.testing.assert_array_equal(m.V, P[t].astype(np.float64)[rest.new_to_orig])
        np.testing.assert_array_equal(a.frame_V(t), m.V)
        assert m.F is a.rest.F and m.orig_to_new is a.rest.orig_to_new and m.face_origin is a.rest.face_origin
        assert (m.n_orig_vertices, m.n_orig_faces, m.path) == (6, 1, str(mesh))
        # per-vertex results go back to the file's vertices as for any mesh
        np.testing.assert_array_equal(m.to_original_vertices(np.arange(4)), [0, 1, 2, 3, 1, 0])
    assert [m.V[0, 0] for m in a] == [a.frame_V(t)[0, 0] for t in range(3)]
    with pytest.raises(IndexError, match="frame 3 out of range"):
        a.frame(3)
    with pytest.raises(TypeError):
        a.frame(1.0)


def test_max_frames(tmp_path, scene):
    mesh, V, F, P = scene
    cache = tmp_path / "a.pc2"
    save_pc2(cache, P, start_frame=1.0)
    a = load_animation(mesh, cache, max_frames=2)
    assert a.n_frames == 2 and isinstance(a.positions, np.memmap)
    np.testing.assert_array_equal(a.times, [1.0, 2.0])
    assert load_animation(mesh, cache, max_frames=99).n_frames == 5
    with pytest.raises(ValueError, match="max_frames"):
        load_animation(mesh, cache, max_frames=0)


def test_one_call_api(tmp_path, scene):
    mesh, V, F, P = scene
    save_pc2(tmp_path / "a.pc2", P)
    a = meshgdl.load_animation(str(mesh), str(tmp_path / "a.pc2"))
    assert isinstance(a, meshgdl.Animation) and a.n_frames == 5


# ----------------------------------------------------------------------------- MDD


def test_mdd_read(tmp_path, scene):
    mesh, V, F, P = scene
    times = np.array([0.0, 0.04, 0.08, 0.2, 0.25])
    cache = tmp_path / "a.mdd"
    _write_mdd(cache, P, times)
    a = load_animation(mesh, cache)
    assert isinstance(a.positions, np.memmap) and a.positions.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(a.positions, P)
    np.testing.assert_array_equal(a.times, times.astype(np.float32).astype(np.float64))
    assert a.time_unit == "second" and a.warnings == []
    np.testing.assert_array_equal(a.frame_V(3), P[3].astype(np.float64)[a.rest.new_to_orig])
    # MDD -> PC2 conversion keeps the positions exactly
    save_pc2(tmp_path / "b.pc2", a.positions)
    np.testing.assert_array_equal(read_pc2(tmp_path / "b.pc2").positions, P)


def test_mdd_with_blender_rest_block(tmp_path, scene):
    """Blender's exporter writes frames+1 blocks (a rest pose first): the T frames after it are read."""
    mesh, V, F, P = scene
    cache = tmp_path / "blender.mdd"
    _write_mdd(cache, P, rest_block=True)  # header: 5 frames; blocks: P[0] (rest), P[0..4]
    a = load_animation(mesh, cache)
    assert a.n_frames == 5
    np.testing.assert_array_equal(a.positions, P)
    assert len(a.warnings) == 1 and "rest-pose block" in a.warnings[0]
    rest_pose = np.full_like(P[:1], 7.0)  # whatever the rest block holds, it is skipped
    data = struct.pack(">ii", 5, len(V)) + struct.pack(">5f", *(np.arange(5) / 24))
    cache.write_bytes(data + rest_pose.astype(">f4").tobytes() + P.astype(">f4").tobytes())
    np.testing.assert_array_equal(load_animation(mesh, cache).positions, P)


def test_mdd_bad_frame_time(tmp_path, scene):
    mesh, V, F, P = scene
    cache = tmp_path / "a.mdd"
    _write_mdd(cache, P, times=[0.0, 0.1, float("nan"), 0.3, 0.4])
    with pytest.raises(MeshError, match=r"a\.mdd: frame 2: the MDD frame time is nan"):
        load_animation(mesh, cache)


# ----------------------------------------------------------------------------- frame folders


def test_folder_read_and_frames_equal_load_mesh(tmp_path, scene):
    mesh, V, F, P = scene
    folder = tmp_path / "seq"
    names = [f"frame_{i}.obj" for i in (1, 2, 10, 11, 100)]  # natural order, not text order
    for name, Pt in zip(names, P):
        save_mesh(folder / name, Pt.astype(np.float64), F)
    (folder / "notes.txt").write_text("not a mesh")
    a = load_animation(folder)
    assert a.n_frames == 5 and a.cache_path is None and a.path == str(folder)
    assert a.frame_paths == [str(folder / n) for n in names]
    assert a.positions.dtype == np.float32 and not a.positions.flags.writeable
    np.testing.assert_array_equal(a.positions, P)
    np.testing.assert_array_equal(a.times, np.arange(5.0))
    assert a.warnings == []  # float32-exact coordinates
    for t, name in enumerate(names):
        got, want = a.frame(t), load_mesh(folder / name)
        for key in ("V", "F", "orig_to_new", "face_origin", "file_V"):
            np.testing.assert_array_equal(getattr(got, key), getattr(want, key), err_msg=key)
        assert got.path == want.path
    assert load_animation(folder, max_frames=3).frame_paths == [str(folder / n) for n in names[:3]]


def test_folder_rounding_to_float32_is_reported(tmp_path, scene):
    mesh, V, F, P = scene
    folder = tmp_path / "seq"
    for t in range(2):
        save_mesh(folder / f"f{t}.obj", V + 0.1 * t + 1e-12, F)
    a = load_animation(folder)
    assert len(a.warnings) == 1 and "float32" in a.warnings[0]
    np.testing.assert_allclose(a.frame(1).V, load_mesh(folder / "f1.obj").V, atol=1e-6)


def test_folder_errors(tmp_path, scene):
    mesh, V, F, P = scene
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MeshError, match="empty: no mesh files"):
        load_animation(empty)
    folder = tmp_path / "seq"
    for t in range(3):
        save_mesh(folder / f"f{t}.obj", P[t].astype(np.float64), F)
    with pytest.raises(MeshError, match="takes no cache"):
        load_animation(folder, tmp_path / "a.pc2")
    save_mesh(folder / "f2.obj", P[2].astype(np.float64), F[:, [0, 2, 1]])
    with pytest.raises(MeshError, match=r"f2\.obj: frame 2 has different faces from frame 0 \(f0\.obj\)"):
        load_animation(folder)
    save_mesh(folder / "f2.obj", np.vstack([P[2], [[9, 9, 9]]]).astype(np.float64), F)
    with pytest.raises(MeshError, match=r"f2\.obj: frame 2 has 61 vertices, frame 0 \(f0\.obj\) has 60"):
        load_animation(folder)
    (folder / "f2.obj").write_text((folder / "f1.obj").read_text().replace("v ", "v nan ", 1))
    with pytest.raises(MeshError, match=r"f2\.obj.*\(frame 2 of .*seq\)$"):
        load_animation(folder)


# ----------------------------------------------------------------------------- bad caches


@pytest.mark.parametrize("fmt", ["pc2", "mdd"])
def test_point_count_differs_from_the_mesh(tmp_path, scene, fmt):
    mesh, V, F, P = scene
    cache = tmp_path / f"a.{fmt}"
    (_write_pc2 if fmt == "pc2" else _write_mdd)(cache, P[:, :-1])
    with pytest.raises(MeshError, match=rf"a\.{fmt}: 59 points per frame, but the mesh .*rest\.obj has 60 vertices"):
        load_animation(mesh, cache)


@pytest.mark.parametrize("fmt", ["pc2", "mdd"])
def test_truncated_and_trailing(tmp_path, scene, fmt):
    mesh, V, F, P = scene
    cache = tmp_path / f"a.{fmt}"
    (_write_pc2 if fmt == "pc2" else _write_mdd)(cache, P)
    full = cache.read_bytes()
    frame_bytes = 12 * len(V)
    cache.write_bytes(full[:-100])
    with pytest.raises(MeshError, match=rf"a\.{fmt}: truncated {fmt.upper()} cache: .*frame 4 is cut short"):
        load_animation(mesh, cache)
    cache.write_bytes(full[: len(full) - 2 * frame_bytes])
    with pytest.raises(MeshError, match="frame 3 is missing"):
        load_animation(mesh, cache)
    cache.write_bytes(full[:5])
    with pytest.raises(MeshError, match="truncated .*header"):
        load_animation(mesh, cache)
    cache.write_bytes(full + b"junk")
    with pytest.raises(MeshError, match=rf"a\.{fmt}: 4 bytes of trailing data after the last frame \(4\)"):
        load_animation(mesh, cache)


def test_mdd_truncated_time_table(tmp_path, scene):
    mesh, V, F, P = scene
    cache = tmp_path / "a.mdd"
    cache.write_bytes(struct.pack(">ii", 1000, len(V)) + b"\0" * 40)
    with pytest.raises(MeshError, match="truncated MDD cache: header says 1000 frames, the file ends inside the frame-time table"):
        load_animation(mesh, cache)


def test_pc2_bad_magic_version_and_header(tmp_path, scene):
    mesh, V, F, P = scene
    cache = tmp_path / "a.pc2"
    _write_pc2(cache, P, magic=b"POINTCACHE3\0")
    with pytest.raises(MeshError, match=r"a\.pc2: not a PC2 point cache \(magic b'POINTCACHE3"):
        load_animation(mesh, cache)
    _write_pc2(cache, P, version=2)
    with pytest.raises(MeshError, match=r"a\.pc2: unsupported PC2 version 2"):
        load_animation(mesh, cache)
    _write_pc2(cache, P, rate=float("nan"))
    with pytest.raises(MeshError, match="corrupt PC2 header"):
        load_animation(mesh, cache)
    _write_pc2(cache, P, rate=0.0)
    with pytest.raises(MeshError, match="corrupt PC2 header"):
        load_animation(mesh, cache)


@pytest.mark.parametrize("fmt", ["pc2", "mdd"])
def test_zero_frames_and_negative_counts(tmp_path, scene, fmt):
    mesh, V, F, P = scene
    cache = tmp_path / f"a.{fmt}"
    write = _write_pc2 if fmt == "pc2" else _write_mdd
    write(cache, P[:0])
    with pytest.raises(MeshError, match=rf"a\.{fmt}: {fmt.upper()} cache has zero frames"):
        load_animation(mesh, cache)
    write(cache, P, T=-5)
    with pytest.raises(MeshError, match=rf"a\.{fmt}: corrupt {fmt.upper()} header: negative frame count"):
        load_animation(mesh, cache)
    write(cache, P, n=-60)
    with pytest.raises(MeshError, match="negative point count"):
        load_animation(mesh, cache)
    write(cache, P[:, :0])
    with pytest.raises(MeshError, match=rf"a\.{fmt}: {fmt.upper()} cache has zero points per frame"):
        load_animation(mesh, cache)


@pytest.mark.parametrize("fmt", ["pc2", "mdd"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_positions_name_the_frame(tmp_path, scene, fmt, bad):
    mesh, V, F, P = scene
    P = P.copy()
    P[3, 17, 1] = bad
    cache = tmp_path / f"a.{fmt}"
    (_write_pc2 if fmt == "pc2" else _write_mdd)(cache, P)
    with pytest.raises(MeshError, match=rf"a\.{fmt}: frame 3: NaN or Inf position \(vertex 17\)"):
        load_animation(mesh, cache)
    a = load_animation(mesh, cache, max_frames=3)  # the bad frame is not read
    assert a.n_frames == 3


def test_nonfinite_in_a_large_cache_is_found_when_the_frame_is_read(tmp_path, scene, monkeypatch):
    import meshgdl.io.animation as animation

    mesh, V, F, P = scene
    P = P.copy()
    P[2, 5, 0] = np.nan
    cache = tmp_path / "a.pc2"
    _write_pc2(cache, P)
    monkeypatch.setattr(animation, "FINITE_CHECK_BYTES", 1000)  # "large": not scanned when opened
    a = load_animation(mesh, cache)
    a.frame(1)
    for get in (a.frame, a.frame_V, a.frame_positions):
        with pytest.raises(MeshError, match=r"a\.pc2: frame 2: NaN or Inf position \(vertex 5\)"):
            get(2)
    with pytest.raises(MeshError, match="frame 2"):
        a.check_finite()


def test_missing_files_and_unknown_extension(tmp_path, scene):
    mesh, V, F, P = scene
    with pytest.raises(MeshError, match=r"nope\.pc2: file not found"):
        load_animation(mesh, tmp_path / "nope.pc2")
    with pytest.raises(MeshError, match=r"nope\.obj: file not found"):
        load_animation(tmp_path / "nope.obj", tmp_path / "nope.pc2")
    with pytest.raises(MeshError, match=r"nope\.obj: file not found"):
        load_animation(tmp_path / "nope.obj")
    (tmp_path / "a.abc").write_bytes(b"x")
    with pytest.raises(MeshError, match=r"a\.abc: unknown point-cache type '\.abc'; supported: \.pc2, \.mdd"):
        load_animation(mesh, tmp_path / "a.abc")
    (tmp_path / "d.mdd").mkdir()
    with pytest.raises(MeshError, match=r"d\.mdd: is a directory"):
        load_animation(mesh, tmp_path / "d.mdd")
    (tmp_path / "e.pc2").write_bytes(b"")
    with pytest.raises(MeshError, match=r"e\.pc2: file is empty"):
        load_animation(mesh, tmp_path / "e.pc2")
    with pytest.raises(MeshError, match="needs a point cache"):
        load_animation(mesh)


def test_every_error_is_one_line(tmp_path, scene):
    mesh, V, F, P = scene
    cache = tmp_path / "a.pc2"
    _write_pc2(cache, P, extra=b"\0" * 7)
    with pytest.raises(MeshError) as e:
        load_animation(mesh, cache)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- memory mapping


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc for RSS")
def test_a_huge_cache_opens_at_once_without_loading(tmp_path):
    """10k vertices x 10,000 frames (1.2 GB, written sparse): opened by mapping, not reading."""
    n, T = 10_000, 10_000
    V = np.random.default_rng(0).standard_normal((n, 3))
    F = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], axis=1)
    mesh = tmp_path / "strip.ply"
    save_mesh(mesh, V, F)
    cache = tmp_path / "huge.pc2"
    with open(cache, "wb") as fh:
        fh.write(PC2_HEAD.pack(b"POINTCACHE2\0", 1, n, 0.0, 1.0, T))
        fh.truncate(32 + T * n * 12)  # a hole: no data written, reads as zeros
    assert cache.stat().st_size == 1_200_000_032
    load_mesh(mesh)  # imports and the mesh parse out of the way of the measurement
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    read_pc2(cache)
    t1 = time.perf_counter()
    a = load_animation(mesh, cache)
    t2 = time.perf_counter()
    assert a.n_frames == T and a.positions.shape == (T, n, 3)
    np.testing.assert_array_equal(a.frame(T - 1).file_V, 0.0)
    a.frame_V(T // 2)
    grown = _rss_bytes() - rss0
    # ~1 ms and ~40 ms (the 10k-vertex PLY) on an idle machine; generous for loaded CI
    assert t1 - t0 < 0.1, f"opening the cache took {t1 - t0:.2f} s"
    assert t2 - t1 < 1.0, f"load_animation took {t2 - t1:.2f} s"
    assert grown < 100 << 20, f"RSS grew by {grown / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (ANIM_DATA / "crane.pc2").exists(), reason="real animations not available")
def test_real_crane_cache(tmp_path):
    a = load_animation(ANIM_DATA / "crane.obj", ANIM_DATA / "crane.pc2")
    assert a.n_frames == 88 and a.rest.n_orig_vertices == 10_002 and a.rest.n_faces == 20_000
    # frame 0 of the cache is the OBJ's geometry, to float32 precision
    np.testing.assert_allclose(a.frame_positions(0), a.rest.file_V, atol=1e-6)
    assert np.abs(a.frame_V(87) - a.frame_V(0)).max() > 0.01  # the body moves
    out = tmp_path / "crane.pc2"
    save_pc2(out, a.positions, a.start_frame, a.sample_rate)
    assert out.read_bytes() == (ANIM_DATA / "crane.pc2").read_bytes()
