"""The benchmark harness (tools/bench/measure.py): memory meters against allocation
patterns whose peak is known, timing order and statistics on a fake clock, records."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("measure", ROOT / "tools" / "bench" / "measure.py")
measure = importlib.util.module_from_spec(_spec)
sys.modules["measure"] = measure  # dataclasses look their module up by name
_spec.loader.exec_module(measure)

MiB = 2**20
# Bookkeeping allowance: tiny tensors (scalars, views' metadata, autograd's seed gradient)
# that the patterns below allocate besides their big buffers.
TOL = 64 * 1024


def floats(nbytes: int) -> int:
    return nbytes // 4


# --------------------------------------------------------------------------- CPU peak memory


class _AllocatesInside(torch.autograd.Function):
    """Forward and backward each allocate a big scratch buffer and free it before they
    return: one op to the profiler, whose net memory is a few bytes."""

    @staticmethod
    def forward(ctx, x, scratch_bytes):
        ctx.scratch_bytes = scratch_bytes
        buf = torch.empty(floats(scratch_bytes))
        buf.fill_(2.0)
        out = x * buf[: x.numel()].view_as(x)
        del buf
        return out

    @staticmethod
    def backward(ctx, g):
        buf = torch.empty(floats(2 * ctx.scratch_bytes))
        buf.fill_(2.0)
        gx = g * buf[: g.numel()].view_as(g)
        del buf
        return gx, None


def test_custom_function_freeing_its_scratch_inside_one_op_is_counted():
    x = torch.ones(16, requires_grad=True)

    def forward():
        with torch.no_grad():
            _AllocatesInside.apply(x, 24 * MiB)

    def forward_backward():
        _AllocatesInside.apply(x, 24 * MiB).sum().backward()
        x.grad = None

    forward_backward()  # autograd's first-use allocations out of the way
    f = measure.cpu_peak_memory(forward)
    fb = measure.cpu_peak_memory(forward_backward)
    assert abs(f.peak_bytes - 24 * MiB) < TOL, f
    # the backward's 48 MiB buffer is the peak: the forward's was freed before it
    assert abs(fb.peak_bytes - 48 * MiB) < TOL, fb
    assert abs(fb.net_bytes) < TOL and fb.allocated_bytes >= 72 * MiB


def test_chain_of_ops_with_a_known_peak():
    n = floats(8 * MiB)

    def chain():
        a = torch.ones(n)  # 8
        b = a * 2  # 16
        c = torch.cat([a, b])  # 32: the peak
        del a, b  # 16
        d = c[:n] + 1  # 24
        del c  # 8
        return float(d.sum())

    m = measure.cpu_peak_memory(chain)
    assert abs(m.peak_bytes - 32 * MiB) < TOL, m
    assert abs(m.net_bytes) < TOL
    assert abs(m.allocated_bytes - 40 * MiB) < TOL
    assert m.peak_mib == pytest.approx(m.peak_bytes / MiB)


def test_a_function_that_allocates_nothing_peaks_at_zero():
    x = torch.ones(floats(4 * MiB))
    m = measure.cpu_peak_memory(lambda: x.mul_(1.0))
    assert m.peak_bytes < 1024 and abs(m.net_bytes) < 1024, m


def test_frees_of_memory_from_before_the_section_are_not_seen():
    # the profiler records no free of an allocation it did not see: the peak is that of
    # the section's own allocations, never lowered by memory released from before
    held = [torch.ones(floats(8 * MiB))]

    def fn():
        held.clear()
        return float(torch.ones(floats(4 * MiB)).sum())

    m = measure.cpu_peak_memory(fn)
    assert abs(m.peak_bytes - 4 * MiB) < TOL and abs(m.net_bytes) < TOL, m


def test_replay_orders_records_by_their_own_timestamps():
    # a free listed before the allocation it follows must not hide that allocation
    assert measure.replay_peak([(30, -10), (10, 10), (20, 5)]) == (15, 5)
    assert measure.replay_peak([(1, 4), (1, -4), (1, 3)]) == (4, 3)  # ties keep their order
    assert measure.replay_peak([]) == (0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_peak_of_a_buffer_freed_inside():
    def fn():
        buf = torch.empty(floats(64 * MiB), device="cuda")
        buf.fill_(1.0)
        del buf

    m = measure.peak_memory(fn, "cuda")
    assert abs(m.peak_bytes - 64 * MiB) < TOL and abs(m.net_bytes) < TOL


# --------------------------------------------------------------------------- RSS


@pytest.mark.skipif(not measure.reset_rss_peak(), reason="/proc/self/clear_refs not writable here")
def test_rss_peak_sees_numpy_memory_and_only_this_section():
    import mmap

    big = np.ones(96 * MiB // 8)  # a high-water mark above the section's, before it
    del big

    def section():
        # a numpy array on fresh anonymous pages from the kernel, whatever malloc holds:
        # np.ones(40 MiB) itself reused heap pages an earlier test had left resident once
        # in a full run (a library had raised glibc's mmap threshold), adding nothing
        buf = mmap.mmap(-1, 40 * MiB)
        a = np.frombuffer(buf, dtype=np.float64)
        a[:] = 1.0
        total = float(a.sum())
        del a
        buf.close()
        return total

    total, r = measure.rss_peak(section)
    assert total == 40 * MiB // 8 and r.reset
    assert 36 * MiB < r.extra_bytes < 56 * MiB, r


def test_run_process_reports_each_childs_own_peak_rss():
    fat = np.ones(160 * MiB // 8)  # the spawning process's RSS, which ru_maxrss inherits
    code = "import sys; b = b'x' * (96 << 20); print(len(b), sys.argv[1:])"
    big = measure.run_process(measure.python_command(["-c", code, "a"]))
    small = measure.run_process(measure.python_command(["-c", "print('ok')"]))
    del fat
    assert big.returncode == 0 and big.stdout.strip() == f"{96 << 20} ['a']"
    assert 96 * MiB < big.peak_rss_bytes < 160 * MiB
    assert small.stdout == "ok\n" and small.peak_rss_bytes < 64 * MiB
    assert small.ru_maxrss_bytes > 160 * MiB  # why run_process does not use it
    plain = measure.run_process(["true"])
    assert plain.returncode == 0 and plain.peak_rss_bytes is None
    bad = measure.run_process(measure.python_command(["-c", "import sys; sys.exit(3)"]))
    assert bad.returncode == 3 and not bad.timed_out and bad.peak_rss_bytes > 0
    slow = measure.run_process([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert slow.timed_out and slow.returncode != 0 and slow.wall_s < 10


def test_python_command_runs_scripts_and_modules(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import sys\nif __name__ == '__main__':\n    print(sys.argv)\n")
    r = measure.run_process(measure.python_command([str(script), "x", "--y"]))
    assert r.returncode == 0 and r.stdout.strip() == str([str(script), "x", "--y"]) and r.peak_rss_bytes
    r = measure.run_process(measure.python_command(["-m", "platform", "--terse"]))
    assert r.returncode == 0 and r.stdout.strip() and r.peak_rss_bytes


# --------------------------------------------------------------------------- timing


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def counted(clock, log, name, costs):
    """A function that takes ``costs(i)`` fake seconds on its i-th call and logs it."""
    calls = []

    def fn():
        clock.now += costs(len(calls))
        calls.append(1)
        log.append(name)

    return fn


def test_interleaved_rounds_exclude_the_warm_up():
    clock, log = FakeClock(), []
    fns = {"f": counted(clock, log, "f", lambda i: 100.0 if i < 2 else 1.0),
           "g": counted(clock, log, "g", lambda i: 50.0 if i < 2 else 3.0)}
    t = measure.time_calls(fns, rounds=3, warmup=2, number=2, clock=clock)
    assert log == ["f", "g"] * 2 + ["f", "g", "f", "g"] * 3
    assert t["f"].seconds == [2.0, 2.0, 2.0] and t["g"].seconds == [6.0, 6.0, 6.0]
    assert t["f"].rounds == 3 and t["f"].calls == 6 and t["f"].max == 2.0
    assert measure.round_ratios(t["g"], t["f"]) == [3.0, 3.0, 3.0]
    assert measure.median_ratio(t["g"], t["f"]) == 3.0


def test_alternate_reverses_the_order_every_other_round():
    clock, log = FakeClock(), []
    fns = {k: counted(clock, log, k, lambda i: 1.0) for k in "fg"}
    measure.time_calls(fns, rounds=3, warmup=0, alternate=True, clock=clock)
    assert log == ["f", "g", "g", "f", "f", "g"]


def test_alone_runs_each_function_after_its_own_warm_up():
    clock, log = FakeClock(), []
    fns = {"f": counted(clock, log, "f", lambda i: [9.0, 1.0, 2.0, 3.0][i]),
           "g": counted(clock, log, "g", lambda i: 5.0)}
    syncs = []
    t = measure.time_calls(fns, rounds=3, warmup=1, mode="alone", clock=clock, sync=lambda: syncs.append(1))
    assert log == ["f"] * 4 + ["g"] * 4
    assert t["f"].seconds == [1.0, 2.0, 3.0]
    assert (t["f"].median, t["f"].min, t["f"].max) == (2.0, 1.0, 3.0)
    assert len(syncs) == 2 * 6  # before and after every timed call, not the warm-ups
    d = t["f"].to_dict()
    assert d["mode"] == "alone" and d["median"] == 2.0 and d["warmup"] == 1 and d["rounds"] == 3
    assert "load_before" in d and "user_s" in d and "minor_faults" in d


def test_schedule_is_the_order_of_time_calls():
    assert measure.schedule("fg", 2, number=2) == [(0, "f"), (0, "g"), (0, "f"), (0, "g"),
                                                   (1, "f"), (1, "g"), (1, "f"), (1, "g")]
    assert measure.schedule("fg", 2, alternate=True) == [(0, "f"), (0, "g"), (1, "g"), (1, "f")]
    assert measure.schedule("fg", 2, mode="alone") == [(0, "f"), (1, "f"), (0, "g"), (1, "g")]


def test_bad_timing_arguments():
    with pytest.raises(ValueError):
        measure.time_calls({"f": lambda: None}, rounds=1, mode="together")
    with pytest.raises(ValueError):
        measure.time_calls({"f": lambda: None}, rounds=0)


def test_timed_returns_the_value_and_the_seconds():
    clock = FakeClock()

    def fn(a, b=0):
        clock.now += 2.5
        return a + b

    assert measure.timed(fn, 1, b=2, clock=clock) == (3, 2.5)


def test_timing_on_the_real_clock():
    t = measure.time_calls({"sleep": lambda: __import__("time").sleep(0.01)}, rounds=2, warmup=0)["sleep"]
    assert 0.009 < t.min <= t.max < 1.0


# --------------------------------------------------------------------------- records


def test_record_fields_and_json(tmp_path):
    env0 = measure.environment()
    t = measure.time_calls({"f": lambda: None}, rounds=2, warmup=0)["f"]
    m = measure.cpu_peak_memory(lambda: torch.ones(1024))
    doc = measure.record("tools/bench/x.py", {"t": t, "m": m, "a": np.arange(3), "x": np.float64(0.5)},
                         args=argparse.Namespace(rounds=2), environment_start=env0)
    path = tmp_path / "out.json"
    measure.write_json(path, doc)
    back = json.loads(path.read_text())
    assert back["script"] == "tools/bench/x.py" and back["args"] == {"rounds": 2}
    env = back["environment"]
    assert env["machine"]["logical_cpus"] == os.cpu_count() and env["machine"]["cpu"]
    assert env["versions"]["torch"] == torch.__version__.split("+")[0] or env["versions"]["torch"] == torch.__version__
    assert env["versions"]["numpy"] == np.__version__
    assert set(env["threads"]) >= {"OMP_NUM_THREADS", "OMP_WAIT_POLICY", "torch_threads"}
    assert "load_average" in env and "load_average_end" in env and env["time_utc"]
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert env["commit"]["sha"] == head.strip()
    r = back["results"]
    assert r["t"]["rounds"] == 2 and len(r["t"]["seconds"]) == 2 and r["t"]["median"] >= 0
    assert r["m"]["peak_bytes"] == 4096 and r["m"]["method"]
    assert r["a"] == [0, 1, 2] and r["x"] == 0.5
    assert "load average" in measure.environment_line(env0)


def test_recipe_command_leaves_out_where_the_record_went():
    assert (measure.recipe_command("tools/bench/x.py", ["--model", "m", "--json", "out.json", "--update-model"])
            == "OMP_NUM_THREADS=1 python tools/bench/x.py --model m --update-model")
    assert measure.recipe_command("tools/bench/x.py", []) == "OMP_NUM_THREADS=1 python tools/bench/x.py"
