"""Cached, parallel preprocessing of a dataset into model inputs.

Two caches live under one cache folder (default ``$MESHGDL_CACHE`` or
``~/.cache/meshgdl``):

* ``items/<sha256>.npz`` -- the loaded, cleaned mesh and its targets
  (:class:`~meshgdl.data.datasets.MeshItem` arrays), keyed by the source files'
  path, size and mtime, so a dataset is parsed once;
* ``operators/`` -- the operator bundles, written by
  :func:`meshgdl.operators.compute_operators` (keyed by a hash of the mesh and the
  operator parameters) when ``prepare(V, F, config, cache_dir=...)`` runs.

:func:`preprocess` fills both for every item with a
``concurrent.futures.ProcessPoolExecutor`` (``workers`` processes, one BLAS/OpenMP
thread each) and a tqdm progress bar; :class:`PreparedDataset` then serves
``(sample, target)`` pairs from the caches. All files are ``.npz`` without pickles,
written atomically; an unreadable cache file is recomputed.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

import numpy as np

from meshgdl.cache import content_key, load_entry, save_entry
from meshgdl.errors import DatasetError, MeshError
from meshgdl.threads import single_threaded_children

CACHE_ENV = "MESHGDL_CACHE"
ITEM_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$MESHGDL_CACHE`` or ``~/.cache/meshgdl``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "meshgdl"


# --------------------------------------------------------------------------- item cache

_ITEM_ARRAYS = ("V", "F", "y", "orig_to_new", "face_origin", "file_V", "file_labels", "file_face_labels")


def item_key(record) -> str:
    return content_key(f"meshgdl-item-v{ITEM_CACHE_VERSION}|{record.fingerprint()}")


def save_item(path: Path, item) -> None:
    arrays = {k: np.asarray(getattr(item, k)) for k in _ITEM_ARRAYS if getattr(item, k) is not None}
    save_entry(path, arrays, {"name": item.name, "n_orig_faces": int(item.n_orig_faces),
                              "warnings": list(item.warnings)})


def load_item(path: Path):
    """A cached :class:`MeshItem`, or None if missing/unreadable."""
    from meshgdl.data.datasets import MeshItem

    def read(z: dict, meta: dict):
        kw = {k: z.get(k) for k in _ITEM_ARRAYS}
        if kw["V"] is None or kw["F"] is None or kw["y"] is None:
            raise ValueError("incomplete item")
        return MeshItem(name=meta["name"], n_orig_faces=int(meta["n_orig_faces"]),
                        warnings=list(meta["warnings"]), **kw)

    return load_entry(path, read, "item cache")


def cached_item(dataset, i: int, cache_dir: Path | None):
    """``dataset[i]`` through the item cache (computed and stored on a miss)."""
    if cache_dir is None:
        return dataset[i]
    rec = dataset.records[i]
    path = Path(cache_dir) / "items" / f"{item_key(rec)}.npz"
    item = load_item(path)
    if item is None:
        item = dataset[i]
        save_item(path, item)
    return item


# --------------------------------------------------------------------------- parallel fill


def _work(dataset, i: int, prepare: Callable | None, config: Any, cache_dir: str) -> tuple[int, int, float]:
    t0 = time.perf_counter()
    item = cached_item(dataset, i, Path(cache_dir))
    if prepare is not None:
        prepare(item.V, item.F, config, cache_dir=str(Path(cache_dir) / "operators"))
    return i, len(item.V), time.perf_counter() - t0


def preprocess(dataset, prepare: Callable | None, config: Any, cache_dir: str | os.PathLike,
               *, workers: int = 1, indices: list[int] | None = None, progress: bool = True,
               desc: str | None = None, on_error: str = "raise") -> dict:
    """Load every mesh of ``dataset`` and compute its model inputs once, into ``cache_dir``.

    prepare: ``prepare(V, F, config, cache_dir=...)`` (e.g. ``meshgdl.data.batching.prepare``;
    must be a module-level function so worker processes can import it), or None to
    cache only the parsed meshes. workers: processes (1 = in this process).
    on_error: ``"raise"`` -- a mesh that cannot be loaded or preprocessed raises
    :class:`DatasetError` naming it (the original exception is its ``__cause__``);
    ``"skip"`` -- it is left out and reported in ``failed``.
    Returns ``{"n", "seconds", "vertices" (per processed index, None if failed),
    "failed": {index: message}}``.
    """
    from tqdm.auto import tqdm

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    idx = list(range(len(dataset))) if indices is None else list(indices)
    t0 = time.perf_counter()
    sizes: dict[int, int | None] = {}
    failed: dict[int, str] = {}

    def settle(i, fn):
        try:
            sizes[i] = _guard(dataset, i, fn)[1]
        except DatasetError as exc:
            if on_error == "raise":
                raise
            sizes[i] = None
            failed[i] = str(exc)

    bar = tqdm(total=len(idx), desc=desc or f"preprocess {dataset.name}/{dataset.split}", unit="mesh",
               disable=not progress, leave=False)
    try:
        if workers <= 1 or len(idx) <= 1:
            for i in idx:
                settle(i, lambda: _work(dataset, i, prepare, config, str(cache_dir)))
                bar.update()
        else:
            import multiprocessing as mp

            with single_threaded_children(), ProcessPoolExecutor(
                max_workers=int(workers), mp_context=mp.get_context("spawn")
            ) as ex:
                futs = {ex.submit(_work, dataset, i, prepare, config, str(cache_dir)): i for i in idx}
                for fut in as_completed(futs):
                    settle(futs[fut], fut.result)
                    bar.update()
    finally:
        bar.close()
    return {"n": len(idx), "seconds": time.perf_counter() - t0, "vertices": [sizes[i] for i in idx],
            "failed": failed}


def _guard(dataset, i, fn):
    name = dataset.records[i].name
    try:
        return fn()
    except (MeshError, DatasetError) as exc:
        msg = str(exc)
        raise DatasetError(msg if name in msg else f"{name}: {msg}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a solver failure etc.: name the mesh, keep the cause
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DatasetError(f"{name}: preprocessing failed ({type(exc).__name__}: {msg})") from exc


# --------------------------------------------------------------------------- serving


class PreparedDataset:
    """``(sample, target, item)`` triples of a dataset, model inputs from the caches.

    sample: ``prepare(V, F, config, cache_dir=cache_dir/"operators")``; target: the
    item's ``y`` as an int64 numpy array. ``mesh_transform`` (e.g. ``RandomRemesh``) is
    applied to the item before ``prepare`` -- its operators then bypass the cache.
    ``in_memory`` keeps every prepared sample after its first use.
    """

    def __init__(self, dataset, prepare: Callable, config: Any, cache_dir: str | os.PathLike | None,
                 indices: list[int] | None = None, in_memory: bool = False):
        self.dataset = dataset
        self.prepare = prepare
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.indices = list(range(len(dataset))) if indices is None else list(indices)
        self.in_memory = in_memory
        self._memo: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def names(self) -> list[str]:
        return [self.dataset.records[i].name for i in self.indices]

    def item(self, j: int):
        return cached_item(self.dataset, self.indices[j], self.cache_dir)

    def get(self, j: int, mesh_transform=None, rng: np.random.Generator | None = None):
        if mesh_transform is None and j in self._memo:
            return self._memo[j]
        item = self.item(j)
        ops_dir = str(self.cache_dir / "operators") if self.cache_dir is not None else None
        if mesh_transform is not None:
            item = mesh_transform(item, rng)
            ops_dir = None
        sample = self.prepare(item.V, item.F, self.config, cache_dir=ops_dir)
        out = (sample, np.asarray(item.y, dtype=np.int64), item)
        if self.in_memory and ops_dir is not None:
            self._memo[j] = out
        return out

    def __getitem__(self, j: int):
        return self.get(j)


def subset(prepared: PreparedDataset, positions: list[int]) -> PreparedDataset:
    """A view on some of ``prepared``'s items (positions into its index list)."""
    return PreparedDataset(prepared.dataset, prepared.prepare, prepared.config, prepared.cache_dir,
                           [prepared.indices[p] for p in positions], prepared.in_memory)
