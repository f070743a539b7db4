"""The one measurement harness of the scripts under ``tools/bench/``.

Timing (:func:`time_calls`): warm-up calls first (not timed), then ``rounds`` timed
samples per function, each the wall-clock seconds of ``number`` calls; ``interleaved``
runs every function once per round, round after round, so all of them see the same
machine load, ``alone`` runs each function's rounds back to back. The median, min and
max of the samples, the user/system CPU seconds and page faults of the timed calls
(``getrusage``) and the load average before and after are kept. Ratios between two
functions timed in the same run: :func:`round_ratios` (per round) and
:func:`median_ratio`. :func:`schedule` gives the same call order to scripts that time in
other processes; :func:`timed` times one call.

Memory, in bytes above what was allocated when the measurement started:

* :func:`cpu_peak_memory`: torch's CPU allocations, from the profiler's raw allocation
  and free records, each replayed at its own timestamp. (The profiler's per-op memory
  columns are net sums per op: an op that allocates a buffer and frees it again -- e.g. a
  custom autograd Function -- nets to zero there, and replaying ops at their start times
  counts frees before the allocations they follow.) Only what goes through torch's
  allocator is seen: numpy, scipy, BLAS/LAPACK and other C/Fortran memory is not; and
  the profiler records no free of memory allocated before it started, so the peak is
  that of the section's own allocations.
* :func:`rss_peak`: the process's resident set (``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``): sees every allocation that touches memory, including
  C/Fortran ones, at page granularity. :func:`run_process` with :func:`python_command`
  gives a child's own peak RSS (its ``ru_maxrss`` would include its parent's).
* :func:`cuda_peak_memory`: the CUDA caching allocator's peak statistic.

Records (:func:`record`, :func:`write_json`): the results with the machine, the
package versions, the git commit, the thread settings and the load average.

Scripts under ``tools/bench/`` import it as ``measure`` (their own folder is on
``sys.path`` when they run); tests load it from its path. torch is imported only by the
functions that need it, so a process that measures its RSS does not pay for torch.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 2**20

# --------------------------------------------------------------------------- load, timing


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (runnable processes), or None where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclasses.dataclass
class Timing:
    """Timed samples of one function (seconds; one sample = ``number`` calls)."""

    name: str
    seconds: list[float]
    number: int = 1
    warmup: int = 0
    mode: str = "interleaved"
    user_s: float = 0.0  # CPU seconds of the timed calls, whole process (all threads)
    sys_s: float = 0.0
    minor_faults: int = 0
    major_faults: int = 0
    load_before: list[float] | None = None
    load_after: list[float] | None = None

    @property
    def rounds(self) -> int:
        return len(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)

    @property
    def calls(self) -> int:
        return self.number * len(self.seconds)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(rounds=self.rounds, median=self.median, min=self.min, max=self.max)
        return d


def timed(fn: Callable[..., Any], *args, sync: Callable[[], Any] | None = None,
          clock: Callable[[], float] = time.perf_counter, **kwargs) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)`` of one call, for scripts that time each input
    once (``sync`` as in :func:`time_calls`)."""
    if sync is not None:
        sync()
    t0 = clock()
    value = fn(*args, **kwargs)
    if sync is not None:
        sync()
    return value, clock() - t0


MODES = ("interleaved", "alone")


def schedule(names: Sequence[str], rounds: int, *, number: int = 1, mode: str = "interleaved",
             alternate: bool = False) -> list[tuple[int, str]]:
    """The timed calls of :func:`time_calls`, in the order they run: ``(round, name)``.

    ``interleaved``: in every round each name's ``number`` calls go name by name, call
    by call (f, g, f, g, ...); with ``alternate`` the order of the names is reversed every
    other round, so none always runs first. ``alone``: each name's rounds back to back.
    Scripts that time in other processes follow the same order with it.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    names = list(names)
    if mode == "alone":
        return [(r, k) for k in names for r in range(rounds) for _ in range(number)]
    out = []
    for r in range(rounds):
        order = names[::-1] if alternate and r % 2 else names
        out += [(r, k) for _ in range(number) for k in order]
    return out


def time_calls(
    fns: Mapping[str, Callable[[], Any]],
    rounds: int,
    *,
    warmup: int = 1,
    number: int = 1,
    mode: str = "interleaved",
    alternate: bool = False,
    sync: Callable[[], Any] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time every function of ``fns`` (name -> zero-argument callable).

    ``warmup`` untimed calls per function come first (``interleaved``: all of them before
    the first round; ``alone``: each function's just before its own rounds). One sample is
    ``number`` calls (seconds summed); the order of the timed calls is :func:`schedule`'s.
    ``sync`` (e.g. :func:`device_sync`) is called before the clock starts and before it
    stops, so asynchronous device work is inside the sample.
    """
    if rounds < 1 or number < 1 or warmup < 0:
        raise ValueError("rounds and number must be >= 1, warmup >= 0")
    plan = schedule(list(fns), rounds, number=number, mode=mode, alternate=alternate)
    out = {k: Timing(k, [0.0] * rounds, number, warmup, mode, load_before=load_average()) for k in fns}

    def timed_call(k: str) -> float:
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        _, dt = timed(fns[k], sync=sync, clock=clock)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        t = out[k]
        t.user_s += r1.ru_utime - r0.ru_utime
        t.sys_s += r1.ru_stime - r0.ru_stime
        t.minor_faults += r1.ru_minflt - r0.ru_minflt
        t.major_faults += r1.ru_majflt - r0.ru_majflt
        return dt

    warm = [k for _ in range(warmup) for k in fns] if mode == "interleaved" else []
    for k in warm:
        fns[k]()
    started = set()
    for r, k in plan:
        if mode == "alone" and k not in started:
            started.add(k)
            for _ in range(warmup):
                fns[k]()
        out[k].seconds[r] += timed_call(k)
    load = load_average()
    for t in out.values():
        t.load_after = load
    return out


def round_ratios(a: Timing, b: Timing) -> list[float]:
    """a's time over b's, round by round (both timed in the same run)."""
    if len(a.seconds) != len(b.seconds):
        raise ValueError(f"{a.name} and {b.name} have different numbers of rounds")
    return [x / y for x, y in zip(a.seconds, b.seconds)]


def median_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of a's time / b's: robust to load that changes between rounds."""
    return statistics.median(round_ratios(a, b))


def device_sync(device) -> Callable[[], Any] | None:
    """A ``sync`` for :func:`time_calls`: waits for ``device``'s queued kernels (None on the CPU)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


# --------------------------------------------------------------------------- memory


@dataclasses.dataclass
class MemoryPeak:
    """Peak memory of one measured call, bytes above what was allocated when it started."""

    peak_bytes: int
    net_bytes: int | None = None  # still allocated at the end (allocated - freed)
    allocated_bytes: int | None = None  # sum of all allocations
    records: int | None = None  # allocation/free records replayed
    device: str = "cpu"
    method: str = ""

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MiB

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), peak_mib=self.peak_mib)


def replay_peak(records: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(peak, net) bytes of signed byte counts replayed in time order.

    ``records`` are ``(timestamp, nbytes)`` with frees negative; equal timestamps keep
    their given order. The peak is the highest running total, and at least 0.
    """
    cur = peak = 0
    for _, n in sorted(records, key=lambda r: r[0]):  # sorted() is stable
        cur += n
        peak = max(peak, cur)
    return peak, cur


def allocation_records(prof, device_type: str = "CPU") -> list[tuple[int, int]]:
    """``(start_ns, nbytes)`` of every raw allocation (+) and free (-) record of a finished
    ``torch.profiler.profile(profile_memory=True)`` on devices of ``device_type``."""
    out = []
    for e in prof.profiler.kineto_results.events():
        if e.name() == "[memory]" and e.device_type().name == device_type:
            out.append((e.start_ns(), e.nbytes()))
    return out


class cpu_memory:
    """Context manager: torch CPU allocations inside it, replayed at their own timestamps.

    ``with cpu_memory() as m: ...`` then ``m.result`` (a :class:`MemoryPeak`).
    """

    def __enter__(self):
        from torch.profiler import ProfilerActivity, profile

        self.result: MemoryPeak | None = None
        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc):
        self._prof.__exit__(*exc)
        if exc[0] is None:
            recs = allocation_records(self._prof, "CPU")
            peak, net = replay_peak(recs)
            self.result = MemoryPeak(peak, net, sum(n for _, n in recs if n > 0), len(recs), "cpu",
                                     "torch profiler allocation records at their own timestamps")
        return False


def cpu_peak_memory(fn: Callable[[], Any]) -> MemoryPeak:
    """Peak torch CPU memory allocated by ``fn()`` and not yet freed, over its run (bytes
    above what was allocated before it; frees of that earlier memory are not seen)."""
    with cpu_memory() as m:
        fn()
    return m.result


class cuda_memory:
    """Context manager: the CUDA caching allocator's peak inside it (``max_memory_allocated``,
    bytes above what was allocated at the start); resets the device's peak statistics.

    ``with cuda_memory("cuda:0") as m: ...`` then ``m.result`` (a :class:`MemoryPeak`).
    """

    def __init__(self, device="cuda"):
        self.device = device

    def __enter__(self):
        import torch

        self.result: MemoryPeak | None = None
        self._dev = torch.device(self.device)
        torch.cuda.synchronize(self._dev)
        torch.cuda.reset_peak_memory_stats(self._dev)
        self._start = torch.cuda.memory_allocated(self._dev)
        return self

    def __exit__(self, *exc):
        import torch

        if exc[0] is None:
            torch.cuda.synchronize(self._dev)
            self.result = MemoryPeak(torch.cuda.max_memory_allocated(self._dev) - self._start,
                                     torch.cuda.memory_allocated(self._dev) - self._start, None, None,
                                     str(self._dev), "torch.cuda.max_memory_allocated")
        return False


def cuda_peak_memory(fn: Callable[[], Any], device="cuda") -> MemoryPeak:
    """Peak CUDA memory while ``fn()`` runs (:class:`cuda_memory`)."""
    with cuda_memory(device) as m:
        fn()
    return m.result


def peak_memory(fn: Callable[[], Any], device="cpu") -> MemoryPeak:
    """:func:`cuda_peak_memory` on a CUDA device, else :func:`cpu_peak_memory`."""
    if str(device).startswith("cuda"):
        return cuda_peak_memory(fn, device)
    return cpu_peak_memory(fn)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    """The process's current resident set size (``VmRSS``), or None off Linux."""
    k = _status_kib("VmRSS")
    return None if k is None else k * 1024


def reset_rss_peak() -> bool:
    """Reset the process's RSS high-water mark to its current RSS (Linux >= 4.0; writing
    5 to ``/proc/self/clear_refs``). False where not allowed: then the mark keeps every
    earlier peak of the process."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_hwm_bytes() -> int:
    """The process's RSS high-water mark (``VmHWM``; else ``ru_maxrss``), bytes."""
    k = _status_kib("VmHWM")
    if k is None:
        k = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return k * 1024


@dataclasses.dataclass
class RssPeak:
    """Resident-set peak of a section of this process (bytes)."""

    peak_bytes: int  # the highest RSS during the section (absolute)
    base_bytes: int | None  # RSS when it started
    reset: bool  # False: the high-water mark could not be reset, so peak may predate the section

    @property
    def extra_bytes(self) -> int | None:
        return None if self.base_bytes is None else self.peak_bytes - self.base_bytes

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), peak_mib=self.peak_bytes / MiB,
                    extra_mib=None if self.base_bytes is None else self.extra_bytes / MiB)


def rss_peak(fn: Callable[[], Any]) -> tuple[Any, RssPeak]:
    """``(fn(), RssPeak)``: the highest resident set size of this process while ``fn`` ran."""
    reset = reset_rss_peak()
    base = rss_bytes()
    value = fn()
    return value, RssPeak(rss_hwm_bytes(), base, reset)


@dataclasses.dataclass
class ProcessResult:
    returncode: int
    stdout: str | None
    stderr: str | None
    wall_s: float  # start to exit, seconds
    peak_rss_bytes: int | None  # the child's own VmHWM (a python_command child only)
    ru_maxrss_bytes: int  # wait4's ru_maxrss: at least the spawning process's RSS (see run_process)
    timed_out: bool = False

    @property
    def peak_rss_mib(self) -> float | None:
        return None if self.peak_rss_bytes is None else self.peak_rss_bytes / MiB


_HWM_ENV = "MESHGDL_BENCH_HWM_FILE"
# Runs a Python child (script, -m module or -c code) and, at its exit, writes its own
# VmHWM to the file named in the environment. atexit hooks run last-registered first, so
# this one, registered before the child's code, reads the mark after everything else.
_BOOT = f"""
import atexit, os, runpy, sys
def _hwm(path=os.environ.pop({_HWM_ENV!r}, None)):
    if path:
        with open("/proc/self/status") as f:
            kib = [l.split()[1] for l in f if l.startswith("VmHWM:")]
        with open(path, "w") as f:
            f.write(kib[0] if kib else "")
atexit.register(_hwm)
args = sys.argv[1:]
if args[0] == "-c":
    sys.argv = ["-c"] + args[2:]
    exec(compile(args[1], "<string>", "exec"), {{"__name__": "__main__"}})
elif args[0] == "-m":
    sys.argv = args[1:]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = args
    sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
    runpy.run_path(args[0], run_name="__main__")
"""


def recipe_command(script: str, argv: Sequence[str] | None = None) -> str:
    """``OMP_NUM_THREADS=1 python SCRIPT ARGS``: how a tool that writes into a shipped
    model's description was run (``argv``: its arguments, default ``sys.argv[1:]``),
    without ``--json PATH`` (where the record went is not part of the recipe)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--json" in args:
        i = args.index("--json")
        del args[i:i + 2]
    return " ".join(["OMP_NUM_THREADS=1 python", script, *args])


def python_command(args: Sequence[str], python: str | None = None) -> list[str]:
    """The command that runs ``python ARGS`` (``script.py ...``, ``-m module ...`` or
    ``-c code ...``) so that :func:`run_process` gets the child's own peak RSS."""
    return [python or sys.executable, "-c", _BOOT, *args]


def run_process(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd=None,
                timeout: float | None = None, capture: bool = True, stdout=None, stderr=None) -> ProcessResult:
    """Run ``cmd`` to completion: its wall time and peak resident set.

    A child's ``ru_maxrss`` is no measure of the child alone: Linux starts it from the
    high-water mark of the memory image it replaced at ``exec``, i.e. of the process that
    spawned it (a 400 MiB parent gives every child ``ru_maxrss`` >= 400 MiB). So the peak
    comes from the child's own ``VmHWM``, which a :func:`python_command` child reports at
    exit (``peak_rss_bytes``; None for other commands, whose ``ru_maxrss_bytes`` is only an
    upper bound). ``capture``: stdout and stderr come back as text (through temporary
    files, so a chatty child cannot block on a full pipe); else they go where this
    process's go, or to ``stdout`` / ``stderr`` (open files; ``stderr=subprocess.STDOUT``
    joins them). On timeout the child is killed and ``timed_out`` set.
    """
    import tempfile
    import threading

    with tempfile.TemporaryDirectory(prefix="meshgdl-bench-") as td:
        hwm_file = os.path.join(td, "hwm")
        env = dict(os.environ if env is None else env, **{_HWM_ENV: hwm_file})
        fo = open(os.path.join(td, "out"), "w+") if capture else stdout
        fe = open(os.path.join(td, "err"), "w+") if capture else stderr
        try:
            t0 = time.perf_counter()
            p = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=fo, stderr=fe)
            killed = threading.Event()

            def kill():
                killed.set()
                p.kill()

            timer = threading.Timer(timeout, kill) if timeout is not None else None
            if timer is not None:
                timer.start()
            try:
                # reaped here, not by Popen, to get the child's own rusage
                _, status, usage = os.wait4(p.pid, 0)
            finally:
                if timer is not None:
                    timer.cancel()
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            out = err = None
            if capture:
                fo.seek(0)
                fe.seek(0)
                out, err = fo.read(), fe.read()
        finally:
            if capture:
                fo.close()
                fe.close()
        try:
            with open(hwm_file) as f:
                peak = int(f.read()) * 1024
        except (OSError, ValueError):
            peak = None
    return ProcessResult(p.returncode, out, err, wall, peak, usage.ru_maxrss * 1024, killed.is_set())


# --------------------------------------------------------------------------- records


def _git_commit() -> dict | None:
    try:
        sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"sha": sha, "dirty": bool(dirty)}


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Machine, versions, commit, thread settings and load average, for a record."""
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "OMP_WAIT_POLICY")}
    if "torch" in sys.modules:  # only report torch's setting where the script uses torch
        threads["torch_threads"] = sys.modules["torch"].get_num_threads()
    return {
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "memory_bytes": mem,
                    "platform": platform.platform()},
        "versions": {"python": platform.python_version(),
                     **{p: _version(p) for p in ("torch", "numpy", "scipy", "meshgdl")}},
        "commit": _git_commit(),
        "threads": threads,
        "load_average": load_average(),
    }


def environment_line(env: dict | None = None) -> str:
    """The environment in one ``# ...`` line for a script's printed output."""
    env = env or environment()
    c = env["commit"]
    commit = "unknown" if c is None else c["sha"][:10] + (" (dirty)" if c["dirty"] else "")
    thr = ", ".join(f"{k}={v}" for k, v in env["threads"].items() if v is not None)
    load = env["load_average"]
    return (f"# {env['machine']['cpu']}, {env['machine']['logical_cpus']} CPUs; python "
            f"{env['versions']['python']}, torch {env['versions']['torch']}; commit {commit}; "
            f"{thr or 'default threads'}; load average {'/'.join(map(str, load)) if load else 'unknown'}")


def record(script: str, results: Any, args: Any = None, environment_start: dict | None = None) -> dict:
    """A JSON-ready record: the script, its arguments, the environment (at the start, if
    given, with the load average at the end added) and the results."""
    env = environment_start or environment()
    env = dict(env, load_average_end=load_average())
    if args is not None and not isinstance(args, dict):
        args = vars(args)
    return {"script": script, "argv": sys.argv[1:], "args": args, "environment": env, "results": results}


def _default(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def to_json(doc: Any) -> str:
    return json.dumps(doc, indent=1, default=_default) + "\n"


def write_json(path, doc: Any) -> None:
    """Write ``doc`` as JSON (timings, peaks, numpy values converted), atomically."""
    if ROOT not in sys.path:  # the scripts run from a checkout, the package maybe not installed
        sys.path.insert(0, ROOT)
    from meshgdl.atomic import write_text_atomic

    write_text_atomic(path, to_json(doc))
