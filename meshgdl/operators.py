"""The per-mesh operator bundle a network consumes, computed once and cached on disk.

:func:`compute_operators` runs the geometry layer (normals, Laplacian + mass,
eigenbasis, HKS, gauges, log-map angles/radii, transport angles, tangent gradient)
and returns an :class:`Operators` bundle of numpy/scipy arrays. With ``cache_dir``
the bundle is stored as an ``.npz`` (no pickles) named by a SHA-256 of
(V, F, parameters, format version); writes are atomic and a corrupt, truncated or
stale file is detected, recomputed and replaced -- never a crash.

:meth:`Operators.to_torch` and :func:`collate` turn bundles into torch tensors and
batch several meshes PyG-style (concatenated vertices, offset edge indices, a
``batch`` vector), which is what ``meshgdl.nn`` layers take.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from meshgdl.atomic import atomic_path
from meshgdl.geometry.gauges import compute_gauges
from meshgdl.geometry.gradient import tangent_gradient
from meshgdl.geometry.normals import vertex_normals

log = logging.getLogger(__name__)

#: Bump when the content or meaning of any cached array changes.
CACHE_VERSION = 2

_SPARSE = ("L", "grad_x", "grad_y")


@dataclass
class Operators:
    """Everything a network needs about one mesh (n vertices, E directed edges).

    V (n, 3) float64, F (m, 3) int64; ``mass`` (n,) lumped vertex areas; ``L`` (n, n)
    CSR positive semi-definite Laplacian (weak form, ``L phi = lambda M phi``);
    ``evals`` (k,), ``evecs`` (n, k) M-orthonormal; ``hks`` (n, T); ``normals``
    (n, 3); ``frames`` (n, 3, 3) rows e1, e2, normal; ``edge_index`` (2, E) source
    q / receiver p; ``theta`` (E,) angle of q in p's gauge; ``r`` (E,) edge length;
    ``transport`` (E,) g_{q->p}; ``grad_x``, ``grad_y`` (n, n) CSR tangent gradient
    in the gauge; ``params`` the settings used.
    """

    V: np.ndarray
    F: np.ndarray
    mass: np.ndarray
    L: sp.csr_matrix
    evals: np.ndarray
    evecs: np.ndarray
    hks: np.ndarray
    normals: np.ndarray
    frames: np.ndarray
    edge_index: np.ndarray
    theta: np.ndarray
    r: np.ndarray
    transport: np.ndarray
    grad_x: sp.csr_matrix
    grad_y: sp.csr_matrix
    params: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return len(self.V)

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def to_torch(self, dtype=None, device=None) -> "TorchOperators":
        """Convert to torch tensors (float arrays to ``dtype``, default torch's default)."""
        import torch

        dtype = dtype or torch.get_default_dtype()

        def t(a, dt=dtype):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)

        def sparse(m):
            m = m.tocoo()
            idx = torch.as_tensor(np.stack([m.row, m.col]).astype(np.int64), device=device)
            return torch.sparse_coo_tensor(idx, t(m.data), m.shape, check_invariants=False).coalesce()

        n = self.num_vertices
        return TorchOperators(
            pos=t(self.V),
            faces=t(self.F, torch.long),
            mass=t(self.mass),
            evals=t(self.evals),
            evecs=t(self.evecs),
            hks=t(self.hks),
            normals=t(self.normals),
            frames=t(self.frames),
            edge_index=t(self.edge_index, torch.long),
            theta=t(self.theta),
            r=t(self.r),
            transport=t(self.transport),
            L=sparse(self.L),
            grad_x=sparse(self.grad_x),
            grad_y=sparse(self.grad_y),
            batch=torch.zeros(n, dtype=torch.long, device=device),
            ptr=torch.tensor([0, n], dtype=torch.long, device=device),
            num_graphs=1,
        )


@dataclass
class TorchOperators:
    """Torch view of one mesh's :class:`Operators`, or of a batch (see :func:`collate`).

    For a batch, per-vertex tensors are concatenated, ``edge_index`` is offset,
    ``batch`` (N,) gives each vertex's mesh and ``ptr`` (B+1,) the vertex offsets.
    ``evecs`` is (N, k) (each mesh's rows; meshes must share k), ``evals`` (B, k);
    sparse ``L``, ``grad_x``, ``grad_y`` are block-diagonal.
    """

    pos: Any
    faces: Any
    mass: Any
    evals: Any
    evecs: Any
    hks: Any
    normals: Any
    frames: Any
    edge_index: Any
    theta: Any
    r: Any
    transport: Any
    L: Any
    grad_x: Any
    grad_y: Any
    batch: Any
    ptr: Any
    num_graphs: int

    @property
    def num_vertices(self) -> int:
        return int(self.pos.shape[0])

    def to(self, device=None, dtype=None) -> "TorchOperators":
        import torch

        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                if v.is_floating_point() and dtype is not None:
                    v = v.to(dtype)
                v = v.to(device) if device is not None else v
            out[f.name] = v
        return TorchOperators(**out)


def unit_area(ops: TorchOperators) -> TorchOperators:
    """The same meshes, each uniformly scaled to total area 1.

    DiffusionNet-style networks see raw operator values (HKS ~ 1/area, eigenvalues ~
    1/area, gradients ~ 1/length) and learn diffusion times in length^2, so a mesh
    in Angstrom or millimetres would otherwise look nothing like one in metres. With
    scale factor ``s = 1/sqrt(area)`` per mesh: ``pos, r -> s pos, s r``;
    ``mass -> s^2 mass``; ``evals -> evals / s^2``; ``evecs -> evecs / s`` (still
    M-orthonormal); ``hks -> hks / s^2`` (its times are relative to the spectrum, so
    the exponentials are unchanged); ``grad -> grad / s``. Angles, normals, frames
    and the cotan ``L`` are scale-free and shared. Differentiable; works on batches.
    """
    import torch

    B = int(ops.num_graphs)
    area = ops.mass.new_zeros(B).index_add(0, ops.batch, ops.mass)
    s = area.clamp_min(torch.finfo(area.dtype).tiny).rsqrt()  # (B,)
    sv = s[ops.batch]  # (N,)
    evals = ops.evals / (s**2)[:, None] if ops.evals.ndim == 2 else ops.evals / s[0] ** 2

    def grad(G):
        if not G.is_sparse:
            return G / sv[:, None]
        G = G.coalesce()  # a no-op for the bundle's matrices
        idx = G.indices()
        # Same sparsity pattern: no re-sort (this runs on every DiffusionNet forward).
        return torch.sparse_coo_tensor(idx, G.values() / sv[idx[0]], G.shape, check_invariants=False,
                                       is_coalesced=True)

    out = replace(
        ops,
        pos=ops.pos * sv[:, None],
        mass=ops.mass * sv**2,
        evals=evals,
        evecs=ops.evecs / sv[:, None],
        hks=ops.hks / sv[:, None] ** 2,
        r=ops.r * sv[ops.edge_index[1]],
        grad_x=grad(ops.grad_x),
        grad_y=grad(ops.grad_y),
    )
    if getattr(ops, "wks", None) is not None:  # same phi^2 scaling as the HKS
        out.wks = ops.wks / sv[:, None] ** 2
    return out


def collate(items: Sequence[Operators | TorchOperators], dtype=None, device=None) -> TorchOperators:
    """Batch several meshes into one :class:`TorchOperators` (PyG-style concatenation)."""
    import torch

    ts = [it.to_torch(dtype, device) if isinstance(it, Operators) else it for it in items]
    if not ts:
        raise ValueError("collate needs at least one mesh")
    ks = {int(t.evecs.shape[1]) for t in ts}
    if len(ks) != 1:
        raise ValueError(f"meshes in a batch must share the eigenbasis size k, got {sorted(ks)}")
    sizes = [t.num_vertices for t in ts]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    dev = ts[0].pos.device

    def cat(name):
        return torch.cat([getattr(t, name) for t in ts], dim=0)

    def block_diag(name):
        mats = [getattr(t, name).coalesce() for t in ts]
        idx = torch.cat([m.indices() + int(o) for m, o in zip(mats, offsets[:-1])], dim=1)
        val = torch.cat([m.values() for m in mats])
        N = int(offsets[-1])
        return torch.sparse_coo_tensor(idx, val, (N, N), check_invariants=False).coalesce()

    return TorchOperators(
        pos=cat("pos"),
        faces=torch.cat([t.faces + int(o) for t, o in zip(ts, offsets[:-1])]),
        mass=cat("mass"),
        evals=torch.stack([t.evals.reshape(-1) for t in ts]),
        evecs=cat("evecs"),
        hks=cat("hks"),
        normals=cat("normals"),
        frames=cat("frames"),
        edge_index=torch.cat([t.edge_index + int(o) for t, o in zip(ts, offsets[:-1])], dim=1),
        theta=cat("theta"),
        r=cat("r"),
        transport=cat("transport"),
        L=block_diag("L"),
        grad_x=block_diag("grad_x"),
        grad_y=block_diag("grad_y"),
        batch=torch.cat([torch.full((s,), i, dtype=torch.long, device=dev) for i, s in enumerate(sizes)]),
        ptr=torch.as_tensor(offsets, dtype=torch.long, device=dev),
        num_graphs=len(ts),
    )


# --------------------------------------------------------------------------- compute


def operator_key(V: np.ndarray, F: np.ndarray, params: dict) -> str:
    """SHA-256 hex digest of (V, F, params, CACHE_VERSION): the cache file's name."""
    h = hashlib.sha256()
    h.update(f"meshgdl-operators-v{CACHE_VERSION}".encode())
    for a in (np.ascontiguousarray(V, dtype=np.float64), np.ascontiguousarray(F, dtype=np.int64)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


def compute_operators(
    V: np.ndarray,
    F: np.ndarray,
    *,
    k_eig: int = 128,
    n_hks: int = 16,
    laplacian: str = "auto",
    cache_dir: str | os.PathLike | None = None,
) -> Operators:
    """Compute (or load from ``cache_dir``) the operator bundle of a mesh.

    V: (n, 3) float64; F: (m, 3) int64 (validated, e.g. by ``meshgdl.io``).
    k_eig: eigenpairs of ``L phi = lambda M phi`` (clipped to n - 1 for tiny meshes).
    n_hks: HKS time samples. laplacian: ``"auto" | "cotan" | "robust"``.
    """
    from meshgdl.geometry.laplacian import laplacian as build_laplacian
    from meshgdl.geometry.spectral import eigenbasis

    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    params = {"k_eig": int(k_eig), "n_hks": int(n_hks), "laplacian": str(laplacian)}
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{operator_key(V, F, params)}.npz"
        cached = load_operators(path, V=V, F=F, params=params)
        if cached is not None:
            return cached

    L, M = build_laplacian(V, F, method=laplacian)
    mass = np.asarray(M.diagonal(), dtype=np.float64)
    k = int(min(k_eig, max(len(V) - 1, 1)))
    evals, evecs = eigenbasis(L, M, k)
    hks_feat = operator_hks(evals, evecs, n_hks)
    normals = vertex_normals(V, F)
    g = compute_gauges(V, F, normals=normals)
    gx, gy = tangent_gradient(g)
    ops = Operators(
        V=V,
        F=F,
        mass=mass,
        L=sp.csr_matrix(L),
        evals=np.asarray(evals, dtype=np.float64),
        evecs=np.asarray(evecs, dtype=np.float64),
        hks=np.asarray(hks_feat, dtype=np.float64),
        normals=normals,
        frames=g.frames,
        edge_index=g.edge_index,
        theta=g.theta,
        r=g.r,
        transport=g.transport,
        grad_x=gx,
        grad_y=gy,
        params=params,
    )
    if path is not None:
        save_operators(path, ops)
    return ops


def operator_hks(evals: np.ndarray, evecs: np.ndarray, n_hks: int) -> np.ndarray:
    """The bundle's HKS (n, n_hks): default spectrum-relative times, computed from the
    eigenpairs minus a trailing multiplet. A truncated basis that ends inside a
    (near-)degenerate eigenspace depends on the solver's arbitrary basis of it, and
    so would HKS. Anything that recomputes ``Operators.hks`` must use this."""
    from meshgdl.geometry.spectral import hks

    k = _without_last_multiplet(evals)
    return hks(evals[:k], evecs[:, :k], n_times=n_hks)


def _without_last_multiplet(evals: np.ndarray, rtol: float = 1e-3) -> int:
    """Number of leading eigenpairs left after dropping the last group of eigenvalues
    equal within ``rtol`` (it may continue beyond the computed ones). All are kept when
    the cut would leave no positive eigenvalue (tiny meshes or tiny k)."""
    k = len(evals) - 1
    while k > 1 and abs(evals[k] - evals[k - 1]) <= rtol * max(abs(evals[k]), 1e-300):
        k -= 1
    # HKS times are set from the positive spectrum: never cut it away entirely.
    if not np.any(np.asarray(evals[:k]) > 1e-12 * max(abs(evals[-1]), 1e-300)):
        return len(evals)
    return max(k, 1)


# --------------------------------------------------------------------------- cache I/O


def save_operators(path: str | os.PathLike, ops: Operators) -> None:
    """Write ``ops`` as an ``.npz`` (atomic; plain arrays only, loadable without pickle)."""
    arrays: dict[str, np.ndarray] = {}
    for f in fields(Operators):
        v = getattr(ops, f.name)
        if f.name == "params":
            continue
        if f.name in _SPARSE:
            m = sp.csr_matrix(v)
            arrays[f"{f.name}__data"] = m.data
            arrays[f"{f.name}__indices"] = m.indices
            arrays[f"{f.name}__indptr"] = m.indptr
            arrays[f"{f.name}__shape"] = np.asarray(m.shape, dtype=np.int64)
        else:
            arrays[f.name] = np.asarray(v)
    meta = {"version": CACHE_VERSION, "params": ops.params, "key": operator_key(ops.V, ops.F, ops.params)}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_operators(
    path: str | os.PathLike,
    *,
    V: np.ndarray | None = None,
    F: np.ndarray | None = None,
    params: dict | None = None,
) -> Operators | None:
    """Load a cached bundle; ``None`` if missing, corrupt, stale or for another mesh.

    When ``V``/``F``/``params`` are given, the stored bundle must match them exactly
    (guards against hash collisions and hand-copied files).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"cache format v{meta.get('version')} != v{CACHE_VERSION}")
            kw: dict[str, Any] = {"params": meta["params"]}
            for f in fields(Operators):
                if f.name == "params":
                    continue
                if f.name in _SPARSE:
                    shape = tuple(int(s) for s in z[f"{f.name}__shape"])
                    kw[f.name] = sp.csr_matrix(
                        (z[f"{f.name}__data"], z[f"{f.name}__indices"], z[f"{f.name}__indptr"]), shape=shape
                    )
                else:
                    kw[f.name] = np.array(z[f.name])
        ops = Operators(**kw)
        _check_consistent(ops)
        if meta.get("key") != operator_key(ops.V, ops.F, ops.params):
            raise ValueError("content hash mismatch")
        if params is not None and ops.params != params:
            raise ValueError("parameters differ")
        if V is not None and (ops.V.shape != V.shape or not np.array_equal(ops.V, V)):
            raise ValueError("vertices differ")
        if F is not None and (ops.F.shape != F.shape or not np.array_equal(ops.F, F)):
            raise ValueError("faces differ")
        return ops
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unusable operator cache %s (%s); recomputing", path, exc)
        return None


def _check_consistent(ops: Operators) -> None:
    n = len(ops.V)
    E = ops.edge_index.shape[1] if ops.edge_index.ndim == 2 else -1
    checks = [
        ops.V.shape == (n, 3),
        ops.F.ndim == 2 and ops.F.shape[1] == 3,
        ops.mass.shape == (n,),
        ops.L.shape == (n, n),
        ops.evecs.shape == (n, len(ops.evals)),
        ops.hks.shape[0] == n,
        ops.frames.shape == (n, 3, 3),
        ops.edge_index.shape == (2, E),
        ops.theta.shape == ops.r.shape == ops.transport.shape == (E,),
        ops.grad_x.shape == ops.grad_y.shape == (n, n),
    ]
    if not all(checks):
        raise ValueError("array shapes are inconsistent")
    for name in ("V", "mass", "evals", "evecs", "hks", "theta", "r", "transport"):
        if not np.all(np.isfinite(getattr(ops, name))):
            raise ValueError(f"non-finite values in {name}")
