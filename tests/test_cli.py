"""``meshgdl info / geodesic / spectrum``: outputs in file order, exit codes,
one-line errors, atomic outputs. In-process through ``meshgdl.cli.main`` except
one subprocess run that proves the ``python -m meshgdl`` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meshgdl.cli import main
from meshgdl.io import load_mesh, load_vertex_scalars, save_mesh
from meshes import icosphere

SAMPLES = Path(__file__).resolve().parents[1] / "sample_meshes"
ROOT = Path(__file__).resolve().parents[1]


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshgdl: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def dup_sphere(tmp_path):
    """Icosphere OBJ whose file has an extra copy of vertex 0 (used by one face)
    and an unused vertex at the end: file order != cleaned order."""
    V, F = icosphere(2)
    n = len(V)
    Vf = np.vstack([V, V[:1], [[5.0, 5.0, 5.0]]])
    Ff = F.copy()
    j = int(np.flatnonzero((F == 0).any(1))[0])
    Ff[j][Ff[j] == 0] = n  # this face now uses the duplicate
    p = tmp_path / "dup.obj"
    with open(p, "w") as fh:
        fh.writelines(f"v {x:.17g} {y:.17g} {z:.17g}\n" for x, y, z in Vf)
        fh.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in Ff)
    return p, n


# ----------------------------------------------------------------------------- info


def test_info_text_and_json(capsys):
    rc, out, err = run(["info", SAMPLES / "defects.obj"], capsys)
    assert rc == 0 and err == ""
    assert "vertices:              21  (file: 23)" in out
    assert "components:            2" in out and "non-manifold edges:    1" in out
    assert "degenerate faces:      1" in out and "merged 1 duplicate vertex" in out
    rc, out, _ = run(["info", "--json", SAMPLES / "torus.off"], capsys)
    d = json.loads(out)
    assert rc == 0 and d["euler_characteristic"] == 0 and d["genus"] == 1
    assert d["n_boundary_loops"] == 0 and d["is_watertight"] and d["file_vertices"] == 1152


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("sample_meshes/nope.obj", "file not found"),
        ("sample_meshes/pointcloud.ply", "no faces"),
        ("sample_meshes/nan.obj", "non-finite coordinate"),
        ("sample_meshes", "is a directory"),
        ("sample_meshes/figure.vertex_labels.txt", "unsupported file type '.txt'"),
    ],
)
def test_info_bad_inputs(capsys, path, fragment):
    rc, out, err = run(["info", ROOT / path], capsys)
    assert_one_line_error(rc, err, fragment)
    assert out == ""


def test_help_exits_cleanly(capsys):
    for cmd in ("info", "geodesic", "spectrum"):
        with pytest.raises(SystemExit) as ei:
            main([cmd, "--help"])
        assert ei.value.code == 0
        assert f"meshgdl {cmd}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- geodesic


def _arc(V, i):
    return np.arccos(np.clip(V @ V[i] / np.linalg.norm(V, axis=1) / np.linalg.norm(V[i]), -1, 1))


def test_geodesic_npy_in_file_order(tmp_path, capsys, dup_sphere):
    p, n = dup_sphere
    out = tmp_path / "d.npy"
    rc, _, err = run(["geodesic", p, "--source", 5, "-o", out], capsys)
    assert rc == 0, err
    assert "merged 1 duplicate vertex" in err  # cleaning note, one stderr line
    d = np.load(out)
    assert d.shape == (n + 2,) and d.dtype == np.float64
    V = load_mesh(p).file_V
    arc = _arc(V[:n], 5)
    assert d[5] == 0.0
    # heat method on a coarse unit sphere: within 5% of pi of the great-circle distance
    # (a wrong vertex order would be off by up to pi)
    assert np.abs(d[:n] - arc).max() < 0.05 * np.pi
    assert d[n] == d[0]  # the duplicate gets its twin's distance
    assert np.isinf(d[n + 1])  # unused vertex: unreachable


def test_geodesic_exact_and_ply_output(tmp_path, capsys):
    V, F = icosphere(2)
    p = tmp_path / "s.ply"
    save_mesh(p, V, F)
    out = tmp_path / "d.ply"
    rc, _, err = run(["geodesic", p, "-s", 0, "-s", 7, "-o", out, "--exact"], capsys)
    assert rc == 0, err
    sc = load_vertex_scalars(out)
    arc = np.minimum(_arc(V, 0), _arc(V, 7))
    # exact polyhedral distance on the inscribed mesh: a little shorter than the arc
    assert np.all(sc["distance"] <= arc + 1e-9) and np.abs(sc["distance"] - arc).max() < 0.03
    assert sc["distance"][0] == 0 and sc["distance"][7] == 0
    assert {"red", "green", "blue"} <= set(sc)
    m = load_mesh(out)
    assert np.array_equal(m.V, V) and np.array_equal(m.F, F)  # same mesh, same order


def test_geodesic_other_component_is_unreachable(tmp_path, capsys):
    out = tmp_path / "d.npy"
    rc, _, err = run(["geodesic", SAMPLES / "defects.obj", "-s", 0, "-o", out], capsys)
    assert rc == 0, err
    d = np.load(out)
    assert np.isinf(d[19:23]).all()  # the separate tetrahedron
    assert np.isfinite(d[:16]).all() and np.isinf(d[17])  # grid reachable, unused vertex not
    assert d[16] == d[5]  # merged duplicate


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-s", "99999"], "--source 99999 is out of range"),
        (["-s", "-1"], "--source -1 is out of range"),
        (["-s", "17"], "--source 17: that vertex is used by no face"),
        (["-s", "0", "--t-coef", "0"], "--t-coef must be a positive number"),
    ],
)
def test_geodesic_bad_arguments_keep_existing_output(tmp_path, capsys, args, fragment):
    out = tmp_path / "d.npy"
    out.write_bytes(b"old contents")
    rc, _, err = run(["geodesic", SAMPLES / "defects.obj", *args, "-o", out], capsys)
    assert_one_line_error(rc, err, fragment)
    assert out.read_bytes() == b"old contents"
    assert sorted(os.listdir(tmp_path)) == ["d.npy"]


def test_geodesic_bad_output_extension_and_input(tmp_path, capsys):
    rc, _, err = run(["geodesic", SAMPLES / "icosphere.obj", "-s", 0, "-o", tmp_path / "d.csv"], capsys)
    assert_one_line_error(rc, err, "must end with .ply or .npy")
    out = tmp_path / "d.ply"
    out.write_bytes(b"old")
    rc, _, err = run(["geodesic", SAMPLES / "nan.obj", "-s", 0, "-o", out], capsys)
    assert_one_line_error(rc, err, "non-finite")
    assert out.read_bytes() == b"old"


# ----------------------------------------------------------------------------- spectrum


def test_spectrum_sphere_eigenvalues_and_file_order(tmp_path, capsys, dup_sphere):
    p, n = dup_sphere
    out = tmp_path / "s.npz"
    rc, _, err = run(["spectrum", p, "-k", 9, "-o", out], capsys)
    assert rc == 0, err
    z = np.load(out)
    ev, phi, mass = z["evals"], z["evecs"], z["mass"]
    assert ev.shape == (9,) and phi.shape == (n + 2, 9) and mass.shape == (n + 2,)
    # unit sphere: l(l+1) with multiplicity 2l+1 -> 0, 2 (x3), 6 (x5)
    assert abs(ev[0]) < 1e-8
    assert np.allclose(ev[1:4], 2.0, rtol=0.03) and np.allclose(ev[4:9], 6.0, rtol=0.05)
    assert np.array_equal(phi[n], phi[0]) and not phi[n + 1].any()  # duplicate row, unused zero row
    assert mass[n] == 0 and mass[n + 1] == 0 and mass.sum() == pytest.approx(4 * np.pi, rel=0.02)
    # M-orthonormal in the file's order
    assert np.allclose(phi.T @ (mass[:, None] * phi), np.eye(9), atol=1e-8)
    assert z["orig_to_new"][n] == z["orig_to_new"][0] and z["orig_to_new"][n + 1] == -1
    assert str(z["laplacian"]) == "cotan"  # auto picks cotan on a clean sphere


def test_spectrum_robust_on_defects(tmp_path, capsys):
    out = tmp_path / "s.npz"
    rc, _, err = run(["spectrum", SAMPLES / "defects.obj", "-k", 4, "-o", out, "--laplacian", "robust"], capsys)
    assert rc == 0, err
    z = np.load(out)
    assert z["evecs"].shape == (23, 4) and np.all(np.diff(z["evals"]) >= -1e-10)
    # two components -> two zero eigenvalues
    assert np.abs(z["evals"][:2]).max() < 1e-8 and z["evals"][2] > 1e-3


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-k", "0", "-o", "s.npz"], "-k must be at least 1"),
        (["-k", "5000", "-o", "s.npz"], "-k 5000 is too large: the mesh has 2562 vertices"),
        (["-k", "5", "-o", "s.npy"], "must end with .npz"),
        (["-k", "5", "-o", "missing_dir/s.npz"], "does not exist"),
    ],
)
def test_spectrum_bad_arguments(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.npz").write_bytes(b"old")
    rc, _, err = run(["spectrum", SAMPLES / "icosphere.obj", *args], capsys)
    assert_one_line_error(rc, err, fragment)
    assert (tmp_path / "s.npz").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["s.npz"]


def test_spectrum_point_cloud(tmp_path, capsys):
    rc, _, err = run(["spectrum", SAMPLES / "pointcloud.ply", "-o", tmp_path / "s.npz"], capsys)
    assert_one_line_error(rc, err, "no faces")
    assert not (tmp_path / "s.npz").exists()


# ----------------------------------------------------------------------------- entry point


def test_python_dash_m_entry_point(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ok = subprocess.run([sys.executable, "-m", "meshgdl", "info", str(SAMPLES / "torus.off")],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "genus:                 1" in ok.stdout and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "meshgdl", "info", str(SAMPLES / "nan.obj")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_status_only_speaks_for_slow_steps_and_colormap():
    import io
    import time

    from meshgdl.cli._common import colormap, status

    buf = io.StringIO()
    with status("quick", delay=0.5, stream=buf):
        pass
    assert buf.getvalue() == ""
    with status("slow step", delay=0.02, stream=buf):
        time.sleep(0.2)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "meshgdl: slow step ..." and lines[1].startswith("meshgdl: slow step: done in")
    c = colormap(np.array([0.0, 0.5, 1.0, np.inf]))
    assert c.dtype == np.uint8 and c.shape == (4, 3)
    assert (c[3] == 153).all()  # unreachable: grey
    assert c[2].tolist() != c[0].tolist() and c[2, 0] > 200  # far end of the ramp is yellow
