"""The per-mesh operator bundle: contents, cache round trip, corrupt caches, batching."""

import json
import logging
import os

import numpy as np
import pytest
import torch

import meshgdl.geometry.spectral as spectral
import meshgdl.operators as operators_module
from meshes import grid, icosphere, torus
from meshgdl.geometry.gauges import compute_gauges
from meshgdl.operators import (
    CACHE_VERSION,
    Operators,
    collate,
    compute_operators,
    load_operators,
    operator_key,
    save_operators,
    unit_area,
)


@pytest.fixture(scope="module")
def sphere_ops():
    V, F = icosphere(3)
    return compute_operators(V, F, k_eig=16, n_hks=8)


def test_bundle_contents(sphere_ops):
    ops = sphere_ops
    n = ops.num_vertices
    assert ops.mass.shape == (n,) and abs(ops.mass.sum() / (4 * np.pi) - 1) < 0.01
    assert ops.evecs.shape == (n, 16) and ops.hks.shape == (n, 8)
    # M-orthonormal eigenbasis and the sphere spectrum l(l+1) for l = 0, 1.
    np.testing.assert_allclose(ops.evecs.T @ (ops.mass[:, None] * ops.evecs), np.eye(16), atol=1e-8)
    np.testing.assert_allclose(ops.evals[:4], [0, 2, 2, 2], atol=0.03)
    g = compute_gauges(ops.V, ops.F)
    np.testing.assert_array_equal(ops.edge_index, g.edge_index)
    np.testing.assert_allclose(ops.theta, g.theta)
    np.testing.assert_allclose(ops.transport, g.transport)
    for a in (ops.hks, ops.theta, ops.r, ops.transport, ops.frames, ops.grad_x.data):
        assert np.isfinite(a).all()


def test_tiny_mesh_clips_k():
    V, F = grid(3, 3)
    ops = compute_operators(V, F, k_eig=128, n_hks=4)
    assert ops.evecs.shape == (9, 8)


def test_cache_round_trip_skips_recomputation(tmp_path, monkeypatch):
    V, F = torus(16, 8)
    first = compute_operators(V, F, k_eig=8, n_hks=4, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name == operator_key(V, F, first.params) + ".npz"

    def boom(*a, **k):
        raise AssertionError("eigenbasis recomputed despite a valid cache")

    monkeypatch.setattr(spectral, "eigenbasis", boom)
    monkeypatch.setattr(operators_module, "eigenbasis", boom)  # compute_operators' own binding
    second = compute_operators(V, F, k_eig=8, n_hks=4, cache_dir=tmp_path)
    for name in ("V", "F", "mass", "evals", "evecs", "hks", "edge_index", "theta", "r", "transport", "frames"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert (first.L != second.L).nnz == 0 and (first.grad_y != second.grad_y).nnz == 0
    # The cache is keyed by content: another parameter set is another file.
    monkeypatch.undo()
    compute_operators(V, F, k_eig=6, n_hks=4, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_pickle_free_cache_file(tmp_path):
    V, F = torus(12, 6)
    ops = compute_operators(V, F, k_eig=4, n_hks=2)
    path = tmp_path / "x.npz"
    save_operators(path, ops)
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "stale_version", "other_mesh"])
def test_corrupt_or_stale_cache_is_recomputed(tmp_path, damage, caplog):
    V, F = torus(16, 8)
    params = dict(k_eig=8, n_hks=4)
    good = compute_operators(V, F, cache_dir=tmp_path, **params)
    (path,) = tmp_path.iterdir()
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(2000))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "stale_version":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays["__meta__"]).decode())
        meta["version"] = CACHE_VERSION - 1
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    elif damage == "other_mesh":
        V2, F2 = torus(12, 8)
        save_operators(path, compute_operators(V2, F2, **params))
    with caplog.at_level(logging.WARNING, logger="meshgdl.cache"):
        again = compute_operators(V, F, cache_dir=tmp_path, **params)
    assert "recomputing" in caplog.text
    np.testing.assert_allclose(again.evals, good.evals)
    np.testing.assert_array_equal(again.edge_index, good.edge_index)
    # The bad file was replaced by a valid one; no temp files left behind.
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert load_operators(path, V=V, F=F, params=again.params) is not None


def test_collate_offsets_and_block_diagonal_operators():
    a = compute_operators(*icosphere(1), k_eig=6, n_hks=3)
    b = compute_operators(*torus(10, 6), k_eig=6, n_hks=3)
    batch = collate([a, b], dtype=torch.float64)
    na, nb = a.num_vertices, b.num_vertices
    assert batch.num_graphs == 2 and batch.ptr.tolist() == [0, na, na + nb]
    assert batch.batch.tolist() == [0] * na + [1] * nb
    assert batch.edge_index.shape[1] == a.num_edges + b.num_edges
    assert batch.edge_index[:, a.num_edges :].min() >= na
    x = torch.randn(na + nb, 3, dtype=torch.float64)
    Lx = torch.sparse.mm(batch.L, x)
    np.testing.assert_allclose(Lx[:na].numpy(), a.L @ x[:na].numpy(), atol=1e-12)
    np.testing.assert_allclose(Lx[na:].numpy(), b.L @ x[na:].numpy(), atol=1e-12)
    assert batch.evals.shape == (2, 6) and batch.evecs.shape == (na + nb, 6)
    with pytest.raises(ValueError, match="share the eigenbasis"):
        collate([a, compute_operators(*torus(10, 6), k_eig=4, n_hks=3)])


def test_unit_area_equals_operators_of_the_rescaled_meshes():
    """Scaling the operators of a batch == computing them on meshes scaled to area 1."""
    meshes = [icosphere(2, radius=7.5), torus(12, 8, R=0.02, r=0.007)]
    raw = collate([compute_operators(V, F, k_eig=8, n_hks=4) for V, F in meshes], dtype=torch.float64)
    ref_ops = []
    for V, F in meshes:
        area = compute_operators(V, F, k_eig=2, n_hks=1).mass.sum()
        ref_ops.append(compute_operators(V / np.sqrt(area), F, k_eig=8, n_hks=4))
    ref = collate(ref_ops, dtype=torch.float64)
    got = unit_area(raw)
    torch.testing.assert_close(got.mass.sum().item(), 2.0)
    for name in ("pos", "mass", "evals", "hks", "r", "theta", "transport"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-7, atol=1e-9, msg=name)
    for name in ("grad_x", "grad_y", "L"):
        torch.testing.assert_close(getattr(got, name).to_dense(), getattr(ref, name).to_dense(), rtol=1e-7, atol=1e-7)
    # eigenvectors only up to sign (and rotation inside multiplets): compare projectors, M-orthonormality
    for b in range(2):
        s, e = raw.ptr[b].item(), raw.ptr[b + 1].item()
        phi = got.evecs[s:e]
        gram = phi.T @ (got.mass[s:e, None] * phi)
        torch.testing.assert_close(gram, torch.eye(8, dtype=torch.float64), atol=1e-8, rtol=0)
    assert raw.mass.sum().item() != pytest.approx(2.0)  # the input is left alone


def test_operators_dataclass_fields_are_all_cached(tmp_path):
    # Guards against adding a field to Operators without teaching the cache about it.
    V, F = torus(10, 6)
    ops = compute_operators(V, F, k_eig=4, n_hks=2)
    path = tmp_path / "c.npz"
    save_operators(path, ops)
    back = load_operators(path)
    assert isinstance(back, Operators) and back.params == ops.params


def test_hks_is_rotation_invariant_on_a_sphere_with_degenerate_spectrum():
    # The sphere's eigenspaces have dimension 2l+1; k_eig=12 cuts the l=3 group
    # (eigenvalues 9..15), where the solver's basis is arbitrary. HKS must not see it.
    V, F = icosphere(3)
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    a = compute_operators(V, F, k_eig=12, n_hks=6)
    b = compute_operators(V @ Q.T, F, k_eig=12, n_hks=6)
    np.testing.assert_allclose(a.hks, b.hks, rtol=1e-6, atol=1e-9)


def test_tiny_k_on_symmetric_mesh_keeps_a_positive_eigenvalue():
    # k=4 on a sphere is {0, 2, 2, 2}: dropping the trailing multiplet would leave
    # only the constant eigenfunction, from which no HKS time scale can be chosen.
    ops = compute_operators(*icosphere(1), k_eig=4, n_hks=3)
    assert np.isfinite(ops.hks).all() and ops.hks.shape == (42, 3)


# --------------------------------------------------------------------------- declared quantities


def _lumpy(sub=2, seed=3):
    V, F = icosphere(sub)
    rng = np.random.default_rng(seed)
    return V * (1 + 0.1 * rng.standard_normal((len(V), 1))), F


def test_an_optional_quantity_is_carried_everywhere_by_its_declaration(tmp_path):
    """WKS is one row of QUANTITIES: computed on request, cached, converted, batched,
    scaled and rotated without code of its own in any of those places."""
    from meshgdl.data.transforms import rotate, scale
    from meshgdl.geometry.spectral import wks
    from meshgdl.operators import QUANTITIES, operator_key, scale_operators

    assert {q.name for q in QUANTITIES} >= {"V", "hks", "wks"}
    V, F = _lumpy()
    plain = compute_operators(V, F, k_eig=24, n_hks=4)
    assert plain.wks is None
    # bundles without a WKS keep their cache keys (params unchanged)
    assert operator_key(V, F, plain.params) == operator_key(V, F, {"k_eig": 24, "n_hks": 4, "laplacian": "auto"})
    ops = compute_operators(V, F, k_eig=24, n_hks=4, n_wks=6, cache_dir=tmp_path)
    assert ops.wks.shape == (len(V), 6) and np.all(np.isfinite(ops.wks))
    from meshgdl.operators import _without_last_multiplet

    k = _without_last_multiplet(ops.evals)  # the same eigenpairs as the bundle's HKS
    np.testing.assert_allclose(ops.wks, wks(ops.evals[:k], ops.evecs[:, :k], 6), rtol=1e-12)
    again = compute_operators(V, F, k_eig=24, n_hks=4, n_wks=6, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.wks, ops.wks)
    # torch view and batch
    t = ops.to_torch(torch.float64)
    assert t.wks.shape == (len(V), 6) and t.to(dtype=torch.float32).wks.dtype == torch.float32
    b = collate([ops, ops])
    assert b.wks.shape == (2 * len(V), 6)
    with pytest.raises(ValueError, match="wks is missing"):
        collate([ops, plain])
    # the scale law is the declared one and matches recomputation on the scaled mesh
    s = 3.0
    sc = scale(ops, s)
    fresh = compute_operators(V * s, F, k_eig=24, n_hks=4, n_wks=6)
    np.testing.assert_allclose(sc.wks, fresh.wks, rtol=1e-6, atol=1e-9 * np.abs(fresh.wks).max())
    np.testing.assert_allclose(sc.hks, fresh.hks, rtol=1e-6, atol=1e-9 * np.abs(fresh.hks).max())
    np.testing.assert_allclose(scale_operators(t, torch.tensor([s], dtype=torch.float64)).wks.numpy(), sc.wks)
    # intrinsic: a rotation leaves it alone
    R = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    assert rotate(ops, R).wks is ops.wks


def test_unit_area_and_scale_transform_share_one_law():
    from meshgdl.data.transforms import scale
    from meshgdl.operators import QUANTITIES

    V, F = _lumpy(seed=5)
    ops = compute_operators(V, F, k_eig=16, n_hks=4)
    area = float(ops.mass.sum())
    a = unit_area(ops.to_torch(torch.float64))
    b = scale(ops, 1.0 / np.sqrt(area))
    for q in QUANTITIES:
        x, y = getattr(a, q.tname), getattr(b, q.name)
        if x is None:
            continue
        x = x.to_dense().numpy() if x.is_sparse else x.numpy()
        y = y.toarray() if hasattr(y, "toarray") else np.asarray(y)
        np.testing.assert_allclose(x.reshape(y.shape), y, rtol=1e-12, atol=1e-12, err_msg=q.name)


def test_sparse_operators_are_flagged_coalesced_exactly_as_a_sort_would_leave_them():
    """to_torch and collate mark the Laplacian/gradient as coalesced instead of sorting:
    the flag must be true (indices sorted row-major and unique) and the values unchanged."""
    V, F = _lumpy(sub=1)
    a = compute_operators(V, F, k_eig=8, n_hks=2)
    b = compute_operators(*_lumpy(sub=1, seed=9), k_eig=8, n_hks=2)
    for batch in (a.to_torch(torch.float64), collate([a, b], dtype=torch.float64)):
        for name in ("L", "grad_x", "grad_y"):
            M = getattr(batch, name)
            assert M.is_coalesced()
            again = torch.sparse_coo_tensor(M.indices(), M.values(), M.shape, check_invariants=True).coalesce()
            assert torch.equal(again.indices(), M.indices()) and torch.equal(again.values(), M.values())
    Lb = collate([a, b], dtype=torch.float64).L.to_dense().numpy()
    n = len(a.V)
    np.testing.assert_array_equal(Lb[:n, :n], a.L.toarray())
    np.testing.assert_array_equal(Lb[n:, n:], b.L.toarray())
    assert not Lb[:n, n:].any()
