"""Training loop, resume, eval and CLI on a tiny procedural dataset.

A small stand-in model (below) follows the model contract of ``meshgdl.nn.models``
(``ModelConfig`` / ``build_model`` / ``prepare`` / ``collate_samples``), so the loop is
tested independently of the real networks; the real models are exercised at the end
when they are available.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from meshgdl.geometry.normals import vertex_normals

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- stand-in model


@dataclass
class TinyConfig:
    kind: str = "tiny"
    task: str = "segmentation"
    n_classes: int = 2
    width: int = 16

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TinyConfig":
        return cls(**d)


@dataclass
class TinySample:
    """Operator-bundle-like: positions, normals and frames (so rotations apply)."""

    V: np.ndarray
    normals: np.ndarray
    frames: np.ndarray
    edge_index: np.ndarray


PREPARE_CALLS: list[int] = []


def prepare(V, F, config, cache_dir=None):
    PREPARE_CALLS.append(len(V))
    n = vertex_normals(V, F)
    a = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    frames = np.stack([e1, np.cross(n, e1), n], 1)
    E = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    E = np.unique(np.concatenate([E, E[:, ::-1]]), axis=0).T
    return TinySample(np.asarray(V, np.float64), n, frames, E)


@dataclass
class TinyBatch:
    pos: torch.Tensor
    normals: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor
    num_graphs: int


def collate_samples(samples, device=None, dtype=None):
    dtype = dtype or torch.get_default_dtype()
    offs = np.cumsum([0] + [len(s.V) for s in samples])
    return TinyBatch(
        pos=torch.as_tensor(np.concatenate([s.V for s in samples]), dtype=dtype, device=device),
        normals=torch.as_tensor(np.concatenate([s.normals for s in samples]), dtype=dtype, device=device),
        edge_index=torch.as_tensor(np.concatenate([s.edge_index + o for s, o in zip(samples, offs)], 1),
                                   device=device),
        batch=torch.as_tensor(np.repeat(np.arange(len(samples)), np.diff(offs)), device=device),
        num_graphs=len(samples),
    )


class TinyModel(nn.Module):
    """Rotation-invariant per-vertex features (centred, scale-normalised radius, and
    normal alignment, each with its one-ring mean) -> MLP -> logits."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.task = cfg.task
        self.mlp = nn.Sequential(nn.Linear(4, cfg.width), nn.ReLU(), nn.Linear(cfg.width, cfg.width), nn.ReLU(),
                                 nn.Linear(cfg.width, cfg.n_classes))

    def forward(self, b: TinyBatch):
        B = b.num_graphs
        cnt = torch.zeros(B, dtype=b.pos.dtype).index_add(0, b.batch, torch.ones_like(b.pos[:, 0]))
        c = torch.zeros(B, 3, dtype=b.pos.dtype).index_add(0, b.batch, b.pos) / cnt[:, None]
        d = b.pos - c[b.batch]
        r = d.norm(dim=1)
        rm = torch.zeros(B, dtype=r.dtype).index_add(0, b.batch, r) / cnt
        r = r / rm[b.batch]
        cosn = (d * b.normals).sum(1) / d.norm(dim=1).clamp_min(1e-12)
        f = torch.stack([r, cosn], 1)
        src, dst = b.edge_index
        deg = torch.zeros(len(f), dtype=f.dtype).index_add(0, dst, torch.ones_like(f[src, 0]))
        nb = torch.zeros_like(f).index_add(0, dst, f[src]) / deg.clamp_min(1)[:, None]
        h = self.mlp(torch.cat([f, nb], 1))
        if self.task == "classification":
            return torch.zeros(B, h.shape[1], dtype=h.dtype).index_add(0, b.batch, h) / cnt[:, None]
        return h


def build_model(cfg: TinyConfig):
    return TinyModel(cfg)


class TinyAPI:
    ModelConfig = TinyConfig
    build_model = staticmethod(build_model)
    prepare = staticmethod(prepare)
    collate_samples = staticmethod(collate_samples)


# --------------------------------------------------------------------------- fixtures


def _tool():
    spec = importlib.util.spec_from_file_location("make_synthetic_dataset", ROOT / "tools" / "make_synthetic_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def seg_root(tmp_path_factory):
    return _tool().make_segmentation(tmp_path_factory.mktemp("seg"), n_train=6, n_test=3, seed=0,
                                     resolutions=(0.15, 0.12))


@pytest.fixture(scope="session")
def cls_root(tmp_path_factory):
    return _tool().make_classification(tmp_path_factory.mktemp("cls"), n_train=8, n_test=4, seed=1,
                                       resolutions=(0.15,))


def _cfg(root, tmp_path, **kw):
    from meshgdl.train.loop import TrainConfig

    d = dict(dataset=str(root), model={"kind": "tiny", "width": 16}, epochs=4, lr=1e-2, batch_size=2, seed=3,
             val_fraction=0.0, cache_dir=str(tmp_path / "cache"), device="cpu", progress=False)
    d.update(kw)
    return TrainConfig.from_dict(d)


def _weights(path):
    from meshgdl.train.checkpoint import load_checkpoint

    return load_checkpoint(path).model_state


# --------------------------------------------------------------------------- tests


def test_training_reduces_loss_and_writes_run(seg_root, tmp_path):
    from meshgdl.train.loop import train

    res = train(_cfg(seg_root, tmp_path, epochs=6, val_fraction=0.34), tmp_path / "run", api=TinyAPI)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert rows[-1]["train"]["loss"] < rows[0]["train"]["loss"]
    # 10 part classes: chance accuracy is ~ the largest part's share; training must beat the first epoch
    assert rows[-1]["train"]["accuracy"] > rows[0]["train"]["accuracy"]
    assert res["finished"] and res["epochs_done"] == 6 and res["n_train"] == 4 and res["n_val"] == 2
    assert "val" in rows[0] and 0 <= rows[0]["val"]["accuracy"] <= 1
    assert (run / "best.safetensors").exists() and (run / "last.safetensors").exists()
    info = json.loads((run / "dataset.json").read_text())
    assert len(info["train"]["names"]) == 4 and len(info["val"]["names"]) == 2
    assert not set(info["train"]["names"]) & set(info["val"]["names"])
    # preprocessing time and the cache's size are recorded; per epoch, CPU time and page faults
    prep = info["preprocessing"]
    assert prep["train"]["meshes"] == 4 and prep["val"]["meshes"] == 2 and prep["train"]["seconds"] >= 0
    assert prep["cache"]["files"] > 0 and prep["cache"]["bytes"] > 0
    assert all(r["train_cpu_seconds"] > 0 and r["train_page_faults"] >= 0 for r in rows)
    # cosine schedule: lr decreases monotonically to min_lr_ratio * lr at the last epoch
    lrs = [r["lr"] for r in rows]
    assert lrs[0] == pytest.approx(1e-2) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-4)


def test_resume_is_exact(seg_root, tmp_path):
    from meshgdl.train.loop import run_finished, train

    train(_cfg(seg_root, tmp_path), tmp_path / "straight", api=TinyAPI)
    train(_cfg(seg_root, tmp_path, stop_after=2), tmp_path / "split", api=TinyAPI)
    half = _weights(tmp_path / "split" / "last.safetensors")
    # results.json exists after every epoch; only its flag says the run is complete
    assert (tmp_path / "split" / "results.json").is_file() and not run_finished(tmp_path / "split")
    res = train(_cfg(seg_root, tmp_path), tmp_path / "split", resume=True, api=TinyAPI)
    assert res["epochs_done"] == 4 and run_finished(tmp_path / "split")
    a = _weights(tmp_path / "straight" / "last.safetensors")
    b = _weights(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the resumed epochs really trained (weights moved after the split point)
    assert any(not torch.equal(half[k], b[k]) for k in b)
    ha = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train"]["loss"] for r in ha] == [r["train"]["loss"] for r in hb]


def test_resume_restores_optimizer_and_scheduler(seg_root, tmp_path):
    from meshgdl.train.checkpoint import load_checkpoint
    from meshgdl.train.loop import train

    train(_cfg(seg_root, tmp_path, stop_after=1, scheduler="step", step_size=1, gamma=0.5), tmp_path / "r", api=TinyAPI)
    ck = load_checkpoint(tmp_path / "r" / "last.safetensors")
    assert ck.epoch == 1
    assert ck.scheduler_state["last_epoch"] == 1
    assert ck.scheduler_state["_last_lr"][0] == pytest.approx(5e-3)
    st = ck.optimizer_state["state"]
    assert len(st) == len(ck.model_state) and all("exp_avg" in v for v in st.values())
    assert float(st[0]["step"]) == 3  # 6 meshes, batch 2
    train(_cfg(seg_root, tmp_path), tmp_path / "r", resume=True, api=TinyAPI)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3])


def test_resume_without_checkpoint_is_an_error(seg_root, tmp_path):
    from meshgdl.errors import CheckpointError
    from meshgdl.train.loop import train

    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_cfg(seg_root, tmp_path), tmp_path / "none", resume=True, api=TinyAPI)


def test_classification_training_and_eval(cls_root, tmp_path):
    from meshgdl.train.loop import evaluate, train

    res = train(_cfg(cls_root, tmp_path, epochs=3, batch_size=4), tmp_path / "c", api=TinyAPI)
    assert res["task"] == "classification" and res["n_classes"] == 4
    m = evaluate(tmp_path / "c", str(cls_root), "test", cache_dir=tmp_path / "cache", device="cpu",
                 progress=False, api=TinyAPI)
    assert m["n_meshes"] == 4 and len(m["confusion_matrix"]) == 4
    cmat = np.array(m["confusion_matrix"])
    assert cmat.sum() == 4 and cmat.sum(1).tolist() == [1, 1, 1, 1]
    assert m["accuracy"] == pytest.approx(np.trace(cmat) / 4)
    assert [e["target"] for e in m["per_mesh"]] == [0, 1, 2, 3]


def test_eval_scores_every_file_vertex(seg_root, tmp_path):
    """Predictions are mapped back to the file's vertices: duplicated and unreferenced
    file vertices are scored too, and the result agrees with a direct computation."""
    from meshgdl.data.datasets import MeshFolder
    from meshgdl.io import load_mesh
    from meshgdl.train.loop import evaluate, train

    # a copy of the dataset where one test mesh has a duplicated vertex and an unused one
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(seg_root, root)
    name = (root / "test.txt").read_text().split()[0]
    mp = root / "meshes" / f"{name}.ply"
    m = load_mesh(mp)
    lab = np.loadtxt(root / "labels" / f"{name}.txt", dtype=np.int64)
    V = np.concatenate([m.V, m.V[:1], [[9.0, 9.0, 9.0]]])  # dup of vertex 0, far unused vertex
    F = m.F.copy()  # faces keep using vertex 0: the duplicate merges with it, the far one is dropped
    lab = np.concatenate([lab, lab[:1], [lab[0]]])
    from meshgdl.io import save_mesh

    mp.unlink()
    save_mesh(root / "meshes" / f"{name}.obj", V, F)
    (root / "labels" / f"{name}.txt").write_text("".join(f"{v}\n" for v in lab))

    train(_cfg(root, tmp_path, epochs=2), tmp_path / "s", api=TinyAPI)
    pred_dir = tmp_path / "pred"
    res = evaluate(tmp_path / "s" / "last.safetensors", str(root), "test", cache_dir=tmp_path / "cache",
                   device="cpu", progress=False, predictions_dir=pred_dir, api=TinyAPI)
    ds = MeshFolder(root, "test")
    assert res["n_meshes"] == len(ds) == 3
    total = 0
    hits = 0
    for e in res["per_mesh"]:
        p = np.loadtxt(pred_dir / f"{e['name']}.txt", dtype=np.int64)
        t = np.loadtxt(root / "labels" / f"{e['name']}.txt", dtype=np.int64)
        assert len(p) == len(t) == e["n_vertices"]
        total += len(t)
        hits += int((p == t).sum())
        if e["name"] == name:
            assert len(t) == len(m.V) + 2
            assert p[-2] == p[0]  # the duplicate took its twin's prediction
    assert res["accuracy"] == pytest.approx(hits / total)
    assert res["vertex"]["count"] == total


def test_face_labelled_dataset_trains_and_reports_face_metrics(tmp_path):
    from meshgdl.train.loop import evaluate, train

    root = _tool().make_segmentation(tmp_path / "f", n_train=4, n_test=2, seed=5, resolutions=(0.15,),
                                     face_labels=True, fmt="off")
    train(_cfg(root, tmp_path, epochs=2), tmp_path / "run", api=TinyAPI)
    res = evaluate(tmp_path / "run", str(root), "test", cache_dir=tmp_path / "cache", device="cpu",
                   progress=False, api=TinyAPI)
    assert "face" in res and res["face"]["count"] > 0
    assert 0 <= res["face"]["accuracy"] <= 1
    assert all(e["unscored_faces"] == 0 for e in res["per_mesh"])


def test_preprocessing_cache_is_used(seg_root, tmp_path):
    from meshgdl.data.datasets import MeshFolder
    from meshgdl.data.preprocess import PreparedDataset, preprocess

    ds = MeshFolder(seg_root, "train")
    cache = tmp_path / "cache"
    preprocess(ds, None, None, cache, progress=False)
    files = sorted((cache / "items").glob("*.npz"))
    assert len(files) == len(ds)
    # a cached item is what the loader gives
    pd = PreparedDataset(ds, prepare, TinyConfig(), cache)
    a = pd.item(0)
    b = ds[0]
    assert np.array_equal(a.V, b.V) and np.array_equal(a.F, b.F) and np.array_equal(a.y, b.y)
    assert np.array_equal(a.orig_to_new, b.orig_to_new)
    # a corrupt cache file is recomputed, not an error
    for f in files:
        f.write_bytes(b"garbage")
    c = pd.item(0)
    assert np.array_equal(c.V, b.V)


def test_interrupted_preprocessing_resumes_with_the_missing_meshes(seg_root, tmp_path, monkeypatch):
    """A preprocessing run stopped after some meshes leaves complete entries only (atomic
    writes); running it again parses and computes just the meshes still missing."""
    from meshgdl.data.datasets import MeshFolder
    from meshgdl.data.preprocess import preprocess

    ds = MeshFolder(seg_root, "train")
    cache = tmp_path / "cache"
    preprocess(ds, None, None, cache, progress=False, indices=[0, 1])  # "interrupted" after two
    (cache / "items" / "half-written.npz.tmp").write_bytes(b"\0" * 10)  # a write cut short
    loaded = []
    orig = MeshFolder.__getitem__
    monkeypatch.setattr(MeshFolder, "__getitem__", lambda self, i: loaded.append(i) or orig(self, i))
    r = preprocess(ds, None, None, cache, progress=False)
    assert sorted(loaded) == list(range(2, len(ds))) and not r["failed"]
    assert len(list((cache / "items").glob("*.npz"))) == len(ds)


def test_parallel_preprocessing_matches_serial(seg_root, tmp_path):
    from meshgdl.data.datasets import MeshFolder
    from meshgdl.data.preprocess import load_item, preprocess

    ds = MeshFolder(seg_root, "all")
    r1 = preprocess(ds, None, None, tmp_path / "a", workers=1, progress=False)
    r2 = preprocess(ds, None, None, tmp_path / "b", workers=2, progress=False)
    assert r1["vertices"] == r2["vertices"]
    fa = sorted(p.name for p in (tmp_path / "a" / "items").glob("*.npz"))
    assert fa == sorted(p.name for p in (tmp_path / "b" / "items").glob("*.npz"))
    for n in fa:
        x, y = load_item(tmp_path / "a" / "items" / n), load_item(tmp_path / "b" / "items" / n)
        assert np.array_equal(x.V, y.V) and np.array_equal(x.y, y.y)


def test_bad_mesh_in_dataset_is_a_dataset_error(seg_root, tmp_path):
    import shutil

    from meshgdl.errors import DatasetError
    from meshgdl.train.loop import train

    root = tmp_path / "bad"
    shutil.copytree(seg_root, root)
    name = (root / "train.txt").read_text().split()[1]
    (root / "meshes" / f"{name}.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    with pytest.raises(DatasetError, match=name):
        train(_cfg(root, tmp_path), tmp_path / "run", api=TinyAPI)


def test_bad_meshes_can_be_skipped_and_are_reported(seg_root, tmp_path):
    import shutil
    import warnings

    from meshgdl.data.datasets import DatasetWarning
    from meshgdl.train.loop import train

    root = tmp_path / "bad"
    shutil.copytree(seg_root, root)
    name = (root / "train.txt").read_text().split()[1]
    (root / "meshes" / f"{name}.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = train(_cfg(root, tmp_path, epochs=1, skip_bad_meshes=True), tmp_path / "run", api=TinyAPI)
    assert any(issubclass(x.category, DatasetWarning) and name in str(x.message) for x in w)
    assert res["n_train"] == 5
    info = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert name not in info["train"]["names"] and name in info["unusable"]["train"]


def test_preprocessing_failure_names_the_mesh(seg_root, tmp_path):
    from meshgdl.data.datasets import MeshFolder
    from meshgdl.data.preprocess import preprocess
    from meshgdl.errors import DatasetError

    ds = MeshFolder(seg_root, "train")
    with pytest.raises(DatasetError, match=rf"{ds.names[0]}: preprocessing failed \(RuntimeError: solver") as e:
        preprocess(ds, failing_prepare, None, tmp_path / "c", progress=False)
    assert isinstance(e.value.__cause__, RuntimeError)
    r = preprocess(ds, failing_prepare, None, tmp_path / "c", progress=False, on_error="skip")
    assert sorted(r["failed"]) == list(range(len(ds))) and r["vertices"] == [None] * len(ds)


def failing_prepare(V, F, config, cache_dir=None):
    raise RuntimeError("solver did not converge")


def test_model_with_wrong_output_shape_is_reported(seg_root, tmp_path):
    from meshgdl.train.loop import train

    class Bad(TinyAPI):
        @staticmethod
        def build_model(cfg):
            return TinyModel(TinyConfig(n_classes=cfg.n_classes + 1))

    with pytest.raises(RuntimeError, match="expected"):
        train(_cfg(seg_root, tmp_path), tmp_path / "run", api=Bad)


def test_lr_schedules():
    from meshgdl.train.loop import TrainConfig, lr_factor

    c = TrainConfig(dataset="x", epochs=11, scheduler="cosine", min_lr_ratio=0.0)
    f = [lr_factor(c, e) for e in range(11)]
    assert f[0] == 1 and f[-1] == pytest.approx(0) and f[5] == pytest.approx(0.5)
    s = TrainConfig(dataset="x", epochs=10, scheduler="step", step_size=3, gamma=0.1, warmup_epochs=2)
    g = [lr_factor(s, e) for e in range(10)]
    assert g[:2] == pytest.approx([1 / 3, 2 / 3])
    assert g[2:] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_train_config_rejects_unknown_and_bad_values():
    from meshgdl.train.loop import TrainConfig

    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"dataset": "x", "epoch": 3})
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(dataset="x", lr=-1).validate()
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(dataset="x", scheduler="linear").validate()


# --------------------------------------------------------------------------- CLI


def _cli(*argv):
    from meshgdl.cli import main

    return main([str(a) for a in argv])


def test_cli_errors_are_one_line(tmp_path, capsys, seg_root):
    assert _cli("train", "--dataset", tmp_path / "nope", "--out", tmp_path / "r", "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meshgdl: error:") and "nope" in err[0]
    assert _cli("eval", tmp_path / "missing.safetensors", "--dataset", seg_root) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _cli("train", "--config", bad, "--out", tmp_path / "r") == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_a_run(tmp_path, capsys, seg_root):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.safetensors").write_bytes(b"x")
    assert _cli("train", "--dataset", seg_root, "--out", tmp_path / "r") == 2
    assert "--resume" in capsys.readouterr().err


def test_cli_config_and_flags(tmp_path):
    import argparse

    from meshgdl.cli.train import build_config

    cfgf = tmp_path / "c.json"
    cfgf.write_text(json.dumps({"dataset": "rna", "epochs": 7, "lr": 0.5, "model": {"kind": "diffusion", "width": 8}}))
    from meshgdl.cli import build_parser

    args = build_parser().parse_args(["train", "--config", str(cfgf), "--out", "x", "--lr", "0.01",
                                      "--model-option", "width=32", "--augment-rotate", "none"])
    cfg = build_config(args)
    assert cfg.epochs == 7 and cfg.lr == 0.01 and cfg.model == {"kind": "diffusion", "width": 32}
    assert cfg.augment_rotate is None
    assert isinstance(args, argparse.Namespace)
    assert cfg.deterministic is None  # decided by whether a seed is given
    args = build_parser().parse_args(["train", "--dataset", "rna", "--out", "x", "--seed", "3", "--nondeterministic"])
    cfg = build_config(args)
    assert cfg.seed == 3 and cfg.deterministic is False


def test_deterministic_mode_does_not_fill_new_tensors():
    """--seed turns on torch's deterministic algorithms but not its NaN fill of every
    torch.empty (a per-step cost the bare step never pays; nothing reads such memory)."""
    from meshgdl.train.loop import set_determinism

    was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.utils.deterministic.fill_uninitialized_memory)
    try:
        set_determinism(0, True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.utils.deterministic.fill_uninitialized_memory = was[2]


def test_cli_model_choices_come_from_the_registry(tmp_path, capsys):
    """--model accepts any registered kind (a toy one here; no training), and an unknown
    kind -- from --model, --model-option kind= or a config -- is one error line, exit 2."""
    from meshgdl.cli import build_parser
    from meshgdl.cli.train import build_config
    from meshgdl.nn.models import MODELS, register_model

    @register_model("toy_cli_kind")
    class Toy(nn.Module):
        uses_hierarchy = False
        num_feature_layers = 1

        @staticmethod
        def check_config(cfg):
            pass

        def features(self, batch, layer):
            raise NotImplementedError

    try:
        args = build_parser().parse_args(["train", "--dataset", "rna", "--out", "x", "--model", "toy_cli_kind"])
        assert build_config(args).model["kind"] == "toy_cli_kind"
        for kind in ("gem", "diffusion"):
            args = build_parser().parse_args(["train", "--dataset", "rna", "--out", "x", "--model", kind])
            assert build_config(args).model["kind"] == kind
    finally:
        MODELS.pop("toy_cli_kind", None)
    cfgf = tmp_path / "c.json"
    cfgf.write_text(json.dumps({"dataset": "rna", "model": {"kind": "nope"}}))
    for extra in (["--model", "toy_cli_kind"], ["--model-option", "kind=nope"], ["--config", cfgf]):
        assert _cli("train", "--dataset", "rna", "--out", tmp_path / "r", *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("meshgdl: error: unknown model kind"), err
        assert "diffusion, gem" in err[0]
    assert not (tmp_path / "r").exists()


def test_train_loop_bench_runs_the_model_of_the_bare_step(monkeypatch):
    """tools/bench/train_loop.py's meshgdl train command builds exactly the configs its bare
    step (train_step.py) times, so both read the same cache entries (no training here)."""
    from meshgdl.cli import build_parser
    from meshgdl.cli.train import build_config

    bench = Path(__file__).resolve().parents[1] / "tools" / "bench"
    monkeypatch.syspath_prepend(str(bench))
    for k in ("OMP_WAIT_POLICY",):  # the scripts settle it at import
        monkeypatch.setenv(k, os.environ.get(k, "PASSIVE"))
    spec = importlib.util.spec_from_file_location("train_loop_under_test", bench / "train_loop.py")
    tl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tl)
    from meshgdl.nn.models import ModelConfig

    for kind, options in tl.MODELS.items():
        cmd = tl.train_command(kind, 8, 3, 2, "out", "cache", None, 2, ["--in-memory"])
        argv = cmd[cmd.index("train"):]  # after "<python> -c <boot> -m meshgdl"
        args = build_parser().parse_args(argv)
        cfg = build_config(args)
        assert (cfg.max_meshes, cfg.epochs, cfg.batch_size, cfg.val_fraction, cfg.seed) == (8, 3, 2, 0.0, 0)
        assert cfg.in_memory is True and cfg.augment_rotate is None and cfg.grad_clip == 1.0
        ours = ModelConfig.from_dict({**cfg.model, "task": "segmentation", "n_classes": 260})
        bare = ModelConfig(task="segmentation", n_classes=260, **options)
        assert ours.to_dict() == bare.to_dict(), kind


# --------------------------------------------------------------------------- real models (when present)


def _models_available():
    try:
        from meshgdl.nn import models  # noqa: F401
        from meshgdl.geometry import laplacian, spectral  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _models_available(), reason="meshgdl.nn.models / geometry operators not available yet")
@pytest.mark.parametrize("kind", ["gem", "diffusion"])
def test_real_model_trains_one_epoch_via_cli(kind, seg_root, tmp_path, capsys):
    out = tmp_path / kind
    small = ["width=8"] if kind == "diffusion" else ["hidden_irreps=4x0+4x1", "n_layers=1"]
    opts = [a for o in ["k_eig=16", "n_hks=4", "head_hidden=8", *small] for a in ("--model-option", o)]
    rc = _cli("train", "--dataset", seg_root, "--model", kind, "--epochs", "1", "--out", out, "--seed", "0",
              "--cache-dir", tmp_path / "cache", "--device", "cpu", "--no-progress", "--max-meshes", "2",
              "--val-fraction", "0", *opts)
    assert rc == 0, capsys.readouterr().err
    rc = _cli("eval", out, "--cache-dir", tmp_path / "cache", "--device", "cpu", "--no-progress",
              "--max-meshes", "1", "--out", tmp_path / "m.json")
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= m["accuracy"] <= 1 and m["n_meshes"] == 1
    assert math.isfinite(m["vertex"]["count"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
