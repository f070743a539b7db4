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

import logging
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from meshgdl.cache import content_key, load_entry, save_entry
from meshgdl.geometry.gauges import compute_gauges
from meshgdl.geometry.gradient import tangent_gradient
from meshgdl.geometry.laplacian import laplacian as build_laplacian
from meshgdl.geometry.normals import vertex_normals
from meshgdl.geometry.spectral import eigenbasis

log = logging.getLogger(__name__)

#: Bump when the content or meaning of any cached array changes.
CACHE_VERSION = 2



#: Where a quantity lives, which decides how it is batched and checked.
WHERE = ("vertex", "edge", "mesh", "operator", "faces", "edges")


@dataclass(frozen=True)
class Quantity:
    """Declaration of one per-mesh quantity of the bundle: the single place that says how
    it is converted, batched, scaled, rotated, stored and checked.

    ``name``: field of :class:`Operators` (``torch_name``: of :class:`TorchOperators`,
    default the same). ``where``: ``"vertex"`` (n, ...) rows; ``"edge"`` (E,) per
    directed edge; ``"mesh"`` (k,) one row per mesh (stacked to (B, k) in a batch);
    ``"operator"`` (n, n) sparse (block-diagonal in a batch); ``"faces"`` (m, 3) and
    ``"edges"`` (2, E) vertex indices (offset in a batch). ``length_power``: the value
    scales as ``s ** length_power`` when the mesh is scaled by ``s`` (rows, for an
    operator). ``rotation``: ``"vector"`` (rows rotate, ``x -> R x``), ``"frame"``
    (each row of an (n, 3, 3) frame rotates) or None (intrinsic). ``optional``: may
    be None (computed only when asked for).
    """

    name: str
    where: str
    length_power: int = 0
    rotation: str | None = None
    torch_name: str | None = None
    optional: bool = False

    @property
    def tname(self) -> str:
        return self.torch_name or self.name

    @property
    def is_index(self) -> bool:
        return self.where in ("faces", "edges")


#: Every array of the bundle. To add a per-mesh quantity: a row here, a field of the
#: same name on :class:`Operators` and :class:`TorchOperators`, and its computation in
#: :func:`compute_operators` -- conversion, batching, scaling, rigid motions, the disk
#: cache and the consistency checks all follow from the row.
QUANTITIES: tuple[Quantity, ...] = (
    Quantity("V", "vertex", 1, "vector", torch_name="pos"),
    Quantity("F", "faces", torch_name="faces"),
    Quantity("mass", "vertex", 2),
    Quantity("L", "operator", 0),
    Quantity("evals", "mesh", -2),
    Quantity("evecs", "vertex", -1),
    Quantity("hks", "vertex", -2),  # spectrum-relative times: only phi^2 scales
    Quantity("normals", "vertex", 0, "vector"),
    Quantity("frames", "vertex", 0, "frame"),
    Quantity("edge_index", "edges"),
    Quantity("theta", "edge", 0),
    Quantity("r", "edge", 1),
    Quantity("transport", "edge", 0),
    Quantity("grad_x", "operator", -1),
    Quantity("grad_y", "operator", -1),
    Quantity("wks", "vertex", -2, optional=True),  # spectrum-relative energies, like the HKS
)


@dataclass
class Operators:
    """Everything a network needs about one mesh (n vertices, E directed edges).

    V (n, 3) float64, F (m, 3) int64; ``mass`` (n,) lumped vertex areas; ``L`` (n, n)
    CSR positive semi-definite Laplacian (weak form, ``L phi = lambda M phi``);
    ``evals`` (k,), ``evecs`` (n, k) M-orthonormal; ``hks`` (n, T); ``normals``
    (n, 3); ``frames`` (n, 3, 3) rows e1, e2, normal; ``edge_index`` (2, E) source
    q / receiver p; ``theta`` (E,) angle of q in p's gauge; ``r`` (E,) edge length;
    ``transport`` (E,) g_{q->p}; ``grad_x``, ``grad_y`` (n, n) CSR tangent gradient
    in the gauge; ``wks`` (n, E) or None; ``params`` the settings used. How each
    array behaves is declared in :data:`QUANTITIES`.
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
    wks: np.ndarray | None = None

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
            # A canonical CSR (sorted, unique column indices) lists its entries in exactly
            # the order torch's coalesce() would sort them into: flag it instead of
            # sorting again (the sort was most of the per-step collation time).
            m = sp.csr_matrix(m, copy=True)
            m.sum_duplicates()
            m = m.tocoo()
            idx = torch.as_tensor(np.stack([m.row, m.col]).astype(np.int64), device=device)
            return torch.sparse_coo_tensor(idx, t(m.data), m.shape, check_invariants=False, is_coalesced=True)

        out: dict[str, Any] = {}
        for q in QUANTITIES:
            v = getattr(self, q.name)
            if v is None:
                out[q.tname] = None
            elif q.where == "operator":
                out[q.tname] = sparse(v)
            else:
                out[q.tname] = t(v, torch.long if q.is_index else dtype)
        n = self.num_vertices
        return TorchOperators(**out, batch=torch.zeros(n, dtype=torch.long, device=device),
                              ptr=torch.tensor([0, n], dtype=torch.long, device=device), num_graphs=1)


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
    wks: Any = None

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


def scale_operators(ops, s):
    """The bundle of the same meshes scaled by ``s`` (``x -> s x``): the one scale law.

    ``ops``: :class:`Operators` or :class:`TorchOperators` (one mesh or a batch);
    ``s``: scalar or (B,) per mesh, > 0 (numpy or torch; differentiable for torch).
    Each quantity is multiplied by ``s ** length_power`` (:data:`QUANTITIES`):
    ``pos, r -> s pos, s r``; ``mass -> s^2 mass``; ``evals -> evals / s^2``;
    ``evecs -> evecs / s`` (still M-orthonormal); ``hks, wks -> / s^2`` (their times /
    energies are relative to the spectrum, so only ``phi^2`` scales); tangent
    gradient rows ``-> / s``. Angles, normals, frames and the weak cotan ``L`` are
    scale-free and shared. The input is never modified.
    """
    torch_in = hasattr(ops, "pos")  # TorchOperators, or a bundle that names positions like it
    if torch_in:
        import torch

        sb = torch.as_tensor(s, dtype=ops.mass.dtype, device=ops.mass.device).reshape(-1)
        sb = sb.expand(int(ops.num_graphs)) if sb.numel() == 1 else sb
        gi = ops.batch
    else:
        sb = np.asarray(s, dtype=np.float64).reshape(-1)
        gi = np.zeros(len(ops.V), dtype=np.int64)
    sv = sb[gi]  # (N,) per vertex
    recv = ops.edge_index[1] if getattr(ops, "edge_index", None) is not None else None
    upd = {}
    for q in QUANTITIES:
        name = q.tname if torch_in else q.name
        v = getattr(ops, name, None)
        if v is None or q.length_power == 0 or q.is_index:
            continue
        p = q.length_power
        if q.where == "vertex":
            upd[name] = _times_power(v, sv.reshape((-1,) + (1,) * (v.ndim - 1)), p)
        elif q.where == "edge":
            upd[name] = _times_power(v, sv[recv], p)
        elif q.where == "mesh":
            upd[name] = _times_power(v, sb[:, None] if v.ndim == 2 else sb[0], p)
        else:
            upd[name] = _scale_rows(v, sv, p)
    return replace(ops, **upd)


def _times_power(x, f, p: int):
    """``x * f**p``, written as ``x / f**-p`` for negative ``p`` (the hand-written laws
    this replaced used division, so results stay bit-identical)."""
    return x * f**p if p > 0 else x / f ** (-p)


def _scale_rows(G, sv, p: int):
    """Row i of an (n, n) operator times ``sv[i] ** p`` (same sparsity pattern)."""
    if sp.issparse(G):
        return sp.csr_matrix(sp.diags(_times_power(1.0, np.asarray(sv, dtype=np.float64), p)) @ G)
    if not G.is_sparse:
        return _times_power(G, sv[:, None], p)
    import torch

    G = G.coalesce()  # a no-op for the bundle's matrices
    idx = G.indices()
    # Same sparsity pattern: no re-sort (this runs on every DiffusionNet forward).
    return torch.sparse_coo_tensor(idx, _times_power(G.values(), sv[idx[0]], p), G.shape,
                                   check_invariants=False, is_coalesced=True)


def unit_area(ops: TorchOperators) -> TorchOperators:
    """The same meshes, each uniformly scaled to total area 1 (:func:`scale_operators`
    with ``s = 1/sqrt(area)`` per mesh).

    DiffusionNet-style networks see raw operator values (HKS ~ 1/area, eigenvalues ~
    1/area, gradients ~ 1/length) and learn diffusion times in length^2, so a mesh
    in Angstrom or millimetres would otherwise look nothing like one in metres.
    Differentiable; works on batches.
    """
    import torch

    B = int(ops.num_graphs)
    area = ops.mass.new_zeros(B).index_add(0, ops.batch, ops.mass)
    return scale_operators(ops, area.clamp_min(torch.finfo(area.dtype).tiny).rsqrt())


def collate(items: Sequence[Operators | TorchOperators], dtype=None, device=None) -> TorchOperators:
    """Batch several meshes into one :class:`TorchOperators` (PyG-style concatenation;
    how each quantity is batched follows its ``where`` in :data:`QUANTITIES`)."""
    import torch

    ts = [it.to_torch(dtype, device) if isinstance(it, Operators) else it for it in items]
    if not ts:
        raise ValueError("collate needs at least one mesh")
    ks = {int(t.evecs.shape[1]) for t in ts}
    if len(ks) != 1:
        raise ValueError(f"meshes in a batch must share the eigenbasis size k, got {sorted(ks)}")
    sizes = [t.num_vertices for t in ts]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    N = int(offsets[-1])
    dev = ts[0].pos.device
    out: dict[str, Any] = {}
    for q in QUANTITIES:
        vs = [getattr(t, q.tname) for t in ts]
        if any(v is None for v in vs):
            if not q.optional or any(v is not None for v in vs):
                raise ValueError(f"{q.name} is missing from some meshes of the batch")
            out[q.tname] = None
        elif q.where in ("vertex", "edge"):
            out[q.tname] = torch.cat(vs, dim=0)
        elif q.where == "mesh":
            out[q.tname] = torch.stack([v.reshape(-1) for v in vs])
        elif q.where == "faces":
            out[q.tname] = torch.cat([v + int(o) for v, o in zip(vs, offsets[:-1])])
        elif q.where == "edges":
            out[q.tname] = torch.cat([v + int(o) for v, o in zip(vs, offsets[:-1])], dim=1)
        else:  # operator: block diagonal
            mats = [v.coalesce() for v in vs]
            if len(mats) == 1:
                out[q.tname] = mats[0]
                continue
            idx = torch.cat([m.indices() + int(o) for m, o in zip(mats, offsets[:-1])], dim=1)
            val = torch.cat([m.values() for m in mats])
            # coalesced blocks on the diagonal, rows offset upwards: still sorted and unique
            out[q.tname] = torch.sparse_coo_tensor(idx, val, (N, N), check_invariants=False, is_coalesced=True)
    return TorchOperators(
        **out,
        batch=torch.cat([torch.full((s,), i, dtype=torch.long, device=dev) for i, s in enumerate(sizes)]),
        ptr=torch.as_tensor(offsets, dtype=torch.long, device=dev),
        num_graphs=len(ts),
    )


# --------------------------------------------------------------------------- compute


def operator_key(V: np.ndarray, F: np.ndarray, params: dict) -> str:
    """SHA-256 hex digest of (V, F, params, CACHE_VERSION): the cache file's name."""
    return content_key(f"meshgdl-operators-v{CACHE_VERSION}",
                       (np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64)), params)


def compute_operators(
    V: np.ndarray,
    F: np.ndarray,
    *,
    k_eig: int = 128,
    n_hks: int = 16,
    laplacian: str = "auto",
    n_wks: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> Operators:
    """Compute (or load from ``cache_dir``) the operator bundle of a mesh.

    V: (n, 3) float64; F: (m, 3) int64 (validated, e.g. by ``meshgdl.io``).
    k_eig: eigenpairs of ``L phi = lambda M phi`` (clipped to n - 1 for tiny meshes).
    n_hks: HKS time samples. laplacian: ``"auto" | "cotan" | "robust"``. n_wks: WKS
    energies (0: no ``wks``).
    """
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    params = {"k_eig": int(k_eig), "n_hks": int(n_hks), "laplacian": str(laplacian)}
    if n_wks:  # only then: bundles without a WKS keep their cache keys
        params["n_wks"] = int(n_wks)
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
        wks=operator_wks(evals, evecs, n_wks) if n_wks else None,
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


def operator_wks(evals: np.ndarray, evecs: np.ndarray, n_wks: int) -> np.ndarray:
    """The bundle's WKS (n, n_wks), from the same eigenpairs as :func:`operator_hks`
    (trailing multiplet dropped, for the same reason)."""
    from meshgdl.geometry.spectral import wks

    k = _without_last_multiplet(evals)
    return wks(evals[:k], evecs[:, :k], n_energies=n_wks)


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
    for q in QUANTITIES:
        v = getattr(ops, q.name)
        if v is None:
            continue
        if q.where == "operator":
            m = sp.csr_matrix(v)
            arrays[f"{q.name}__data"] = m.data
            arrays[f"{q.name}__indices"] = m.indices
            arrays[f"{q.name}__indptr"] = m.indptr
            arrays[f"{q.name}__shape"] = np.asarray(m.shape, dtype=np.int64)
        else:
            arrays[q.name] = np.asarray(v)
    save_entry(path, arrays, {"version": CACHE_VERSION, "params": ops.params,
                              "key": operator_key(ops.V, ops.F, ops.params)})


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

    def read(z: dict, meta: dict) -> Operators:
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"cache format v{meta.get('version')} != v{CACHE_VERSION}")
        kw: dict[str, Any] = {"params": meta["params"]}
        for q in QUANTITIES:
            if q.where == "operator":
                shape = tuple(int(s) for s in z[f"{q.name}__shape"])
                kw[q.name] = sp.csr_matrix((z[f"{q.name}__data"], z[f"{q.name}__indices"], z[f"{q.name}__indptr"]),
                                           shape=shape)
            elif q.optional and q.name not in z:
                kw[q.name] = None
            else:
                kw[q.name] = z[q.name]
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

    return load_entry(path, read, "operator cache")


def _check_consistent(ops: Operators) -> None:
    """ValueError unless every quantity has the shape its ``where`` implies and the
    float arrays are finite."""
    n = len(ops.V)
    E = ops.edge_index.shape[1] if ops.edge_index.ndim == 2 else -1
    k = len(ops.evals)
    for q in QUANTITIES:
        v = getattr(ops, q.name)
        if v is None:
            if q.optional:
                continue
            raise ValueError(f"{q.name} is missing")
        shape = v.shape
        ok = {
            "vertex": len(shape) >= 1 and shape[0] == n,
            "edge": shape == (E,),
            "mesh": len(shape) == 1,
            "operator": shape == (n, n),
            "faces": len(shape) == 2 and shape[1] == 3,
            "edges": shape == (2, E),
        }[q.where]
        if not ok:
            raise ValueError(f"array shapes are inconsistent ({q.name} {shape})")
        if not q.is_index and q.where != "operator" and not np.all(np.isfinite(v)):
            raise ValueError(f"non-finite values in {q.name}")
    if ops.V.shape != (n, 3) or ops.frames.shape != (n, 3, 3) or ops.evecs.shape != (n, k):
        raise ValueError("array shapes are inconsistent")


_FIELDS_N = {f.name for f in fields(Operators)} - {"params"}
_FIELDS_T = {f.name for f in fields(TorchOperators)} - {"batch", "ptr", "num_graphs"}
if _FIELDS_N != {q.name for q in QUANTITIES} or _FIELDS_T != {q.tname for q in QUANTITIES}:  # pragma: no cover
    raise ImportError("Operators / TorchOperators fields and QUANTITIES disagree; declare every quantity in both")
