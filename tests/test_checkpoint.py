import json
import random
import struct

import numpy as np
import pytest
import torch
from torch import nn

from meshgdl.errors import CheckpointError
from meshgdl.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    load_optimizer_state,
    read_metadata,
    restore_rng_state,
    save_checkpoint,
)


def _model(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    m.register_buffer("counter", torch.tensor([7], dtype=torch.long))
    return m


def _trained(steps=3):
    m = _model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, betas=(0.8, 0.95))
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
    x = torch.randn(16, 3)
    for _ in range(steps):
        opt.zero_grad()
        m(x).square().sum().backward()
        opt.step()
        sch.step()
    return m, opt, sch


def _save(path, m, opt, sch, **kw):
    return save_checkpoint(path, model_state=m.state_dict(), model_config={"kind": "mlp", "n_classes": 2},
                           epoch=3, optimizer_state=opt.state_dict(), scheduler_state=sch.state_dict(),
                           rng_state=capture_rng_state(), train_config={"lr": 0.01}, extra={"history": [1, 2]}, **kw)


def test_round_trip_restores_everything(tmp_path):
    m, opt, sch = _trained()
    p = _save(tmp_path / "c.safetensors", m, opt, sch)
    ck = load_checkpoint(p)
    assert ck.epoch == 3 and ck.model_config == {"kind": "mlp", "n_classes": 2}
    assert ck.train_config == {"lr": 0.01} and ck.extra == {"history": [1, 2]}
    m2 = _model(seed=1)
    load_model_weights(m2, ck)
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-2, betas=(0.8, 0.95))
    # the scheduler must exist before the optimizer state is loaded: creating a
    # scheduler resets the group learning rates
    sch2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda e: 0.5**e)
    load_optimizer_state(opt2, ck.optimizer_state)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]  # betas back to a tuple
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k])
    sch2.load_state_dict(ck.scheduler_state)
    assert sch2.last_epoch == sch.last_epoch and sch2.get_last_lr() == sch.get_last_lr()
    # continuing both gives identical weights
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(5))
    for mm, oo in ((m, opt), (m2, opt2)):
        oo.zero_grad()
        mm(x).square().sum().backward()
        oo.step()
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_rng_state_round_trip():
    gen = np.random.default_rng(3)
    tg = torch.Generator().manual_seed(4)
    state = capture_rng_state({"np": gen, "t": tg})
    json.dumps(state)  # plain JSON
    a = (torch.rand(3), np.random.rand(3), random.random(), gen.random(2), torch.rand(2, generator=tg))
    restore_rng_state(state, {"np": gen, "t": tg})
    b = (torch.rand(3), np.random.rand(3), random.random(), gen.random(2), torch.rand(2, generator=tg))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert np.array_equal(a[3], b[3]) and torch.equal(a[4], b[4])


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    m, opt, sch = _trained()
    _save(tmp_path / "c.safetensors", m, opt, sch)
    _save(tmp_path / "c.safetensors", m, opt, sch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


def test_truncated_checkpoint(tmp_path):
    m, opt, sch = _trained()
    p = _save(tmp_path / "c.safetensors", m, opt, sch)
    data = p.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        q = tmp_path / f"t{cut}.safetensors"
        q.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(q)
        assert str(q) in str(e.value) and "\n" not in str(e.value)


def test_flipped_tensor_byte_is_detected(tmp_path):
    m, opt, sch = _trained()
    p = _save(tmp_path / "c.safetensors", m, opt, sch)
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor's bytes
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(p)


def test_foreign_files(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not a meshgdl checkpoint"):
        load_checkpoint(plain)
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pt)  # a pickle: must be refused, never unpickled
    with pytest.raises(CheckpointError, match="not a readable|corrupt"):
        load_checkpoint(pt)
    txt = tmp_path / "x.safetensors"
    txt.write_text("hello world, this is not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(txt)
    # a header that claims another format version
    meta = {"format": "meshgdl-checkpoint", "version": 99, "model_config": {}}
    save_file({"model/w": torch.zeros(1)}, str(tmp_path / "v.safetensors"), metadata={"meshgdl": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_huge_header_length_is_rejected(tmp_path):
    p = tmp_path / "h.safetensors"
    p.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_run_directory_resolution(tmp_path):
    m, opt, sch = _trained()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    _save(tmp_path / "last.safetensors", m, opt, sch)
    assert load_checkpoint(tmp_path).path.endswith("last.safetensors")
    _save(tmp_path / "best.safetensors", m, opt, sch)
    assert load_checkpoint(tmp_path).path.endswith("best.safetensors")
    assert read_metadata(tmp_path)["epoch"] == 3


def test_weights_that_do_not_fit(tmp_path):
    m, opt, sch = _trained()
    _save(tmp_path / "c.safetensors", m, opt, sch)
    ck = load_checkpoint(tmp_path / "c.safetensors")
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model_weights(other, ck)


def test_tied_weights_are_saved(tmp_path):
    lin = nn.Linear(4, 4)
    m = nn.Module()
    m.a, m.b = lin, lin  # shared storage: safetensors alone refuses this
    p = save_checkpoint(tmp_path / "t.safetensors", model_state=m.state_dict(), model_config={"k": 1})
    ck = load_checkpoint(p)
    assert torch.equal(ck.model_state["a.weight"], ck.model_state["b.weight"])


def test_unstorable_metadata_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot store"):
        save_checkpoint(tmp_path / "x.safetensors", model_state={"w": torch.zeros(1)},
                        model_config={"bad": object()})
