"""Segmentation of animations (:mod:`meshgdl.animation_segmentation`, ``meshgdl segment
--animation``) and the replays behind it: the working mesh and hierarchy tied to the
surface (:func:`attach_working_mesh`, :func:`attach_hierarchy`), the plan of a rest pose
(:func:`plan_segmentation`), per-frame labels identical to each frame segmented alone
through the same plan, whatever the order, subset or number of worker processes, and the
temporal-consistency metric.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from meshgdl.cli import main
from meshgdl.data.hierarchy import attach_hierarchy
from meshgdl.data.synthetic import capsule_figure, random_pose
from meshgdl.data.working_mesh import attach_working_mesh, working_mesh
from meshgdl.errors import MeshError
from meshgdl.geometry.normals import face_areas
from meshgdl.geometry.proximity import barycentric_matrix, interpolate
from meshgdl.geometry.remesh import decimate
from meshgdl.io import load_animation, save_mesh, save_pc2
from meshgdl.train.metrics import temporal_consistency
from meshes import icosphere

T_FRAMES = 5


def _rotation(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.fixture(scope="module")
def figure_animation(tmp_path_factory):
    """A capsule figure (~1.9k vertices) moving through T_FRAMES poses, one connectivity."""
    rng = np.random.default_rng(5)
    V0, F, labels = capsule_figure(None, resolution=0.045, seed=3)
    poses = [V0] + [capsule_figure(random_pose(rng, 0.7), resolution=0.045, seed=3)[0] for _ in range(T_FRAMES - 1)]
    d = tmp_path_factory.mktemp("anim")
    save_mesh(d / "figure.obj", V0, F)
    save_pc2(d / "figure.pc2", np.stack(poses).astype(np.float32))
    return d / "figure.obj", d / "figure.pc2", labels


@pytest.fixture(scope="module")
def segmenter():
    from meshgdl.segmentation import load_segmenter

    return load_segmenter("figure_parts", device="cpu")


# ----------------------------------------------------------------------------- metric


def test_temporal_consistency_counts():
    L = np.array([[0, 1, 2, 2],
                  [0, 1, 2, 3],
                  [0, 2, 2, 3],
                  [0, 1, 2, 3]])
    c = temporal_consistency(L)
    # majorities 0, 1, 2, 3: 14 of 16 labels agree; vertices 0 and 2 never change
    assert c["majority_agreement"] == pytest.approx(14 / 16)
    assert c["never_changing"] == pytest.approx(2 / 4)
    assert c["flips_per_frame"] == pytest.approx(3 / 12)
    assert temporal_consistency(L[:1])["flips_per_frame"] == 0.0
    # an unlabelled vertex in any frame is left out
    L2 = np.concatenate([L, [[-1], [0], [0], [0]]], axis=1)
    assert temporal_consistency(L2)["vertices"] == 4
    with pytest.raises(ValueError):
        temporal_consistency(np.zeros(4))


def test_edge_length_variation():
    from meshgdl.train.metrics import edge_length_variation

    # a rigid motion keeps every length; lengths 1 and 3 over two frames: std 1 / mean 2
    np.testing.assert_allclose(edge_length_variation(np.tile([[1.0, 2.0, 5.0]], (4, 1))), 0.0, atol=1e-15)
    np.testing.assert_allclose(edge_length_variation([[1.0, 2.0], [3.0, 2.0]]), [0.5, 0.0])
    with pytest.raises(ValueError):
        edge_length_variation(np.ones(3))


def test_frame_majority_ties_and_unlabelled_frames():
    from meshgdl.data.labels import frame_majority

    L = np.array([[0, 5, -1, 2, -1],
                  [1, 5, 3, 1, -1],
                  [1, 4, 3, 2, -1],
                  [0, 4, -1, 1, -1]])
    # ties go to the smaller label; unlabelled frames do not vote; no votes -> -1
    np.testing.assert_array_equal(frame_majority(L), [0, 4, 3, 1, -1])
    with pytest.raises(ValueError):
        frame_majority(np.zeros(3))


# ----------------------------------------------------------------------------- replays


def test_barycentric_matrix_is_interpolation():
    V, F = icosphere(2)
    rng = np.random.default_rng(0)
    face = rng.integers(0, len(F), 50)
    bary = rng.dirichlet(np.ones(3), 50)
    B = barycentric_matrix(F, face, bary, len(V))
    np.testing.assert_allclose(B @ V, interpolate(V, F, face, bary), atol=1e-15)
    assert B.shape == (50, len(V))


def test_working_mesh_replay_follows_rigid_motions_and_scaling(figure_animation):
    anim = load_animation(*figure_animation[:2])
    m = anim.rest
    wm = working_mesh(m.V, m.F, 600)
    rep = attach_working_mesh(wm, m.V, m.F, 1.0)
    w0 = rep.apply(m.V)
    # same triangles; vertices moved onto the input surface by less than a working edge
    assert np.array_equal(w0.F, wm.F)
    edge = np.linalg.norm(wm.V[wm.F[:, 0]] - wm.V[wm.F[:, 1]], axis=1).mean()
    assert np.abs(w0.V - wm.V).max() < 0.5 * edge
    assert face_areas(w0.V, w0.F).sum() == pytest.approx(1.0, rel=0.02)
    # a rotated, scaled, moved pose gives the same normalised working mesh, rotated
    R = _rotation(np.random.default_rng(1))
    w1 = rep.apply(37.0 * m.V @ R.T + [5.0, -2.0, 9.0])
    np.testing.assert_allclose(w1.V, w0.V @ R.T, atol=1e-9)
    # another pose: same triangles, new positions
    w2 = rep.apply(anim.frame_V(2))
    assert np.array_equal(w2.F, wm.F) and not np.allclose(w2.V, w0.V)
    with pytest.raises(MeshError, match="do not fit"):
        rep.apply(m.V[:-1])


def test_working_mesh_replay_fill_holes_centres_are_rim_means():
    V, F = icosphere(3)
    F = F[V[F].mean(axis=1)[:, 2] < 0.8]  # a cap cut off: one boundary loop
    wm = working_mesh(V, F, 200, fill=True)
    assert wm.n_filled == 1
    rep = attach_working_mesh(wm, V, F, 1.0)
    V2 = V * [1.0, 2.0, 0.5]  # a pose that moves the rim
    w = rep.apply(V2)
    c = len(w.V) - 1
    rim = np.unique(w.F[(w.F == c).any(axis=1)])
    rim = rim[rim != c]
    np.testing.assert_allclose(w.V[c], w.V[rim].mean(axis=0), atol=1e-12)


def test_hierarchy_replay_keeps_triangles_and_parents():
    V, F = icosphere(4)
    V = V * [1.0, 1.3, 0.8]
    rep = attach_hierarchy(V, F, ratios=(1.0, 0.25, 0.0625))
    meshes = rep.meshes(V, F)
    Vc, Fc, par = decimate(V, F, int(np.ceil(0.25 * len(V))))
    assert np.array_equal(meshes[1][1], Fc) and np.array_equal(meshes[1][2], par)
    assert len(meshes) == 3 and len(meshes[2][0]) < len(meshes[1][0])
    # the coarse vertices lie on the finer surface, near where the decimator put them
    edge = np.linalg.norm(Vc[Fc[:, 0]] - Vc[Fc[:, 1]], axis=1).mean()
    assert np.abs(meshes[1][0] - Vc).max() < 0.25 * edge
    # replayed on a moved pose: linear in the positions
    R = _rotation(np.random.default_rng(2))
    moved = rep.meshes(2.0 * V @ R.T, F)
    for (a, _, _), (b, _, _) in zip(meshes, moved):
        np.testing.assert_allclose(b, 2.0 * a @ R.T, atol=1e-12)
    with pytest.raises(ValueError, match="expects"):
        rep.meshes(V[:-3], F)


# ----------------------------------------------------------------------------- pipeline


def test_frames_equal_each_frame_segmented_alone(figure_animation, segmenter):
    from meshgdl.animation_segmentation import segment_animation
    from meshgdl.segmentation import plan_segmentation, segment

    mesh_path, cache_path, truth = figure_animation
    anim = load_animation(mesh_path, cache_path)
    res = segment_animation(anim, segmenter, workers=2)
    assert res.frame_labels.shape == (T_FRAMES, anim.rest.n_orig_vertices)
    assert res.frame_labels.dtype == np.int64 and res.workers == 2
    plan = plan_segmentation(anim.rest, segmenter)
    for t in range(T_FRAMES):
        alone = segment(anim.frame(t), segmenter, plan=plan)
        assert np.array_equal(res.frame_labels[t], alone.file_vertex_labels), t
    # no frame sees another: a subset in another order, in this process, gives the same rows
    sub = segment_animation(anim, segmenter, frames=[3, 1], workers=1)
    assert np.array_equal(sub.frame_labels, res.frame_labels[[3, 1]])
    with pytest.raises(ValueError, match="repeat"):
        segment_animation(anim, segmenter, frames=[1, 1])
    with pytest.raises(ValueError, match="out of range"):
        segment_animation(anim, segmenter, frames=[T_FRAMES])
    # the model knows these figures: every pose is mostly right, and so is the sequence labelling
    for t in range(T_FRAMES):
        assert np.mean(res.frame_labels[t] == truth) > 0.9
    assert np.mean(res.sequence.file_vertex_labels == truth) > 0.9
    c = res.consistency
    assert c["frames"] == T_FRAMES and 0.9 < c["majority_agreement"] <= 1.0


def test_boundary_refinement_of_frames_and_sequence(figure_animation, segmenter):
    from meshgdl.animation_segmentation import segment_animation
    from meshgdl.segmentation import plan_segmentation, segment

    anim = load_animation(*figure_animation[:2])
    plain = segment_animation(anim, segmenter, frames=[0, 2], workers=1, refine=0)
    refined = segment_animation(anim, segmenter, frames=[0, 2], workers=2, refine=0.05)
    plan = plan_segmentation(anim.rest, segmenter)
    for i, t in enumerate([0, 2]):
        alone = segment(anim.frame(t), segmenter, plan=plan, refine=0.05)
        assert np.array_equal(refined.frame_labels[i], alone.file_vertex_labels), t
    assert not np.array_equal(refined.frame_labels, plain.frame_labels)
    assert not np.array_equal(refined.sequence.labels, plain.sequence.labels)
    np.testing.assert_allclose(refined.sequence.probabilities, plain.sequence.probabilities, atol=1e-6)
    # a model that refines by default refines its frames and its sequence labelling
    segmenter.info = dict(segmenter.info, boundary_refinement={"smoothness": 0.05})
    try:
        default = segment_animation(anim, segmenter, frames=[0, 2], workers=1)
    finally:
        segmenter.info = {k: v for k, v in segmenter.info.items() if k != "boundary_refinement"}
    assert np.array_equal(default.frame_labels, refined.frame_labels)
    assert np.array_equal(default.sequence.labels, refined.sequence.labels)


def test_rigidly_moving_mesh_never_changes_label(figure_animation, segmenter, tmp_path):
    from meshgdl.animation_segmentation import segment_animation

    mesh_path, _, _ = figure_animation
    anim0 = load_animation(mesh_path, figure_animation[1])
    rng = np.random.default_rng(7)
    V = anim0.frame_positions(0)
    frames = [V] + [rng.uniform(0.5, 3.0) * V @ _rotation(rng).T + rng.normal(size=3) for _ in range(3)]
    save_pc2(tmp_path / "rigid.pc2", np.stack(frames).astype(np.float32))
    res = segment_animation(load_animation(mesh_path, tmp_path / "rigid.pc2"), segmenter, workers=1)
    # float32 positions: the same labels up to a handful of round-off ties at boundaries
    assert res.consistency["never_changing"] > 0.998


# ----------------------------------------------------------------------------- CLI


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_writes_frame_labels_and_sequence(figure_animation, tmp_path, capsys):
    mesh_path, cache_path, _ = figure_animation
    out = tmp_path / "seq.ply"
    rc, stdout, err = run(["segment", mesh_path, "--animation", cache_path, "-o", out, "--model", "figure_parts",
                           "--format", "json", "-q", "--frames", "1:5:2", "--workers", "1"], capsys)
    assert rc == 0, err
    doc = json.loads(stdout)
    fl = np.load(tmp_path / "seq.frame_labels.npy")
    n = doc["n_vertices"]
    assert fl.shape == (2, n) and fl.dtype == np.int64 and doc["frames"] == 2
    vl = np.loadtxt(tmp_path / "seq.vertex_labels.txt", dtype=np.int64)
    fa = np.loadtxt(tmp_path / "seq.face_labels.txt", dtype=np.int64)
    assert vl.shape == (n,) and fa.shape == (doc["n_faces"],)
    assert set(doc["temporal_consistency"]) >= {"majority_agreement", "never_changing", "flips_per_frame"}
    assert doc["seconds"]["per_frame"] > 0 and (tmp_path / "seq.ply").is_file()
    # text summary
    rc, stdout, err = run(["segment", mesh_path, "--animation", cache_path, "-o", tmp_path / "t.ply", "--model",
                           "figure_parts", "-q", "--frames", "0:2"], capsys)
    assert rc == 0 and "never change" in stdout and "s per frame" in stdout


def test_cli_folder_of_frames_gives_the_cache_labels(figure_animation, tmp_path, capsys):
    mesh_path, cache_path, _ = figure_animation
    anim = load_animation(mesh_path, cache_path)
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        save_mesh(frames / f"f{t}.obj", anim.frame_positions(t), anim.rest.file_triangles())
    rc, _, err = run(["segment", frames, "--animation", "--model", "figure_parts", "-q", "--workers", "1"], capsys)
    assert rc == 0, err
    # outputs beside the folder, not among its frames
    from_folder = np.load(tmp_path / "frames.segmented.frame_labels.npy")
    assert sorted(p.name for p in frames.iterdir()) == ["f0.obj", "f1.obj", "f2.obj"]
    rc, _, err = run(["segment", mesh_path, "--animation", cache_path, "-o", tmp_path / "c.ply", "--model",
                      "figure_parts", "-q", "--frames", "0:3", "--workers", "1"], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(from_folder, np.load(tmp_path / "c.frame_labels.npy"))


def _one_line_error(rc, err, fragment):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshgdl: error: ") and fragment in lines[0], err


def test_cli_bad_animation_input_one_line_and_nothing_written(figure_animation, tmp_path, capsys):
    mesh_path, cache_path, _ = figure_animation
    other = tmp_path / "other.pc2"
    save_pc2(other, np.zeros((2, 10, 3), np.float32))
    out = tmp_path / "x.ply"
    rc, _, err = run(["segment", mesh_path, "--animation", other, "-o", out, "-q"], capsys)
    _one_line_error(rc, err, "other.pc2")
    rc, _, err = run(["segment", mesh_path, "--animation", tmp_path / "missing.pc2", "-o", out, "-q"], capsys)
    _one_line_error(rc, err, "missing.pc2")
    rc, _, err = run(["segment", mesh_path, "--animation", cache_path, "-o", out, "-q", "--frames", "9:20"], capsys)
    _one_line_error(rc, err, "--frames")
    rc, _, err = run(["segment", mesh_path, "--animation", cache_path, "-o", out, "-q", "--frames", "a:b"], capsys)
    _one_line_error(rc, err, "--frames")
    rc, _, err = run(["segment", mesh_path, "--frames", "0:2", "-o", out, "-q"], capsys)
    _one_line_error(rc, err, "--animation")
    rc, _, err = run(["segment", mesh_path, "--animation", "-o", out, "-q"], capsys)
    _one_line_error(rc, err, "point cache")
    assert not list(tmp_path.glob("x.*"))


def test_cli_animation_ood_verdict_is_the_median_frame(figure_animation, tmp_path, capsys):
    import shutil

    from meshgdl.pretrained import PRETRAINED_DIR

    mesh_path, cache_path, _ = figure_animation
    model = tmp_path / "fp.safetensors"
    shutil.copyfile(PRETRAINED_DIR / "figure_parts.safetensors", model)
    info = json.loads((PRETRAINED_DIR / "figure_parts.json").read_text())
    args = ["segment", mesh_path, "--animation", cache_path, "-o", tmp_path / "a.ply", "--model", model,
            "--format", "json", "-q", "--frames", "0:3", "--workers", "1"]
    for thr in (-1.0, 2.0):
        info["ood"] = {"score": "max_prob", "threshold": thr}
        model.with_suffix(".json").write_text(json.dumps(info))
        rc, stdout, err = run(args, capsys)
        assert rc == 0, err
        doc = json.loads(stdout)
        scores = doc["frame_ood_scores"]
        assert len(scores) == 3 and doc["ood_score"] == pytest.approx(np.median(scores), abs=1e-5)
        assert doc["in_distribution"] is (thr > 0) and doc["ood_frames_flagged"] == (0.0 if thr > 0 else 1.0)
        assert ("meshgdl: warning: " in err) is (thr < 0)
    rc, _, err = run(args + ["--reject-ood"], capsys)
    assert rc == 0  # threshold 2: nothing flagged
    info["ood"]["threshold"] = -1.0
    model.with_suffix(".json").write_text(json.dumps(info))
    rc, _, err = run(args[:5] + [tmp_path / "r.ply"] + args[6:] + ["--reject-ood"], capsys)
    assert rc == 3 and "no output written" in err and not list(tmp_path.glob("r.*"))
