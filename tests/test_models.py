"""Whole models through the public contract: invariances, gradients, overfitting, config, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from meshes import icosphere
from scipy.spatial.transform import Rotation

from meshgdl.errors import MeshError
from meshgdl.data.batching import Batch, Sample, collate_samples, prepare
from meshgdl.nn.diffusion import spectral_diffusion
from meshgdl.nn.features import input_features
from meshgdl.nn.irreps import Irreps
from meshgdl.nn.models import GEMBlock, IrrepDropout, ModelConfig, build_model
from meshgdl.testing import random_gauge, regauged_sample, transform_features


def blob(subdiv=2, seed=0):
    """A lumpy ellipsoid: varied curvature, no exact symmetry (so no eigen/decimation ties)."""
    V, F = icosphere(subdiv)
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((3, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = 1 + sum(0.3 * np.exp(-8 * (1 - V @ di)) for di in d) + 0.02 * rng.standard_normal(len(V))
    return V * r[:, None] * np.array([1.0, 0.8, 0.6]), F


def regauged(s: Sample, seed=0) -> Sample:
    return regauged_sample(s, np.random.default_rng(seed))


GEOM = dict(k_eig=16, n_hks=6, coarse_k_eig=6)
EQUIV_IN = ["hks", "mean_curvature", "hks_grad", "shape_operator"]
CASES = {
    "resnet-norm-seg": dict(nonlinearity="norm", in_features=EQUIV_IN),
    "unet-gated-seg": dict(nonlinearity="gated", n_levels=2, level_ratio=0.3, radial=3, in_features=EQUIV_IN),
    "unet-gated-cls": dict(nonlinearity="gated", n_levels=3, level_ratio=0.4, task="classification", n_classes=4,
                           in_features=["hks", "gauss_curvature", "hks_grad"]),
    "diffusion-seg": dict(kind="diffusion", width=8, in_features=EQUIV_IN),
}


def make(case, seed=0):
    base = dict(hidden_irreps="4x0 + 3x1 + 2x2", n_layers=2, head_hidden=8, n_classes=3)
    cfg = ModelConfig(**{**base, **GEOM, **CASES[case]})
    torch.manual_seed(seed)
    return cfg, build_model(cfg).double().eval()


def run(model, samples):
    with torch.no_grad():
        return model(collate_samples(samples, dtype=torch.float64))


@pytest.fixture(scope="module")
def mesh():
    return blob(2, seed=1)


@pytest.mark.parametrize("case", list(CASES))
def test_invariant_to_rigid_motion_permutation_and_gauges(case, mesh):
    V, F = mesh
    cfg, model = make(case)
    s = prepare(V, F, cfg)
    out = run(model, [s])
    assert out.abs().max() > 1e-3 and torch.isfinite(out).all()
    # rigid motion: the geometry is recomputed from the moved mesh
    R = Rotation.random(random_state=2).as_matrix()
    out_r = run(model, [prepare(V @ R.T + np.array([0.5, -1.0, 2.0]), F, cfg)])
    torch.testing.assert_close(out_r, out, atol=1e-5, rtol=0)
    # vertex (and face) permutation: per-vertex outputs are permuted, per-mesh ones equal
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(V))
    inv = np.argsort(perm)
    out_p = run(model, [prepare(V[perm], inv[F][rng.permutation(len(F))], cfg)])
    want = out[torch.as_tensor(perm)] if cfg.task == "segmentation" else out
    torch.testing.assert_close(out_p, want, atol=1e-5, rtol=0)
    # other reference neighbours + random gauge rotations on every level
    out_g = run(model, [regauged(s)])
    torch.testing.assert_close(out_g, out, atol=1e-9, rtol=0)


def test_diffusion_model_does_not_depend_on_the_mesh_units(mesh):
    """Meshes in Angstrom or metres give the same logits (each is scaled to unit area)."""
    V, F = mesh
    cfg, model = make("diffusion-seg")
    cfg.in_features = ["hks", "xyz", "mean_curvature", "gauss_curvature", "hks_grad", "shape_operator"]
    torch.manual_seed(0)
    model = build_model(cfg).double().eval()
    outs = [run(model, [prepare(V * scale, F, cfg)]) for scale in (1.0, 1e-3, 250.0)]
    assert outs[0].abs().max() > 1e-3
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-6, rtol=1e-6)


def test_regular_nonlinearity_gauge_error_falls_with_samples(mesh):
    """The paper's regular non-linearity is equivariant only up to aliasing."""
    V, F = mesh
    errs = []
    for N in (5, 17):
        cfg = ModelConfig(hidden_irreps="4x0 + 4x1 + 4x2", n_layers=2, head_hidden=8, nonlinearity="regular",
                          n_samples=N, in_features=EQUIV_IN, **GEOM)
        torch.manual_seed(0)
        model = build_model(cfg).double().eval()
        s = prepare(V, F, cfg)
        out, out_g = run(model, [s]), run(model, [regauged(s)])
        errs.append(float((out - out_g).abs().max() / out.abs().max()))
    assert errs[1] < errs[0] / 3 and errs[1] < 0.05, errs


def test_batch_equals_single_meshes():
    cfg, model = make("unet-gated-cls")
    a, b = prepare(*blob(2, 4), cfg), prepare(*blob(2, 5), cfg)
    both = run(model, [a, b])
    torch.testing.assert_close(both, torch.cat([run(model, [a]), run(model, [b])]), atol=1e-10, rtol=0)
    assert both.shape == (2, 4)
    cfg, model = make("unet-gated-seg")
    a, b = prepare(*blob(2, 4), cfg), prepare(*blob(2, 5), cfg)
    both = run(model, [a, b])
    assert both.shape == (a.num_vertices + b.num_vertices, 3)
    torch.testing.assert_close(both, torch.cat([run(model, [a]), run(model, [b])]), atol=1e-10, rtol=0)


def test_batch_of_meshes_whose_coarse_spectra_differ():
    cfg = ModelConfig(n_levels=2, level_ratio=0.3, k_eig=16, n_hks=4, coarse_k_eig=16, nonlinearity="gated",
                      hidden_irreps="4x0 + 2x1", n_layers=1)
    small, big = prepare(*icosphere(1), cfg), prepare(*blob(2, 7), cfg)
    assert small.coarse[0].evecs.shape[1] < big.coarse[0].evecs.shape[1] == 16
    b = collate_samples([small, big], dtype=torch.float64)
    assert b.levels[1].evecs.shape[1] == small.coarse[0].evecs.shape[1]
    assert big.coarse[0].evecs.shape[1] == 16  # the samples themselves are untouched
    torch.manual_seed(0)
    model = build_model(cfg).double().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(b)[small.num_vertices:], run(model, [big]), atol=1e-10, rtol=0)


def test_gem_block_gradcheck_and_dropout_equivariance():
    V, F = icosphere(0)
    cfg = ModelConfig(hidden_irreps="2x0 + 1x1 + 1x2", nonlinearity="gated", k_eig=4, n_hks=2, radial=2)
    b = collate_samples([prepare(V, F, cfg)], dtype=torch.float64)
    H = Irreps(cfg.hidden_irreps)
    torch.manual_seed(0)
    blk = GEMBlock(H, cfg).double()
    geom = blk.conv.precompute(b.ops.edge_index, b.ops.theta, b.ops.transport, b.r_rel[0], b.num_vertices)
    x = H.randn(b.num_vertices, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: blk(v, geom, b.batch), (x,))
    # dropout removes whole irrep copies, so it commutes with gauge rotations
    drop = IrrepDropout(H, 0.5).train()
    alpha = random_gauge(b.num_vertices)
    torch.manual_seed(1)
    y = drop(x.detach())
    torch.manual_seed(1)
    y_t = drop(transform_features(H, x.detach(), alpha))
    torch.testing.assert_close(y_t, transform_features(H, y, alpha))
    assert (y == 0).any() and (y != 0).any()


def _toy_task(cfg, seeds=(0, 1)):
    """Two meshes; label = sign of a heat-smoothed mean curvature minus its median."""
    b = collate_samples([prepare(*blob(2, s), cfg) for s in seeds])
    Hc, _ = input_features(b.ops, ["mean_curvature"])
    f = spectral_diffusion(Hc, b.ops.evecs, b.ops.evals, b.ops.mass, torch.tensor([0.02]), b.ptr)[:, 0]
    y = torch.cat([(f[s:e] > f[s:e].median()).long() for s, e in zip(b.ptr[:-1].tolist(), b.ptr[1:].tolist())])
    return b, y


@pytest.mark.parametrize("levels", [1, 2])
def test_tiny_gem_overfits_toy_task(levels):
    cfg = ModelConfig(in_features=["mean_curvature", "gauss_curvature", "constant"], k_eig=16, n_hks=4,
                      hidden_irreps="8x0 + 8x1 + 8x2", n_layers=2, head_hidden=16, n_levels=levels,
                      level_ratio=0.3, nonlinearity="regular", n_samples=7)
    b, y = _toy_task(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(b), y)
        loss.backward()
        opt.step()
    acc = (model(b).argmax(1) == y).double().mean().item()
    assert acc > 0.95, acc


def test_features_for_the_viewer():
    cfg, model = make("unet-gated-seg")
    s = prepare(*blob(2, 6), cfg)
    b = collate_samples([s], dtype=torch.float64)
    n = model.num_feature_layers
    assert n == 1 + 2 * 2 + 2 * 1 + 1
    H = Irreps(cfg.hidden_irreps)
    for layer in range(n):
        f = model.features(b, layer)
        assert f.shape == (s.num_vertices, H.count(0) + 5) and torch.isfinite(f).all() and not f.requires_grad
    torch.testing.assert_close(model.features(b, -1), model.features(b, n - 1))
    # layers 3 and 4 run on the coarse level: children of one coarse vertex share features
    f3 = model.features(b, 3)
    par = torch.as_tensor(s.pools[0].parent)
    torch.testing.assert_close(f3, f3[torch.as_tensor(np.unique(s.pools[0].parent, return_index=True)[1])][par])
    # features are gauge invariant too
    torch.testing.assert_close(model.features(collate_samples([regauged(s)], dtype=torch.float64), 2),
                               model.features(b, 2), atol=1e-9, rtol=0)
    with pytest.raises(IndexError):
        model.features(b, n)
    cfg, dmodel = make("diffusion-seg")
    bd = collate_samples([prepare(*blob(2, 6), cfg)], dtype=torch.float64)
    assert dmodel.num_feature_layers == 3 and dmodel.features(bd, -1).shape == (s.num_vertices, 8)


def test_config_json_round_trip_and_validation():
    cfg = ModelConfig(kind="gem", task="classification", n_classes=10, in_features=("hks", "hks_grad"),
                      hidden_irreps="8x0 + 4x1", nonlinearity="gated", n_levels=3, dropout=0.1, radial=4)
    d = json.loads(json.dumps(cfg.to_dict()))
    back = ModelConfig.from_dict(d)
    assert back == cfg and back.in_features == ["hks", "hks_grad"]
    torch.manual_seed(0)
    m1 = build_model(d)
    torch.manual_seed(0)
    m2 = build_model(back)
    for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    bad = [
        ({"kind": "pointnet"}, "kind"),
        ({"task": "regression"}, "task"),
        ({"hidden_irreps": "8x0 + 4x1", "nonlinearity": "regular"}, "equal multiplicities"),
        ({"hidden_irreps": "4x0 + 4x1 + 4x2", "n_samples": 4}, "n_samples"),
        ({"hidden_irreps": "4x1", "nonlinearity": "gated"}, "gated"),
        ({"in_features": ["hks", "colour"]}, "unknown input feature"),
        ({"in_features": ["wks"]}, "wks"),
        ({"dropout": 1.0}, "dropout"),
        ({"n_levels": 0}, "n_levels"),
        ({"level_ratio": 1.5}, "level_ratio"),
        ({"task": "classification", "n_classes": 1}, "n_classes"),
        ({"hidden_irreps": "4y0"}, "parse"),
    ]
    for kw, msg in bad:
        with pytest.raises(ValueError, match=msg):
            ModelConfig(**kw)
    with pytest.raises(ValueError, match="unknown model option"):
        ModelConfig.from_dict({"kind": "gem", "depth": 3})


def test_bad_inputs_give_clear_errors(mesh):
    V, F = mesh
    cfg, model = make("unet-gated-seg")
    with pytest.raises(MeshError):
        prepare(V[:, :2], F, cfg)
    with pytest.raises(MeshError):
        prepare(V, F + len(V), cfg)
    with pytest.raises(MeshError):  # a mesh too small for three levels
        prepare(*icosphere(0), ModelConfig(n_levels=3, k_eig=4, n_hks=2))
    single = prepare(V, F, ModelConfig(**GEOM))
    with pytest.raises(ValueError, match="levels"):
        model(collate_samples([single], dtype=torch.float64))
    with pytest.raises(ValueError, match="number of levels"):
        collate_samples([single, prepare(V, F, cfg)])
    with pytest.raises(TypeError):
        model(collate_samples([single]).ops)
    with pytest.raises(TypeError):
        collate_samples([(V, F)])
    other = prepare(V, F, ModelConfig(**{**GEOM, "n_hks": 3, "n_levels": 2, "level_ratio": 0.3}))
    with pytest.raises(ValueError, match="n_hks"):
        model(collate_samples([other], dtype=torch.float64))


def test_batch_moves_and_casts(mesh):
    cfg, model = make("unet-gated-seg")
    b = collate_samples([prepare(*mesh, cfg)])
    assert isinstance(b, Batch) and b.ops.pos.dtype == torch.get_default_dtype()
    b64 = b.to(dtype=torch.float64)
    assert b64.pools[0].angle.dtype == torch.float64 and b64.r_rel[1].dtype == torch.float64
    assert b64.pools[0].parent.dtype == torch.long
    out32 = build_model(cfg).eval()(b)
    assert out32.dtype == torch.float32 and out32.shape == (b.num_vertices, 3)
    # r_rel: edge lengths in units of the mesh level's mean edge length
    for lv, r in zip(b.levels, b.r_rel):
        assert abs(float(r.mean()) - 1.0) < 1e-5


def test_gem_unit_area_makes_the_model_scale_invariant():
    """unit_area=True: the same logits for a mesh in metres, millimetres or kilometres
    (HKS ~ 1/area and its gradients ~ 1/length would otherwise change)."""
    import torch

    from meshgdl.data.batching import collate_samples, prepare
    from meshgdl.nn.models import ModelConfig, build_model
    from meshes import icosphere

    V, F = icosphere(2)
    V = V * np.array([1.0, 0.7, 1.3])
    out = {}
    for ua in (False, True):
        cfg = ModelConfig(kind="gem", n_classes=3, in_features=["hks", "hks_grad"], k_eig=24, n_hks=4,
                          n_levels=2, hidden_irreps="4x0 + 2x1", n_layers=1, nonlinearity="gated", unit_area=ua)
        torch.manual_seed(0)
        model = build_model(cfg).double().eval()
        out[ua] = [model(collate_samples([prepare(V * s, F, cfg)], dtype=torch.float64)) for s in (1.0, 1e-3, 250.0)]
    for y in out[True][1:]:
        torch.testing.assert_close(y, out[True][0], rtol=1e-6, atol=1e-8)
    assert not torch.allclose(out[False][1], out[False][0], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="unit_area"):
        ModelConfig(unit_area="yes")


def test_a_model_kind_is_one_class_plus_one_registration():
    """The registry is the only list of kinds: a new one builds, trains through the same
    Batch and is refused once removed; unknown kinds never fall back to another model."""
    from meshgdl.nn.models import MODELS, register_model
    from meshgdl.nn.pooling import invariant_features

    @register_model("tiny_linear")
    class TinyLinear(torch.nn.Module):
        uses_hierarchy = False
        num_feature_layers = 1

        @staticmethod
        def check_config(cfg):
            if cfg.task != "segmentation":
                raise ValueError("tiny_linear segments only")

        def __init__(self, cfg):
            super().__init__()
            self.lin = torch.nn.Linear(cfg.n_hks, cfg.n_classes)

        def forward(self, batch):
            return self.lin(batch.ops.hks)

        def features(self, batch, layer):
            return invariant_features(batch.ops.hks, f"{batch.ops.hks.shape[1]}x0")

    try:
        cfg = ModelConfig(kind="tiny_linear", n_classes=3, n_hks=4, k_eig=8, n_levels=3)
        assert cfg.geometry.uses_hierarchy is False  # the kind says it needs no hierarchy
        model = build_model(cfg.to_dict())
        assert isinstance(model, TinyLinear)
        b = collate_samples([prepare(*icosphere(1), cfg)])
        assert len(b.levels) == 1 and model(b).shape == (b.num_vertices, 3)
        with pytest.raises(ValueError, match="segments only"):
            ModelConfig(kind="tiny_linear", task="classification")
        with pytest.raises(ValueError, match="already registered"):
            register_model("gem")(TinyLinear)
        with pytest.raises(TypeError, match="has no uses_hierarchy"):
            register_model("broken")(torch.nn.Linear)
    finally:
        MODELS.pop("tiny_linear", None)
    with pytest.raises(ValueError, match="kind must be one of diffusion, gem"):
        ModelConfig(kind="tiny_linear")


def test_wks_input_feature_is_computed_when_the_config_asks_for_it():
    cfg = ModelConfig(kind="diffusion", in_features=["hks", "wks"], n_hks=4, n_wks=5, k_eig=16, width=8, n_layers=1)
    s = prepare(*blob(1, 2), cfg)
    assert s.ops.wks.shape == (s.num_vertices, 5)
    out = build_model(cfg)(collate_samples([s]))
    assert out.shape == (s.num_vertices, cfg.n_classes) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="n_wks"):
        ModelConfig(in_features=["wks"])


def test_irrep_dropout_rate_and_scale():
    """Whole copies are dropped at rate p and the kept ones scaled so the mean is kept."""
    H = Irreps("4x0 + 4x1 + 2x2")
    drop = IrrepDropout(H, 0.3).train()
    x = torch.ones(20000, H.dim, dtype=torch.float64)
    torch.manual_seed(0)
    y = drop(x)
    zero = y == 0
    assert abs(zero.double().mean().item() - 0.3) < 0.01
    assert torch.allclose(y[~zero], torch.full_like(y[~zero], 1 / (1 - round(0.3 * 65536) / 65536)))
    assert abs(y.mean().item() - 1.0) < 0.01
    # both components of a rho_n copy go together
    idx = [i for i, (f, _) in enumerate(H.copies()) for _ in range(Irreps.irrep_dim(f))]
    owner = torch.tensor(idx)
    for c in range(H.num_irreps):
        cols = zero[:, owner == c]
        assert (cols == cols[:, :1]).all()
    assert torch.equal(drop.eval()(x), x)
