"""The on-disk cache format shared by every meshgdl cache: one ``.npz`` per entry.

An entry is plain arrays (loadable with ``allow_pickle=False``) plus a JSON
``__meta__`` record; it is named by a SHA-256 content key (:func:`content_key`) of
the inputs and parameters it was computed from, as trimesh caches derived data by
a hash of what it came from. Writes are atomic (temp file + rename), so an
interrupted run never leaves half a file. A missing, truncated, corrupt or stale
entry reads as ``None`` (with a warning for the last three): callers recompute and
overwrite it, never crash. Users of this module: operator bundles
(:mod:`meshgdl.operators`), decimation hierarchies (:mod:`meshgdl.data.hierarchy`)
and cleaned dataset items (:mod:`meshgdl.data.preprocess`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from meshgdl.atomic import atomic_path

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What reading a damaged or foreign file can raise; all of them mean "recompute".
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError)


def content_key(tag: str, arrays=(), params: dict | None = None) -> str:
    """SHA-256 hex digest of a tag (name + format version), arrays (shape and bytes)
    and JSON parameters (sorted keys)."""
    h = hashlib.sha256(tag.encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    if params is not None:
        h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


def save_entry(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and the JSON-serialisable ``meta`` to ``path`` atomically."""
    out = {k: np.asarray(v) for k, v in arrays.items()}
    out["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **out)


def load_entry(path: str | os.PathLike, read: Callable[[dict, dict], T], what: str = "cache") -> T | None:
    """``read(arrays, meta)`` of the entry at ``path``; None if it is missing or unusable.

    ``read`` gets every array (copied into memory) and the meta record and raises
    ValueError (or any of :data:`READ_ERRORS`) when the entry is stale, inconsistent
    or belongs to other inputs; that is logged as "ignoring unusable <what> ..."."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}  # each read is already a fresh array
        return read(arrays, meta)
    except READ_ERRORS as exc:
        log.warning("ignoring unusable %s %s (%s); recomputing", what, path, exc)
        return None


def folder_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(files, bytes)`` under ``path``, recursively; ``(0, 0)`` if it does not exist."""
    files = size = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                size += os.stat(os.path.join(root, n)).st_size
                files += 1
            except OSError:  # gone meanwhile (e.g. a temporary file renamed into place)
                pass
    return files, size


__all__ = ["READ_ERRORS", "content_key", "save_entry", "load_entry", "folder_size"]
