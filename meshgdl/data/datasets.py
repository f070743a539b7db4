"""Mesh datasets: the RNA surface-segmentation benchmark and a documented custom-folder format.

Every dataset is a sequence of :class:`MeshItem` (a cleaned mesh from
:func:`meshgdl.io.load_mesh` plus its targets) with ``task``
(``"segmentation"`` or ``"classification"``), ``n_classes`` and ``class_names``.
Items are read lazily; use :mod:`meshgdl.data.preprocess` to cache them.

Label conventions
-----------------
* Segmentation targets are per vertex of the *cleaned* mesh (``item.y``, (n,) int64),
  made from the file's labels through ``mesh.orig_to_new``: a cleaned vertex that
  merges several file vertices takes the label of the first of them. The file's
  own labels stay available as ``item.file_labels`` ((n_orig,) int64) for
  evaluation on the original mesh.
* ``-1`` (:data:`IGNORE_INDEX`) means "unlabelled": left out of the loss and of
  every metric.
* Per-face labels are turned into per-vertex targets by
  :func:`meshgdl.data.labels.face_to_vertex_labels`
  (majority vote over the incident faces) and per-vertex predictions back into
  per-face ones by :func:`meshgdl.data.labels.vertex_to_face_labels` (majority of the three corners);
  both break ties towards the smallest label.

Custom-folder format (:class:`MeshFolder`)
------------------------------------------
**Segmentation** -- a ``meshes/`` folder exists::

    root/meshes/<stem>.{obj,ply,off,stl}       one mesh per file (stems unique)
    root/labels/<stem>.txt                     one integer per line per *file vertex*, in file order
    root/labels/<stem>.face_labels.txt         ... or one per *file face* (polygon), in file order
    root/classes.txt                           optional: class names, one per line (line i = label i)
    root/train.txt, root/test.txt, root/val.txt optional split lists: one mesh per line
                                               (stem or file name; blank lines and '#' comments skipped)

If both label files exist for a mesh the per-vertex one is used. Labels are
integers in ``[0, n_classes)`` or ``-1`` (unlabelled). Without ``classes.txt``,
``n_classes`` is 1 + the largest label found in *all* label files (so train and
test agree).

**Classification** -- no ``meshes/`` folder; one sub-folder per class::

    root/<class>/<file>.{obj,ply,off,stl}             split by root/train.txt, root/test.txt
                                                      (lines "<class>/<file>")
    root/<class>/{train,test}/<file>.{obj,...}        ModelNet / MeshCNN layout: split by folder

Class index = position in ``classes.txt`` if present, else in the sorted folder names.

**Splits** -- ``split="all"`` is every mesh. Without a split list (or split folder)
the split is a deterministic hash of the mesh name: ``sha1(name) % 5 == 0`` is
``test`` (about 20 %), the rest ``train``; it does not change when meshes are
added or removed. ``val`` requires a list.

RNA surface segmentation (:class:`RNASegmentation`)
---------------------------------------------------
The layout of github.com/nmwsharp/RNA-Surface-Segmentation-Dataset:
``off/NAME.off``, ``labels/NAME.txt`` (per file vertex, values in [-1, 258]),
``train.txt`` / ``test.txt`` (``NAME.off`` per line). Labels are shifted by +1
(``-1`` becomes class 0; 260 classes) -- every vertex is a target, none ignored.
Names of the split list whose files are missing are skipped with a warning and
listed in ``dataset.missing`` (the shared copy holds only part of ``train.txt``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from meshgdl.data.labels import IGNORE_INDEX, face_to_vertex_labels
from meshgdl.errors import DatasetError, MeshError

log = logging.getLogger(__name__)

MESH_EXTENSIONS = (".obj", ".ply", ".off", ".stl")
#: Environment variable naming the folder that holds the named datasets.
DATA_ENV = "MESHGDL_DATA"
SPLITS = ("train", "test", "val", "all")


class DatasetWarning(UserWarning):
    """Something was skipped while building a dataset (e.g. missing files of a split list)."""


# --------------------------------------------------------------------------- items


@dataclass
class MeshRecord:
    """Where one dataset item lives (nothing loaded yet)."""

    name: str
    mesh_path: Path
    label_path: Path | None = None
    label_level: str | None = None  # "vertex" | "face" | None (classification)
    class_index: int | None = None

    def fingerprint(self) -> str:
        """Cheap identity of the source files (path, size, mtime) for caches."""
        h = hashlib.sha256()
        for p in (self.mesh_path, self.label_path):
            if p is not None:
                st = p.stat()
                h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
        h.update(f"{self.label_level}|{self.class_index}".encode())
        return h.hexdigest()


@dataclass
class MeshItem:
    """One loaded mesh with its targets.

    V: (n, 3) float64, F: (m, 3) int64 -- the cleaned mesh.
    y: (n,) int64 per-vertex targets (segmentation; ``-1`` = unlabelled) or a
    0-d int64 class index (classification).
    orig_to_new: (n_orig,) int64 file vertex -> index in V (-1: dropped).
    face_origin: (m,) int64 triangle -> file face.
    file_V: (n_orig, 3) float64 file vertex positions (to place dropped vertices).
    file_labels: (n_orig,) int64 per-file-vertex targets, or None.
    file_face_labels: (n_orig_faces,) int64 per-file-face targets (face-labelled data), or None.
    """

    name: str
    V: np.ndarray
    F: np.ndarray
    y: np.ndarray
    orig_to_new: np.ndarray
    face_origin: np.ndarray
    file_V: np.ndarray
    file_labels: np.ndarray | None = None
    file_face_labels: np.ndarray | None = None
    n_orig_faces: int = 0
    warnings: list[str] = field(default_factory=list)


def read_label_file(path: Path) -> np.ndarray:
    """Integers, one per line (whitespace-separated also accepted) -> (k,) int64."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read label file ({exc.strerror or exc})") from None
    toks = text.split()
    try:
        return np.array([int(t) for t in toks], dtype=np.int64)
    except ValueError:
        bad = next(t for t in toks if not _is_int(t))
        raise DatasetError(f"{path}: label {bad!r} is not an integer") from None


def _is_int(t: str) -> bool:
    try:
        int(t)
        return True
    except ValueError:
        return False


def read_list_file(path: Path) -> list[str]:
    """Non-empty lines of a list file, '#' comments stripped."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _hash_split(name: str) -> str:
    return "test" if int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5 == 0 else "train"


# --------------------------------------------------------------------------- base class


class MeshDataset:
    """Sequence of :class:`MeshItem`; subclasses fill ``records`` and the class info."""

    task: str = "segmentation"
    label_offset: int = 0  # added to every label read from a file (RNA: +1)

    def __init__(self, root: str | os.PathLike, split: str):
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.records: list[MeshRecord] = []
        self.class_names: list[str] | None = None
        self.n_classes: int = 0
        self.missing: list[str] = []
        self.notes: list[str] = []
        self.name = self.root.name

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> MeshItem:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.load(self.records[i])

    def __iter__(self) -> Iterator[MeshItem]:
        for i in range(len(self)):
            yield self[i]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    @property
    def label_level(self) -> str | None:
        levels = {r.label_level for r in self.records}
        return levels.pop() if len(levels) == 1 else ("mixed" if levels else None)

    def describe(self) -> dict:
        """JSON summary: what was loaded, from where, and what was skipped."""
        return {
            "dataset": self.name,
            "root": str(self.root),
            "split": self.split,
            "task": self.task,
            "n_meshes": len(self),
            "n_classes": self.n_classes,
            "label_level": self.label_level,
            "names": self.names,
            "missing": list(self.missing),
            "notes": list(self.notes),
        }

    def _skip(self, msg: str) -> None:
        _warnings.warn(msg, DatasetWarning, stacklevel=3)
        self.notes.append(msg)

    # ------------------------------------------------------------------ loading
    def load(self, rec: MeshRecord) -> MeshItem:
        from meshgdl.io import load_mesh

        try:
            mesh = load_mesh(rec.mesh_path)
        except MeshError as exc:
            raise DatasetError(f"dataset {self.name}: {exc}") from None
        file_labels = file_face_labels = None
        if self.task == "classification":
            y = np.asarray(rec.class_index, dtype=np.int64)
        else:
            raw = read_label_file(rec.label_path)
            if rec.label_level == "vertex":
                if len(raw) != mesh.n_orig_vertices:
                    raise DatasetError(
                        f"{rec.label_path}: {len(raw)} labels but {rec.mesh_path.name} has "
                        f"{mesh.n_orig_vertices} vertices"
                    )
                file_labels = self._check_range(raw, rec.label_path)
                y = np.full(mesh.n_vertices, IGNORE_INDEX, dtype=np.int64)
                first = mesh.new_to_orig
                ok = first >= 0
                y[ok] = file_labels[first[ok]]
            else:
                if len(raw) != mesh.n_orig_faces:
                    raise DatasetError(
                        f"{rec.label_path}: {len(raw)} labels but {rec.mesh_path.name} has "
                        f"{mesh.n_orig_faces} faces"
                    )
                file_face_labels = self._check_range(raw, rec.label_path)
                y = face_to_vertex_labels(mesh.F, file_face_labels[mesh.face_origin], mesh.n_vertices)
        return MeshItem(
            name=rec.name, V=mesh.V, F=mesh.F, y=y, orig_to_new=mesh.orig_to_new,
            face_origin=mesh.face_origin,
            file_V=mesh.file_V if mesh.file_V is not None else mesh.V,
            file_labels=file_labels, file_face_labels=file_face_labels,
            n_orig_faces=mesh.n_orig_faces, warnings=list(mesh.warnings),
        )

    def _check_range(self, raw: np.ndarray, path: Path) -> np.ndarray:
        lab = raw + self.label_offset
        # with an offset (RNA) every file value is a class; otherwise -1 means unlabelled
        lo = 0 if self.label_offset else IGNORE_INDEX
        bad = (lab < lo) | (lab >= self.n_classes)
        if bad.any():
            v = int(raw[np.argmax(bad)])
            raise DatasetError(
                f"{path}: label {v} outside [{lo - self.label_offset}, {self.n_classes - 1 - self.label_offset}] "
                f"({self.n_classes} classes)"
            )
        return lab


# --------------------------------------------------------------------------- RNA


class RNASegmentation(MeshDataset):
    """RNA molecular-surface segmentation (Poulenard et al. 2019), 260 per-vertex classes.

    ``root`` is the dataset folder (holding ``off/``, ``labels/``, ``train.txt``,
    ``test.txt``) or a data root containing ``rna_surface_segmentation/``.
    """

    task = "segmentation"
    label_offset = 1
    N_CLASSES = 260
    FOLDER = "rna_surface_segmentation"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train"):
        root = Path(root) if root is not None else default_data_root() / self.FOLDER
        if not (root / "off").is_dir() and (root / self.FOLDER).is_dir():
            root = root / self.FOLDER
        super().__init__(root, split)
        self.name = "rna"
        if not root.is_dir():
            raise DatasetError(f"RNA dataset folder not found: {root}")
        for sub in ("off", "labels"):
            if not (root / sub).is_dir():
                raise DatasetError(f"{root}: not the RNA dataset layout (no '{sub}/' folder)")
        self.n_classes = self.N_CLASSES
        # class 0 is the file's -1 ("no nucleotide"); class c is the file's label c - 1
        self.class_names = [str(c - 1) for c in range(self.N_CLASSES)]
        lists = ["train", "test"] if split == "all" else [split]
        names: list[str] = []
        for s in lists:
            lp = root / f"{s}.txt"
            if not lp.is_file():
                raise DatasetError(f"{root}: split list {lp.name} not found")
            names += read_list_file(lp)
        for entry in names:
            stem = entry[:-4] if entry.lower().endswith(".off") else entry
            mp, lbl = root / "off" / f"{stem}.off", root / "labels" / f"{stem}.txt"
            if not mp.is_file() or not lbl.is_file():
                self.missing.append(stem)
                continue
            self.records.append(MeshRecord(stem, mp, lbl, "vertex"))
        if self.missing:
            self._skip(
                f"RNA {split}: {len(self.missing)} of {len(names)} meshes in the split list are not "
                f"present under {root} and were skipped; using {len(self.records)}"
            )
        if not self.records:
            raise DatasetError(f"{root}: none of the {len(names)} meshes of the {split} split is present")

    def describe(self) -> dict:
        d = super().describe()
        d["label_mapping"] = "file label + 1 (file -1 -> class 0)"
        return d


# --------------------------------------------------------------------------- custom folder


class MeshFolder(MeshDataset):
    """A dataset in the custom-folder format documented in the module docstring."""

    def __init__(self, root: str | os.PathLike, split: str = "train", split_dir: str | os.PathLike | None = None):
        super().__init__(root, split)
        self.split_dir = Path(split_dir) if split_dir is not None else None
        if self.split_dir is not None and not self.split_dir.is_dir():
            raise DatasetError(f"split folder not found: {self.split_dir}")
        root = self.root
        if not root.exists():
            raise DatasetError(f"dataset folder not found: {root}")
        if not root.is_dir():
            raise DatasetError(f"{root}: not a folder")
        names_file = root / "classes.txt"
        self.class_names = read_list_file(names_file) if names_file.is_file() else None
        if (root / "meshes").is_dir():
            self.task = "segmentation"
            self._init_segmentation()
        else:
            self.task = "classification"
            self._init_classification()
        if not self.records:
            raise DatasetError(f"{root}: no meshes in the {split} split")

    # ------------------------------------------------------------------ segmentation
    def _init_segmentation(self) -> None:
        root = self.root
        files = sorted(p for p in (root / "meshes").iterdir() if p.suffix.lower() in MESH_EXTENSIONS)
        if not files:
            raise DatasetError(f"{root / 'meshes'}: no mesh files ({', '.join(MESH_EXTENSIONS)})")
        by_stem: dict[str, Path] = {}
        for p in files:
            if p.stem in by_stem:
                raise DatasetError(f"{root / 'meshes'}: two meshes named {p.stem!r} ({by_stem[p.stem].name}, {p.name})")
            by_stem[p.stem] = p
        stems = self._select(list(by_stem), lambda e: Path(e).stem if Path(e).suffix.lower() in MESH_EXTENSIONS else e)
        lab_dir = root / "labels"
        all_records = []
        for stem in by_stem:
            vp, fp = lab_dir / f"{stem}.txt", lab_dir / f"{stem}.face_labels.txt"
            if vp.is_file():
                all_records.append(MeshRecord(stem, by_stem[stem], vp, "vertex"))
            elif fp.is_file():
                all_records.append(MeshRecord(stem, by_stem[stem], fp, "face"))
            else:
                raise DatasetError(
                    f"{root}: no labels for mesh {by_stem[stem].name} "
                    f"(expected labels/{stem}.txt or labels/{stem}.face_labels.txt)"
                )
        if self.class_names is not None:
            self.n_classes = len(self.class_names)
        else:
            # every split's files, so train and test agree on n_classes
            hi = max((int(read_label_file(r.label_path).max(initial=-1)) for r in all_records), default=-1)
            if hi < 0:
                raise DatasetError(f"{root}: every label is -1 (unlabelled); nothing to learn")
            self.n_classes = hi + 1
            self.class_names = [str(c) for c in range(self.n_classes)]
        keep = set(stems)
        order = {s: i for i, s in enumerate(stems)}
        self.records = sorted((r for r in all_records if r.name in keep), key=lambda r: order[r.name])

    # ------------------------------------------------------------------ classification
    def _init_classification(self) -> None:
        root = self.root
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.class_names is None:
            self.class_names = [f for f in folders if self._class_files(root / f, "all")]
        if not self.class_names:
            raise DatasetError(
                f"{root}: no meshes found (expected meshes/ for segmentation or one folder of "
                f"meshes per class for classification)"
            )
        for c in self.class_names:
            if not (root / c).is_dir():
                raise DatasetError(f"{root}: classes.txt names {c!r} but there is no folder {c}/")
        self.n_classes = len(self.class_names)
        split_folders = any((root / c / s).is_dir() for c in self.class_names for s in ("train", "test"))
        # external split lists override the train/ test/ folders: every mesh is a candidate
        folders_split = split_folders and self.split_dir is None
        entries: list[tuple[str, Path, int]] = []  # (name "class/stem", path, class)
        for ci, c in enumerate(self.class_names):
            if split_folders:
                for s in (("train", "test", "val") if self.split == "all" or not folders_split else (self.split,)):
                    entries += [(f"{c}/{s}/{p.stem}", p, ci) for p in self._class_files(root / c, s)]
            else:
                entries += [(f"{c}/{p.stem}", p, ci) for p in self._class_files(root / c, "direct")]
        seen: dict[str, Path] = {}
        for n, p, _ in entries:
            if n in seen:
                raise DatasetError(f"{root}: two meshes named {n!r} ({seen[n].name}, {p.name})")
            seen[n] = p
        if folders_split:
            if self.split == "val" and not entries:
                raise DatasetError(f"{root}: no val/ folders")
            chosen = entries
        else:
            rel = {f"{c}/{p.name}": (n, p, ci) for n, p, ci in entries for c in [self.class_names[ci]]}
            by_name = {n: (n, p, ci) for n, p, ci in entries}

            def norm(e: str) -> str:
                e = e.replace("\\", "/")
                if e in rel:
                    return rel[e][0]
                if Path(e).suffix.lower() in MESH_EXTENSIONS and e.rsplit(".", 1)[0] in by_name:
                    return e.rsplit(".", 1)[0]
                return e

            names = self._select([n for n, _, _ in entries], norm)
            chosen = [by_name[n] for n in names]
        self.records = [MeshRecord(n, p, None, None, ci) for n, p, ci in chosen]

    @staticmethod
    def _class_files(folder: Path, which: str) -> list[Path]:
        """Mesh files of a class folder: ``direct`` (in it), a split sub-folder, or ``all``."""
        subs = {"direct": [""], "all": ["", "train", "test", "val"]}.get(which, [which])
        found: list[Path] = []
        for s in subs:
            d = folder / s if s else folder
            if d.is_dir():
                found += sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in MESH_EXTENSIONS)
        return found

    # ------------------------------------------------------------------ splits
    def _select(self, names: list[str], normalise: Callable[[str], str]) -> list[str]:
        """Names of ``self.split`` in list order (split file) or sorted order (hash split)."""
        if self.split == "all":
            return list(names)
        lp = (self.split_dir or self.root) / f"{self.split}.txt"
        if self.split_dir is not None and not lp.is_file():
            raise DatasetError(f"{self.split_dir}: no {self.split}.txt split list")
        if lp.is_file():
            known = set(names)
            out, seen = [], set()
            for i, entry in enumerate(read_list_file(lp), 1):
                n = normalise(entry)
                if n not in known:
                    raise DatasetError(f"bad split list {lp}: entry {i} {entry!r} is not a mesh of the dataset")
                if n in seen:
                    raise DatasetError(f"bad split list {lp}: {entry!r} is listed twice")
                seen.add(n)
                out.append(n)
            if not out:
                raise DatasetError(f"bad split list {lp}: it is empty")
            return out
        if self.split == "val":
            raise DatasetError(f"{self.root}: no val.txt split list")
        self.notes.append(f"no {self.split}.txt: using the deterministic hash split (sha1(name) % 5 == 0 is test)")
        return [n for n in names if _hash_split(n) == self.split]


# --------------------------------------------------------------------------- writing


def write_mesh_folder(
    root: str | os.PathLike,
    items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    *,
    splits: dict[str, list[str]] | None = None,
    class_names: list[str] | None = None,
    fmt: str = "ply",
    face_labels: bool = False,
) -> Path:
    """Write a segmentation dataset in the custom-folder format.

    items: ``(stem, V (n,3) float64, F (m,3) int64, labels)`` with per-vertex
    ``labels`` (n,) -- or per-face (m,) when ``face_labels`` is set.
    splits: ``{"train": [stems], "test": [stems]}`` -> ``train.txt`` / ``test.txt``.
    fmt: mesh file format (``ply``, ``obj`` or ``off``; stored exactly).
    """
    from meshgdl.atomic import write_text_atomic
    from meshgdl.io import save_mesh

    root = Path(root)
    (root / "meshes").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for stem, V, F, lab in items:
        save_mesh(root / "meshes" / f"{stem}.{fmt}", V, F)
        suffix = ".face_labels.txt" if face_labels else ".txt"
        write_text_atomic(root / "labels" / f"{stem}{suffix}", "\n".join(str(int(v)) for v in lab) + "\n")
    for s, stems in (splits or {}).items():
        write_text_atomic(root / f"{s}.txt", "".join(f"{n}\n" for n in stems))
    if class_names is not None:
        write_text_atomic(root / "classes.txt", "".join(f"{c}\n" for c in class_names))
    return root


# --------------------------------------------------------------------------- registry


def default_data_root() -> Path:
    """``$MESHGDL_DATA``, else the first existing of ``./../shared/datasets`` (relative to the
    working directory) and ``<repo>/../shared/datasets``; else the former (may not exist)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    candidates = [Path.cwd() / ".." / "shared" / "datasets",
                  Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return candidates[0]


#: Named datasets: name -> (class, folder under the data root).
DATASETS: dict[str, tuple[type, str]] = {
    "rna": (RNASegmentation, RNASegmentation.FOLDER),
    "rna_surface_segmentation": (RNASegmentation, RNASegmentation.FOLDER),
    # MeshCNN's simplified human-body benchmark, in the custom-folder format (see its SOURCE.md)
    "human_seg": (MeshFolder, "human_seg"),
    # MeshCNN's SHREC'11 "shrec_16" download: <class>/{train,test}/*.obj
    "shrec11": (MeshFolder, "shrec_11_meshcnn_split16/shrec_16"),
}


def get_dataset(name_or_path: str | os.PathLike, split: str = "train",
                root: str | os.PathLike | None = None,
                split_dir: str | os.PathLike | None = None) -> MeshDataset:
    """A named dataset (``rna``, ``human_seg``, ``shrec11``) under ``root`` (default
    :func:`default_data_root`), or a custom-folder dataset at a path. A path that is
    the RNA layout (``off/`` + ``labels/``) is read as RNA. ``split_dir``: a folder of
    split lists (``train.txt``, ``test.txt``, ``val.txt``) that replace the dataset's
    own lists or split folders (custom folders only), e.g. a validation split held
    out by subject, or one draw of a "10 per class" protocol."""
    key = str(name_or_path)
    if key.lower() in DATASETS:
        cls, folder = DATASETS[key.lower()]
        base = Path(root) if root is not None else default_data_root()
        if cls is RNASegmentation:
            path = base / folder if (base / folder).exists() or not (base / "off").is_dir() else base
        else:
            path = base / folder
        if not path.exists():
            raise DatasetError(
                f"dataset {key!r} not found at {path} (set --data-root or ${DATA_ENV} to the folder holding {folder}/)"
            )
        p = path
    else:
        p = Path(name_or_path)
        if not p.exists() and root is not None and (Path(root) / p).exists():
            p = Path(root) / p
        if not p.exists():
            raise DatasetError(
                f"dataset {key!r}: no such folder, and not a known name ({', '.join(sorted(set(DATASETS)))})"
            )
    if (p / "off").is_dir() and (p / "labels").is_dir() and not (p / "meshes").is_dir():
        if split_dir is not None:
            raise DatasetError(f"{p}: split lists from another folder are supported for custom folders only")
        return RNASegmentation(p, split)
    return MeshFolder(p, split, split_dir=split_dir)
