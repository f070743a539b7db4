#!/usr/bin/env python
"""Split lists behind the benchmarks (``meshgdl train --split-dir DIR``), written to ``tools/splits/``.

* ``human_seg``: the standard 381/18 train/test split with a validation set held out
  by *whole subjects and sequences*, not by random meshes: the train split holds
  many near-identical frames of the same performers, so a random validation split
  leaks (a 2-epoch run showed 94 % validation but 86 % test accuracy). Held out:
  FAUST subject 9 (``faust__tr_reg_090..099``, FAUST numbers its 10 subjects in
  blocks of 10 poses), the MIT animation sequence ``crane`` (18 frames), and every
  7th Adobe Fuse character in name order (6). SCAPE (one subject) stays in train.
  Writes ``human_seg/{train,val,test}.txt``.
* ``shrec11_split10``: "split 10" of SHREC'11 (the MeshCNN/PD-MeshNet/MeshWalker
  protocol): per class, 10 of the 20 meshes drawn at random for training (seeded),
  the other 10 for testing; three draws (seeds 0, 1, 2), each folder
  ``shrec11_split10_seed{S}/{train,test}.txt`` with entries ``class/{train,test}/file.obj``
  relative to the ``shrec_16`` folder. For model selection without the test split,
  ``val.txt`` holds 2 of each class's 10 training meshes (also seeded) and
  ``train.txt`` the other 8.
* ``shrec11_split16``: "split 16" (the given ``train/`` and ``test/`` folders,
  16 + 4 meshes per class) with a validation set for model selection: per class,
  2 of the 16 training meshes drawn at random (seed 16) go to ``val.txt``, the
  other 14 to ``train.txt``; ``test.txt`` is the given ``test/`` folder, unchanged.

    python tools/make_splits.py [--data-root ../shared/datasets] [--out tools/splits]

Re-running gives the same files (deterministic).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HUMAN_VAL_FAUST_SUBJECT = 9
HUMAN_VAL_MIT_SEQUENCES = ("crane",)
HUMAN_VAL_ADOBE_EVERY = 7
SPLIT10_SEEDS = (0, 1, 2)
SPLIT16_SEED = 16
SPLIT16_VAL_PER_CLASS = 2
MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl")


def _write(p: Path, names: list[str], header: str) -> None:
    from meshgdl.atomic import write_text_atomic

    write_text_atomic(p, f"# {header}\n" + "".join(f"{n}\n" for n in names))


def human_val(name: str, adobe_rank: dict[str, int]) -> bool:
    """Is training mesh ``name`` in the held-out validation groups?"""
    if name.startswith("faust__tr_reg_"):
        return int(name.rsplit("_", 1)[1]) // 10 == HUMAN_VAL_FAUST_SUBJECT
    if name.startswith("MIT_animation__meshes_"):
        seq = name[len("MIT_animation__meshes_"):].split("__", 1)[0]
        return seq in HUMAN_VAL_MIT_SEQUENCES
    if name.startswith("adobe__"):
        return adobe_rank[name] % HUMAN_VAL_ADOBE_EVERY == HUMAN_VAL_ADOBE_EVERY - 1
    return False


def make_human_seg(data: Path, out: Path) -> None:
    from meshgdl.data.datasets import read_list_file

    train = read_list_file(data / "train.txt")
    test = read_list_file(data / "test.txt")
    adobe = sorted(n for n in train if n.startswith("adobe__"))
    rank = {n: i for i, n in enumerate(adobe)}
    val = [n for n in train if human_val(n, rank)]
    tr = [n for n in train if not human_val(n, rank)]
    out.mkdir(parents=True, exist_ok=True)
    why = "tools/make_splits.py human_seg"
    _write(out / "train.txt", tr, f"{why}: standard train split minus the held-out subjects/sequences")
    _write(out / "val.txt", val, f"{why}: FAUST subject {HUMAN_VAL_FAUST_SUBJECT}, MIT {'/'.join(HUMAN_VAL_MIT_SEQUENCES)}, "
           f"every {HUMAN_VAL_ADOBE_EVERY}th Adobe character")
    _write(out / "test.txt", test, f"{why}: the standard test split (SHREC'07 humans), unchanged")
    print(f"human_seg: train {len(tr)}, val {len(val)}, test {len(test)} -> {out}")


def make_shrec_split10(data: Path, out_root: Path) -> None:
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    for seed in SPLIT10_SEEDS:
        rng = np.random.default_rng(seed)
        tr, va, te = [], [], []
        for c in classes:
            files = sorted(f"{c}/{s}/{p.name}" for s in ("train", "test") if (data / c / s).is_dir()
                           for p in (data / c / s).iterdir() if p.suffix.lower() in MESH_SUFFIXES)
            if len(files) != 20:
                raise SystemExit(f"{data / c}: expected 20 meshes, found {len(files)}")
            perm = rng.permutation(len(files))
            chosen = [files[i] for i in perm[:10]]
            te += [files[i] for i in sorted(perm[10:])]
            va += sorted(chosen[:2])
            tr += sorted(chosen[2:])
        out = out_root / f"shrec11_split10_seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        why = f"tools/make_splits.py shrec11_split10 seed {seed}"
        _write(out / "train.txt", tr, f"{why}: 8 of the 10 training meshes per class")
        _write(out / "val.txt", va, f"{why}: the other 2 training meshes per class (model selection)")
        _write(out / "test.txt", te, f"{why}: the 10 remaining meshes per class")
        print(f"shrec11 split 10 seed {seed}: train {len(tr)}, val {len(va)}, test {len(te)} -> {out}")


def make_shrec_split16(data: Path, out: Path) -> None:
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    rng = np.random.default_rng(SPLIT16_SEED)
    tr, va, te = [], [], []
    for c in classes:
        def files(s):
            return sorted(f"{c}/{s}/{p.name}" for p in (data / c / s).iterdir() if p.suffix.lower() in MESH_SUFFIXES)

        train, test = files("train"), files("test")
        if len(train) != 16 or len(test) != 4:
            raise SystemExit(f"{data / c}: expected 16 train and 4 test meshes, found {len(train)} and {len(test)}")
        perm = rng.permutation(len(train))
        va += sorted(train[i] for i in perm[:SPLIT16_VAL_PER_CLASS])
        tr += sorted(train[i] for i in perm[SPLIT16_VAL_PER_CLASS:])
        te += test
    out.mkdir(parents=True, exist_ok=True)
    why = "tools/make_splits.py shrec11_split16"
    _write(out / "train.txt", tr, f"{why}: the train/ folder minus {SPLIT16_VAL_PER_CLASS} meshes per class "
           f"(seed {SPLIT16_SEED})")
    _write(out / "val.txt", va, f"{why}: {SPLIT16_VAL_PER_CLASS} train/ meshes per class (model selection)")
    _write(out / "test.txt", te, f"{why}: the test/ folder (4 meshes per class), unchanged")
    print(f"shrec11 split 16: train {len(tr)}, val {len(va)}, test {len(te)} -> {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None, help="folder holding human_seg/ and shrec_11_meshcnn_split16/")
    ap.add_argument("--out", default=str(ROOT / "tools" / "splits"))
    ap.add_argument("which", nargs="*", default=["human_seg", "shrec11_split10", "shrec11_split16"])
    a = ap.parse_args(argv)
    from meshgdl.data.datasets import default_data_root

    root = Path(a.data_root) if a.data_root else default_data_root()
    out = Path(a.out)
    if "human_seg" in a.which:
        make_human_seg(root / "human_seg", out / "human_seg")
    if "shrec11_split10" in a.which:
        make_shrec_split10(root / "shrec_11_meshcnn_split16" / "shrec_16", out)
    if "shrec11_split16" in a.which:
        make_shrec_split16(root / "shrec_11_meshcnn_split16" / "shrec_16", out / "shrec11_split16")
    return 0


if __name__ == "__main__":
    sys.exit(main())
