"""Dataset loaders: the RNA benchmark (real shared data when present), the custom-folder
format (segmentation and classification layouts), label conversion and errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from meshgdl.data.datasets import (
    DatasetWarning,
    MeshFolder,
    RNASegmentation,
    default_data_root,
    get_dataset,
    write_mesh_folder,
)
from meshgdl.data.labels import face_to_vertex_labels, vertex_to_face_labels
from meshgdl.errors import DatasetError
from meshgdl.io import save_mesh
from meshes import grid, icosphere

RNA = Path("/work/shared/datasets/rna_surface_segmentation")
needs_rna = pytest.mark.skipif(not (RNA / "off").is_dir(),
                               reason=f"RNA dataset not present at {RNA} (shared data not mounted)")


# --------------------------------------------------------------------------- label conversion


def test_face_to_vertex_majority():
    # two triangles sharing edge (1, 2): vertices 1 and 2 see both faces
    F = np.array([[0, 1, 2], [1, 3, 2]])
    lab = face_to_vertex_labels(F, np.array([4, 7]), 5)
    # 0 only in face 0 -> 4; 3 only in face 1 -> 7; 1, 2 tie 4 vs 7 -> smallest (4); 4 in no face -> -1
    assert lab.tolist() == [4, 4, 4, 7, -1]


def test_face_to_vertex_majority_wins_over_smallest():
    F = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1]])
    assert face_to_vertex_labels(F, np.array([9, 9, 2]), 4)[0] == 9
    # an unlabelled face does not vote
    assert face_to_vertex_labels(F, np.array([-1, -1, 2]), 4).tolist() == [2, 2, -1, 2]


def test_vertex_to_face_majority():
    F = np.array([[0, 1, 2], [0, 1, 3], [2, 3, 4], [0, 4, 4]])
    v = np.array([1, 1, 2, 3, -1])
    # 2 of 3 corners -> 1; all different -> smallest; (2, 3, unlabelled) -> 2; (1, -1, -1) -> 1
    assert vertex_to_face_labels(F, v).tolist() == [1, 1, 2, 1]
    assert vertex_to_face_labels(np.array([[4, 4, 4]]), v).tolist() == [-1]


def test_conversion_round_trip_on_constant_regions():
    V, F = grid(6, 6)
    left = V[F].mean(1)[:, 0] < 0.5
    fl = np.where(left, 0, 1)
    vl = face_to_vertex_labels(F, fl, len(V))
    back = vertex_to_face_labels(F, vl)
    # faces not touching the boundary between the regions keep their label
    interior = np.array([len(set(vl[f])) == 1 for f in F])
    assert interior.sum() > len(F) // 2 and np.array_equal(back[interior], fl[interior])


def test_face_label_count_checked():
    with pytest.raises(DatasetError, match="expected 2 face labels"):
        face_to_vertex_labels(np.array([[0, 1, 2], [1, 3, 2]]), np.array([1]), 4)


# --------------------------------------------------------------------------- custom folder


def _seg_folder(root, n=5, fmt="ply", face=False, classes=True, splits=True):
    V, F = icosphere(1)
    items = []
    for i in range(n):
        lab = (V[:, 2] > 0).astype(int) + (i % 2)
        if face:
            lab = vertex_to_face_labels(F, lab)
        items.append((f"m{i}", V * (1 + i), F, lab))
    return write_mesh_folder(
        root, items, fmt=fmt, face_labels=face,
        splits={"train": [f"m{i}" for i in range(n - 2)], "test": [f"m{n - 2}.{fmt}", f"m{n - 1}"]} if splits else None,
        class_names=["a", "b", "c"] if classes else None,
    )


def test_segmentation_folder(tmp_path):
    root = _seg_folder(tmp_path / "d")
    tr, te = MeshFolder(root, "train"), MeshFolder(root, "test")
    assert tr.task == "segmentation" and tr.n_classes == 3 and tr.class_names == ["a", "b", "c"]
    assert tr.names == ["m0", "m1", "m2"] and te.names == ["m3", "m4"]
    assert len(MeshFolder(root, "all")) == 5
    it = te[1]
    V, F = icosphere(1)
    assert it.V.shape == V.shape and np.array_equal(it.y, (V[:, 2] > 0).astype(int) + 0)
    assert np.array_equal(it.file_labels, it.y[it.orig_to_new])
    assert tr.label_level == "vertex"
    d = tr.describe()
    assert d["n_meshes"] == 3 and d["names"] == tr.names


def test_face_labelled_folder(tmp_path):
    root = _seg_folder(tmp_path / "d", face=True, fmt="obj")
    ds = MeshFolder(root, "train")
    it = ds[0]
    assert ds.label_level == "face"
    assert it.file_face_labels.shape == (len(it.F),)
    assert np.array_equal(it.y, face_to_vertex_labels(it.F, it.file_face_labels[it.face_origin], len(it.V)))


def test_n_classes_from_labels_and_unlabelled(tmp_path):
    V, F = icosphere(1)
    lab = np.zeros(len(V), int)
    lab[:5] = -1  # unlabelled
    lab[5] = 6
    root = write_mesh_folder(tmp_path / "d", [("a", V, F, lab), ("b", V, F, np.zeros(len(V), int))])
    ds = MeshFolder(root, "all")
    assert ds.n_classes == 7 and ds.class_names == [str(i) for i in range(7)]
    assert (ds[0].y == -1).sum() == 5


def test_hash_split_is_deterministic_and_partitions(tmp_path):
    root = _seg_folder(tmp_path / "d", n=12, splits=False)
    tr, te = MeshFolder(root, "train"), MeshFolder(root, "test")
    assert sorted(tr.names + te.names) == sorted(f"m{i}" for i in range(12))
    assert not set(tr.names) & set(te.names)
    assert MeshFolder(root, "test").names == te.names
    assert any("hash split" in n for n in tr.notes)
    with pytest.raises(DatasetError, match="val.txt"):
        MeshFolder(root, "val")


def test_bad_split_lists(tmp_path):
    root = _seg_folder(tmp_path / "d")
    (root / "train.txt").write_text("m0\nnope\n")
    with pytest.raises(DatasetError, match=r"bad split list .*train.txt: entry 2 'nope'"):
        MeshFolder(root, "train")
    (root / "train.txt").write_text("m0\nm0.ply\n")
    with pytest.raises(DatasetError, match="listed twice"):
        MeshFolder(root, "train")
    (root / "train.txt").write_text("# nothing\n\n")
    with pytest.raises(DatasetError, match="empty"):
        MeshFolder(root, "train")
    with pytest.raises(DatasetError, match="unknown split"):
        MeshFolder(root, "training")


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        MeshFolder(tmp_path / "missing")
    (tmp_path / "empty" / "meshes").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no mesh files"):
        MeshFolder(tmp_path / "empty")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="no meshes found"):
        MeshFolder(tmp_path / "nothing")
    root = _seg_folder(tmp_path / "d")
    (root / "labels" / "m1.txt").unlink()
    with pytest.raises(DatasetError, match=r"no labels for mesh m1.ply \(expected labels/m1.txt"):
        MeshFolder(root, "train")


def test_label_count_mismatch_names_file_and_counts(tmp_path):
    root = _seg_folder(tmp_path / "d")
    lp = root / "labels" / "m0.txt"
    lp.write_text("\n".join(lp.read_text().split()[:-3]) + "\n")
    ds = MeshFolder(root, "train")
    n = len(icosphere(1)[0])
    with pytest.raises(DatasetError, match=rf"m0.txt: {n - 3} labels but m0.ply has {n} vertices"):
        ds[0]


def test_label_out_of_range_and_not_integer(tmp_path):
    root = _seg_folder(tmp_path / "d")
    lp = root / "labels" / "m0.txt"
    vals = lp.read_text().split()
    vals[4] = "3"  # classes.txt has 3 names -> labels 0..2
    lp.write_text("\n".join(vals))
    with pytest.raises(DatasetError, match="label 3 outside"):
        MeshFolder(root, "train")[0]
    vals[4] = "x1"
    lp.write_text("\n".join(vals))
    with pytest.raises(DatasetError, match="'x1' is not an integer"):
        MeshFolder(root, "train")[0]


def test_duplicate_stems_rejected(tmp_path):
    root = _seg_folder(tmp_path / "d")
    V, F = icosphere(1)
    from meshgdl.io import save_mesh

    save_mesh(root / "meshes" / "m0.obj", V, F)
    with pytest.raises(DatasetError, match="two meshes named 'm0'"):
        MeshFolder(root, "train")


def test_classification_split_folders(tmp_path):
    from meshgdl.io import save_mesh

    V, F = icosphere(1)
    for c in ("cat", "dog"):
        for s, k in (("train", 3), ("test", 1)):
            for i in range(k):
                save_mesh(tmp_path / c / s / f"{c}{s}{i}.off", V, F)
    tr, te = MeshFolder(tmp_path, "train"), MeshFolder(tmp_path, "test")
    assert tr.task == "classification" and tr.class_names == ["cat", "dog"] and tr.n_classes == 2
    assert len(tr) == 6 and len(te) == 2 and len(MeshFolder(tmp_path, "all")) == 8
    assert [int(te[i].y) for i in range(2)] == [0, 1]
    assert te.names == ["cat/test/cattest0", "dog/test/dogtest0"]


def test_classification_flat_with_split_list_and_classes_txt(tmp_path):
    from meshgdl.io import save_mesh

    V, F = icosphere(1)
    for c in ("b", "a"):
        for i in range(2):
            save_mesh(tmp_path / c / f"{i}.ply", V, F)
    (tmp_path / "classes.txt").write_text("b\na\n")  # order from classes.txt, not alphabetical
    (tmp_path / "train.txt").write_text("b/0.ply\na/1\n")
    ds = MeshFolder(tmp_path, "train")
    assert ds.class_names == ["b", "a"] and ds.names == ["b/0", "a/1"]
    assert [int(ds[i].y) for i in range(2)] == [0, 1]
    (tmp_path / "classes.txt").write_text("b\na\nzebra\n")
    with pytest.raises(DatasetError, match="no folder zebra"):
        MeshFolder(tmp_path, "train")


# --------------------------------------------------------------------------- registry


def test_get_dataset_by_path_and_name(tmp_path, monkeypatch):
    root = _seg_folder(tmp_path / "mine")
    assert isinstance(get_dataset(str(root), "train"), MeshFolder)
    assert isinstance(get_dataset("mine", "train", root=tmp_path), MeshFolder)
    with pytest.raises(DatasetError, match="not a known name"):
        get_dataset(str(tmp_path / "zzz"))
    monkeypatch.setenv("MESHGDL_DATA", str(tmp_path / "elsewhere"))
    assert default_data_root() == tmp_path / "elsewhere"
    with pytest.raises(DatasetError, match=r"dataset 'rna' not found .*MESHGDL_DATA"):
        get_dataset("rna")


def _fake_rna(root, names_present, names_listed, n_vertices=None):
    V, F = icosphere(1)
    (root / "off").mkdir(parents=True)
    (root / "labels").mkdir()
    from meshgdl.io import save_mesh

    for nm in names_present:
        save_mesh(root / "off" / f"{nm}.off", V, F)
        lab = np.arange(len(V) if n_vertices is None else n_vertices) % 260 - 1
        (root / "labels" / f"{nm}.txt").write_text("".join(f"{v}\n" for v in lab))
    (root / "train.txt").write_text("".join(f"{n}.off\n" for n in names_listed))
    (root / "test.txt").write_text("".join(f"{n}.off\n" for n in names_present[:1]))
    return root


def test_rna_layout_skips_missing_with_warning(tmp_path):
    root = _fake_rna(tmp_path / "rna_surface_segmentation", ["A", "C"], ["A", "B", "C", "D"])
    with pytest.warns(DatasetWarning, match="2 of 4 meshes"):
        ds = RNASegmentation(root, "train")
    assert ds.names == ["A", "C"] and ds.missing == ["B", "D"]
    assert ds.describe()["missing"] == ["B", "D"]
    it = ds[0]
    raw = np.arange(len(it.file_labels)) % 260 - 1
    assert np.array_equal(it.file_labels, raw + 1) and it.file_labels.min() == 0
    # data root containing the folder, and get_dataset by name
    with pytest.warns(DatasetWarning):
        assert get_dataset("rna", "train", root=tmp_path).names == ["A", "C"]
    assert get_dataset(str(root), "test").names == ["A"]


def test_rna_errors(tmp_path):
    root = _fake_rna(tmp_path / "r", ["A"], ["B"])
    with pytest.raises(DatasetError, match="none of the 1 meshes"), pytest.warns(DatasetWarning):
        RNASegmentation(root, "train")
    root2 = _fake_rna(tmp_path / "r2", ["A"], ["A"], n_vertices=10)
    with pytest.raises(DatasetError, match=r"A.txt: 10 labels but A.off has 42 vertices"):
        RNASegmentation(root2, "train")[0]
    with pytest.raises(DatasetError, match="not found"):
        RNASegmentation(tmp_path / "nope")
    (tmp_path / "bad" / "off").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no 'labels/' folder"):
        RNASegmentation(tmp_path / "bad")
    # a label outside [-1, 258]
    lp = root2 / "labels" / "A.txt"
    lp.write_text("".join(f"{v}\n" for v in [-2] + [0] * 41))
    with pytest.raises(DatasetError, match=r"label -2 outside \[-1, 258\]"):
        RNASegmentation(root2, "train")[0]


# --------------------------------------------------------------------------- the real RNA data


@needs_rna
def test_rna_real_split_lists():
    listed_train = [ln.strip()[:-4] for ln in (RNA / "train.txt").read_text().split()]
    listed_test = [ln.strip()[:-4] for ln in (RNA / "test.txt").read_text().split()]
    assert len(listed_train) == 547 and len(listed_test) == 136
    present = [n for n in listed_train if (RNA / "off" / f"{n}.off").exists()]
    if len(present) < len(listed_train):
        with pytest.warns(DatasetWarning, match=f"{len(listed_train) - len(present)} of 547"):
            tr = get_dataset("rna", "train", root=RNA.parent)
    else:
        tr = get_dataset("rna", "train", root=RNA.parent)
    assert tr.names == present  # split-list order, only what is present
    assert tr.missing == [n for n in listed_train if n not in set(present)]
    te = RNASegmentation(RNA, "test")
    assert te.names == listed_test and not te.missing
    assert tr.n_classes == te.n_classes == 260 and len(te.class_names) == 260
    assert te.class_names[0] == "-1" and te.class_names[259] == "258"
    assert not set(tr.names) & set(te.names)


@needs_rna
def test_rna_real_labels_match_vertices():
    te = RNASegmentation(RNA, "test")
    for i in (0, len(te) // 2, len(te) - 1):
        it = te[i]
        raw = np.loadtxt(RNA / "labels" / f"{te.names[i]}.txt", dtype=np.int64)
        n_file = int((RNA / "off" / f"{te.names[i]}.off").read_text().split()[1])
        assert len(raw) == n_file == len(it.file_labels) == len(it.orig_to_new)
        assert raw.min() >= -1 and raw.max() <= 258
        assert np.array_equal(it.file_labels, raw + 1)
        assert it.y.shape == (len(it.V),) and it.y.min() >= 0 and it.y.max() < 260
        kept = it.orig_to_new >= 0
        # every cleaned vertex's target is the label of one of the file vertices merged into it
        assert np.isin(it.y, it.file_labels).all()
        assert (it.y[it.orig_to_new[kept]] == it.file_labels[kept]).mean() > 0.99


def test_default_data_root_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MESHGDL_DATA", raising=False)
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert default_data_root() == (tmp_path / "shared" / "datasets").resolve()
    assert os.path.isdir(default_data_root())


def test_split_dir_replaces_lists_and_split_folders(tmp_path):
    """--split-dir: external train/val/test lists override the dataset's own lists
    (segmentation) and its train/ test/ folders (classification)."""
    seg = tmp_path / "seg"
    write_mesh_folder(seg, [(f"m{i}", *icosphere(1), np.zeros(42, np.int64)) for i in range(4)],
                      splits={"train": ["m0", "m1", "m2"], "test": ["m3"]})
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("m0\nm2.ply\n")
    (lists / "val.txt").write_text("# held out by subject\nm1\n")
    assert MeshFolder(seg, "train").names == ["m0", "m1", "m2"]
    assert MeshFolder(seg, "train", split_dir=lists).names == ["m0", "m2"]
    assert get_dataset(str(seg), "val", split_dir=lists).names == ["m1"]
    with pytest.raises(DatasetError, match="no test.txt"):
        MeshFolder(seg, "test", split_dir=lists)
    with pytest.raises(DatasetError, match="split folder not found"):
        MeshFolder(seg, "train", split_dir=tmp_path / "nope")

    cls = tmp_path / "cls"
    V, F = icosphere(1)
    for c in ("a", "b"):
        for s, k in (("train", 2), ("test", 1)):
            for i in range(k):
                save_mesh(cls / c / s / f"{c}{s}{i}.obj", V, F)
    (lists / "train.txt").write_text("a/train/atrain0.obj\na/test/atest0.obj\nb/train/btrain1\n")
    ds = MeshFolder(cls, "train", split_dir=lists)
    assert ds.names == ["a/train/atrain0", "a/test/atest0", "b/train/btrain1"]
    assert [r.class_index for r in ds.records] == [0, 0, 1]
    assert len(MeshFolder(cls, "test")) == 2  # without lists: the folders
